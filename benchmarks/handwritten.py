"""Straightforward hand-written NumPy BPTT for the seed RNN and the LSTM tagger (the baseline of benchmarks/speed.py).

Written the way min-char-rnn (Karpathy) does it: column vectors, one step at a time. The data arrive in the
generated module's public layout, (T, n) or (T, n, B); inside, step t of a sequence is a column block (n, B). The
forward pass is a per-step loop of ``np.dot``; the backward pass walks the steps in reverse and accumulates every
weight gradient per step (``dW += np.dot(dy, h.T)``). No symderiv code is used.

``seed_rnn(params, x, r)`` and ``lstm(params, x, r)`` return ``(loss, grads)`` like ``loss_and_gradients`` of the
generated modules (loss summed over the batch; gradients keyed and shaped like the parameters).

``python benchmarks/handwritten.py`` prints how far these are from the generated modules (relative error).
"""

import numpy as np


def _columns(a):
    """(T, n) → (T, n, 1); a batched (T, n, B) array is used as it is."""
    a = np.asarray(a, dtype=np.float64)
    return a[..., None] if a.ndim == 2 else a


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def seed_rnn(params, x, r):
    """Loss and gradients of examples/seed_rnn.sdm: sigmoid input layer, sigmoid recurrence, sigmoid output layer,
    softmax read-out, cross-entropy against the distribution r."""
    xs, rs = _columns(x), _columns(r)
    W_in, U, V, W, W_out = params["W_in"], params["U"], params["V"], params["W"], params["W_out"]
    b_in, b_h, b_o, b_out = (params[k][:, None] for k in ("b_in", "b_h", "b_o", "b_out"))
    T, _, B = xs.shape
    n_h = V.shape[0]

    a, h, o, p = {}, {-1: np.zeros((n_h, B))}, {}, {}
    loss = 0.0
    for t in range(T):
        a[t] = _sigmoid(np.dot(W_in, xs[t]) + b_in)
        h[t] = _sigmoid(np.dot(U, a[t]) + np.dot(V, h[t - 1]) + b_h)
        o[t] = _sigmoid(np.dot(W, h[t]) + b_o)
        p[t] = _softmax(np.dot(W_out, o[t]) + b_out)
        loss += -np.sum(rs[t] * np.log(p[t]))

    dW_in, dU, dV, dW, dW_out = (np.zeros_like(m) for m in (W_in, U, V, W, W_out))
    db_in, db_h, db_o, db_out = (np.zeros_like(params[k]) for k in ("b_in", "b_h", "b_o", "b_out"))
    dh_next = np.zeros((n_h, B))
    for t in reversed(range(T)):
        dz = p[t] - rs[t]  # softmax + cross-entropy, r a distribution (sums to 1)
        dW_out += np.dot(dz, o[t].T)
        db_out += np.sum(dz, axis=1)
        do = np.dot(W_out.T, dz) * o[t] * (1 - o[t])
        dW += np.dot(do, h[t].T)
        db_o += np.sum(do, axis=1)
        dh = np.dot(W.T, do) + dh_next
        dyh = dh * h[t] * (1 - h[t])
        dU += np.dot(dyh, a[t].T)
        dV += np.dot(dyh, h[t - 1].T)
        db_h += np.sum(dyh, axis=1)
        dya = np.dot(U.T, dyh) * a[t] * (1 - a[t])
        dW_in += np.dot(dya, xs[t].T)
        db_in += np.sum(dya, axis=1)
        dh_next = np.dot(V.T, dyh)
    grads = {"W_in": dW_in, "b_in": db_in, "U": dU, "V": dV, "b_h": db_h, "W": dW, "b_o": db_o,
             "W_out": dW_out, "b_out": db_out}
    return loss, grads


