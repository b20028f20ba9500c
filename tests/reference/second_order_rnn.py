"""Second-order recurrence h_t = tanh(W x_t + A_1 h_{t−1} + A_2 h_{t−2} + b), h_0 and h_{−1} learned."""

import numpy as np

from ._batch import bias_grad, col, columns, softmax


def loss_and_grads(params, x, r):
    xs, rs = columns(x), columns(r)
    W, A1, A2, Wy = params["W"], params["A_1"], params["A_2"], params["W_y"]
    b, by = col(params["b"]), col(params["b_y"])
    T, _, B = xs.shape
    # h[k] is h at step k + 1: h[-1] = h_0, h[-2] = h_{-1}
    h = {-1: np.repeat(col(params["h_init"]), B, axis=1), -2: np.repeat(col(params["h_prev"]), B, axis=1)}
    p = {}
    loss = 0.0
    for t in range(T):
        h[t] = np.tanh(W @ xs[t] + A1 @ h[t - 1] + A2 @ h[t - 2] + b)
        p[t] = softmax(Wy @ h[t] + by)
        loss += -np.sum(rs[t] * np.log(p[t]))
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    # δh receives from one step later (through A_1) and from two steps later (through A_2)
    dh_from = {k: np.zeros_like(h[-1]) for k in range(-2, T)}
    for t in reversed(range(T)):
        dy = p[t] * rs[t].sum(axis=0, keepdims=True) - rs[t]
        grads["W_y"] += dy @ h[t].T
        grads["b_y"] += bias_grad(dy)
        dh = Wy.T @ dy + dh_from[t]
        da = dh * (1 - h[t] ** 2)
        grads["W"] += da @ xs[t].T
        grads["A_1"] += da @ h[t - 1].T
        grads["A_2"] += da @ h[t - 2].T
        grads["b"] += bias_grad(da)
        dh_from[t - 1] += A1.T @ da
        dh_from[t - 2] += A2.T @ da
    grads["h_init"] = bias_grad(dh_from[-1])
    grads["h_prev"] = bias_grad(dh_from[-2])
    return loss, grads
