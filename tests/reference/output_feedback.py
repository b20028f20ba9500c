"""Output feedback: h = tanh(W_x x + W_f y₋₁ + b_h), y = W_y h + b_y, y₀ learned; squared error."""

import numpy as np

from ._batch import bias_grad, col, columns


def loss_and_grads(params, x, y_ref):
    xs, ds = columns(x), columns(y_ref)
    Wx, Wf, Wy = params["W_x"], params["W_f"], params["W_y"]
    bh, by, y0 = col(params["b_h"]), col(params["b_y"]), col(params["y0"])
    T, _, B = xs.shape
    y = {-1: np.repeat(y0, B, axis=1)}
    h = {}
    loss = 0.0
    for t in range(T):
        h[t] = np.tanh(Wx @ xs[t] + Wf @ y[t - 1] + bh)
        y[t] = Wy @ h[t] + by
        loss += 0.5 * np.sum((y[t] - ds[t]) ** 2)
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    dy_next = np.zeros_like(y[-1])  # W_fᵀ δa from step t+1
    for t in reversed(range(T)):
        dy = (y[t] - ds[t]) + dy_next
        grads["W_y"] += dy @ h[t].T
        grads["b_y"] += bias_grad(dy)
        da = (Wy.T @ dy) * (1 - h[t] ** 2)
        grads["W_x"] += da @ xs[t].T
        grads["W_f"] += da @ y[t - 1].T
        grads["b_h"] += bias_grad(da)
        dy_next = Wf.T @ da
    grads["y0"] = bias_grad(dy_next)
    return loss, grads
