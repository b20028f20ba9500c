"""The seed RNN and the LSTM tagger written by hand in JAX, for benchmarks/jax_speed.py: the forward pass only,
differentiated by JAX (``jax.jit(jax.value_and_grad(...))``).

The layout is the generated JAX module's (time first, batch second: a step is a row block (B, n)); parameters
keep the model's shapes. Written the way JAX code is written for speed: only the recurrence inside
``jax.lax.scan``, every layer off it on all T·B rows at once, and the LSTM's four gates as one matrix per step.
"""

import jax
import jax.numpy as jnp


def _rows(a):
    """(T, n) or (T, B, n) → (T, B, n)."""
    return a[:, None, :] if a.ndim == 2 else a


def _cross_entropy(logits, r):
    return -jnp.sum(r * jax.nn.log_softmax(logits, axis=-1))


def seed_rnn_loss(p, x, r):
    """L = −Σ_t r_tᵀ log softmax(W_out σ(W σ(h_t) …)), h_t = σ(U σ(W_in x_t + b_in) + V h_{t−1} + b_h), h_0 = 0."""
    x, r = _rows(x), _rows(r)
    a_in = jax.nn.sigmoid(x @ p["W_in"].T + p["b_in"])
    y_h = a_in @ p["U"].T + p["b_h"]  # the part of y_{h,t} off the recurrence

    def step(h, y):
        h = jax.nn.sigmoid(y + h @ p["V"].T)
        return h, h

    h0 = jnp.zeros((x.shape[1], p["V"].shape[0]), x.dtype)
    _, h = jax.lax.scan(step, h0, y_h)
    o = jax.nn.sigmoid(h @ p["W"].T + p["b_o"])
    return _cross_entropy(o @ p["W_out"].T + p["b_out"], r)


def lstm_loss(p, x, r):
    """The LSTM tagger: z_t = [h_{t−1}; x_t], gates σ(W z_t + b), c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t)."""
    x, r = _rows(x), _rows(r)
    n_h = p["b_f"].shape[0]
    W = jnp.concatenate([p["W_f"], p["W_i"], p["W_o"], p["W_g"]])  # (4 n_h, n_h + n_x)
    b = jnp.concatenate([p["b_f"], p["b_i"], p["b_o"], p["b_g"]])
    W_h, W_x = W[:, :n_h], W[:, n_h:]
    pre = x @ W_x.T + b  # the input part of every gate, for all steps at once

    def step(carry, y):
        h, c = carry
        y = y + h @ W_h.T
        f = jax.nn.sigmoid(y[:, :n_h])
        i = jax.nn.sigmoid(y[:, n_h:2 * n_h])
        o = jax.nn.sigmoid(y[:, 2 * n_h:3 * n_h])
        g = jnp.tanh(y[:, 3 * n_h:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((x.shape[1], n_h), x.dtype)
    _, h = jax.lax.scan(step, (zeros, zeros), pre)
    return _cross_entropy(h @ p["W_y"].T + p["b_y"], r)


LOSSES = {"seed_rnn": seed_rnn_loss, "lstm_tagger": lstm_loss}
