"""An RNN language model, written from its equations: h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h),
p_t = softmax(W_hy h_t + b_y), L = -Σ_{t=1}^{T-1} x_{t+1}ᵀ log p_t (the last step predicts nothing)."""

import numpy as np

from ._batch import bias_grad, col, columns, softmax


def loss_and_grads(params, x):
    xs = columns(x)
    Wxh, Whh, Why = params["W_xh"], params["W_hh"], params["W_hy"]
    bh, by = col(params["b_h"]), col(params["b_y"])
    T, _, B = xs.shape
    hs = {-1: np.zeros((Whh.shape[0], B))}
    ps = {}
    loss = 0.0
    for t in range(T):  # 0-based: step t + 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ps[t] = softmax(Why @ hs[t] + by)
        if t + 1 < T:  # a next character to predict
            loss += -np.sum(xs[t + 1] * np.log(ps[t]))
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros(bh.shape[0]), np.zeros(by.shape[0])
    dhnext = np.zeros_like(hs[-1])
    for t in reversed(range(T)):
        if t + 1 < T:
            dy = ps[t] * xs[t + 1].sum(axis=0, keepdims=True) - xs[t + 1]  # p − x_{t+1} for a one-hot x
        else:
            dy = np.zeros_like(ps[t])
        dWhy += dy @ hs[t].T
        dby += bias_grad(dy)
        dh = Why.T @ dy + dhnext
        dz = (1 - hs[t] * hs[t]) * dh
        dbh += bias_grad(dz)
        dWxh += dz @ xs[t].T
        dWhh += dz @ hs[t - 1].T
        dhnext = Whh.T @ dz
    return loss, {"W_xh": dWxh, "W_hh": dWhh, "b_h": dbh, "W_hy": dWhy, "b_y": dby}
