"""log(exp(u) + 1) is read as softplus(u) (ops.apply_function): the same value, computed without
exp(u), which overflows past u ≈ 709, and with the derivative σ(u) rather than exp(u) ⊘ (exp(u) + 1),
inf / inf there.  The matrixcalculus.org example ``sum(log(exp(-y.*(X*w)) + vector(1)))`` is the
case in examples/ (mc_logistic_sum.sdm); every back end's module of it is held here to an
independent answer in 50 digits at margins of ±1000."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

import symderiv
from symderiv.ir.expr import Apply

from .helpers import EXAMPLES, GENERATED, import_generated

HEAD = """\
dim n, m
input x: n
target y: m
param W: (m, n)
"""


def _functions(e: sp.Basic) -> set[str]:
    return {a.fname for a in sp.preorder_traversal(e) if isinstance(a, Apply)}


@pytest.mark.parametrize("written", ["log(exp(W @ x) + 1)", "log(1 + exp(W @ x))"])
def test_the_log_of_one_plus_an_exponential_is_softplus(written):
    model = symderiv.parse(HEAD + f"u = {written}\nloss L = squared_error(y, u)\n", "m.sdm")
    assert model["u"].expr == Apply("softplus", sp.MatMul(model["W"].symbol, model["x"].symbol))
    d = symderiv.derive(model)
    delta = d.adjoint(d.preactivations["u"]).expr  # δz_u = (u − y) ⊙ σ(z_u)
    # softplus' = σ: no exponential left to overflow
    assert "sigmoid" in _functions(delta) and "exp" not in _functions(delta), delta


@pytest.mark.parametrize("written", ["log(exp(W @ x) + 2)", "log(exp(W @ x))", "log(exp(W @ x) + W @ x)",
                                     "log(2 * exp(W @ x) + 1)", "log(exp(W @ x) + 1 + W @ x)",
                                     "log(sigmoid(W @ x) + 1)"])
def test_other_logs_are_left_as_written(written):
    e = symderiv.parse(HEAD + f"u = {written}\nloss L = squared_error(y, u)\n", "m.sdm")["u"].expr
    assert isinstance(e, Apply) and e.fname == "log", e


def test_the_rewritten_model_certifies_and_reads_as_the_textbook():
    from symderiv.check.certify import certify

    model = symderiv.load(EXAMPLES / "mc_logistic_sum.sdm")
    assert str(symderiv.derive(model).gradient("w")) == "∂f/∂w = −Xᵀ (y ⊙ σ(−y ⊙ X w))"
    assert certify(model).ok


def _reference(X, y, w):
    """f = Σᵢ log(1 + exp(−yᵢ (X w)ᵢ)) and ∂f/∂w = −Xᵀ (y ⊙ exp(−m) ⊘ (1 + exp(−m))), m = y ⊙ X w, in 50 digits."""
    with mpmath.workdps(50):
        Xm, ym, wm = mpmath.matrix(X.tolist()), mpmath.matrix(y.tolist()), mpmath.matrix(w.tolist())
        z = Xm * wm
        f = mpmath.mpf(0)
        r = mpmath.matrix(len(y), 1)
        for i in range(len(y)):
            u = -ym[i] * z[i]
            f += mpmath.log(1 + mpmath.exp(u))
            r[i] = ym[i] * mpmath.exp(u) / (1 + mpmath.exp(u))
        g = -(Xm.T * r)
        return float(f), np.array([float(g[j]) for j in range(len(w))])


def _extreme_point():
    """Margins y ⊙ X w of ±1000 and more: exp(±1000) overflows float64 (and float32 far earlier)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 3))
    w = rng.normal(size=3)
    y = np.array([1.0, -1.0, 1.0, -1.0, 0.5])
    scale = 1500.0 / np.abs(X @ w).min()
    return X, y, w * scale


def _numpy(X, y, w):
    m = import_generated(GENERATED / "mc_logistic_sum.py", "softplus_numpy")
    with np.errstate(all="raise", under="ignore"):
        loss, grads = m.loss_and_gradients({"w": w}, X=X, y=y)
    return float(loss), np.asarray(grads["w"])


def _torch(X, y, w):
    torch = pytest.importorskip("torch")
    m = import_generated(GENERATED / "mc_logistic_sum_torch.py", "softplus_torch")
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in {"X": X, "y": y}.items()}
    loss, grads = m.loss_and_gradients({"w": torch.tensor(w, dtype=torch.float64)}, **t)
    return float(loss), grads["w"].numpy()


def _jax(X, y, w):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    m = import_generated(GENERATED / "mc_logistic_sum_jax.py", "softplus_jax")
    loss, grads = m.loss_and_gradients({"w": np.asarray(w)}, X=np.asarray(X), y=np.asarray(y))
    return float(loss), np.asarray(grads["w"])


@pytest.mark.parametrize("backend", [_numpy, _torch, _jax], ids=["numpy", "torch", "jax"])
def test_every_back_end_is_finite_and_right_at_margins_past_overflow(backend):
    X, y, w = _extreme_point()
    with np.errstate(over="ignore"):
        assert not np.all(np.isfinite(np.exp(-y * (X @ w))))  # the point is past exp's overflow
    ref_loss, ref_grad = _reference(X, y, w)
    loss, grad = backend(X, y, w)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12 * np.abs(ref_grad).max())
