"""Careful hand-written NumPy BPTT for the seed RNN and the LSTM tagger (a peer of benchmarks/peers.py).

What a careful engineer writes by hand from the equations of examples/seed_rnn.sdm and examples/lstm_tagger.sdm,
without symderiv: per-step BPTT in the column layout, where step t of a sequence is an (n, B) block and the data
arrive as (T, n, B) (or (T, n) for one sequence) exactly as the caller holds them, so nothing is transposed. Every
step's products are on (n, B) blocks; the forward values live in preallocated (T, n, B) arrays; the biases are
broadcast as (n, 1) columns; the activations are computed in place; the softmax is stabilised (max subtracted)
and the loss is taken from the log-softmax; the bias gradients are one sum over the stored deltas after the loop;
the LSTM's four gates are one stacked (4 n_h, n_h + n_x) matrix, so one product per step serves all of them
forward and backward. It is stronger than benchmarks/handwritten.py, the min-char-rnn style baseline.

The arithmetic runs in the dtype of the parameters and data (float32 when all are float32, else float64), as the
generated modules do. ``seed_rnn(params, x, r)`` and ``lstm(params, x, r)`` return ``(loss, grads)`` like
``loss_and_gradients`` (loss summed over the batch; gradients keyed and shaped like the parameters).
tests/test_benchmark_baselines.py checks both against the generated modules.
"""

import numpy as np

SEED_PARAMS = ("W_in", "b_in", "U", "V", "b_h", "W", "b_o", "W_out", "b_out")
LSTM_GATES = ("f", "i", "o", "g")


def _dtype(params, *data):
    arrays = [np.asarray(a) for a in (*params.values(), *data)]
    return np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64


def _columns(a, dtype):
    """(T, n) → (T, n, 1); a batched (T, n, B) array is used as it is."""
    a = np.asarray(a, dtype)
    return a[..., None] if a.ndim == 2 else a


def _sigmoid_(z):
    """σ(z) in place, through tanh (no overflow for large |z|)."""
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def _log_softmax_columns(z):
    """Stabilised softmax of every column of z (C, B), in place; returns (p, log p)."""
    z -= z.max(axis=0)
    p = np.exp(z)
    s = p.sum(axis=0)
    p /= s
    z -= np.log(s)
    return p, z


def seed_rnn(params, x, r):
    dt = _dtype(params, x, r)
    W_in, b_in, U, V, b_h, W, b_o, W_out, b_out = (np.asarray(params[k], dt) for k in SEED_PARAMS)
    xs, rs = _columns(x, dt), _columns(r, dt)
    T, _, B = xs.shape
    A = np.empty((T, W_in.shape[0], B), dt)
    H = np.zeros((T + 1, V.shape[0], B), dt)  # H[t] is h_t; H[0] = h_0 = 0
    O_ = np.empty((T, W.shape[0], B), dt)
    P = np.empty((T, W_out.shape[0], B), dt)
    loss = 0.0
    for t in range(T):
        A[t] = _sigmoid_(W_in @ xs[t] + b_in[:, None])
        H[t + 1] = _sigmoid_(U @ A[t] + V @ H[t] + b_h[:, None])
        O_[t] = _sigmoid_(W @ H[t + 1] + b_o[:, None])
        P[t], log_p = _log_softmax_columns(W_out @ O_[t] + b_out[:, None])
        loss -= float(np.vdot(rs[t], log_p))
    dZ, dO, dH, dA = P - rs, np.empty_like(O_), np.empty_like(H[1:]), np.empty_like(A)  # dZ: r a distribution
    dW_in, dU, dV, dW, dW_out = (np.zeros_like(m) for m in (W_in, U, V, W, W_out))
    dh_next = np.zeros((V.shape[0], B), dt)
    for t in reversed(range(T)):
        dW_out += dZ[t] @ O_[t].T
        dO[t] = (W_out.T @ dZ[t]) * O_[t] * (1.0 - O_[t])
        dW += dO[t] @ H[t + 1].T
        dH[t] = (W.T @ dO[t] + dh_next) * H[t + 1] * (1.0 - H[t + 1])
        dU += dH[t] @ A[t].T
        dV += dH[t] @ H[t].T
        dA[t] = (U.T @ dH[t]) * A[t] * (1.0 - A[t])
        dW_in += dA[t] @ xs[t].T
        dh_next = V.T @ dH[t]
    sums = [d.sum(axis=(0, 2)) for d in (dA, dH, dO, dZ)]
    grads = dict(zip(SEED_PARAMS, (dW_in, sums[0], dU, dV, sums[1], dW, sums[2], dW_out, sums[3])))
    return dt(loss), grads


