"""Wrong gradients found by trying real models (issues 12 and 16), each against an answer
written here from the equations in NumPy (or central differences of such a reference), never
against symderiv's own output:

- a constant adjoint without its time and batch axes (∂L/∂b of sum(tanh(W x) + b) was 1, not
  B 1; Σ_t 1ᵀh_t and 1ᵀ W x raised at run time);
- a weight penalty on a non-square matrix (W ⊙ 1 1ᵀ: a broadcast error, a traceback in check);
- the batch rule: a penalty counts once per call, in the loss as in the gradients;
- forward() of a value that reads no data (s = exp(ρ));
- a softmax classifier without time: δz = p − y.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symderiv
from symderiv.check import numcheck
from symderiv.check.numcheck import finite_difference_check
from symderiv.cli import main
from symderiv.ir.batch import split_loss

from .helpers import EXAMPLES, generated_module

B = 5


def module(text, tmp_path):
    d = symderiv.derive(symderiv.parse(text, "x.sdm"))
    return d, generated_module(d, tmp_path)


def central(f, value, eps=1e-6):
    """Central differences of the scalar function ``f`` at the array ``value``."""
    value = np.asarray(value, dtype=float)
    out = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[idx] += eps
        minus[idx] -= eps
        out[idx] = (f(plus) - f(minus)) / (2 * eps)
    return out


def check_exit(tmp_path, text, capsys):
    path = tmp_path / (text.split()[1] + ".sdm")
    path.write_text(text, encoding="utf-8")
    status = main(["check", str(path)])
    out = capsys.readouterr().out
    return status, out


# --- 1. constant adjoints ----------------------------------------------------------------

CONSTANT_BIAS = """model constant_bias
dim n, m
input x: m
param W: (n, m)
param b: n
loss L = sum(tanh(W @ x) + b)
"""


def test_a_constant_gradient_counts_every_example(tmp_path):
    """∂/∂b Σ_b 1ᵀ(tanh(W x_b) + b) = B 1: the module returned [1, 1, 1]."""
    _, m = module(CONSTANT_BIAS, tmp_path)
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 2)), rng.normal(size=3)
    X = rng.normal(size=(2, B))  # B examples, the batch last
    loss, g = m.loss_and_gradients({"W": W, "b": b}, x=X)
    Z = np.tanh(W @ X)  # (n, B)
    assert np.isclose(loss, (Z + b[:, None]).sum(), rtol=1e-13)
    assert np.allclose(g["b"], [B, B, B], rtol=1e-14)
    assert np.allclose(g["W"], (1 - Z ** 2) @ X.T, rtol=1e-12)
    one = m.gradients({"W": W, "b": b}, x=X[:, 0])
    assert np.allclose(one["b"], [1, 1, 1]) and np.allclose(one["W"], np.outer(1 - Z[:, 0] ** 2, X[:, 0]))


SUM_OF_STATES = """model sum_of_states
dim n_x, n_h
time t = 1..T
input x[t]: n_x
param W: (n_h, n_x)
param V: (n_h, n_h)
state h[0] = 0
h[t] = tanh(W @ x[t] + V @ h[t-1])
loss L = Sum(sum(h[t]), (t, 1, T))
"""


def rnn_loss(W, V, X):
    """Σ_t 1ᵀ h_t with h_t = tanh(W x_t + V h_{t−1}), h_0 = 0; X is (T, n_x) or (T, n_x, B)."""
    h = np.zeros((V.shape[0],) + X.shape[2:])
    total = 0.0
    for x in X:
        h = np.tanh(W @ x + V @ h)
        total += h.sum()
    return total


@pytest.mark.parametrize("batch", [None, B])
def test_a_constant_adjoint_of_a_sequence_has_every_step(tmp_path, batch):
    """δh_t = 1 + Vᵀ(...): the constant term was one row for all steps (IndexError at run time)."""
    _, m = module(SUM_OF_STATES, tmp_path)
    rng = np.random.default_rng(1)
    W, V = rng.normal(size=(3, 2)), 0.5 * rng.normal(size=(3, 3))
    X = rng.normal(size=(4, 2) + (() if batch is None else (batch,)))
    loss, g = m.loss_and_gradients({"W": W, "V": V}, x=X)
    assert np.isclose(loss, rnn_loss(W, V, X), rtol=1e-12)
    assert np.allclose(g["W"], central(lambda w: rnn_loss(w, V, X), W), rtol=1e-7, atol=1e-9)
    assert np.allclose(g["V"], central(lambda v: rnn_loss(W, v, X), V), rtol=1e-7, atol=1e-9)


SUM_OF_PRODUCT = """model sum_of_product
dim n, m
input x: m
param W: (n, m)
loss L = sum(W @ x)
"""


def test_the_gradient_of_a_sum_of_a_product_is_summed_over_examples(tmp_path):
    """∂/∂W Σ_b 1ᵀ W x_b = Σ_b 1 x_bᵀ: a ValueError at run time before."""
    _, m = module(SUM_OF_PRODUCT, tmp_path)
    rng = np.random.default_rng(2)
    W, X = rng.normal(size=(3, 2)), rng.normal(size=(2, B))
    loss, g = m.loss_and_gradients({"W": W}, x=X)
    assert np.isclose(loss, (W @ X).sum(), rtol=1e-13)
    assert np.allclose(g["W"], np.ones((3, 1)) @ X.sum(axis=1, keepdims=True).T, rtol=1e-13)
    assert np.allclose(m.gradients({"W": W}, x=X[:, 1])["W"], np.outer(np.ones(3), X[:, 1]), rtol=1e-13)


@pytest.mark.parametrize("text", [CONSTANT_BIAS, SUM_OF_STATES, SUM_OF_PRODUCT])
def test_constant_adjoints_pass_check(tmp_path, capsys, text):
    status, out = check_exit(tmp_path, text, capsys)
    assert status == 0, out
    assert "all agree" in out


# --- 2. a weight penalty on a non-square matrix --------------------------------------------

PENALTY = """model penalty
dim n_y, n_x
input x: n_x
target y: n_y
param W: (n_y, n_x)
loss L = squared_error(y, W @ x) + 0.5 * sum(W * W)
"""

WEIGHTED = """model weighted
dim n_y, n_x
input x: n_x
input lam: scalar
target y: n_y
param W: (n_y, n_x)
loss L = squared_error(y, W @ x) + 0.5 * lam * sum(W * W)
"""

NAMED_PENALTY = """model named_penalty
dim n_y, n_x
input x: n_x
target y: n_y
param W: (n_y, n_x)
pen = 0.5 * sum(W * W)
loss L = squared_error(y, W @ x) + pen
"""


def penalty_reference(W, X, Y, lam=1.0):
    """Σ_b ½‖W x_b − y_b‖² + λ/2 ‖W‖²_F (the penalty once) and its gradient Σ_b r_b x_bᵀ + λ W."""
    R = W @ X - Y
    return 0.5 * (R * R).sum() + 0.5 * lam * (W * W).sum(), R @ X.T + lam * W


@pytest.mark.parametrize("text, lam", [(PENALTY, None), (WEIGHTED, 0.3), (NAMED_PENALTY, None)])
@pytest.mark.parametrize("batch", [None, B])
def test_a_penalty_on_a_non_square_matrix(tmp_path, text, lam, batch):
    _, m = module(text, tmp_path)
    rng = np.random.default_rng(3)
    W = rng.normal(size=(2, 3))  # n_y = 2, n_x = 3: not square
    tail = () if batch is None else (batch,)
    X, Y = rng.normal(size=(3,) + tail), rng.normal(size=(2,) + tail)
    data = {"x": X, "y": Y} if lam is None else {"x": X, "y": Y, "lam": lam}
    loss, g = m.loss_and_gradients({"W": W}, **data)
    want_loss, want_g = penalty_reference(W, X.reshape(3, -1), Y.reshape(2, -1), 1.0 if lam is None else lam)
    assert np.isclose(loss, want_loss, rtol=1e-13)
    assert np.isclose(m.loss({"W": W}, **data), want_loss, rtol=1e-13)
    assert np.allclose(g["W"], want_g, rtol=1e-12)
    assert np.allclose(m.gradients({"W": W}, **data)["W"], want_g, rtol=1e-12)


@pytest.mark.parametrize("text", [PENALTY, WEIGHTED, NAMED_PENALTY])
def test_a_penalty_passes_check(tmp_path, capsys, text):
    status, out = check_exit(tmp_path, text, capsys)
    assert status == 0, out
    assert "Traceback" not in out and "all agree" in out


def test_the_write_up_of_a_penalty_is_w(tmp_path, capsys):
    """∂/∂W ½ 1ᵀ(W ⊙ W)1 is W, not W ⊙ 1 1ᵀ."""
    d = symderiv.derive(symderiv.parse(PENALTY, "penalty.sdm"))
    W = d.model["W"].symbol
    g = d.gradient("W")
    assert isinstance(g, sp.MatAdd) and W in g.args  # (W x − y) xᵀ + W
    assert not any(isinstance(a, (sp.HadamardProduct, sp.OneMatrix)) for a in sp.preorder_traversal(g))
    path = tmp_path / "penalty.sdm"
    path.write_text(PENALTY, encoding="utf-8")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "∂L/∂W = (W x − y) xᵀ + W\n" in out and "1 1ᵀ" not in out


def test_a_column_of_ones_times_a_row_is_an_outer_product(tmp_path):
    """1 1ᵀ printed by the NumPy printer: an (n, m) matrix, not an elementwise product of (n,) and (m,)."""
    from symderiv.codegen.plan import ModulePlan

    d = symderiv.derive(symderiv.parse(PENALTY, "penalty.sdm"))
    plan = ModulePlan(d, lambda lhs, rhs, label=None: "", str)
    n_y, n_x = d.model.dims["n_y"], d.model.dims["n_x"]
    b = sp.MatrixSymbol("W", n_y, n_x)
    e = sp.HadamardProduct(b, sp.MatMul(sp.OneMatrix(n_y, 1), sp.OneMatrix(1, n_x)))
    code = plan.printer.code(e).text
    W = np.arange(6.0).reshape(2, 3)
    value = eval(code, {"np": np, "dtype": np.float64, "W": W, "n_y": 2, "n_x": 3})  # our own printed code
    assert np.array_equal(value, W)


# --- 3. the batch rule --------------------------------------------------------------------

SHARED_SCALE = """model shared_scale
dim n
input x: n
target y: n
param W: (n, n)
param rho: scalar
s = exp(rho)
loss L = squared_error(y, s * (W @ x)) + s
"""


def test_a_quantity_read_by_both_kinds_of_terms(tmp_path):
    """s = exp(ρ) read by the data term and by a term of its own: ∂/∂ρ = s (Σ_b r_bᵀ W x_b + 1)."""
    _, m = module(SHARED_SCALE, tmp_path)
    rng = np.random.default_rng(4)
    W, rho = rng.normal(size=(3, 3)), 0.2
    X, Y = rng.normal(size=(3, B)), rng.normal(size=(3, B))
    s = np.exp(rho)

    def batch_loss(W, rho):
        R = np.exp(rho) * (W @ X) - Y
        return 0.5 * (R * R).sum() + np.exp(rho)

    loss, g = m.loss_and_gradients({"W": W, "rho": rho}, x=X, y=Y)
    R = s * (W @ X) - Y
    assert np.isclose(loss, batch_loss(W, rho), rtol=1e-13)
    assert np.isclose(g["rho"], s * ((R * (W @ X)).sum() + 1), rtol=1e-12)
    assert np.allclose(g["W"], s * R @ X.T, rtol=1e-12)
    assert np.isclose(g["rho"], central(lambda r: batch_loss(W, r[()]), np.asarray(rho)), rtol=1e-7)


@pytest.mark.parametrize("text", [PENALTY, WEIGHTED, NAMED_PENALTY, SHARED_SCALE])
def test_loss_and_gradients_agree_batched(tmp_path, text):
    """Central differences of the batched loss are the batched gradients (the penalty once in both)."""
    _, m = module(text, tmp_path)
    rng = np.random.default_rng(5)
    n = {"n": 3, "n_y": 2, "n_x": 3}
    dims = {k: v for k, v in n.items() if k in m.DIMS}
    params = m.init_params(dims, seed=1)
    data = {k: 0.3 if size == "scalar" else rng.normal(size=(dims[size], B)) for k, (_, size) in m.INPUTS.items()}
    grads = m.gradients(params, **data)
    for name, value in params.items():
        fd = central(lambda v, name=name: m.loss({**params, name: v}, **data), value)
        assert np.allclose(grads[name], fd, rtol=1e-7, atol=1e-8), name


def test_the_terms_of_the_batch_rule():
    """A term reads data through the quantities it reads; a scalar input is not data of an example."""
    each, once = split_loss(symderiv.parse(WEIGHTED, "x.sdm"))
    assert len(each) == 1 and len(once) == 1 and "lam" in str(once[0])
    each, once = split_loss(symderiv.parse(CONSTANT_BIAS, "x.sdm"))
    assert len(each) == 1 and not once  # sum(tanh(W x) + b) is one term: it reads x
    each, once = split_loss(symderiv.parse(NAMED_PENALTY, "x.sdm"))
    assert [str(t) for t in once] == ["pen"]


def test_check_tests_the_batch_rule(monkeypatch):
    """A module whose loss and gradients both count the penalty once per example agrees with itself
    (central differences pass); check's batch against the sum of its examples catches it."""
    d = symderiv.derive(symderiv.parse(PENALTY, "penalty.sdm"))
    real = numcheck.load_generated(d)

    def batch_of(data):
        x = np.asarray(data["x"])
        return x.shape[-1] if x.ndim == 2 else 1

    class PerExample:
        """The penalty ½‖W‖² counted B times, in the loss and in the gradient alike."""

        def __getattr__(self, name):
            return getattr(real, name)

        def loss(self, params, /, **data):
            return real.loss(params, **data) + (batch_of(data) - 1) * 0.5 * (params["W"] ** 2).sum()

        def gradients(self, params, /, **data):
            return {"W": real.gradients(params, **data)["W"] + (batch_of(data) - 1) * params["W"]}

        def loss_and_gradients(self, params, /, **data):
            return self.loss(params, **data), self.gradients(params, **data)

    assert finite_difference_check(d, {"n_y": 2, "n_x": 3}, None).ok
    monkeypatch.setattr(numcheck, "load_generated", lambda _d: PerExample())
    result = finite_difference_check(d, {"n_y": 2, "n_x": 3}, None)
    assert not result.ok
    assert any("loss (batched) against the sum over its examples" in p for p in result.problems)
    assert any("gradient 'W' (batched) against the sum over its examples" in p for p in result.problems)


