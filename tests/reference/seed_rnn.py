"""The seed RNN of examples/seed_rnn.sdm, one example at a time, written from its equations: the forward
values and a BPTT by hand (tests/test_loop_rewrites.py, tests/test_step_layout.py)."""

import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def one_example(p, x, r):
    """Loss, forward values and gradients of examples/seed_rnn.sdm, one example: x (T, n_x), r (T, C)."""
    T = len(x)
    n_h = p["V"].shape[0]
    a, z_h, h = [], [], [np.zeros(n_h)]
    o, q = [], []
    for t in range(T):
        a.append(_sigmoid(p["W_in"] @ x[t] + p["b_in"]))
        z_h.append(p["U"] @ a[t] + p["V"] @ h[t] + p["b_h"])
        h.append(_sigmoid(z_h[t]))
        o.append(_sigmoid(p["W"] @ h[t + 1] + p["b_o"]))
        s = p["W_out"] @ o[t] + p["b_out"]
        e = np.exp(s - s.max())
        q.append(e / e.sum())
    loss = -sum(r[t] @ np.log(q[t]) for t in range(T))
    g = {k: np.zeros_like(v) for k, v in p.items()}
    d_next = np.zeros(n_h)  # δz_{h,t+1}
    for t in reversed(range(T)):
        d_out = q[t] - r[t]
        d_zo = o[t] * (1 - o[t]) * (p["W_out"].T @ d_out)
        d_h = p["W"].T @ d_zo + p["V"].T @ d_next
        d_zh = h[t + 1] * (1 - h[t + 1]) * d_h
        d_za = a[t] * (1 - a[t]) * (p["U"].T @ d_zh)
        for name, delta, value in (("W_out", d_out, o[t]), ("W", d_zo, h[t + 1]), ("U", d_zh, a[t]),
                                   ("V", d_zh, h[t]), ("W_in", d_za, x[t])):
            g[name] += np.outer(delta, value)
        for name, delta in (("b_out", d_out), ("b_o", d_zo), ("b_h", d_zh), ("b_in", d_za)):
            g[name] += delta
        d_next = d_zh
    return loss, {"z_h": np.array(z_h), "h": np.array(h[1:])}, g
