"""Two stacked tanh RNN layers and a softmax classifier on the top one."""

import numpy as np

from ._batch import bias_grad, col, columns, softmax


def loss_and_grads(params, x, r):
    xs, rs = columns(x), columns(r)
    W1, U1, W2, U2, Wy = (params[k] for k in ("W_1", "U_1", "W_2", "U_2", "W_y"))
    b1, b2, by = (col(params[k]) for k in ("b_1", "b_2", "b_y"))
    T, _, B = xs.shape
    h1 = {-1: np.zeros((W1.shape[0], B))}
    h2 = {-1: np.zeros((W2.shape[0], B))}
    p = {}
    loss = 0.0
    for t in range(T):
        h1[t] = np.tanh(W1 @ xs[t] + U1 @ h1[t - 1] + b1)
        h2[t] = np.tanh(W2 @ h1[t] + U2 @ h2[t - 1] + b2)
        p[t] = softmax(Wy @ h2[t] + by)
        loss += -np.sum(rs[t] * np.log(p[t]))
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    d1_next = np.zeros_like(h1[-1])  # U_1ᵀ δa₁ from step t+1
    d2_next = np.zeros_like(h2[-1])
    for t in reversed(range(T)):
        dy = p[t] * rs[t].sum(axis=0, keepdims=True) - rs[t]
        grads["W_y"] += dy @ h2[t].T
        grads["b_y"] += bias_grad(dy)
        dh2 = Wy.T @ dy + d2_next
        da2 = dh2 * (1 - h2[t] ** 2)
        grads["W_2"] += da2 @ h1[t].T
        grads["U_2"] += da2 @ h2[t - 1].T
        grads["b_2"] += bias_grad(da2)
        dh1 = W2.T @ da2 + d1_next
        da1 = dh1 * (1 - h1[t] ** 2)
        grads["W_1"] += da1 @ xs[t].T
        grads["U_1"] += da1 @ h1[t - 1].T
        grads["b_1"] += bias_grad(da1)
        d2_next = U2.T @ da2
        d1_next = U1.T @ da1
    return loss, grads
