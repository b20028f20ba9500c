"""Partial time ranges (MODEL_LANGUAGE.md, version 2, "Time"): ``Sum(EXPR, (t, a, T))`` with a
constant first step a >= 1 and ``Sum(EXPR, (t, 1, T - k))``.  Each stage: the parser and its
positioned errors (FILE:LINE:COL, exit status 2), the derivation (the adjoints of the summand are
zero outside the range), the write-up, the NumPy module against independent references
(tests/reference/, written from the equations) at T = 1, 2, 7 batched and not, and certification
against SymPy's own differentiation of the unrolled network."""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

import symderiv
from symderiv import ModelError, parse
from symderiv.check.certify import certify
from symderiv.cli import main as cli_main

from .helpers import (
    EXAMPLES,
    GENERATED,
    ROOT,
    assert_agree,
    assert_module_is_right,
    import_generated,
    make_data,
    sizes,
)


@functools.cache
def entry(name):
    """(name, model, generated module, reference module) for one network."""
    model = symderiv.load(EXAMPLES / f"{name}.sdm")
    reference = importlib.import_module(f"tests.reference.{name}")
    return name, model, import_generated(GENERATED / f"{name}.py", f"{name}_ranges_generated"), reference


EXAMPLES_WITH_RANGES = ["rnn_language_model", "warmup_regressor"]


@pytest.fixture(params=EXAMPLES_WITH_RANGES)
def example(request):
    return entry(request.param)


def test_derives_in_under_a_second(example):
    _, model, _, _ = example
    d = symderiv.derive(model)
    assert set(d.gradients) == {p.name for p in model.params}
    assert d.seconds < 1.0, d.seconds


@pytest.mark.parametrize("T", [1, 2, 3, 4])
def test_certified_against_sympy(example, T):
    result = certify(example[1], T=T)
    assert result.ok, (T, result.param_errors, result.adjoint_errors)


def test_check_agrees(example, capsys):
    assert cli_main(["check", str(EXAMPLES / f"{example[0]}.sdm")]) == 0
    assert "all agree" in capsys.readouterr().out


@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("batch", [None, 3])
def test_matches_reference(example, T, batch):
    _, model, m, ref = example
    dims = sizes(m)
    params = m.init_params(dims, seed=T)
    data = make_data(model, m, dims, T=T, B=batch, seed=20 + T)
    loss, grads = m.loss_and_gradients(params, **data)
    ref_loss, ref_grads = ref.loss_and_grads(params, **data)
    if ref_loss == 0:  # the range is empty at this T (steps 3..T with T = 2): nothing counts
        assert loss == 0 and all(not np.any(g) for g in grads.values())
        assert all(not np.any(g) for g in ref_grads.values())
    else:
        assert_agree(loss, grads, ref_loss, ref_grads, params)


def test_the_loss_counts_the_steps_of_its_range_only():
    """The language model's loss is −Σ_{t=1}^{T−1} x_{t+1}ᵀ log p_t from its own forward values: the
    last step's prediction is not counted (so this test fails if the range were ignored)."""
    _, model, m, _ = entry("rnn_language_model")
    dims = sizes(m)
    params = m.init_params(dims, seed=1)
    data = make_data(model, m, dims, T=7, seed=3)
    loss, _ = m.loss_and_gradients(params, **data)
    p = np.asarray(m.forward(params, **data)["p"])
    assert np.isclose(loss, -np.sum(data["x"][1:] * np.log(p[:-1])), rtol=1e-12)
    assert not np.isclose(loss, -np.sum(data["x"][1:] * np.log(p[:-1])) - np.sum(data["x"][0] * np.log(p[-1])))


