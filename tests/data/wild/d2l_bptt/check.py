"""Numeric check of the hand verdicts for d2l_bptt (torch autograd, no symderiv)."""

from __future__ import annotations

import torch
from numeric import Rand, cross_entropy, grad, run_seeds, softmax, static, steps

N_D, N_H, Q, T = 3, 4, 5, 4


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    W_hx, W_hh, W_qh = r.param(N_H, N_D), r.param(N_H, N_H), r.param(Q, N_H)
    x = [r(N_D) for _ in range(T)]
    y = [r.distribution(Q) for _ in range(T)]
    h, o = [torch.zeros(N_H, dtype=torch.float64)], []
    for t in range(T):
        h.append(W_hx @ x[t] + W_hh @ h[-1])
        h[-1].retain_grad()
        o.append(W_qh @ h[-1])
    terms = [cross_entropy(y[t], softmax(o[t])) for t in range(T)]
    L = sum(terms) / T
    dh = grad(L, h[1:])            # dL/dh_t, t = 1..T
    do = grad(L, o)                # dL/do_t
    gWhx, gWhh, gWqh = grad(L, [W_hx, W_hh, W_qh])
    # the per-step loss l(o_t, y_t) differentiated by hand is softmax(o_t) - y_t
    dl_do = [grad(terms[t], [o[t]])[0] for t in range(T)]
    v = {}
    # c1: dL/do_t = d l(o_t, y_t) / (T d o_t)
    v["c1"] = steps([dl_do[t] / T for t in range(T)], do)
    # c2: dL/dW_qh = sum_t dL/do_t h_t^T
    v["c2"] = static(sum(torch.outer(do[t], h[t + 1]) for t in range(T)), gWqh)
    # c3: dL/dh_T = W_qh^T dL/do_T (the last step)
    v["c3"] = static(W_qh.T @ do[T - 1], dh[T - 1])
    # c4: dL/dh_t = W_hh^T dL/dh_{t+1} + W_qh^T dL/do_t  (dL/dh_{T+1} = 0)
    nxt = dh[1:] + [torch.zeros(N_H, dtype=torch.float64)]
    v["c4"] = steps([W_hh.T @ nxt[t] + W_qh.T @ do[t] for t in range(T)], dh)
    # c5: dL/dh_t = sum_{i=t}^T (W_hh^T)^{T-i} W_qh^T dL/do_{T+t-i}   (t, i 1-based)
    c5 = []
    for t in range(1, T + 1):
        c5.append(sum(torch.linalg.matrix_power(W_hh.T, T - i) @ W_qh.T @ do[T + t - i - 1]
                      for i in range(t, T + 1)))
    v["c5"] = steps(c5, dh)
    # c6: dL/dW_hx = sum_t dL/dh_t x_t^T
    v["c6"] = static(sum(torch.outer(dh[t], x[t]) for t in range(T)), gWhx)
    # c7: dL/dW_hh = sum_t dL/dh_t h_{t-1}^T
    v["c7"] = static(sum(torch.outer(dh[t], h[t]) for t in range(T)), gWhh)
    return v


def verdicts() -> dict[str, str]:
    return run_seeds(one)
