"""Numeric check of the hand verdicts for d2l_softmax (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, cross_entropy, grad, run_seeds, static

ND, Q = 3, 5


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    x, y = r(ND), r.distribution(Q)
    W, b = r.param(Q, ND), r.param(Q)
    o = W @ x + b
    loss = cross_entropy(y, torch.softmax(o, dim=0))
    do = grad(loss, [o])[0]
    # the claim, entry j for every j: exp(o_j) / sum_k exp(o_k) - y_j
    claimed = torch.exp(o) / torch.exp(o).sum() - y
    return {"c1": static(claimed, do)}


def verdicts() -> dict[str, str]:
    return run_seeds(one)
