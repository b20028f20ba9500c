"""A gated recurrent regressor whose loss counts the steps 3..T, written from its equations:
f_t = σ(W_f x_t + U_f h_{t-1} + b_f), g_t = tanh(W_c x_t + U_c h_{t-1} + b_c),
c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ g_t, h_t = tanh(c_t), ŷ_t = W_y h_t + b_y,
L = Σ_{t=3}^{T} ½ ‖ŷ_t − y_t‖²."""

import numpy as np

from ._batch import bias_grad, col, columns, sigmoid

FIRST = 3  # the first step the loss counts (1-based)


def loss_and_grads(params, x, y):
    xs, ys = columns(x), columns(y)
    Wf, Uf, bf = params["W_f"], params["U_f"], col(params["b_f"])
    Wc, Uc, bc = params["W_c"], params["U_c"], col(params["b_c"])
    Wy, by = params["W_y"], col(params["b_y"])
    T, _, B = xs.shape
    n_h = Uf.shape[0]
    h = {-1: np.zeros((n_h, B))}
    c = {-1: np.zeros((n_h, B))}
    f, g, yhat = {}, {}, {}
    loss = 0.0
    for t in range(T):
        f[t] = sigmoid(Wf @ xs[t] + Uf @ h[t - 1] + bf)
        g[t] = np.tanh(Wc @ xs[t] + Uc @ h[t - 1] + bc)
        c[t] = f[t] * c[t - 1] + (1 - f[t]) * g[t]
        h[t] = np.tanh(c[t])
        yhat[t] = Wy @ h[t] + by
        if t + 1 >= FIRST:
            loss += 0.5 * np.sum((yhat[t] - ys[t]) ** 2)
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    dh_next = np.zeros((n_h, B))
    dc_next = np.zeros((n_h, B))
    for t in reversed(range(T)):
        dy = yhat[t] - ys[t] if t + 1 >= FIRST else np.zeros_like(yhat[t])
        grads["W_y"] += dy @ h[t].T
        grads["b_y"] += bias_grad(dy)
        dh = Wy.T @ dy + dh_next
        dc = dh * (1 - h[t] ** 2) + dc_next
        dzg = dc * (1 - f[t]) * (1 - g[t] ** 2)
        dzf = dc * (c[t - 1] - g[t]) * f[t] * (1 - f[t])
        grads["W_f"] += dzf @ xs[t].T
        grads["U_f"] += dzf @ h[t - 1].T
        grads["b_f"] += bias_grad(dzf)
        grads["W_c"] += dzg @ xs[t].T
        grads["U_c"] += dzg @ h[t - 1].T
        grads["b_c"] += bias_grad(dzg)
        dh_next = Uf.T @ dzf + Uc.T @ dzg
        dc_next = dc * f[t]
    return loss, grads
