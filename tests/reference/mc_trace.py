"""matrixcalculus.org, tr(A*X'*B*X*C): ∂/∂X = Bᵀ X Aᵀ Cᵀ + B X C A."""

import numpy as np

from ._matrix import summed


def one(params, A, B, C):
    X = params["X"]
    return np.trace(A @ X.T @ B @ X @ C), {"X": B.T @ X @ A.T @ C.T + B @ X @ C @ A}


loss_and_grads = summed(one, {"A": 2, "B": 2, "C": 2})
