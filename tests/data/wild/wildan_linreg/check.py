"""Numeric check of the hand verdicts for wildan_linreg (torch autograd, no symderiv)."""

from __future__ import annotations

from numeric import Rand, grad, run_seeds, static

N, NF = 5, 3


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    X, y = r(N, NF), r(N)
    w, b = r.param(NF), r.param(())
    yhat = X @ w + b
    mse = ((y - yhat) ** 2).sum() / N
    gw, gb = grad(mse, [w, b])
    dw = X.T @ (yhat - y) / N
    db = (yhat - y).sum() / N
    return {"c1": static(dw, gw), "c1:wrong-factor": static(2 * dw, gw),
            "c2": static(db, gb), "c2:wrong-factor": static(2 * db, gb)}


def verdicts() -> dict[str, str]:
    return run_seeds(one)