# --- 4. forward() of values that read no data ----------------------------------------------

STATIC_VALUES = """model static_values
dim n
input x: n
target y: n
param rho: scalar
param c: n
param W: (n, n)
s = exp(rho)
v = tanh(c)
yhat = s * (W @ x) + v
loss L = squared_error(y, yhat)
"""


@pytest.mark.parametrize("batch", [None, B])
def test_forward_returns_values_that_read_no_data(tmp_path, batch):
    _, m = module(STATIC_VALUES, tmp_path)
    rng = np.random.default_rng(6)
    params = {"rho": 0.3, "c": rng.normal(size=3), "W": rng.normal(size=(3, 3))}
    tail = () if batch is None else (batch,)
    X, Y = rng.normal(size=(3,) + tail), rng.normal(size=(3,) + tail)
    values = m.forward(params, x=X, y=Y)
    assert np.shape(values["s"]) == () and np.isclose(values["s"], np.exp(0.3), rtol=1e-15)
    assert np.allclose(values["v"], np.tanh(params["c"]), rtol=1e-15)  # (n,): shared by every example
    yhat = np.exp(0.3) * (params["W"] @ X) + (np.tanh(params["c"]) if batch is None else np.tanh(params["c"])[:, None])
    assert np.allclose(values["yhat"], yhat, rtol=1e-13)
    r = yhat - Y
    assert np.allclose(values["L"], 0.5 * (r * r).sum(axis=0), rtol=1e-13)


