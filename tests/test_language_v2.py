"""Version 2 of the model language ("Matrices everywhere", "More functions", "Names", "Bad
input, version 2"): what new files mean, each new mistake at its FILE:LINE:COL with exit
status 2, and the regression tests of the defects of issue 12 that were in this part."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symderiv
from symderiv import ModelError, parse
from symderiv.check.certify import certify
from symderiv.check.numcheck import finite_difference_check

from .helpers import ROOT, assert_module_is_right

HEAD = """\
dim n, m, k
input X: (n, m)
input v: n
param W: (k, n)
param S: (n, n)
"""  # five lines: a case's own lines start at line 6


def error(text: str) -> ModelError:
    with pytest.raises(ModelError) as info:
        parse(text, "bad.sdm")
    return info.value


@pytest.mark.parametrize("line, col, words", [
    # a matrix where a vector is required, naming its shape
    ("z = concat(X, v)", 12, ["concat()", "column vector", "X", "(n, m)"]),
    ("z = diag(X)", 10, ["diag()", "column vector", "(n, m)"]),
    # a vector added to a matrix with other rows: both shapes
    ("z = W @ X + v", 11, ["shape mismatch", "(k, m)", "a vector of size n"]),
    # tr / det / logdet / inv of a non-square matrix
    ("z = tr(X)", 8, ["tr()", "square", "X", "(n, m)"]),
    ("z = det(W)", 9, ["det()", "square", "(k, n)"]),
    ("z = logdet(X.T)", 12, ["logdet()", "square", "(m, n)"]),
    ("z = inv(W @ X)", 9, ["inv()", "square", "(k, m)"]),
    # a non-constant exponent or alpha
    ("z = v ** v", 10, ["exponent", "constant number", "'v'"]),
    ("z = v ** n", 10, ["exponent", "constant number", "'n'"]),
    ("z = leaky_relu(v, v.T @ v)", 19, ["alpha", "constant number"]),
    # axis= other than 0 or 1
    ("z = sum(X, axis=2)", 17, ["axis", "0", "1", "not 2"]),
    ("z = mean(X, axis=-1)", 18, ["axis", "not -1"]),
    ("z = sum(X, axes=0)", 12, ["axis=0 or axis=1", "axes"]),
    ("z = softmax(X, axis=0)", 16, ["takes no keyword"]),
    # sizes where sizes are expected
    ("z = eye(X)", 9, ["sizes", "X"]),
    ("z = ones(n, 2.5)", 13, ["sizes", "2.5"]),
])
def test_bad_input_version_2(line_col_words_cases, line, col, words):
    text = HEAD + line_col_words_cases(line) + "loss L = sum(z)\n"
    err = error(text)
    assert (err.pos.line, err.pos.col) == (6, col), err.format()
    for word in words:
        assert word in err.message, (word, err.format())


@pytest.fixture
def line_col_words_cases():
    return lambda line: line + "\n"


@pytest.mark.parametrize("line, col", [("z = tr(X)", 8), ("z = sum(X, axis=2)", 17)])
def test_bad_input_version_2_exits_with_status_2(tmp_path, line, col):
    path = tmp_path / "bad.sdm"
    path.write_text(HEAD + line + "\nloss L = sum(z)\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "symderiv", "show", str(path)], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120)
    assert out.returncode == 2
    assert f"bad.sdm:6:{col}: error:" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_constant_power_too_large_is_refused_before_it_is_computed():
    err = error(HEAD + "z = v * 10 ** 400\nloss L = sum(z)\n")
    assert (err.pos.line, err.pos.col) == (6, 12) and "too large" in err.message


# ---------------------------------------------------------------------------------------
# What version 2 files mean.


def test_matrix_data_scalar_input_and_per_step_matrices():
    m = parse("""\
dim n, d, a, b
time t = 1..T
input X: (n, d)
target Y: (a, n), distribution
input lam: scalar
input M[t]: (a, b)
param w: d
param u: b
z = X @ w
q[t] = M[t] @ u
loss L = sum(z) + lam * Sum(sum(q[t]), (t, 1, T)) + sum(Y)
""")
    n, d, a, b = (m.dims[k] for k in "ndab")
    assert m["X"].shape == (n, d) and m["X"].kind == "matrix" and m["X"].role == "input"
    assert m["Y"].shape == (a, n) and m["Y"].distribution
    assert m["lam"].is_scalar and m["M"].sequence and m["M"].shape == (a, b)
    assert m["q"].shape == (a, 1)


def test_d_and_other_non_function_names_are_names():
    """Defect: 'd' was refused as a name ("a function of the model language")."""
    m = parse("dim d, e\ninput x: d\nparam W: (e, d)\nparam mean_: e\nloss L = sum(W @ x + mean_)\n")
    assert set(m.dims) == {"d", "e"}
    with pytest.raises(ModelError, match="function of the model language"):
        parse("dim n\ninput x: n\nparam tr: n\nloss L = sum(tr)\n")


def test_a_matrix_input_is_read_not_refused_with_a_message_about_sums_of_dims():
    """Defect: 'input X: (n, n_f)' gave "a size is a dim, a positive integer or a sum of these"."""
    m = parse("dim n, n_f\ninput X: (n, n_f)\nparam w: n_f\nloss L = sum(X @ w)\n")
    assert m["X"].shape == (m.dims["n"], m.dims["n_f"])
    err = error("dim n, n_f\ninput X: (n, n_f, n)\nparam w: n_f\nloss L = sum(X @ w)\n")
    assert (err.pos.line, err.pos.col) == (2, 10) and "(ROWS, COLS)" in err.message


def test_dims_and_the_sequence_length_are_values():
    m = parse("""\