def test_the_write_up_reads_like_a_textbook(capsys):
    assert cli_main(["show", str(EXAMPLES / "rnn_language_model.sdm")]) == 0
    text = "\n".join(line.strip() for line in capsys.readouterr().out.splitlines())
    assert "L = −Σ_{t=1}^{T−1} x_{t+1}ᵀ log(p_t)" in text
    assert "δz_{p,t} = [t ≤ T − 1] (p_t − x_{t+1})" in text  # fused, and zero at the last step
    tex = (GENERATED / "rnn_language_model.tex").read_text(encoding="utf-8")
    assert r"\sum_{t=1}^{T-1}" in tex
    assert r"\left[t \le T - 1\right]" in tex
    warm = (GENERATED / "warmup_regressor.md").read_text(encoding="utf-8")
    assert r"\sum_{t=3}^{T}" in warm and r"\left[3 \le t\right]" in warm


# ---------------------------------------------------------------------------------------
# Ranges of every form, through the module and certification.

RANGES = """\
model ranges
dim n, m
time t = 1..T
input x[t]: n
target y[t]: m
param W: (m, n)
param V: (m, m)
param u: m
state h[0] = 0
h[t] = tanh(W @ x[t] + V @ h[t-1])
c = Sum(h[t], (t, 2, T)) / T
loss L = Sum(squared_error(y[t], h[t]), (t, 2, T - 1)) + Sum(u.T @ h[t-1] * sum(x[t+1]), (t, 2, T - 1)) + u.T @ c
"""


@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_every_form_of_range_certifies(T):
    result = certify(parse(RANGES, "ranges.sdm"), T=T)
    assert result.ok, (T, result.param_errors, result.adjoint_errors)


@pytest.mark.parametrize("T", [1, 2, 4])
def test_every_form_of_range_in_the_module(tmp_path, T):
    """The module against symderiv's evaluator and central differences of its own loss."""
    assert_module_is_right(RANGES, tmp_path, T=T)


def test_every_form_of_range_through_check(tmp_path, capsys):
    """``check``: certification, central differences, every entry point batched and not."""
    path = tmp_path / "ranges.sdm"
    path.write_text(RANGES, encoding="utf-8")
    assert cli_main(["check", str(path)]) == 0
    assert "all agree" in capsys.readouterr().out


def _ranges_loss_by_hand(params, x, y):
    """The loss of RANGES written out (steps 1-based in the comments), for one example."""
    W, V, u = params["W"], params["V"], params["u"]
    T = x.shape[0]
    h, prev = [], np.zeros(V.shape[0])
    for t in range(T):
        prev = np.tanh(W @ x[t] + V @ prev)
        h.append(prev)
    c = sum(h[1:], np.zeros(V.shape[0])) / T  # steps 2..T
    loss = sum(0.5 * np.sum((h[t] - y[t]) ** 2) for t in range(1, T - 1))  # steps 2..T-1
    loss += sum(u @ h[t - 1] * np.sum(x[t + 1]) for t in range(1, T - 1))  # steps 2..T-1
    return loss + u @ c


@pytest.mark.parametrize("T", [1, 2, 3, 6])
def test_every_form_of_range_matches_the_loss_by_hand(tmp_path, T):
    m = assert_module_is_right(RANGES, tmp_path, T=T)
    rng = np.random.default_rng(T)
    dims = {"n": 3, "m": 4}
    params = m.init_params(dims, seed=T)
    params = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in params.items()}
    x, y = rng.normal(size=(T, 3)), rng.normal(size=(T, 4))
    loss, grads = m.loss_and_gradients(params, x=x, y=y)
    assert np.isclose(loss, _ranges_loss_by_hand(params, x, y), rtol=1e-12, atol=1e-14)
    eps = 1e-6
    for name, value in params.items():  # the module's gradient against the hand loss's differences
        value = np.asarray(value, dtype=float)
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            step = np.zeros_like(value)
            step[i] = eps
            up = _ranges_loss_by_hand({**params, name: value + step}, x, y)
            down = _ranges_loss_by_hand({**params, name: value - step}, x, y)
            numeric[i] = (up - down) / (2 * eps)
        assert np.allclose(grads[name], numeric, rtol=1e-6, atol=1e-8), name


