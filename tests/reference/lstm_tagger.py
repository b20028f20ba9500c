"""LSTM with gates over z = [h₋₁; x]; softmax read-out, cross-entropy."""

import numpy as np

from ._batch import bias_grad, col, columns, sigmoid, softmax


def loss_and_grads(params, x, r):
    xs, rs = columns(x), columns(r)
    Wf, Wi, Wo, Wg, Wy = (params[k] for k in ("W_f", "W_i", "W_o", "W_g", "W_y"))
    bf, bi, bo, bg, by = (col(params[k]) for k in ("b_f", "b_i", "b_o", "b_g", "b_y"))
    T, _, B = xs.shape
    H = Wf.shape[0]
    h = {-1: np.zeros((H, B))}
    c = {-1: np.zeros((H, B))}
    z, f, i, o, g, p = {}, {}, {}, {}, {}, {}
    loss = 0.0
    for t in range(T):
        z[t] = np.vstack([h[t - 1], xs[t]])
        f[t] = sigmoid(Wf @ z[t] + bf)
        i[t] = sigmoid(Wi @ z[t] + bi)
        o[t] = sigmoid(Wo @ z[t] + bo)
        g[t] = np.tanh(Wg @ z[t] + bg)
        c[t] = f[t] * c[t - 1] + i[t] * g[t]
        h[t] = o[t] * np.tanh(c[t])
        p[t] = softmax(Wy @ h[t] + by)
        loss += -np.sum(rs[t] * np.log(p[t]))
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    dh_next = np.zeros((H, B))
    dc_next = np.zeros((H, B))
    for t in reversed(range(T)):
        dy = p[t] * rs[t].sum(axis=0, keepdims=True) - rs[t]
        grads["W_y"] += dy @ h[t].T
        grads["b_y"] += bias_grad(dy)
        dh = Wy.T @ dy + dh_next
        tc = np.tanh(c[t])
        dc = dh * o[t] * (1 - tc ** 2) + dc_next
        do = dh * tc * o[t] * (1 - o[t])
        di = dc * g[t] * i[t] * (1 - i[t])
        dg = dc * i[t] * (1 - g[t] ** 2)
        df = dc * c[t - 1] * f[t] * (1 - f[t])
        dz = np.zeros_like(z[t])
        for name, da, W in (("f", df, Wf), ("i", di, Wi), ("o", do, Wo), ("g", dg, Wg)):
            grads["W_" + name] += da @ z[t].T
            grads["b_" + name] += bias_grad(da)
            dz += W.T @ da
        dh_next = dz[:H]
        dc_next = dc * f[t]
    return loss, grads
