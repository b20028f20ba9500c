"""Static MLP: relu layer, softplus layer, linear output, squared error."""

import numpy as np

from ._batch import bias_grad, col, columns, sigmoid


def loss_and_grads(params, x, y):
    X, Y = columns(x, sequence=False), columns(y, sequence=False)
    W1, W2, W3 = params["W1"], params["W2"], params["W3"]
    b1, b2, b3 = col(params["b1"]), col(params["b2"]), col(params["b3"])
    a1 = W1 @ X + b1
    h1 = np.maximum(a1, 0)
    a2 = W2 @ h1 + b2
    h2 = np.log1p(np.exp(a2))
    yhat = W3 @ h2 + b3
    loss = 0.5 * np.sum((yhat - Y) ** 2)
    dyhat = yhat - Y
    da2 = (W3.T @ dyhat) * sigmoid(a2)  # softplus' = σ
    da1 = (W2.T @ da2) * (a1 > 0)
    grads = {"W1": da1 @ X.T, "b1": bias_grad(da1), "W2": da2 @ h1.T, "b2": bias_grad(da2),
             "W3": dyhat @ h2.T, "b3": bias_grad(dyhat)}
    return loss, grads
