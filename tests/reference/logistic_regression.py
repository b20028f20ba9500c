"""Logistic regression on a design matrix: p = σ(X w + b), L = −Σ y log p + (1 − y) log(1 − p);
∂L/∂w = Xᵀ (p − y), ∂L/∂b = Σ (p − y)."""

import numpy as np

from ._matrix import summed


def one(params, X, y):
    w, b = params["w"], float(np.asarray(params["b"]))
    p = 1 / (1 + np.exp(-(X @ w + b)))
    loss = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
    return loss, {"w": X.T @ (p - y), "b": np.sum(p - y)}


loss_and_grads = summed(one, {"X": 2, "y": 1})
