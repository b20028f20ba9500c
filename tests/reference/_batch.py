"""Array layout shared by the references (no symderiv code): column vectors, batch last."""

import numpy as np


def columns(a, sequence=True):
    """(T, n) → (T, n, 1) and (n,) → (n, 1); a batched array is returned as it is."""
    a = np.asarray(a, dtype=float)
    core = 2 if sequence else 1
    return a[..., None] if a.ndim == core else a


def col(v):
    """A parameter vector (n,) as a column (n, 1), so it broadcasts over the batch."""
    return np.asarray(v, dtype=float).reshape(-1, 1)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def bias_grad(d):
    """Σ over the batch of a column adjoint (n, B) → (n,)."""
    return d.sum(axis=1)
