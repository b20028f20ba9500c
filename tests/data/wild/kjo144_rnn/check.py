"""Numeric check of the hand verdicts for kjo144_rnn (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, cross_entropy, grad, per_step, run_seeds, softmax
from torch.autograd.functional import jacobian

N_X, N_H, N_Y, T = 3, 4, 5, 4


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    U, W, b_h = r.param(N_H, N_X), r.param(N_H, N_H), r.param(N_H)
    V, b_y = r.param(N_Y, N_H), r.param(N_Y)
    x = [r(N_X) for _ in range(T)]
    y = [r.distribution(N_Y) for _ in range(T)]
    h, q, yhat = [torch.zeros(N_H, dtype=torch.float64)], [], []
    for t in range(T):
        h.append(torch.tanh(U @ x[t] + W @ h[-1] + b_h))
        q.append(V @ h[-1] + b_y)
        yhat.append(softmax(q[-1]))
    E_t = [cross_entropy(y[t], yhat[t]) for t in range(T)]
    E = sum(E_t)
    gV, gby, gW = grad(E, [V, b_y, W])
    dEt_dV = [grad(E_t[t], [V])[0] for t in range(T)]
    dEt_dby = [grad(E_t[t], [b_y])[0] for t in range(T)]
    dEt_dW = [grad(E_t[t], [W])[0] for t in range(T)]
    c1, c3, c4, c5 = [], [], [], []
    for t in range(T):
        ht = h[t + 1]
        dE_dyhat = grad(E_t[t], [yhat[t]])[0]                  # dE_t / d yhat_{t,k}
        J = jacobian(softmax, q[t].detach())                     # d yhat_k / d q_l
        dq_dV = torch.einsum("li,j->lij", torch.eye(N_Y, dtype=torch.float64), ht.detach())
        c1.append(torch.einsum("k,kl,lij->ij", dE_dyhat, J, dq_dV))
        c3.append(torch.outer(yhat[t] - y[t], ht))
        c4.append(yhat[t] - y[t])
        # dh_{t,m} / dW_ij through every earlier step (the total derivative of h_t in W)
        dh_dW = torch.stack([grad(ht[m], [W])[0] for m in range(N_H)])   # (m, i, j)
        c5.append(torch.einsum("k,kl,lm,mij->ij", dE_dyhat, J, V.detach(), dh_dW))
    return {
        "c1": per_step(c1, dEt_dV, gV),
        "c2": per_step(c3, dEt_dV, gV),
        "c3": per_step(c4, dEt_dby, gby),
        "c4": per_step(c5, dEt_dW, gW),
    }


def verdicts() -> dict[str, str]:
    return run_seeds(one)
