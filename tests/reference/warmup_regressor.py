"""A GRU regressor whose loss counts the steps 3..T, written from its equations:
z_t = σ(W_z x_t + U_z h_{t-1} + b_z), r_t = σ(W_r x_t + U_r h_{t-1} + b_r),
n_t = tanh(W_n x_t + U_n (r_t ⊙ h_{t-1}) + b_n), h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ n_t,
ŷ_t = W_y h_t + b_y, L = Σ_{t=3}^{T} ½ ‖ŷ_t − y_t‖²."""

import numpy as np

from ._batch import bias_grad, col, columns, sigmoid

FIRST = 3  # the first step the loss counts (1-based)


def loss_and_grads(params, x, y):
    xs, ys = columns(x), columns(y)
    P = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    b = {k: col(P[k]) for k in ("b_z", "b_r", "b_n", "b_y")}
    T, _, B = xs.shape
    n_h = P["U_z"].shape[0]
    h = {-1: np.zeros((n_h, B))}
    z, r, n, yhat = {}, {}, {}, {}
    loss = 0.0
    for t in range(T):
        z[t] = sigmoid(P["W_z"] @ xs[t] + P["U_z"] @ h[t - 1] + b["b_z"])
        r[t] = sigmoid(P["W_r"] @ xs[t] + P["U_r"] @ h[t - 1] + b["b_r"])
        n[t] = np.tanh(P["W_n"] @ xs[t] + P["U_n"] @ (r[t] * h[t - 1]) + b["b_n"])
        h[t] = (1 - z[t]) * h[t - 1] + z[t] * n[t]
        yhat[t] = P["W_y"] @ h[t] + b["b_y"]
        if t + 1 >= FIRST:
            loss += 0.5 * np.sum((yhat[t] - ys[t]) ** 2)
    grads = {k: np.zeros_like(v) for k, v in P.items()}
    dh_next = np.zeros((n_h, B))
    for t in reversed(range(T)):
        dy = yhat[t] - ys[t] if t + 1 >= FIRST else np.zeros_like(yhat[t])
        grads["W_y"] += dy @ h[t].T
        grads["b_y"] += bias_grad(dy)
        dh = P["W_y"].T @ dy + dh_next
        da_n = dh * z[t] * (1 - n[t] ** 2)
        da_z = dh * (n[t] - h[t - 1]) * z[t] * (1 - z[t])
        d_rh = P["U_n"].T @ da_n
        da_r = d_rh * h[t - 1] * r[t] * (1 - r[t])
        for gate, da, inner in (("z", da_z, h[t - 1]), ("r", da_r, h[t - 1]), ("n", da_n, r[t] * h[t - 1])):
            grads[f"W_{gate}"] += da @ xs[t].T
            grads[f"U_{gate}"] += da @ inner.T
            grads[f"b_{gate}"] += bias_grad(da)
        dh_next = dh * (1 - z[t]) + d_rh * r[t] + P["U_z"].T @ da_z + P["U_r"].T @ da_r
    return loss, grads
