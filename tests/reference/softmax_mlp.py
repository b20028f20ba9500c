"""A softmax classifier MLP over the columns of X: H = tanh(W1 X + b1 1ᵀ),
P = softmax(W2 H + b2 1ᵀ) per column, L = −Σ Y ⊙ log P; δZ2 = P − Y (Y one-hot columns)."""

import numpy as np

from ._matrix import summed


def one(params, X, Y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    Z1 = W1 @ X + b1[:, None]
    H = np.tanh(Z1)
    Z2 = W2 @ H + b2[:, None]
    E = np.exp(Z2 - Z2.max(axis=0))
    P = E / E.sum(axis=0)
    loss = -np.sum(Y * np.log(P))
    dZ2 = P * Y.sum(axis=0) - Y  # the general form; P − Y when each column of Y sums to one
    dZ1 = (W2.T @ dZ2) * (1 - H ** 2)
    return loss, {"W1": dZ1 @ X.T, "b1": dZ1.sum(axis=1), "W2": dZ2 @ H.T, "b2": dZ2.sum(axis=1)}


loss_and_grads = summed(one, {"X": 2, "Y": 2})
