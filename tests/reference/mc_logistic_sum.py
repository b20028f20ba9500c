"""matrixcalculus.org, sum(log(exp(-y.*(X*w)) + vector(1))):
∂/∂w = −Xᵀ (y ⊙ exp(−y ⊙ X w) ⊘ (exp(−y ⊙ X w) + 1))."""

import numpy as np

from ._matrix import summed


def one(params, X, y):
    w = params["w"]
    e = np.exp(-y * (X @ w))
    return np.log(e + 1).sum(), {"w": -X.T @ (y * e / (e + 1))}


loss_and_grads = summed(one, {"X": 2, "y": 1})
