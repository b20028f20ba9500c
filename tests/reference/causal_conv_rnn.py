"""Causal convolution over time, kernel width 3, then an RNN:
c_t = relu(K_0 x_t + K_1 x_{t−1} + K_2 x_{t−2} + b_c) with x before step 1 zero,
h_t = tanh(W c_t + V h_{t−1} + b_h), ŷ_t = W_y h_t + b_y, L = Σ_t ½‖ŷ_t − y_t‖²."""

import numpy as np

from ._batch import bias_grad, col, columns


def loss_and_grads(params, x, y):
    xs, ys = columns(x), columns(y)
    K = [params[f"K_{j}"] for j in range(3)]
    W, V, Wy = params["W"], params["V"], params["W_y"]
    bc, bh, by = col(params["b_c"]), col(params["b_h"]), col(params["b_y"])
    T, nx, B = xs.shape
    H = W.shape[0]

    def x_at(t):  # 0-based step; zero before the sequence
        return xs[t] if t >= 0 else np.zeros((nx, B))

    a, c, h, yhat = {}, {}, {-1: np.zeros((H, B))}, {}
    loss = 0.0
    for t in range(T):
        a[t] = sum(K[j] @ x_at(t - j) for j in range(3)) + bc
        c[t] = np.maximum(a[t], 0.0)
        h[t] = np.tanh(W @ c[t] + V @ h[t - 1] + bh)
        yhat[t] = Wy @ h[t] + by
        loss += 0.5 * np.sum((yhat[t] - ys[t]) ** 2)
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    dh_next = np.zeros((H, B))
    for t in reversed(range(T)):
        dy = yhat[t] - ys[t]
        grads["W_y"] += dy @ h[t].T
        grads["b_y"] += bias_grad(dy)
        dh = Wy.T @ dy + dh_next
        dah = dh * (1 - h[t] ** 2)
        grads["W"] += dah @ c[t].T
        grads["V"] += dah @ h[t - 1].T
        grads["b_h"] += bias_grad(dah)
        dac = (W.T @ dah) * (a[t] > 0)
        for j in range(3):
            grads[f"K_{j}"] += dac @ x_at(t - j).T
        grads["b_c"] += bias_grad(dac)
        dh_next = V.T @ dah
    return loss, grads
