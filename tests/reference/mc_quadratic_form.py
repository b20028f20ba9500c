"""matrixcalculus.org, 0.5*x'*A*x: ∂/∂x = ½ (A + Aᵀ) x."""

from ._matrix import summed


def one(params, A):
    x = params["x"]
    return 0.5 * x @ A @ x, {"x": 0.5 * (A + A.T) @ x}


loss_and_grads = summed(one, {"A": 2})
