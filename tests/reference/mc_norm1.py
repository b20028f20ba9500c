"""matrixcalculus.org, norm1(A*x-y): ∂/∂x = Aᵀ sign(A x − y)."""

import numpy as np

from ._matrix import summed


def one(params, A, y):
    x = params["x"]
    r = A @ x - y
    return np.abs(r).sum(), {"x": A.T @ np.sign(r)}


loss_and_grads = summed(one, {"A": 2, "y": 1})
