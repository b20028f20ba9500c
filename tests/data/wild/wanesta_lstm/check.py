"""Numeric check of the hand verdicts for wanesta_lstm (torch autograd, no symderiv).

E is the squared error of the last output h_T (see model.sdm).  Every parameter is used
through one copy per step, so that the gradient of E in the copy of step t is the term of
step t of the parameter's gradient (the note's W_{oh,t}).
"""

from __future__ import annotations

import torch
from numeric import Rand, grad, matmul_or_none, per_step, run_seeds, static, step_copies, steps
from torch.autograd.functional import jacobian

NX, NH, T = 3, 4, 4
GATES = ("f", "i", "c", "o")


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    P = {}
    for g in GATES:
        P[f"W_{g}h"], P[f"W_{g}x"], P[f"b_{g}"] = r.param(NH, NH), r.param(NH, NX), r.param(NH)
    x = [r(NX) for _ in range(T)]
    y = r(NH)
    C = {k: step_copies(v, T) for k, v in P.items()}          # C[name][t]: the copy used at step t
    h, c = [torch.zeros(NH, dtype=torch.float64)], [torch.zeros(NH, dtype=torch.float64)]
    net = {g: [] for g in GATES}
    act = {g: [] for g in GATES}
    for t in range(T):
        for g in GATES:
            net[g].append(C[f"W_{g}h"][t] @ h[-1] + C[f"W_{g}x"][t] @ x[t] + C[f"b_{g}"][t])
            act[g].append(torch.tanh(net[g][-1]) if g == "c" else torch.sigmoid(net[g][-1]))
        c.append(act["f"][t] * c[-1] + act["i"][t] * act["c"][t])
        h.append(act["o"][t] * torch.tanh(c[-1]))
    E = 0.5 * ((h[T] - y) ** 2).sum()
    terms = {k: grad(E, C[k]) for k in P}                     # terms[name][t]
    total = {k: sum(terms[k]) for k in P}
    delta = grad(E, h[1:])                                    # delta_t = dE/dh_t, t = 1..T
    dnet = {g: grad(E, net[g]) for g in GATES}                # delta_{g,t} = dE/dnet_{g,t}
    f, i, cb, o = act["f"], act["i"], act["c"], act["o"]
    cprev = c[:-1]                                            # c_{t-1}
    hprev = h[:-1]                                            # h_{t-1}
    tanhc = [torch.tanh(c[t + 1]) for t in range(T)]
    W = {k: v.detach() for k, v in P.items()}
    v = {}

    # delta_{t-1}, t = 2..T (at t = 1 it is dE/dh_0 of the zero initial state, not a step)
    def step_h(hp, t):       # h_t as a function of h_{t-1}, with c_{t-1} and x_t held
        gate = {g: W[f"W_{g}h"] @ hp + W[f"W_{g}x"] @ x[t] + W[f"b_{g}"] for g in GATES}
        ct = torch.sigmoid(gate["f"]) * cprev[t].detach() + torch.sigmoid(gate["i"]) * torch.tanh(gate["c"])
        return torch.sigmoid(gate["o"]) * torch.tanh(ct)
    J = [jacobian(lambda hp, t=t: step_h(hp, t), hprev[t].detach()) for t in range(T)]   # dh_t/dh_{t-1}
    later = range(1, T)           # 0-based t with a previous step that is a step
    d_prev = [delta[t - 1] for t in later]
    # c1: delta_{t-1}^T = dE/dh_{t-1} (restated), c2: = dE/dh_t dh_t/dh_{t-1}
    v["c1"] = steps([delta[t - 1] for t in later], d_prev)
    v["c2"] = steps([delta[t] @ J[t] for t in later], d_prev)
    # the repair: h_{t-1} also reaches E through c_t -> c_{t+1} -> ..., not through h_t
    dEdc = grad(E, c[1:])
    future_c = [dEdc[t] - delta[t] * o[t] * (1 - tanhc[t] ** 2) for t in range(T)]

    def step_c(hp, t):       # c_t as a function of h_{t-1}
        gate = {g: W[f"W_{g}h"] @ hp + W[f"W_{g}x"] @ x[t] + W[f"b_{g}"] for g in GATES}
        return torch.sigmoid(gate["f"]) * cprev[t].detach() + torch.sigmoid(gate["i"]) * torch.tanh(gate["c"])
    Jc = [jacobian(lambda hp, t=t: step_c(hp, t), hprev[t].detach()) for t in range(T)]
    v["c2:missing-recurrent-term"] = steps([delta[t] @ J[t] + future_c[t] @ Jc[t] for t in later], d_prev)
    # c3: delta_{t-1} = sum_g delta_{g,t}^T dnet_{g,t}/dh_{t-1}  (dnet/dh = W_gh)
    v["c3"] = steps([sum(dnet[g][t] @ W[f"W_{g}h"] for g in GATES) for t in later], d_prev)
    # c4: = delta_{o,t}^T W_{o,t} + ...: W_{o,t} is the note's W_o = [W_oh W_ox], which does not fit
    W_o = torch.cat([W["W_oh"], W["W_ox"]], dim=1)
    assert (dnet["o"][1] @ W_o).shape != (NH,)
    v["c4"] = "incorrect"
    v["c4:wrong-factor"] = steps([sum(dnet[g][t] @ W[f"W_{g}h"] for g in GATES) for t in later], d_prev)
    # c5-c8: the four delta_{g,t} in terms of delta_t alone
    v["c5"] = steps([delta[t] * tanhc[t] * o[t] * (1 - o[t]) for t in range(T)], dnet["o"])
    dc_direct = [delta[t] * o[t] * (1 - tanhc[t] ** 2) for t in range(T)]
    v["c6"] = steps([dc_direct[t] * cprev[t] * f[t] * (1 - f[t]) for t in range(T)], dnet["f"])
    v["c7"] = steps([dc_direct[t] * cb[t] * i[t] * (1 - i[t]) for t in range(T)], dnet["i"])
    v["c8"] = steps([dc_direct[t] * i[t] * (1 - cb[t] ** 2) for t in range(T)], dnet["c"])
    # the repair: dE/dc_t also flows through c_{t+1} = f_{t+1} o c_t + ...
    dc = [None] * T
    for t in reversed(range(T)):
        dc[t] = dc_direct[t] + (dc[t + 1] * f[t + 1] if t + 1 < T else 0)
    v["c6:missing-recurrent-term"] = steps([dc[t] * cprev[t] * f[t] * (1 - f[t]) for t in range(T)], dnet["f"])
    v["c7:missing-recurrent-term"] = steps([dc[t] * cb[t] * i[t] * (1 - i[t]) for t in range(T)], dnet["i"])
    v["c8:missing-recurrent-term"] = steps([dc[t] * i[t] * (1 - cb[t] ** 2) for t in range(T)], dnet["c"])
    # c9: delta_k^T = prod_{j=k}^{t-1} delta_{o,j}^T W_oh + ...: a product of row vectors
    assert matmul_or_none(dnet["o"][0].reshape(1, NH) @ W["W_oh"], dnet["o"][1].reshape(1, NH) @ W["W_oh"]) is None
    v["c9"] = "incorrect"

    # the weight and bias gradients of step t: chain forms dE/dnet_{g,t} dnet_{g,t}/dP_t
    def jac(g, p, t):   # dnet_{g,t} / d(parameter p at step t), holding the rest
        def net_of(M):
            args = {k: W[k] for k in (f"W_{g}h", f"W_{g}x", f"b_{g}")}
            if p in args:
                args[p] = M
            return args[f"W_{g}h"] @ hprev[t].detach() + args[f"W_{g}x"] @ x[t] + args[f"b_{g}"]
        return jacobian(net_of, W[p])

    def chain(g, p):
        return [torch.einsum("l,l...->...", dnet[g][t], jac(g, p, t)) for t in range(T)]

    def ps(claimed, p):
        return per_step(claimed, terms[p], total[p])

    k = 10
    for g, name in (("o", "W_oh"), ("f", "W_fh"), ("i", "W_ih")):
        v[f"c{k}"] = ps(chain(g, name), name)
        v[f"c{k + 1}"] = ps([torch.outer(dnet[g][t], hprev[t]) for t in range(T)], name)
        k += 2
    # c16: dE/dW_{ch,t} = dE/dnet_{c,t} dnet_{c,t}/dW_{fh,t}: net_c does not depend on W_fh
    v["c16"] = ps(chain("c", "W_fh"), "W_ch")
    v["c16:wrong-factor"] = ps(chain("c", "W_ch"), "W_ch")
    v["c17"] = ps([torch.outer(dnet["c"][t], hprev[t]) for t in range(T)], "W_ch")
    # c18-c20: dE/dW_gh = sum_{j=1}^t delta_{g,j} h_{j-1}^T, t the last step
    for kk, (g, name) in zip((18, 19, 20), (("o", "W_oh"), ("f", "W_fh"), ("i", "W_ih"))):
        v[f"c{kk}"] = static(sum(torch.outer(dnet[g][j], hprev[j]) for j in range(T)), total[name])
    # c21-c28: bias gradients of step t, chain and closed form
    k = 21
    for g, name, jac_of in (("o", "b_o", "b_o"), ("f", "b_f", "b_f"), ("i", "b_i", "b_o"), ("c", "b_c", "b_o")):
        v[f"c{k}"] = ps(chain(g, jac_of), name)
        if jac_of != name:
            v[f"c{k}:wrong-factor"] = ps(chain(g, name), name)
        v[f"c{k + 1}"] = ps([dnet[g][t] for t in range(T)], name)
        k += 2
    # c29-c32: dE/db_g = sum_{j=1}^t delta_{g,t}: the summand does not depend on j
    for kk, (g, name) in zip((29, 30, 31, 32), (("o", "b_o"), ("i", "b_i"), ("f", "b_f"), ("c", "b_c"))):
        v[f"c{kk}"] = static(T * dnet[g][T - 1], total[name])
        v[f"c{kk}:missing-sum-over-time"] = static(sum(dnet[g][j] for j in range(T)), total[name])
    # c33-c38: the input weights, per step
    k = 33
    for g, name in (("o", "W_ox"), ("f", "W_fx"), ("i", "W_ix")):
        v[f"c{k}"] = ps(chain(g, name), name)
        v[f"c{k + 1}"] = ps([torch.outer(dnet[g][t], x[t]) for t in range(T)], name)
        k += 2
    # c39: dE/dW_cx = dE/dnet_{c,t} dnet_{o,t}/dW_ox: the Jacobian has the same entries
    v["c39"] = ps([torch.einsum("l,l...->...", dnet["c"][t], jac("o", "W_ox", t)) for t in range(T)], "W_cx")
    # c40: = delta_{o,t} x_t^T
    v["c40"] = ps([torch.outer(dnet["o"][t], x[t]) for t in range(T)], "W_cx")
    v["c40:wrong-factor"] = ps([torch.outer(dnet["c"][t], x[t]) for t in range(T)], "W_cx")
    return v


def verdicts() -> dict[str, str]:
    return run_seeds(one)
