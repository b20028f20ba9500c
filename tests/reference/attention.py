"""Single-head scaled dot-product attention over the columns (tokens) of X:
Q = W_Q X, K = W_K X, V = W_V X, S = Kᵀ Q / √n_k, A = softmax(S) per column, O = V A,
L = ½ ‖O − Y‖²_F, back-propagated by hand."""

import numpy as np

from ._matrix import summed


def one(params, X, Y):
    WQ, WK, WV = params["W_Q"], params["W_K"], params["W_V"]
    Q, K, V = WQ @ X, WK @ X, WV @ X
    c = 1 / np.sqrt(WQ.shape[0])
    S = c * K.T @ Q
    E = np.exp(S - S.max(axis=0))
    A = E / E.sum(axis=0)
    Out = V @ A
    loss = 0.5 * np.sum((Out - Y) ** 2)
    dO = Out - Y
    dA = V.T @ dO
    dS = A * (dA - np.sum(A * dA, axis=0))  # the softmax Jacobian of each column
    dV = dO @ A.T
    dQ = c * K @ dS
    dK = c * Q @ dS.T
    return loss, {"W_Q": dQ @ X.T, "W_K": dK @ X.T, "W_V": dV @ X.T}


loss_and_grads = summed(one, {"X": 2, "Y": 2})
