"""Bidirectional RNN tagger: h_t = tanh(W_h x_t + V_h h_{t−1} + b_h) from h_0 = 0,
g_t = tanh(W_g x_t + V_g g_{t+1} + b_g) from g_{T+1} = 0, p_t = softmax(U_h h_t + U_g g_t + b_p),
L = −Σ_t r_tᵀ log p_t.  BPTT: δh runs from T down to 1, δg from 1 up to T."""

import numpy as np

from ._batch import bias_grad, col, columns, softmax


def loss_and_grads(params, x, r):
    xs, rs = columns(x), columns(r)
    Wh, Vh, Wg, Vg, Uh, Ug = (params[k] for k in ("W_h", "V_h", "W_g", "V_g", "U_h", "U_g"))
    bh, bg, bp = (col(params[k]) for k in ("b_h", "b_g", "b_p"))
    T, _, B = xs.shape
    H, G = Wh.shape[0], Wg.shape[0]
    h = {-1: np.zeros((H, B))}
    for t in range(T):
        h[t] = np.tanh(Wh @ xs[t] + Vh @ h[t - 1] + bh)
    g = {T: np.zeros((G, B))}
    for t in reversed(range(T)):
        g[t] = np.tanh(Wg @ xs[t] + Vg @ g[t + 1] + bg)
    p = {t: softmax(Uh @ h[t] + Ug @ g[t] + bp) for t in range(T)}
    loss = -sum(np.sum(rs[t] * np.log(p[t])) for t in range(T))
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    da = {t: p[t] * rs[t].sum(axis=0, keepdims=True) - rs[t] for t in range(T)}
    for t in range(T):
        grads["U_h"] += da[t] @ h[t].T
        grads["U_g"] += da[t] @ g[t].T
        grads["b_p"] += bias_grad(da[t])
    carry = np.zeros((H, B))  # V_hᵀ δ(pre-activation of h) from step t + 1
    for t in reversed(range(T)):
        dy = (Uh.T @ da[t] + carry) * (1 - h[t] ** 2)
        grads["W_h"] += dy @ xs[t].T
        grads["V_h"] += dy @ h[t - 1].T
        grads["b_h"] += bias_grad(dy)
        carry = Vh.T @ dy
    carry = np.zeros((G, B))  # V_gᵀ δ(pre-activation of g) from step t − 1
    for t in range(T):
        dy = (Ug.T @ da[t] + carry) * (1 - g[t] ** 2)
        grads["W_g"] += dy @ xs[t].T
        grads["V_g"] += dy @ g[t + 1].T
        grads["b_g"] += bias_grad(dy)
        carry = Vg.T @ dy
    return loss, grads
