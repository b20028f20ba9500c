"""The NumPy spelling of elementwise functions belongs to the code generator, not to the operations.

A function the spelling table does not know is printed from its meaning (``record.scalar``) by
SymPy's NumPy printer; one SymPy function NumPy lacks (erf) becomes the module's own helper
``_erf``, defined only where it is called.  Checked here with throwaway records registered for
one test: the generated module against a NumPy reference written from the equations, and its
gradients against central differences of its own loss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import symderiv
from symderiv.codegen.numpy.spelling import NUMPY, call, call_out, has_out
from symderiv.ops import Elementwise, register, unregister
from symderiv.render.emit import render

from .helpers import EXAMPLES, generated_module

MODEL = """model fallback
dim n_x, n_h, n_y
time t = 1..T
input x[t]: n_x
target y[t]: n_y
param W: (n_h, n_x)
param U: (n_h, n_h)
param b: n_h
param V: (n_y, n_h)
state h[0] = 0
h[t] = softsign(W @ x[t] + U @ h[t-1] + b)
e[t] = erfish(V @ h[t])
loss L = Sum(squared_error(y[t], e[t]), (t, 1, T))
"""


def _record(name, scalar, public=True):
    # A record with no NumPy spelling: the code generator must print it from its meaning.
    return Elementwise(name, scalar, rf"\operatorname{{{name}}}", name, public=public)


@pytest.fixture
def throwaway_functions():
    """softsign z/(1 + |z|) and erf, with their derivatives as helper records (matched by SymPy)."""
    records = [
        _record("softsign", lambda z: z / (1 + sp.Abs(z))),
        _record("softsign_d", lambda z: 1 / (1 + sp.Abs(z)) ** 2, public=False),
        _record("erfish", sp.erf),
        _record("gauss", lambda z: 2 * sp.exp(-z ** 2) / sp.sqrt(sp.pi), public=False),
    ]
    for r in records:
        register(r)
    try:
        yield
    finally:
        for r in records:
            unregister(r)


def _reference_loss(params, x, y):
    """The model's loss written from its equations, in plain NumPy (one example, (T, n) data)."""
    W, U, b, V = (params[k] for k in "WUbV")
    h = np.zeros(W.shape[0])
    total = 0.0
    for t in range(x.shape[0]):
        z = W @ x[t] + U @ h + b
        h = z / (1 + np.abs(z))
        e = np.array([math.erf(v) for v in V @ h])
        total += 0.5 * np.sum((y[t] - e) ** 2)
    return total


def test_the_table_spells_the_functions_of_today():
    assert call("tanh", "a + b") == ("np.tanh(a + b)", frozenset())
    assert call_out("sigmoid", "z[i]", "h[i]") == "_sigmoid(z[i], out=h[i])"
    assert not has_out("log") and call_out("log", "p", "q") is None
    assert set(NUMPY) == {"sigmoid", "tanh", "relu", "softplus", "exp", "log", "step"}


def test_a_function_without_an_entry_is_printed_from_its_meaning(throwaway_functions):
    text, helpers = call("softsign", "a + b")
    assert helpers == frozenset()
    a, b = np.array([-3.0, 0.5]), np.array([1.0, 2.0])
    np.testing.assert_allclose(eval(text, {"np": np, "a": a, "b": b}), (a + b) / (1 + np.abs(a + b)))
    text, helpers = call("erfish", "x")
    assert helpers == {"_erf"} and text == "_erf(x)"
    assert not has_out("softsign")  # no in-place form: the plan assigns a new array


def test_fallback_module_matches_the_equations_and_central_differences(throwaway_functions, tmp_path):
    d = symderiv.derive(symderiv.parse(MODEL, "fallback.sdm"))
    code = render(d, "py", "fallback.sdm")
    assert "def _erf" in code or "import erf as _erf" in code  # defined, since it is called
    m = generated_module(d, tmp_path)
    params = m.init_params({"n_x": 3, "n_h": 4, "n_y": 2}, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    loss, grads = m.loss_and_gradients(params, x=x, y=y)
    assert loss == pytest.approx(_reference_loss(params, x, y), rel=1e-12)
    eps = 1e-6
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            plus, minus = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (m.loss(plus, x=x, y=y) - m.loss(minus, x=x, y=y)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_erf_helper_is_defined_only_where_it_is_called():
    d = symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))
    assert "_erf" not in render(d, "py", "seed_rnn.sdm")


def test_the_erf_helper_without_scipy_gives_the_same_values(throwaway_functions, tmp_path, monkeypatch):
    """The standard library's erf, entry by entry, when SciPy cannot be imported."""
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("no scipy here")
        return real_import(name, *args, **kwargs)

    d = symderiv.derive(symderiv.parse(MODEL, "fallback.sdm"))
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    m = generated_module(d, tmp_path)
    monkeypatch.setattr(builtins, "__import__", real_import)
    z = np.linspace(-3, 3, 13)
    np.testing.assert_array_equal(m._erf(z), [math.erf(v) for v in z])
    assert m._erf(z.astype(np.float32)).dtype == np.float32
