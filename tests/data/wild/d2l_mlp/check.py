"""Numeric check of the hand verdicts for d2l_mlp (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, cross_entropy, grad, run_seeds, softmax, static

ND, NH, Q = 3, 4, 5


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    x, y, lam = r(ND), r.distribution(Q), r.positive(()).squeeze()
    W1, W2 = r.param(NH, ND), r.param(Q, NH)
    z = W1 @ x
    h = torch.tanh(z)
    o = W2 @ h
    L = cross_entropy(y, softmax(o))
    s = lam / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
    J = L + s
    dJ_dL, dJ_ds, dJ_do, dJ_dh, dJ_dz, gW1, gW2 = grad(J, [L, s, o, h, z, W1, W2])
    dL_do = grad(L, [o])[0]
    phi_p = 1 - torch.tanh(z) ** 2           # phi'(z) for phi = tanh
    one_ = torch.tensor(1.0, dtype=torch.float64)
    return {
        "c1": static(one_, dJ_dL),
        "c2": static(one_, dJ_ds),
        "c3": static(dL_do, dJ_do),
        "c4": static(torch.outer(dJ_do, h) + lam * W2, gW2),
        "c5": static(W2.T @ dJ_do, dJ_dh),
        "c6": static(dJ_dh * phi_p, dJ_dz),
        "c7": static(torch.outer(dJ_dz, x) + lam * W1, gW1),
    }


def verdicts() -> dict[str, str]:
    return run_seeds(one)
