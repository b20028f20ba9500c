"""min-char-rnn (Karpathy): h = tanh(Wxh x + Whh h₋₁ + bh), y = Why h + by, p = softmax(y)."""

import numpy as np

from ._batch import bias_grad, col, columns, softmax


def loss_and_grads(params, x, r):
    xs, rs = columns(x), columns(r)
    Wxh, Whh, Why = params["W_xh"], params["W_hh"], params["W_hy"]
    bh, by = col(params["b_h"]), col(params["b_y"])
    T, _, B = xs.shape
    hs = {-1: np.zeros((Whh.shape[0], B))}
    ps = {}
    loss = 0.0
    for t in range(T):
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ys = Why @ hs[t] + by
        ps[t] = softmax(ys)
        loss += -np.sum(rs[t] * np.log(ps[t]))
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros(bh.shape[0]), np.zeros(by.shape[0])
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(T)):
        dy = ps[t] * rs[t].sum(axis=0, keepdims=True) - rs[t]  # p - r for a one-hot r
        dWhy += dy @ hs[t].T
        dby += bias_grad(dy)
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += bias_grad(dhraw)
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    return loss, {"W_xh": dWxh, "W_hh": dWhh, "b_h": dbh, "W_hy": dWhy, "b_y": dby}
