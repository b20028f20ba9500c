"""GRU (Cho et al.): z, r gates, candidate n = tanh(W_n x + U_n (r ⊙ h₋₁) + b_n),
h = (1 − z) ⊙ h₋₁ + z ⊙ n; linear read-out, squared error."""

import numpy as np

from ._batch import bias_grad, col, columns, sigmoid


def loss_and_grads(params, x, y):
    xs, ys = columns(x), columns(y)
    Wz, Uz, Wr, Ur, Wn, Un, Wy = (params[k] for k in ("W_z", "U_z", "W_r", "U_r", "W_n", "U_n", "W_y"))
    bz, br, bn, by = (col(params[k]) for k in ("b_z", "b_r", "b_n", "b_y"))
    T, _, B = xs.shape
    H = Wz.shape[0]
    h = {-1: np.zeros((H, B))}
    z, r, n, yhat = {}, {}, {}, {}
    loss = 0.0
    for t in range(T):
        z[t] = sigmoid(Wz @ xs[t] + Uz @ h[t - 1] + bz)
        r[t] = sigmoid(Wr @ xs[t] + Ur @ h[t - 1] + br)
        n[t] = np.tanh(Wn @ xs[t] + Un @ (r[t] * h[t - 1]) + bn)
        h[t] = (1 - z[t]) * h[t - 1] + z[t] * n[t]
        yhat[t] = Wy @ h[t] + by
        loss += 0.5 * np.sum((yhat[t] - ys[t]) ** 2)
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    dh_next = np.zeros((H, B))
    for t in reversed(range(T)):
        dyhat = yhat[t] - ys[t]
        grads["W_y"] += dyhat @ h[t].T
        grads["b_y"] += bias_grad(dyhat)
        dh = Wy.T @ dyhat + dh_next
        dn = dh * z[t]
        dz = dh * (n[t] - h[t - 1])
        dan = dn * (1 - n[t] ** 2)
        drh = Un.T @ dan  # adjoint of r ⊙ h₋₁
        dr = drh * h[t - 1]
        dar = dr * r[t] * (1 - r[t])
        daz = dz * z[t] * (1 - z[t])
        grads["W_n"] += dan @ xs[t].T
        grads["U_n"] += dan @ (r[t] * h[t - 1]).T
        grads["b_n"] += bias_grad(dan)
        grads["W_r"] += dar @ xs[t].T
        grads["U_r"] += dar @ h[t - 1].T
        grads["b_r"] += bias_grad(dar)
        grads["W_z"] += daz @ xs[t].T
        grads["U_z"] += daz @ h[t - 1].T
        grads["b_z"] += bias_grad(daz)
        dh_next = dh * (1 - z[t]) + drh * r[t] + Ur.T @ dar + Uz.T @ daz
    return loss, grads
