"""Encoder-decoder on one time axis: e_t = tanh(W_e x_t + V_e e_{t−1} + b_e) from e_0 = 0;
c = e_T; the decoder starts from s_0 = tanh(W_0 c + b_0) and runs s_t = tanh(W_d u_t + V_d s_{t−1} + b_d);
ŷ_t = W_y s_t + b_y, L = Σ_t ½‖ŷ_t − y_t‖²."""

import numpy as np

from ._batch import bias_grad, col, columns


def loss_and_grads(params, x, u, y):
    xs, us, ys = columns(x), columns(u), columns(y)
    We, Ve, W0, Wd, Vd, Wy = (params[k] for k in ("W_e", "V_e", "W_0", "W_d", "V_d", "W_y"))
    be, b0, bd, by = (col(params[k]) for k in ("b_e", "b_0", "b_d", "b_y"))
    T, _, B = xs.shape
    E = We.shape[0]
    e = {-1: np.zeros((E, B))}
    for t in range(T):
        e[t] = np.tanh(We @ xs[t] + Ve @ e[t - 1] + be)
    c = e[T - 1]
    s = {-1: np.tanh(W0 @ c + b0)}
    yhat = {}
    loss = 0.0
    for t in range(T):
        s[t] = np.tanh(Wd @ us[t] + Vd @ s[t - 1] + bd)
        yhat[t] = Wy @ s[t] + by
        loss += 0.5 * np.sum((yhat[t] - ys[t]) ** 2)
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    carry = np.zeros_like(s[-1])  # δs_t from step t + 1
    for t in reversed(range(T)):
        dy = yhat[t] - ys[t]
        grads["W_y"] += dy @ s[t].T
        grads["b_y"] += bias_grad(dy)
        da = (Wy.T @ dy + carry) * (1 - s[t] ** 2)
        grads["W_d"] += da @ us[t].T
        grads["V_d"] += da @ s[t - 1].T
        grads["b_d"] += bias_grad(da)
        carry = Vd.T @ da
    da0 = carry * (1 - s[-1] ** 2)  # through s_0 = tanh(W_0 c + b_0)
    grads["W_0"] += da0 @ c.T
    grads["b_0"] += bias_grad(da0)
    carry = W0.T @ da0  # δe_T = δc
    for t in reversed(range(T)):
        da = carry * (1 - e[t] ** 2)
        grads["W_e"] += da @ xs[t].T
        grads["V_e"] += da @ e[t - 1].T
        grads["b_e"] += bias_grad(da)
        carry = Ve.T @ da
    return loss, grads
