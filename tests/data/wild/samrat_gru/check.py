"""Numeric check of the hand verdicts for samrat_gru (torch autograd, no symderiv).

The loss is the squared error of the last output h_T (see model.sdm); each weight is used
through one copy per step, so the gradient in the copy of step t is its step-t term.
"""

from __future__ import annotations

import torch
from numeric import Rand, grad, per_step, run_seeds, step_copies, steps

NX, NH, T = 3, 4, 4
WEIGHTS = {"W_zh": (NH, NH), "W_zx": (NH, NX), "W_rh": (NH, NH), "W_rx": (NH, NX), "W_h": (NH, NH), "W_x": (NH, NX)}


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    P = {k: r.param(*s) for k, s in WEIGHTS.items()}
    x = [r(NX).requires_grad_(True) for _ in range(T)]
    y = r(NH)
    C = {k: step_copies(v, T) for k, v in P.items()}
    h = [torch.zeros(NH, dtype=torch.float64)]
    q = {k: [] for k in ("g1", "g2", "g3", "z", "g4", "g5", "g6", "r", "g7", "g8", "g9", "g10", "ht", "g11", "g12")}
    for t in range(T):
        hp = h[-1]
        g1 = C["W_zh"][t] @ hp
        g2 = C["W_zx"][t] @ x[t]
        g3 = g1 + g2
        z = torch.sigmoid(g3)
        g4 = C["W_rh"][t] @ hp
        g5 = C["W_rx"][t] @ x[t]
        g6 = g4 + g5
        rt = torch.sigmoid(g6)
        g7 = rt * hp
        g8 = C["W_h"][t] @ g7
        g9 = C["W_x"][t] @ x[t]
        g10 = g8 + g9
        ht = torch.tanh(g10)
        g11 = z * hp
        g12 = (1 - z) * ht
        for k, val in (("g1", g1), ("g2", g2), ("g3", g3), ("z", z), ("g4", g4), ("g5", g5), ("g6", g6), ("r", rt),
                       ("g7", g7), ("g8", g8), ("g9", g9), ("g10", g10), ("ht", ht), ("g11", g11), ("g12", g12)):
            q[k].append(val)
        h.append(g11 + g12)
    L = 0.5 * ((h[T] - y) ** 2).sum()
    D = {k: grad(L, v) for k, v in q.items()}        # the true gradients, every step
    Dh = grad(L, h[1:])                               # Delta_{h_t} L
    Dx = grad(L, x)
    terms = {k: grad(L, C[k]) for k in P}
    total = {k: sum(terms[k]) for k in P}
    W = {k: v.detach() for k, v in P.items()}
    hp = h[:-1]
    sig_p = lambda g: torch.sigmoid(g) * (1 - torch.sigmoid(g))   # noqa: E731
    R = range(T)
    v = {}
    v["c1"] = steps(Dh, D["g11"])
    v["c2"] = steps(Dh, D["g12"])
    v["c3"] = steps([-D["g12"][t] * q["ht"][t] + D["g11"][t] * hp[t] for t in R], D["z"])
    v["c4"] = steps([D["g12"][t] * (1 - q["z"][t]) for t in R], D["ht"])
    # Delta_{h_{t-1}} L, accumulated over four lines; at t = 1 h_0 is the zero state
    c5 = [D["g11"][t] * q["z"][t] + D["g7"][t] * q["r"][t] + W["W_rh"].T @ D["g4"][t] + W["W_zh"].T @ D["g1"][t]
          for t in range(1, T)]
    v["c5"] = steps(c5, [Dh[t - 1] for t in range(1, T)])
    v["c6"] = steps([D["ht"][t] * (1 - torch.tanh(q["g10"][t]) ** 2) for t in R], D["g10"])
    v["c7"] = steps(D["g10"], D["g8"])
    v["c8"] = steps(D["g10"], D["g9"])
    v["c9"] = per_step([torch.outer(D["g9"][t], x[t]) for t in R], terms["W_x"], total["W_x"])
    v["c10"] = steps([W["W_x"].T @ D["g9"][t] + W["W_rx"].T @ D["g5"][t] + W["W_zx"].T @ D["g2"][t] for t in R], Dx)
    v["c11"] = per_step([torch.outer(D["g8"][t], q["g7"][t]) for t in R], terms["W_h"], total["W_h"])
    v["c12"] = steps([W["W_h"].T @ D["g8"][t] for t in R], D["g7"])
    v["c13"] = steps([D["g7"][t] * hp[t] for t in R], D["r"])
    v["c14"] = steps([D["r"][t] * sig_p(q["g6"][t]) for t in R], D["g6"])
    v["c15"] = steps(D["g6"], D["g4"])
    v["c16"] = steps(D["g6"], D["g5"])
    v["c17"] = per_step([torch.outer(D["g5"][t], x[t]) for t in R], terms["W_rx"], total["W_rx"])
    v["c18"] = per_step([torch.outer(D["g4"][t], hp[t]) for t in R], terms["W_rh"], total["W_rh"])
    v["c19"] = steps([D["z"][t] * sig_p(q["g3"][t]) for t in R], D["g3"])
    v["c20"] = steps(D["g3"], D["g1"])
    v["c21"] = steps(D["g3"], D["g2"])
    v["c22"] = per_step([torch.outer(D["g2"][t], x[t]) for t in R], terms["W_zx"], total["W_zx"])
    v["c23"] = per_step([torch.outer(D["g1"][t], hp[t]) for t in R], terms["W_zh"], total["W_zh"])
    # the first line of an accumulation alone is not the gradient (the '+=' lines are needed)
    assert steps([-D["g12"][t] * q["ht"][t] for t in R], D["z"]) == "incorrect"
    return v


def verdicts() -> dict[str, str]:
    return run_seeds(one)
