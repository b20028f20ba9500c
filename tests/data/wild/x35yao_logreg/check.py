"""Numeric check of the hand verdicts for x35yao_logreg (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, grad, run_seeds, static, steps

NF, N = 3, 5


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    X = r(N, NF)                      # row i is x_i^T
    y = r.bits(N)
    w, b = r.param(NF), r.param(())
    z = [w @ X[i] + b for i in range(N)]
    p = [torch.sigmoid(zi) for zi in z]
    L = -sum(y[i] * torch.log(p[i]) + (1 - y[i]) * torch.log(1 - p[i]) for i in range(N))
    gw, gb = grad(L, [w, b])
    dp, dz = grad(L, p), grad(L, z)
    c1 = [-y[i] / p[i] + (1 - y[i]) / (1 - p[i]) for i in range(N)]
    c2 = [p[i] - y[i] for i in range(N)]
    return {
        "c1": steps(c1, dp),
        "c2": steps(c2, dz),
        "c3": static(sum((p[i] - y[i]) * X[i] for i in range(N)), gw),
        "c4": static(sum(p[i] - y[i] for i in range(N)), gb),
    }


def verdicts() -> dict[str, str]:
    return run_seeds(one)
