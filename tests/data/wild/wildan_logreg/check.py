"""Numeric check of the hand verdicts for wildan_logreg (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, grad, run_seeds, static

N, NF = 5, 3


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    X, y = r(N, NF), r.bits(N)
    w, b = r.param(NF), r.param(())
    yhat = torch.sigmoid(X @ w + b)
    J = -(y * torch.log(yhat) + (1 - y) * torch.log(1 - yhat)).sum() / N
    gw, gb = grad(J, [w, b])
    return {"c1": static(X.T @ (yhat - y) / N, gw),
            "c2": static(sum(yhat[i] - y[i] for i in range(N)) / N, gb)}


def verdicts() -> dict[str, str]:
    return run_seeds(one)
