"""Version 2's time forms in the model language: fixed steps (h[T], h[1]), data at other
steps, recurrences backwards in time, initial states from expressions; and their errors,
each at its file:line:col with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import symderiv
from symderiv import ModelError
from symderiv.check.certify import certify
from symderiv.check.evaluate import evaluate, random_point
from symderiv.ir.expr import At, AtEnd, AtStep

from .helpers import ROOT

# Five lines; a case's own statements start at line 6 (as in test_language_errors).
PRE = """\
dim n_in, n_out
time t = 1..T
input x[t]: n_in
param W: (n_out, n_in)
param b: n_out
"""
LOSS = "loss L = Sum(sum(h[t]), (t, 1, T))\n"


def write(tmp_path, text: str, name: str = "bad.sdm"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def check(tmp_path, text: str, line: int, col: int, *words: str) -> ModelError:
    """The error is positioned at (line, col) of the file, and its message has every word."""
    path = write(tmp_path, text)
    with pytest.raises(ModelError) as info:
        symderiv.load(path)
    err = info.value
    assert err.pos is not None and err.pos.file == str(path), err.format()
    assert (err.pos.line, err.pos.col) == (line, col), err.format()
    assert err.format().startswith(f"{path}:{line}:{col}: error: {err.message}")
    for word in words:
        assert word.lower() in err.message.lower(), f"{word!r} not in: {err.format()}"
    return err

SEQ2ONE = PRE + """\
param U: (n_out, n_out)
state h[0] = 0
h[t] = tanh(W @ x[t] + U @ h[t-1])
"""


def _cli_status(tmp_path, text, line, col, *words):
    path = write(tmp_path, text)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "symderiv", "show", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{path}:{line}:{col}: error: "), proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ---------------------------------------------------------------------------------------
# Fixed steps


def test_fixed_steps_build_to_their_nodes():
    m = symderiv.parse(SEQ2ONE + "c = h[T] + h[T-1] + h[1] + W @ x[T]\nloss L = sum(c)\n", "m.sdm")
    h, x = m["h"].symbol, m["x"].symbol
    found = set(m["c"].expr.atoms(AtEnd, AtStep))
    assert found == {AtEnd(h, 0), AtEnd(h, -1), AtStep(h, 1), AtEnd(x, 0)}
    assert m.order.index("h") < m.order.index("c")  # read once the sequence is known


def test_a_fixed_step_is_certified():
    m = symderiv.parse(SEQ2ONE + "c = tanh(h[T] + h[T-1] * h[1])\nloss L = sum(c * c)\n", "m.sdm")
    for T in (2, 3):
        result = certify(m, T=T)
        assert result.ok, (result.param_errors, result.adjoint_errors)


def test_loss_of_the_last_state_by_hand():
    """L = Σ h_T with h_t = W x_t (no recurrence): ∂L/∂W = 1 x_Tᵀ, nothing from the other steps."""
    m = symderiv.parse(PRE + "h[t] = W @ x[t]\nloss L = sum(h[T])\n", "m.sdm")
    d = symderiv.derive(m)
    params, data = random_point(m, {"n_in": 3, "n_out": 2}, 4, seed=1)
    values = evaluate(d, {"n_in": 3, "n_out": 2}, 4, params, data)
    np.testing.assert_allclose(values.gradients["W"], np.ones((2, 1)) @ data["x"][3].reshape(1, 3))
    np.testing.assert_allclose(values.gradients["b"], np.zeros((2, 1)))
    assert values.loss == pytest.approx(float(np.sum(params["W"] @ data["x"][3].reshape(3, 1))))


@pytest.mark.parametrize("equation, line, col, words", [
    ("c = h[T+1]", 9, 5, ["beyond the sequence", "T+1", "1..T"]),
    ("c = h[0]", 9, 5, ["before the sequence", "1..T"]),
    ("c = x[T+2]", 9, 5, ["beyond the sequence", "T+2"]),
])
def test_a_step_outside_the_sequence(tmp_path, equation, line, col, words):
    text = SEQ2ONE + equation + "\nloss L = sum(c)\n"
    check(tmp_path, text, line, col, *words)
    _cli_status(tmp_path, text, line, col)


def test_a_fixed_step_in_a_per_step_equation(tmp_path):
    text = SEQ2ONE + "g[t] = h[t] + h[T]\nloss L = Sum(sum(g[t]), (t, 1, T))\n"
    check(tmp_path, text, 9, 15, "fixed step", "static equation", "c = h[T]")


def test_a_cycle_through_a_fixed_step(tmp_path):
    text = PRE + "c = h[T]\nh[t] = W @ x[t] + c\nloss L = sum(c)\n"
    check(tmp_path, text, 7, 19, "cycle")


# ---------------------------------------------------------------------------------------
# Data at other steps


CONV = PRE + """\
param A: (n_out, n_in)
param U: (n_out, n_out)
state h[0] = 0
h[t] = tanh(W @ x[t+2] + A @ x[t-1] + U @ h[t-1] + b)
c = x[T] + x[1]
loss L = Sum(sum(h[t] * h[t]), (t, 1, T)) + sum(tanh(W @ c))
"""


def _conv_reference(params, x):
    """CONV written out in NumPy: x is zero outside steps 1..T; one example, x of shape (T, n)."""
    W, A, U, b = (params[k] for k in "WAUb")
    T, n = x.shape
    padded = np.vstack([np.zeros((1, n)), x, np.zeros((2, n))])  # padded[s] is x at step s (0..T+2)
    h, total = np.zeros(W.shape[0]), 0.0
    for t in range(1, T + 1):
        h = np.tanh(W @ padded[t + 2] + A @ padded[t - 1] + U @ h + b)
        total += np.sum(h * h)
    return total + np.sum(np.tanh(W @ (x[-1] + x[0])))


def test_data_at_other_steps_needs_no_state():
    m = symderiv.parse(CONV, "conv.sdm")
    assert {node.offset for node in m["h"].expr.atoms(At) if node.base.name == "x"} == {2, -1}
    for T in (1, 2, 4):
        result = certify(m, T=T)
        assert result.ok, (T, result.param_errors, result.adjoint_errors)


@pytest.mark.parametrize("T", [1, 2, 7])
def test_data_at_other_steps_in_the_module(tmp_path, T):
    from .helpers import generated_module

    m = generated_module(symderiv.derive(symderiv.parse(CONV, "conv.sdm")), tmp_path)
    params = m.init_params({"n_in": 3, "n_out": 2}, seed=T)
    x = np.random.default_rng(T).normal(size=(T, 3))
    loss, grads = m.loss_and_gradients(params, x=x)
    assert loss == pytest.approx(_conv_reference(params, x), rel=1e-12)
    eps = 1e-6
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            plus, minus = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (_conv_reference(plus, x) - _conv_reference(minus, x)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    # a batch of two is the sum of its examples
    xb = np.stack([x, 2 * x], axis=-1)
    lb, gb = m.loss_and_gradients(params, x=xb)
    l2, g2 = m.loss_and_gradients(params, x=2 * x)
    assert lb == pytest.approx(loss + l2, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(gb[name], grads[name] + g2[name], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Recurrences backwards in time


BACKWARD = PRE + """\
param V: (n_out, n_out)
state g[T+1] = 0
g[t] = tanh(W @ x[t] + V @ g[t+1] + b)
loss L = Sum(sum(g[t] * g[t]), (t, 1, T))
"""


def test_a_backward_recurrence_reads_its_state_after_the_sequence():
    m = symderiv.parse(BACKWARD, "b.sdm")
    assert set(m.end_states["g"]) == {1}
    d = symderiv.derive(m)
    # its adjoint recurrence runs forward in time: δg_t reads δ at step t − 1
    assert {t.offset for t in d.adjoints["g"].closed_terms} == {-1, 0}
    for T in (1, 2, 3):
        assert certify(m, T=T).ok


def test_a_backward_state_that_is_a_param_gets_its_gradient():
    m = symderiv.parse(BACKWARD.replace("state g[T+1] = 0", "param g0: n_out\nstate g[T+1] = g0"), "b.sdm")
    d = symderiv.derive(m)
    assert d.gradients["g0"].initial
    for T in (1, 2, 3):
        result = certify(m, T=T)
        assert result.ok and result.param_errors["g0"] < 1e-20


@pytest.mark.parametrize("lines, line, col, words", [
    # a later step of a quantity without a state after the sequence
    ("g[t] = tanh(W @ x[t] + g[t+1])", 6, 24, ["later step without a state", "state g[T+1]"]),
    # a cycle through both directions: g reads its own future through h, and h its past
    ("state g[T+1] = 0\nstate h[0] = 0\nh[t] = g[t+1] + h[t-1]\ng[t] = tanh(W @ x[t] + h[t])",
     8, 8, ["both time directions", "g[t+1]", "h[t-1]"]),
    ("state g[T+1] = 0\nstate g[0] = 0\ng[t] = tanh(W @ x[t] + g[t+1] + g[t-1])", 8, 24,
     ["both time directions"]),
    ("state g[T+2] = 0\ng[t] = tanh(W @ x[t] + g[t+2])", 7, 24, ["state g[T+1]"]),
    ("state g[T] = 0\ng[t] = tanh(W @ x[t] + g[t+1])", 6, 9, ["T+k with k >= 1"]),
    ("state g[T+1] = 0\nstate g[T+1] = 0\ng[t] = tanh(W @ x[t] + g[t+1])", 7, 7, ["defined twice"]),
])
def test_backward_recurrence_errors(tmp_path, lines, line, col, words):
    text = PRE + lines + "\nloss L = Sum(sum(g[t]), (t, 1, T))\n"
    check(tmp_path, text, line, col, *words)
    _cli_status(tmp_path, text, line, col)


# ---------------------------------------------------------------------------------------
# Initial states from expressions


STATE = PRE + """\
param V: (n_out, n_out)
param A: (n_out, n_out)
input z: n_out
state h[0] = tanh(A @ z + b) * 2
h[t] = tanh(W @ x[t] + V @ h[t-1])
loss L = Sum(sum(h[t] * h[t]), (t, 1, T))
"""


def test_a_computed_state_is_differentiated_through():
    m = symderiv.parse(STATE, "s.sdm")
    d = symderiv.derive(m)
    assert d.gradients["A"].static is not None  # A is read only by the state
    for T in (1, 2, 3):
        result = certify(m, T=T)
        assert result.ok, (result.param_errors, result.adjoint_errors)


def test_a_computed_state_in_the_module(tmp_path):
    from .helpers import generated_module

    m = generated_module(symderiv.derive(symderiv.parse(STATE, "s.sdm")), tmp_path)
    params = m.init_params({"n_in": 3, "n_out": 2}, seed=1)
    rng = np.random.default_rng(2)
    x, z = rng.normal(size=(4, 3)), rng.normal(size=2)

    def reference(p):
        h, total = 2 * np.tanh(p["A"] @ z + p["b"]), 0.0
        for t in range(4):
            h = np.tanh(p["W"] @ x[t] + p["V"] @ h)
            total += np.sum(h * h)
        return total

    loss, grads = m.loss_and_gradients(params, x=x, z=z)
    assert loss == pytest.approx(reference(params), rel=1e-12)
    eps = 1e-6
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            plus, minus = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (reference(plus) - reference(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("lines, line, col, words", [
    ("c = h[T]\nstate h[0] = tanh(c)\nh[t] = W @ x[t] + h[t-1]", 7, 19, ["cycle"]),
    ("param m: n_in\nstate h[0] = m\nh[t] = W @ x[t] + h[t-1]", 7, 14, ["shape mismatch", "its state"]),
])
def test_computed_state_errors(tmp_path, lines, line, col, words):
    text = PRE + lines + "\n" + LOSS
    check(tmp_path, text, line, col, *words)
    _cli_status(tmp_path, text, line, col)


# ---------------------------------------------------------------------------------------
# A vector summed over time in a static equation


POOL = PRE.replace("param b: n_out\n", "param U: (n_out, n_out)\n") + """\
state h[0] = 0
h[t] = tanh(W @ x[t] + U @ h[t-1])
c = Sum(h[t], (t, 1, T)) / 2
loss L = sum(tanh(c) * c)
"""


@pytest.mark.parametrize("T", [1, 2, 5])
def test_a_vector_summed_over_time_in_the_module(tmp_path, T):
    """Regression: δh_t = ½ δc is the same at every step; the module assigned it without its time axis."""
    from .helpers import generated_module

    m = symderiv.parse(POOL, "pool.sdm")
    assert certify(m, T=T).ok
    mod = generated_module(symderiv.derive(m), tmp_path)
    params = mod.init_params({"n_in": 3, "n_out": 2}, seed=T)
    x = np.random.default_rng(T).normal(size=(T, 3))

    def reference(p):
        h, c = np.zeros(2), np.zeros(2)
        for t in range(T):
            h = np.tanh(p["W"] @ x[t] + p["U"] @ h)
            c += h / 2
        return np.sum(np.tanh(c) * c)

    loss, grads = mod.loss_and_gradients(params, x=x)
    assert loss == pytest.approx(reference(params), rel=1e-12)
    eps = 1e-6
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            plus, minus = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (reference(plus) - reference(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    lb, _ = mod.loss_and_gradients(params, x=np.stack([x, x], axis=-1))
    assert lb == pytest.approx(2 * loss, rel=1e-12)


def test_a_chain_of_blocks_is_checked(capsys):
    """g backwards in time (reading x[t+1], from a param state after T), c = g[1], then h forward
    from a state computed from c: closed forms against SymPy, the module against central differences."""
    from symderiv.cli import main as cli_main

    assert cli_main(["check", str(ROOT / "tests" / "data" / "time_chain.sdm")]) == 0
    assert "all agree" in capsys.readouterr().out
