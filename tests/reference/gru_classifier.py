"""Sequence-to-one GRU: the GRU of gru_regressor over the whole sequence, then one softmax
read-out of the last state, p = softmax(W_p h_T + b_p), and cross-entropy −yᵀ log p."""

import numpy as np

from ._batch import bias_grad, col, columns, sigmoid, softmax


def loss_and_grads(params, x, y):
    xs, ys = columns(x), columns(y, sequence=False)
    Wz, Uz, Wr, Ur, Wn, Un, Wp = (params[k] for k in ("W_z", "U_z", "W_r", "U_r", "W_n", "U_n", "W_p"))
    bz, br, bn, bp = (col(params[k]) for k in ("b_z", "b_r", "b_n", "b_p"))
    T, _, B = xs.shape
    H = Wz.shape[0]
    h = {-1: np.zeros((H, B))}
    z, r, n = {}, {}, {}
    for t in range(T):
        z[t] = sigmoid(Wz @ xs[t] + Uz @ h[t - 1] + bz)
        r[t] = sigmoid(Wr @ xs[t] + Ur @ h[t - 1] + br)
        n[t] = np.tanh(Wn @ xs[t] + Un @ (r[t] * h[t - 1]) + bn)
        h[t] = (1 - z[t]) * h[t - 1] + z[t] * n[t]
    p = softmax(Wp @ h[T - 1] + bp)
    loss = -np.sum(ys * np.log(p))
    grads = {k: np.zeros_like(np.asarray(v, dtype=float)) for k, v in params.items()}
    # d(−yᵀ log softmax(a))/da = p Σ y − y (Σ y = 1 for each example's label)
    da = p * ys.sum(axis=0, keepdims=True) - ys
    grads["W_p"] = da @ h[T - 1].T
    grads["b_p"] = bias_grad(da)
    dh_next = Wp.T @ da  # only the last state is read out
    for t in reversed(range(T)):
        dh = dh_next
        dn = dh * z[t]
        dz = dh * (n[t] - h[t - 1])
        dan = dn * (1 - n[t] ** 2)
        drh = Un.T @ dan
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