# ---------------------------------------------------------------------------------------
# Bad input: each mistake at its FILE:LINE:COL, exit status 2.

HEAD = """\
dim n
time t = 1..T
input x[t]: n
param W: (n, n)
h[t] = tanh(W @ x[t])
"""  # five lines: the loss is line 6


@pytest.mark.parametrize("loss, col, words", [
    ("Sum(sum(h[t]), (t, 0, T))", 29, ["first step", "at least 1", "not 0"]),
    ("Sum(sum(h[t]), (t, -1, T))", 29, ["first step", "at least 1", "not -1"]),
    ("Sum(sum(h[t]), (t, n, T))", 29, ["first step", "constant whole number", "'n'"]),
    ("Sum(sum(h[t]), (t, 1.5, T))", 29, ["first step", "constant whole number", "'1.5'"]),
    ("Sum(sum(h[t]), (t, 1, T + 1))", 32, ["last step", "T - k", "'T + 1'"]),
    ("Sum(sum(h[t]), (t, 1, 5))", 32, ["last step", "T or T - k", "'5'"]),
    ("Sum(sum(h[t]), (t, 1, T - n))", 32, ["last step", "constant whole number k", "'T - n'"]),
    ("Sum(sum(h[t]), (t, 1, T - -1))", 32, ["last step", "'T - -1'"]),
    ("Sum(sum(h[t]), (s, 1, T))", 26, ["time index 't'", "not 's'"]),
    ("Sum(sum(h[t]), (t, 1))", 25, ["range of a Sum", "(t, a, T - k)"]),
    ("Sum(sum(h[t]), t)", 25, ["range of a Sum", "(t, 1, T)"]),
])
def test_bad_range(loss, col, words):
    with pytest.raises(ModelError) as info:
        parse(HEAD + f"loss L = {loss}\n", "bad.sdm")
    err = info.value
    assert (err.pos.line, err.pos.col) == (6, col), err.format()
    for word in words:
        assert word in err.message, (word, err.format())


@pytest.mark.parametrize("loss, col", [("Sum(sum(h[t]), (t, 0, T))", 29), ("Sum(sum(h[t]), (t, 1, T + 1))", 32)])
def test_bad_range_exits_with_status_2(tmp_path, loss, col):
    path = tmp_path / "bad.sdm"
    path.write_text(HEAD + f"loss L = {loss}\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "symderiv", "show", str(path)], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120)
    assert out.returncode == 2
    assert f"bad.sdm:6:{col}: error:" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------------------------
# verify reads the range notation: Iverson brackets and sums up to T - k.


@pytest.mark.parametrize("name", EXAMPLES_WITH_RANGES)
@pytest.mark.parametrize("suffix", ["tex", "md"])
def test_verify_reads_its_own_writeup(name, suffix, capsys):
    cli_main(["verify", str(EXAMPLES / f"{name}.sdm"), str(GENERATED / f"{name}.{suffix}"), "--json"])
    verdicts = json.loads(capsys.readouterr().out)["claims"]
    assert verdicts and all(v["verdict"] == "correct" for v in verdicts), [
        (v["text"], v["message"]) for v in verdicts if v["verdict"] != "correct"]


def test_verify_judges_claims_about_a_range(capsys):
    """[t ≤ T − 1] kept or dropped, Σ up to T − 1 (right: δz_{p,T} = 0), up to T − 2 and from 2 (wrong)."""
    cli_main(["verify", str(EXAMPLES / "rnn_language_model.sdm"), str(ROOT / "tests" / "data" /
                                                                      "rnn_language_model_claims.md"), "--json"])
    verdicts = json.loads(capsys.readouterr().out)["claims"]
    assert [v["verdict"] for v in verdicts] == ["correct", "incorrect", "correct", "incorrect", "incorrect"]
