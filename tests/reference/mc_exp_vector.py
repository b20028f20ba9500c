"""matrixcalculus.org, A*exp(x): its Jacobian is A diag(exp(x)); vᵀ A exp(x) has gradient
diag(exp(x)) Aᵀ v = Jᵀ v."""

import numpy as np

from ._matrix import summed


def one(params, A, v):
    x = params["x"]
    J = A @ np.diag(np.exp(x))
    return v @ A @ np.exp(x), {"x": J.T @ v}


loss_and_grads = summed(one, {"A": 2, "v": 1})
