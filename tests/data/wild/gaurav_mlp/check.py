"""Numeric check of the hand verdicts for gaurav_mlp (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, grad, run_seeds, static
from torch.autograd.functional import jacobian

N0, N1 = 3, 4


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    a2 = r(N0)
    W1, b1, W2, b2 = r.param(N1, N0), r.param(N1), r.param(1, N1), r.param(1)
    y = r.bits(1)
    z1 = W1 @ a2 + b1
    a1 = torch.relu(z1)
    z2 = W2 @ a1 + b2
    yhat = torch.sigmoid(z2)
    L = -(y * torch.log(yhat) + (1 - y) * torch.log(1 - yhat)).sum()
    gW1, gW2, da1 = grad(L, [W1, W2, a1])
    # the Jacobians of the chain-rule forms, by autograd of each step alone
    dL_da2 = grad(L, [yhat])[0]                                       # (1,)
    da2_dz2 = jacobian(torch.sigmoid, z2.detach())                    # (1, 1)
    dz2_dW2 = jacobian(lambda W: W @ a1.detach() + b2.detach(), W2.detach())  # (1, 1, N1)
    dz1_dW1 = jacobian(lambda W: W @ a2 + b1.detach(), W1.detach())   # (N1, N1, N0)
    da1_dz1 = torch.diag((z1 > 0).to(torch.float64))
    relu_p = (z1 > 0).to(torch.float64)
    v = {}
    # c1: dL/dW^L = dL/da^L . da^L/dz^L . dz^L/dW^L (contracted)
    v["c1"] = static(torch.einsum("a,ab,bij->ij", dL_da2, da2_dz2, dz2_dW2), gW2)
    # c2: dL/dW^L = (yhat - y) (a^{L-1})^T
    v["c2"] = static(torch.outer(yhat - y, a1), gW2)
    # c3: dL/dW^{L-1} = dL/da^{L-1} . da^{L-1}/dz^{L-1} . dz^{L-1}/dW^{L-1}
    v["c3"] = static(torch.einsum("a,ab,bij->ij", da1, da1_dz1, dz1_dW1), gW1)
    # c4: dL/da^{L-1} = (yhat - y) . W^L: a 1 x n_1 row, the gradient is an n_1 column
    c4 = (yhat - y).reshape(1, 1) @ W2
    v["c4"] = static(c4, da1.reshape(N1, 1))
    v["c4:transpose"] = static(c4.T, da1.reshape(N1, 1))
    # c5: dL/dW^{L-1} = ((W^L)^T (yhat - y) * ReLU'(z^{L-1})) (a^{L-2})^T
    v["c5"] = static(torch.outer((W2.T @ (yhat - y)) * relu_p, a2), gW1)
    return v


def verdicts() -> dict[str, str]:
    return run_seeds(one)