def lstm(params, x, r):
    dt = _dtype(params, x, r)
    xs, rs = _columns(x, dt), _columns(r, dt)
    W_s = np.concatenate([np.asarray(params[f"W_{g}"], dt) for g in LSTM_GATES])  # (4 n_h, n_h + n_x): f i o g
    b_s = np.concatenate([np.asarray(params[f"b_{g}"], dt) for g in LSTM_GATES])[:, None]
    W_y, b_y = np.asarray(params["W_y"], dt), np.asarray(params["b_y"], dt)[:, None]
    T, n_x, B = xs.shape
    n_h = W_s.shape[0] // 4
    Z = np.zeros((T, n_h + n_x, B), dt)  # z_t = [h_{t-1}; x_t]
    Z[:, n_h:] = xs
    G = np.empty((T, 4 * n_h, B), dt)  # f, i, o (sigmoid) and g (tanh), stacked
    Cs = np.zeros((T + 1, n_h, B), dt)
    TC = np.empty((T, n_h, B), dt)
    H = np.empty((T, n_h, B), dt)
    P = np.empty((T, W_y.shape[0], B), dt)
    loss = 0.0
    for t in range(T):
        if t:
            Z[t, :n_h] = H[t - 1]
        g = G[t]
        np.matmul(W_s, Z[t], out=g)
        g += b_s
        _sigmoid_(g[:3 * n_h])
        np.tanh(g[3 * n_h:], out=g[3 * n_h:])
        np.multiply(g[:n_h], Cs[t], out=Cs[t + 1])
        Cs[t + 1] += g[n_h:2 * n_h] * g[3 * n_h:]
        np.tanh(Cs[t + 1], out=TC[t])
        np.multiply(g[2 * n_h:3 * n_h], TC[t], out=H[t])
        P[t], log_p = _log_softmax_columns(W_y @ H[t] + b_y)
        loss -= float(np.vdot(rs[t], log_p))
    dY, dG = P - rs, np.empty_like(G)  # dY: r a distribution
    dW_s, dW_y = np.zeros_like(W_s), np.zeros_like(W_y)
    dh_next, dc_next = np.zeros((n_h, B), dt), np.zeros((n_h, B), dt)
    for t in reversed(range(T)):
        f, i, o, g = (G[t, k * n_h:(k + 1) * n_h] for k in range(4))
        dW_y += dY[t] @ H[t].T
        dh = W_y.T @ dY[t] + dh_next
        dc = dh * o * (1.0 - TC[t] * TC[t]) + dc_next
        dG[t, :n_h] = dc * Cs[t] * f * (1.0 - f)
        dG[t, n_h:2 * n_h] = dc * g * i * (1.0 - i)
        dG[t, 2 * n_h:3 * n_h] = dh * TC[t] * o * (1.0 - o)
        dG[t, 3 * n_h:] = dc * i * (1.0 - g * g)
        dW_s += dG[t] @ Z[t].T
        dh_next = W_s[:, :n_h].T @ dG[t]
        dc_next = dc * f
    db_s = dG.sum(axis=(0, 2))
    grads = {}
    for k, gate in enumerate(LSTM_GATES):
        grads[f"W_{gate}"] = dW_s[k * n_h:(k + 1) * n_h]
        grads[f"b_{gate}"] = db_s[k * n_h:(k + 1) * n_h]
    grads["W_y"], grads["b_y"] = dW_y, dY.sum(axis=(0, 2))
    return dt(loss), grads
