"""Numeric check of the hand verdicts for sriram_bptt (torch autograd, no symderiv).

The notebook's RNN has no activation: s_t = W s_{t-1} + U x_t, z_t = V s_t,
yhat_t = softmax(z_t), E_t the cross-entropy of step t.  Its claims are about E_4, the loss
term of step 4, so the sequence here is longer (T = 6) and the terms of later steps exist.
Its '.' is the matrix product, as in W.s_0; where it (or plain juxtaposition) puts two
column vectors side by side the product is not defined, and the outer product the author
means needs a transpose, as c2's (yhat_4 - y_4).s_4 does (incorrect, transpose).  c6, c9,
c10 and c14 are wrong under the outer-product reading too: there the powers of W act on
s_{k-1}, where the chain rule puts them, transposed, on dE_4/ds_4; moving them is the
repair (wrong-factor).
"""

from __future__ import annotations

import torch
from numeric import Rand, cross_entropy, fixed_step, grad, matmul_or_none, run_seeds, softmax, static
from torch.autograd.functional import jacobian

NX, NS, K, T = 3, 4, 5, 6
S4 = 3   # step 4, 0-based


def one(seed: int) -> dict[str, str]:
    r = Rand(seed)
    W, U, V = r.param(NS, NS, scale=0.5), r.param(NS, NX), r.param(K, NS)
    s0 = r(NS)
    x = [r(NX) for _ in range(T)]
    y = [r.one_hot(K) for _ in range(T)]
    s = [s0]
    for t in range(T):
        s.append(W @ s[-1] + U @ x[t])
    s[S4 + 1].retain_grad()
    z = [V @ s[t + 1] for t in range(T)]
    yhat = [softmax(zt) for zt in z]
    E_t = [cross_entropy(y[t], yhat[t]) for t in range(T)]
    E = sum(E_t)
    gV, gW, gU = grad(E, [V, W, U])
    tV = [grad(E_t[t], [V])[0] for t in range(T)]
    tW = [grad(E_t[t], [W])[0] for t in range(T)]
    tU = [grad(E_t[t], [U])[0] for t in range(T)]
    E4, y4, yh4, z4, s4 = E_t[S4], y[S4], yhat[S4], z[S4], s[S4 + 1]
    d4 = grad(E4, [s4])[0]                        # dE_4 / ds_4, a column
    Wd = W.detach()
    P = torch.linalg.matrix_power

    # Jacobians of the notebook's chain-rule factors
    dE_dyhat = grad(E4, [yh4])[0]
    dyhat_dz = jacobian(softmax, z4.detach())
    dz_dV = jacobian(lambda M: M @ s4.detach(), V.detach())          # (K, K, NS)
    dz_ds = V.detach()                                                # dz_4/ds_4
    def ds_dW(k):   # the explicit dependence of s_k on W, s_{k-1} held fixed
        return jacobian(lambda M: M @ s[k - 1].detach() + U.detach() @ x[k - 1], Wd)   # (NS, NS, NS)
    def ds_dU(k):
        return jacobian(lambda M: Wd @ s[k - 1].detach() + M @ x[k - 1], U.detach())  # (NS, NS, NX)
    ds_ds = Wd                                                        # ds_j / ds_{j-1}

    v = {}
    # c1: dE4/dV = dE4/dyhat4 . dyhat4/dz4 . dz4/dV
    v["c1"] = fixed_step(torch.einsum("a,ab,bij->ij", dE_dyhat, dyhat_dz, dz_dV), tV, S4, gV)
    # c2: = (yhat4 - y4) . s4 : two columns, the product is not defined as written
    v["c2"] = fixed_step(matmul_or_none(yh4 - y4, s4), tV, S4, gV)
    v["c2:transpose"] = fixed_step(torch.outer(yh4 - y4, s4), tV, S4, gV)

    # the four paths of dE4/dW: dE4/ds4 . (prod of ds_j/ds_{j-1}) . ds_k/dW, k = 1..4
    def paths(ds_dP):
        total = 0
        for k in range(1, 5):
            chain = d4
            for _ in range(4 - k):
                chain = chain @ ds_ds          # row vector times Jacobian
            total = total + torch.einsum("m,mij->ij", chain, ds_dP(k))
        return total
    chainW, chainU = paths(ds_dW), paths(ds_dU)
    v["c3"] = fixed_step(chainW, tW, S4, gW)       # the expanded sum of paths
    v["c4"] = fixed_step(chainW, tW, S4, gW)       # sum_k dE4/ds4 (prod_j ds_j/ds_{j-1}) ds_k/dW
    v["c5"] = fixed_step(chainW, tW, S4, gW)       # dE4/ds4 (ds4/dW + ds4/ds3 . ds3/dW + ...)

    right_U = sum(torch.outer(P(Wd.T, 4 - k) @ d4, x[k - 1]) for k in range(1, 5))
    def other_side(signal, vectors, powers):
        """sum_k (W^T)^p_k signal v_k^T: each power of W moved onto the error signal, transposed."""
        return sum(torch.outer(P(Wd.T, p) @ signal, v) for p, v in zip(powers, vectors))
    # c6: dE4/dW = dE4/ds4 (s3 + W s2 + W W s1 + W W W s0): two columns, not defined as written;
    #     read as the outer product it is still wrong; the weights moved onto dE4/ds4 it is right
    states = s[3] + Wd @ s[2] + P(Wd, 2) @ s[1] + P(Wd, 3) @ s[0]
    assert matmul_or_none(d4, states) is None
    v["c6"] = fixed_step(matmul_or_none(d4, states), tW, S4, gW)
    assert fixed_step(torch.outer(d4, states), tW, S4, gW) == "incorrect"
    v["c6:wrong-factor"] = fixed_step(other_side(d4, [s[3], s[2], s[1], s[0]], [0, 1, 2, 3]), tW, S4, gW)
    # c7: dE4/ds4 = dE4/dyhat4 . dyhat4/dz4 . dz4/ds4
    v["c7"] = static(torch.einsum("a,ab,bm->m", dE_dyhat, dyhat_dz, dz_ds), d4)
    # c8: dE4/ds4 = (yhat4 - y4) . V : (K) times (K x NS) does not fit; as a row it is d4^T
    assert matmul_or_none(yh4 - y4, V) is None
    v["c8"] = "incorrect"
    v["c8:transpose"] = static(((yh4 - y4).reshape(1, K) @ V).T.reshape(NS), d4)
    # c9: dE4/dW = (yhat4 - y4) . V . (s3 + W s2 + W W s1 + W W W s0): (yhat4 - y4) V is c8's
    #     row (transpose); then c6's two columns and its weights on the wrong side
    assert matmul_or_none(yh4 - y4, V) is None
    v["c9"] = "incorrect"
    signal = V.T @ (yh4 - y4)                     # the row (yhat4 - y4)^T V, transposed: d4
    assert fixed_step(torch.outer(signal, states), tW, S4, gW) == "incorrect"
    v["c9:wrong-factor"] = fixed_step(other_side(signal, [s[3], s[2], s[1], s[0]], [0, 1, 2, 3]), tW, S4, gW)
    # c10, c14: dE4/dW = (yhat4 - y4) . V . sum_{j=1}^4 W^{4-j-1} . s_{j-1}  (W^{-1} at j = 4): as
    #     c9, and every power one too small: with the weights moved only, still wrong
    assert fixed_step(torch.outer(signal, sum(P(Wd, 4 - j - 1) @ s[j - 1] for j in range(1, 5))),
                      tW, S4, gW) == "incorrect"
    js = range(1, 5)
    assert fixed_step(other_side(signal, [s[j - 1] for j in js], [4 - j - 1 for j in js]), tW, S4, gW) == "incorrect"
    v["c10"] = v["c14"] = "incorrect"
    v["c10:wrong-factor"] = v["c14:wrong-factor"] = fixed_step(
        other_side(signal, [s[j - 1] for j in js], [4 - j for j in js]), tW, S4, gW)
    # c11: dE4/dU = dE4/ds4 (ds4/dU + ds4/ds3 . ds3/dU + ...)
    v["c11"] = fixed_step(chainU, tU, S4, gU)
    # c12: dE4/dU = dE4/ds4 (x4 + W x3 + W W x2 + W W W x1)
    #      W x3 does not fit (W is n_s x n_s, x3 has n_x entries): the claim is not defined
    assert matmul_or_none(Wd, x[2]) is None
    v["c12"] = fixed_step(None, tU, S4, gU)
    v["c12:shape"] = fixed_step(right_U, tU, S4, gU)
    #      the repair: the powers of W on the error signal, transposed (as c6)
    v["c12:wrong-factor"] = fixed_step(other_side(d4, [x[3], x[2], x[1], x[0]], [0, 1, 2, 3]), tU, S4, gU)
    # c13, c15: dE4/dU = (yhat4 - y4) . V . sum_{j=1}^4 W^{4-j-1} . x_j
    #      W^{4-j-1} x_j does not fit either
    assert matmul_or_none(P(Wd, 2), x[0]) is None
    v["c13"] = v["c15"] = fixed_step(None, tU, S4, gU)
    v["c13:shape"] = v["c15:shape"] = fixed_step(right_U, tU, S4, gU)
    v["c13:wrong-factor"] = v["c15:wrong-factor"] = fixed_step(
        other_side(signal, [x[j - 1] for j in js], [4 - j for j in js]), tU, S4, gU)
    return v


def verdicts() -> dict[str, str]:
    return run_seeds(one)