# --- 5. a softmax classifier without time ---------------------------------------------------

SOFTMAX_CLASSIFIER = """model softmax_classifier
dim n_x, n_h, K
input x: n_x
target y: K, distribution
param W1: (n_h, n_x)
param b1: n_h
param W2: (K, n_h)
param b2: K
h = tanh(W1 @ x + b1)
z2 = W2 @ h + b2
p = softmax(z2)
loss L = cross_entropy(y, p)
"""


def test_a_softmax_classifier_fuses_to_p_minus_y(tmp_path):
    d = symderiv.derive(symderiv.parse(SOFTMAX_CLASSIFIER, "softmax_classifier.sdm"))
    p, y = d.model["p"].symbol, d.model["y"].symbol
    assert d.adjoint("z2") == p - y
    from symderiv.render.emit import render

    md = render(d, "md", "softmax_classifier.sdm")
    tex = render(d, "tex", "softmax_classifier.sdm")
    for text in (md, tex):  # δz2 = … = p − y, where it was p 1ᵀ y − y
        assert r"= \mathbf{p} - \mathbf{y}" in text
        assert r"{\mathbf{1}}^{\top} \mathbf{y}" not in text and r"\mathbf{1}^{\top} \mathbf{y}" not in text


@pytest.mark.parametrize("batch", [None, B])
def test_a_softmax_classifier_module_matches_numpy(tmp_path, batch):
    _, m = module(SOFTMAX_CLASSIFIER, tmp_path)
    rng = np.random.default_rng(7)
    params = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=4),
              "W2": rng.normal(size=(3, 4)), "b2": rng.normal(size=3)}
    n = 1 if batch is None else batch
    X = rng.normal(size=(3, n))
    Y = np.eye(3)[:, rng.integers(0, 3, n)]
    H = np.tanh(params["W1"] @ X + params["b1"][:, None])
    Z = params["W2"] @ H + params["b2"][:, None]
    P = np.exp(Z - Z.max(axis=0)) / np.exp(Z - Z.max(axis=0)).sum(axis=0)
    dZ = P - Y
    dA = (1 - H ** 2) * (params["W2"].T @ dZ)
    want = {"W1": dA @ X.T, "b1": dA.sum(axis=1), "W2": dZ @ H.T, "b2": dZ.sum(axis=1)}
    data = {"x": X[:, 0], "y": Y[:, 0]} if batch is None else {"x": X, "y": Y}
    loss, g = m.loss_and_gradients(params, **data)
    assert np.isclose(loss, -(Y * np.log(P)).sum(), rtol=1e-12)
    for name, value in want.items():
        assert np.allclose(g[name], value, rtol=1e-11, atol=1e-13), name


