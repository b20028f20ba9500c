"""The seed RNN and the LSTM tagger in JAX: ``jax.jit(jax.value_and_grad(loss))`` with ``lax.scan``.

Written from the equations of examples/seed_rnn.sdm and examples/lstm_tagger.sdm the way a JAX user writes them:
a step is a row block (B, n), the data (T, B, n); the layers that do not depend on the recurrence run on all T·B
rows at once, only the recurrence is in ``lax.scan``; the LSTM's four gates are one stacked matrix (so one product
per step serves them); the loss is ``log_softmax`` and cross-entropy summed over steps and examples. XLA compiles
the forward and the backward pass of ``value_and_grad`` into one program.

float64 needs ``jax.config.update("jax_enable_x64", True)`` before any array is made (``enable_x64()`` does it);
the arithmetic then runs in the dtype of the arrays passed in. Thread count: XLA reads ``XLA_FLAGS`` when it
starts (benchmarks/peers.py sets it per process).

``value_and_grad_fn(model)`` returns the jitted function ``f(params, x, r) -> (loss, grads)``; ``rows(a)`` turns
data in the generated modules' public layout, (T, n) or (T, n, B), into (T, B, n).
"""

import numpy as np


def enable_x64():
    import jax

    jax.config.update("jax_enable_x64", True)


def rows(a, dtype=np.float64):
    a = np.asarray(a, dtype)
    a = a[..., None] if a.ndim == 2 else a
    return np.ascontiguousarray(np.moveaxis(a, 1, 2))


def seed_rnn_loss(p, x, r):
    import jax
    import jax.numpy as jnp
    from jax import lax

    a = jax.nn.sigmoid(x @ p["W_in"].T + p["b_in"])
    pre = a @ p["U"].T + p["b_h"]
    V = p["V"]

    def step(h, u):
        h = jax.nn.sigmoid(u + h @ V.T)
        return h, h

    _, hs = lax.scan(step, jnp.zeros((x.shape[1], V.shape[0]), x.dtype), pre)
    o = jax.nn.sigmoid(hs @ p["W"].T + p["b_o"])
    log_p = jax.nn.log_softmax(o @ p["W_out"].T + p["b_out"], axis=-1)
    return -jnp.sum(r * log_p)


def lstm_loss(p, x, r):
    import jax
    import jax.numpy as jnp
    from jax import lax

    W = jnp.concatenate([p["W_f"], p["W_i"], p["W_o"], p["W_g"]])  # (4 n_h, n_h + n_x)
    b = jnp.concatenate([p["b_f"], p["b_i"], p["b_o"], p["b_g"]])
    n_h = p["W_f"].shape[0]
    W_h = W[:, :n_h]
    gx = x @ W[:, n_h:].T + b  # the x_t part of every gate, all steps at once

    def step(carry, gx_t):
        h, c = carry
        y = gx_t + h @ W_h.T
        f = jax.nn.sigmoid(y[:, :n_h])
        i = jax.nn.sigmoid(y[:, n_h:2 * n_h])
        o = jax.nn.sigmoid(y[:, 2 * n_h:3 * n_h])
        g = jnp.tanh(y[:, 3 * n_h:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zero = jnp.zeros((x.shape[1], n_h), x.dtype)
    _, hs = lax.scan(step, (zero, zero), gx)
    log_p = jax.nn.log_softmax(hs @ p["W_y"].T + p["b_y"], axis=-1)
    return -jnp.sum(r * log_p)


LOSSES = {"seed_rnn": seed_rnn_loss, "lstm_tagger": lstm_loss}


def value_and_grad_fn(model: str):
    import jax

    return jax.jit(jax.value_and_grad(LOSSES[model]))