dim n_h, n_k
time t = 1..T
input x[t]: n_h
param S: (n_k, n_k)
a[t] = x[t] - sum(x[t]) / n_h
loss L = Sum(sum(a[t] * a[t]), (t, 1, T)) / T + sum(S / sqrt(n_k))
""")
    n_h, T = m.dims["n_h"], m.length
    assert m["a"].expr.has(n_h) and m["L"].expr.has(T)
    assert m["L"].expr.has(1 / sp.sqrt(m.dims["n_k"]))


def test_a_loss_may_be_a_one_by_one_expression():
    m = parse("dim n\ninput A: (n, n)\nparam x: n\nloss f = 0.5 * x.T @ A @ x\n")
    assert m["f"].shape == (1, 1)


GATE = """\
dim n_x, n_h
time t = 1..T
input x[t]: n_x
target y[t]: n_h
param w: n_h
param W: (n_h, n_x)
state h[0] = 0
g[t] = sigmoid(w.T @ h[t-1])
h[t] = g[t] * h[t-1] + (1 - g[t]) * tanh(W @ x[t])
loss L = Sum(squared_error(y[t], h[t]), (t, 1, T))
"""


def test_a_scalar_gate_from_the_lagged_state_scales_it(tmp_path):
    """Defect: g[t] = σ(wᵀ h[t-1]) then h[t] = g[t] * h[t-1] + ... gave "shape mismatch (1, ?)
    vs (n_h, ?)" (the size of h was not known yet where g was built)."""
    m = parse(GATE)
    assert m["g"].shape == (1, 1) and m["h"].shape == (m.dims["n_h"], 1)
    result = certify(m)
    assert result.ok, (result.param_errors, result.adjoint_errors)
    assert_module_is_right(GATE, tmp_path, T=3)


def test_sum_and_mean_along_an_axis_have_the_sizes_of_the_table():
    m = parse("""\
dim n, m
input X: (n, m)
c = sum(X, axis=0)
r = sum(X, axis=1)
mc = mean(X, axis=0)
a = mean(X)
param u: m
param v: n
loss L = u.T @ (c + mc) + v.T @ r + a
""")
    n, mm = m.dims["n"], m.dims["m"]
    assert m["c"].shape == (mm, 1) and m["r"].shape == (n, 1) and m["mc"].shape == (mm, 1) and m["a"].is_scalar


@pytest.mark.parametrize("text", [
    # each function of the table, differentiated, certified against SymPy's own unrolling
    "dim n\nparam A: (n, n)\ninput X: (n, n)\nloss L = tr(A @ X.T) + det(A) + logdet(A) + sum(inv(A) @ X)\n",
    # a once-per-call term (norm2(A)) beside per-example matrix terms: its gradient A / ‖A‖₂ reads
    # its own value, not the loss of the terms read per example (a batched gradient was off by 3e-2)
    "dim n, m\ninput B: (n, m)\nparam A: (n, m)\nloss L = norm1(A - B) + norm2(A) + norm2(A - B) ** 2\n",
    "dim n\nparam v: n\ninput x: n\ninput X: (n, n)\n"
    "loss L = x.T @ (diag(v) @ x + eye(n) @ v + ones(n, n) @ v + ones(n) * v) + sum(ones(n, n) @ X @ diag(v))\n",
    "dim n\nparam v: n\ninput x: n\n"
    "loss L = x.T @ (sqrt(v) + abs(v) + sin(v) + cos(v) + gelu(v) + leaky_relu(v, 0.1) + v ** -0.5)\n",
    "dim n, m\nparam A: (n, m)\ninput X: (n, m)\n"
    "loss L = sum(mean(A * X, axis=0) ** 2) + sum(mean(A, axis=1) ** 3) + mean(A - X) ** 2\n",
])
def test_every_new_function_is_certified(text):
    model = parse(text)
    result = certify(model)
    assert result.ok, (result.param_errors, result.adjoint_errors)
    # the generated module, every entry point, batched and not, inside each function's domain
    check = finite_difference_check(symderiv.derive(model), {d: 3 for d in model.dims}, None)
    assert check.ok, (check.errors, check.problems)


def test_check_draws_inside_each_domain():
    """Positive arguments for ** -0.5, a positive determinant for logdet and log(det(...)),
    well-conditioned matrices for inv."""
    from symderiv.check.evaluate import random_point

    m = parse("dim n\nparam A: (n, n)\nparam B: (n, n)\nparam v: n\n"
              "loss L = logdet(A) + log(det(B)) + sum(inv(A)) + sum(v ** -0.5)\n")
    for seed in range(20):
        params, _ = random_point(m, {"n": 3}, None, seed=seed)
        assert np.linalg.det(params["A"]) > 0 and np.linalg.det(params["B"]) > 0
        assert np.linalg.cond(params["A"]) < 10
        assert (params["v"] > 0).all()


AVERAGE_OVER_TIME = """\
dim n_h, n_x
time t = 1..T
input x[t]: n_x
target y: n_h
param W: (n_h, n_x)
h[t] = tanh(W @ x[t])
c = Sum(h[t], (t, 1, T)) / T
loss L = squared_error(y, c - mean(c)) / n_h
"""


@pytest.mark.parametrize("T", [1, 2, 7])
def test_the_sequence_length_and_a_dim_as_values_through_check(T):
    model = parse(AVERAGE_OVER_TIME)
    result = certify(model, T=T)
    assert result.ok, (result.param_errors, result.adjoint_errors)
    check = finite_difference_check(symderiv.derive(model), {"n_h": 3, "n_x": 2}, T)
    assert check.ok, (check.errors, check.problems)
