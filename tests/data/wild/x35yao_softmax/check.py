"""Numeric check of the hand verdicts for x35yao_softmax (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, grad, run_seeds, static

N, D, K = 5, 3, 4


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    X = r(N, D)
    Y = torch.stack([r.one_hot(K) for _ in range(N)])
    W, b = r.param(K, D), r.param(K)
    P = torch.softmax(X @ W.T + b, dim=1)
    L = -(Y * torch.log(P)).sum() / N
    gW, gb = grad(L, [W, b])
    return {
        "c1": static((P - Y).T @ X / N, gW),
        "c2": static(sum(P[i] - Y[i] for i in range(N)) / N, gb),
    }


def verdicts() -> dict[str, str]:
    return run_seeds(one)