RNN_PENALTY = """model rnn_penalty
dim n_x, n_h
time t = 1..T
input x[t]: n_x
input lam: scalar
param W: (n_h, n_x)
param V: (n_h, n_h)
state h[0] = 0
h[t] = tanh(W @ x[t] + V @ h[t-1])
loss L = Sum(sum(h[t]), (t, 1, T)) + lam * sum(V * V)
"""


@pytest.mark.parametrize("batch", [None, B])
def test_a_penalty_beside_a_recurrence(tmp_path, batch):
    """The penalty's own derivation must not sweep the recurrence it does not read (it raised
    'no closed form without adjoints'); its gradient 2 λ V is added once."""
    _, m = module(RNN_PENALTY, tmp_path)
    rng = np.random.default_rng(8)
    W, V, lam = rng.normal(size=(3, 2)), 0.5 * rng.normal(size=(3, 3)), 0.25
    X = rng.normal(size=(4, 2) + (() if batch is None else (batch,)))

    def batch_loss(W, V):
        return rnn_loss(W, V, X) + lam * (V * V).sum()

    loss, g = m.loss_and_gradients({"W": W, "V": V}, x=X, lam=lam)
    assert np.isclose(loss, batch_loss(W, V), rtol=1e-12)
    assert np.allclose(g["W"], central(lambda w: batch_loss(w, V), W), rtol=1e-7, atol=1e-9)
    assert np.allclose(g["V"], central(lambda v: batch_loss(W, v), V), rtol=1e-7, atol=1e-9)


