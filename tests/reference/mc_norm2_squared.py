"""matrixcalculus.org, norm2(A*x-y)^2: ∂/∂x = 2 Aᵀ (A x − y)."""

from ._matrix import summed


def one(params, A, y):
    x = params["x"]
    r = A @ x - y
    return r @ r, {"x": 2 * A.T @ r}


loss_and_grads = summed(one, {"A": 2, "y": 1})
