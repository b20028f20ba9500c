"""Numeric check of the hand verdicts for x35yao_linreg (torch autograd, no symderiv)."""

from __future__ import annotations

from numeric import Rand, grad, run_seeds, static

NF, N = 3, 5


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    X = r(N, NF)                      # row i is x_i^T
    y = r(N)
    w, b = r.param(NF), r.param(())
    yhat = X @ w + b
    L = ((yhat - y) ** 2).sum()
    gw, gb = grad(L, [w, b])
    c1 = sum((yhat[i] - y[i]) * X[i] for i in range(N))
    c2 = sum(yhat[i] - y[i] for i in range(N))
    c3 = X.T @ (X @ w - y)
    return {
        "c1": static(c1, gw), "c1:wrong-factor": static(2 * c1, gw),
        "c2": static(c2, gb), "c2:wrong-factor": static(2 * c2, gb),
        # c3 also drops b: only 2 X^T (X w + b - y) is right
        "c3": static(c3, gw), "c3:wrong-factor": static(2 * X.T @ (X @ w + b - y), gw),
    }


def verdicts() -> dict[str, str]:
    return run_seeds(one)