def test_an_lstm_with_a_penalty_on_a_stacked_gate_passes_check(tmp_path, capsys):
    text = (EXAMPLES / "lstm_tagger.sdm").read_text(encoding="utf-8").replace(
        "loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))",
        "loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T)) + 0.01 * sum(W_f * W_f) + sum(b_y * b_y)")
    assert "0.01 * sum(W_f * W_f)" in text
    status, out = check_exit(tmp_path, text, capsys)
    assert status == 0, out


SQUARED_BIAS = """model squared_bias
dim n, m
input x: m
param W: (n, m)
param b: n
s = b * b
loss L = sum(tanh(W @ x) + b + s)
"""


def test_a_constant_beside_an_adjoint_of_a_value_that_reads_no_data(tmp_path):
    """∂L/∂b = 1 + 2 δs ⊙ b, δs (s reads no data) being the batch's total B 1: the constant 1 is
    one per example too, B in all; the gradient is B (1 + 2 b)."""
    _, m = module(SQUARED_BIAS, tmp_path)
    rng = np.random.default_rng(9)
    W, b, X = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=(2, B))
    loss, g = m.loss_and_gradients({"W": W, "b": b}, x=X)
    assert np.isclose(loss, np.tanh(W @ X).sum() + B * (b + b * b).sum(), rtol=1e-13)
    assert np.allclose(g["b"], B * (1 + 2 * b), rtol=1e-13)


