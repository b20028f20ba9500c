"""An RNN with layer normalisation of its pre-activation, BPTT written out by hand:
a_t = W x_t + U h_{t−1} + b, e_t = a_t − mean(a_t), s_t = mean(e_t²),
h_t = tanh(g ⊙ e_t / √(s_t + ε) + c), ŷ_t = V h_t, L = Σ_t ½ ‖ŷ_t − y_t‖²."""

import numpy as np

from ._matrix import summed

EPS = 1e-5


def one(params, x, y):
    W, U, b, g, c, V = (params[k] for k in ("W", "U", "b", "g", "c", "V"))
    T, n = x.shape[0], U.shape[0]
    h = [np.zeros(n)]
    cache = []
    loss = 0.0
    for t in range(T):
        a = W @ x[t] + U @ h[-1] + b
        e = a - a.mean()
        s = np.mean(e ** 2)
        r = 1 / np.sqrt(s + EPS)
        ht = np.tanh(g * e * r + c)
        yh = V @ ht
        loss += 0.5 * np.sum((yh - y[t]) ** 2)
        cache.append((e, r, ht, yh))
        h.append(ht)
    grads = {k: np.zeros_like(params[k]) for k in params}
    dh_next = np.zeros(n)
    for t in reversed(range(T)):
        e, r, ht, yh = cache[t]
        dyh = yh - y[t]
        grads["V"] += np.outer(dyh, ht)
        dh = V.T @ dyh + dh_next
        du = dh * (1 - ht ** 2)
        grads["c"] += du
        grads["g"] += du * e * r
        dn = du * g  # n = e r, the normalised vector
        # n = e / √(mean(e²) + ε): ∂/∂e of it applied to dn, then e = a − mean(a)
        de = r * dn - r ** 3 * e * np.mean(dn * e)
        da = de - de.mean()
        grads["W"] += np.outer(da, x[t])
        grads["U"] += np.outer(da, h[t])
        grads["b"] += da
        dh_next = U.T @ da
    return loss, grads


loss_and_grads = summed(one, {"x": 2, "y": 2})