def lstm(params, x, r):
    """Loss and gradients of the LSTM tagger (examples/lstm_tagger.sdm; tests/models/lstm.sdm is the same network
    with W_c, b_c for W_g, b_g): every gate reads z = [h_{t-1}; x_t]; softmax read-out, cross-entropy."""
    g_name = "W_g" if "W_g" in params else "W_c"
    gb_name = "b" + g_name[1:]
    xs, rs = _columns(x), _columns(r)
    W_f, W_i, W_o, W_g, W_y = (params[k] for k in ("W_f", "W_i", "W_o", g_name, "W_y"))
    b_f, b_i, b_o, b_g, b_y = (params[k][:, None] for k in ("b_f", "b_i", "b_o", gb_name, "b_y"))
    T, _, B = xs.shape
    n_h = W_f.shape[0]

    z, f, i, o, g, c, h, p = {}, {}, {}, {}, {}, {-1: np.zeros((n_h, B))}, {-1: np.zeros((n_h, B))}, {}
    loss = 0.0
    for t in range(T):
        z[t] = np.vstack((h[t - 1], xs[t]))
        f[t] = _sigmoid(np.dot(W_f, z[t]) + b_f)
        i[t] = _sigmoid(np.dot(W_i, z[t]) + b_i)
        o[t] = _sigmoid(np.dot(W_o, z[t]) + b_o)
        g[t] = np.tanh(np.dot(W_g, z[t]) + b_g)
        c[t] = f[t] * c[t - 1] + i[t] * g[t]
        h[t] = o[t] * np.tanh(c[t])
        p[t] = _softmax(np.dot(W_y, h[t]) + b_y)
        loss += -np.sum(rs[t] * np.log(p[t]))

    dW_f, dW_i, dW_o, dW_g, dW_y = (np.zeros_like(m) for m in (W_f, W_i, W_o, W_g, W_y))
    db_f, db_i, db_o, db_g, db_y = (np.zeros_like(params[k]) for k in ("b_f", "b_i", "b_o", gb_name, "b_y"))
    dh_next = np.zeros((n_h, B))
    dc_next = np.zeros((n_h, B))
    for t in reversed(range(T)):
        dy = p[t] - rs[t]
        dW_y += np.dot(dy, h[t].T)
        db_y += np.sum(dy, axis=1)
        dh = np.dot(W_y.T, dy) + dh_next
        tc = np.tanh(c[t])
        dc = dh * o[t] * (1 - tc * tc) + dc_next
        do = dh * tc * o[t] * (1 - o[t])
        di = dc * g[t] * i[t] * (1 - i[t])
        dg = dc * i[t] * (1 - g[t] * g[t])
        df = dc * c[t - 1] * f[t] * (1 - f[t])
        dW_f += np.dot(df, z[t].T)
        dW_i += np.dot(di, z[t].T)
        dW_o += np.dot(do, z[t].T)
        dW_g += np.dot(dg, z[t].T)
        db_f += np.sum(df, axis=1)
        db_i += np.sum(di, axis=1)
        db_o += np.sum(do, axis=1)
        db_g += np.sum(dg, axis=1)
        dz = np.dot(W_f.T, df) + np.dot(W_i.T, di) + np.dot(W_o.T, do) + np.dot(W_g.T, dg)
        dh_next = dz[:n_h]
        dc_next = dc * f[t]
    grads = {"W_f": dW_f, "b_f": db_f, "W_i": dW_i, "b_i": db_i, "W_o": dW_o, "b_o": db_o, g_name: dW_g,
             gb_name: db_g, "W_y": dW_y, "b_y": db_y}
    return loss, grads


def agreement(fn, module, n, T, batch) -> float:
    """Worst relative error of ``fn`` against ``module.loss_and_gradients`` over the loss and every gradient."""
    from benchutil import sequence_data

    dims = dict.fromkeys(module.DIMS, n)
    params = module.init_params(dims, seed=0)
    data = sequence_data(T, dims, module.INPUTS, batch, seed=1)
    loss, grads = module.loss_and_gradients(params, **data)
    their_loss, their_grads = fn(params, **data)
    pairs = [(np.asarray(loss), np.asarray(their_loss))] + [(grads[k], np.asarray(their_grads[k])) for k in grads]
    return max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)) for a, b in pairs)


def main():
    from benchutil import load_generated, table

    rows = []
    for name, fallback, fn in (("seed_rnn", "examples/seed_rnn.sdm", seed_rnn),
                               ("lstm_tagger", "tests/models/lstm.sdm", lstm)):
        module = load_generated(name, fallback)
        for n, T, batch in ((32, 20, None), (64, 10, 4)):
            rows.append([name, f"n={n}, T={T}, B={batch or 1}", f"{agreement(fn, module, n, T, batch):.1e}"])
    print(table(["model", "size", "worst rel. error vs generated"], rows, "llr"))


if __name__ == "__main__":
    main()