INITIAL_STATE = """model initial_state
dim n_x, n_h
time t = 1..T
input x[t]: n_x
param W: (n_h, n_x)
param V: (n_h, n_h)
param h0: n_h
state h[0] = h0
h[t] = tanh(W @ x[t] + V @ h[t-1])
loss L = Sum(sum(h[t-1]), (t, 1, T))
"""


@pytest.mark.parametrize("batch", [None, B])
def test_a_constant_through_an_initial_state(tmp_path, batch):
    """∂L/∂h0 = 1 + Vᵀ δy_{h,1}: the 1 (the loss reads h_0) is one per example."""
    _, m = module(INITIAL_STATE, tmp_path)
    rng = np.random.default_rng(10)
    W, V, h0 = rng.normal(size=(3, 2)), 0.5 * rng.normal(size=(3, 3)), rng.normal(size=3)
    X = rng.normal(size=(4, 2) + (() if batch is None else (batch,)))

    def batch_loss(W, V, h0):  # Σ_t 1ᵀ h_{t−1}, summed over the examples
        h = np.broadcast_to(h0.reshape((3,) + (1,) * (X.ndim - 2)), (3,) + X.shape[2:])
        total = 0.0
        for x in X:
            total += h.sum()
            h = np.tanh(W @ x + V @ h)
        return total

    loss, g = m.loss_and_gradients({"W": W, "V": V, "h0": h0}, x=X)
    assert np.isclose(loss, batch_loss(W, V, h0), rtol=1e-12)
    assert np.allclose(g["h0"], central(lambda v: batch_loss(W, V, v), h0), rtol=1e-7, atol=1e-9)
    assert np.allclose(g["V"], central(lambda v: batch_loss(W, v, h0), V), rtol=1e-7, atol=1e-9)
