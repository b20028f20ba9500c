"""Linear regression on a design matrix with an L2 penalty, from the equations:
L = ½‖X w − y‖² + λ/2 ‖w‖², ∂L/∂w = Xᵀ (X w − y) + λ w.

A batch (X (n, d, B), y (n, B)) sums the data term over its examples and counts the
penalty, which reads no data, once; λ is one number shared by the batch."""

import numpy as np


def loss_and_grads(params, X, y, lam):
    w = np.asarray(params["w"], dtype=float)
    X, y, lam = np.asarray(X, dtype=float), np.asarray(y, dtype=float), float(lam)
    if X.ndim == 2:
        X, y = X[..., None], y[..., None]
    loss, grad = lam / 2 * w @ w, lam * w
    for b in range(X.shape[-1]):
        r = X[..., b] @ w - y[..., b]
        loss += 0.5 * r @ r
        grad = grad + X[..., b].T @ r
    return loss, {"w": grad}
