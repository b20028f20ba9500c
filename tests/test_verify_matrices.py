"""``verify`` reads claims about the matrix functions of version 2: \\operatorname{tr}, \\det,
\\log\\det, X^{-1}, X^{-\\top}, \\|v\\|_2 (and \\lVert v \\rVert_2), ^\\top on matrices."""

from __future__ import annotations

import json
import re

import pytest

import symderiv
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify
from symderiv.cli import main

from .helpers import EXAMPLES, ROOT

DATA = ROOT / "tests" / "data" / "matrices"


def verdicts(model, claims, capsys) -> list[str]:
    main(["verify", str(model), str(claims), "--json"])
    out = json.loads(capsys.readouterr().out)
    return [c["verdict"] for c in out["claims"]]


def test_the_inverse_and_its_transpose(capsys):
    # −X^{-⊤}, −(X^{-1})^⊤ are ∂/∂X log det(X⁻¹); X^{-⊤} has the wrong sign
    assert verdicts(EXAMPLES / "mc_logdet_inverse.sdm", DATA / "logdet_inverse_claims.tex", capsys) == [
        "correct", "correct", "incorrect"]


def test_det_trace_and_logdet(capsys):
    # \det(X) X^{-⊤} + B^⊤ + X^{-⊤} is right; |X| reads as the norm ‖X‖, not the determinant
    assert verdicts(DATA / "det.sdm", DATA / "det_claims.tex", capsys)[:2] == ["correct", "incorrect"]


def test_the_euclidean_norm(capsys):
    # Aᵀ (A x − y) / ‖A x − y‖₂ in three spellings; the last one misses a transpose
    assert verdicts(DATA / "norm2.sdm", DATA / "norm2_claims.tex", capsys) == ["correct", "correct", "incorrect"]


@pytest.mark.parametrize("name", ["mc_trace", "mc_norm2_squared", "mc_logdet_inverse", "linear_regression",
                                  "softmax_mlp"])
def test_our_own_write_up_is_read_back_correct(name, capsys):
    got = verdicts(EXAMPLES / f"{name}.sdm", ROOT / "generated" / f"{name}.tex", capsys)
    assert got and set(got) == {"correct"}, got


def judged(model, tmp_path, text: str, suffix: str = ".claims") -> list[tuple[str, list, str]]:
    claims = tmp_path / f"mine{suffix}"
    claims.write_text(text)
    d = symderiv.derive(symderiv.load(model))
    return [(v.verdict, v.diagnosis, v.message) for v in verify(d, read_claims(claims, d)).verdicts]


def test_a_dim_is_its_value_in_a_claims_file_as_in_a_model_file(tmp_path):
    # by hand: δr = r / N, δw = Xᵀ δr + 2 λ w = Xᵀ (X w − y) / N + 2 λ w
    got = judged(DATA / "mean_ridge.sdm", tmp_path, """\
d(w) = X.T @ (X @ w - y) / N + 2 * lam * w
d(w) = X.T @ d(r) + 2 * lam * w
d(r) = r / N
d(r) = (X @ w - y) * (1 / N)
d(w) = X.T @ (X @ w - y) / d + 2 * lam * w
d(r) = r
d(r) = r / N / N
""")
    assert [v for v, _, _ in got] == ["correct"] * 4 + ["incorrect"] * 3


def test_the_number_of_steps_and_a_dims_square_root_are_values_too(tmp_path):
    model = tmp_path / "mean_over_time.sdm"
    model.write_text("dim n\ntime t = 1..T\ninput x[t]: n\ntarget y[t]: n\nparam W: (n, n)\nz[t] = W @ x[t]\n"
                     "loss L = Sum(squared_error(y[t], z[t]), (t, 1, T)) / T\n")
    # δz_t = (z_t − y_t) / T, δW = Σ_t δz_t x_tᵀ
    got = judged(model, tmp_path, "d(z[t]) = (z[t] - y[t]) / T\nd(W) = Sum((z[t] - y[t]) @ x[t].T, (t, 1, T)) / T\n"
                                  "d(z[t]) = z[t] - y[t]\n")
    assert [v for v, _, _ in got] == ["correct", "correct", "incorrect"]
    # attention's S = Kᵀ Q / √n_k: δQ = K δS / √n_k
    got = judged(EXAMPLES / "attention.sdm", tmp_path, "d(Q) = K @ d(S) / sqrt(n_k)\nd(Q) = K @ d(S) / n_k\n")
    assert [v for v, _, _ in got] == ["correct", "incorrect"]


def test_a_dim_has_no_gradient_entries_or_steps(tmp_path):
    got = judged(DATA / "mean_ridge.sdm", tmp_path, "d(N) = w\nd(w) = N[i] * w\n")
    assert [(v, m.split(": ", 1)[1]) for v, _, m in got] == [
        ("unreadable", "'N' is a dim, a size: it has no gradient"),
        ("unreadable", "'N' is a dim, a size: it has no entries and no steps")]


def test_ones_and_the_axis_sums_read_as_in_a_model_file(tmp_path):
    # softmax_mlp, by hand: δ(W2 H + b2 1ᵀ) = P − Y, so δb2 = (P − Y) 1, the row sums of P − Y
    got = judged(EXAMPLES / "softmax_mlp.sdm", tmp_path, """\
d(b2) = sum(P - Y, axis=1)
d(b2) = (P - Y) @ ones(n)
d(b2) = (P - Y) @ ones(n, 1)
d(b2) = sum((P - Y).T, axis=0)
d(b2) = mean(P - Y, axis=1) * n
d(b2) = sum(P, axis=1) - Y @ ones(n - 1 + 1)
d(b2) = eye(K) @ (P - Y) @ ones(n) + 0 * ones(K)
d(b2) = sum(P - Y, axis=0)
d(b2) = (P - Y) @ ones(n) / n
""")
    assert [(v, c) for v, c, _ in got] == [("correct", [])] * 7 + [
        ("incorrect", ["shape"]), ("incorrect", ["wrong-factor"])]
    assert "It is 1/n times the true value" in got[-1][2]


@pytest.mark.parametrize(("claim", "message"), [
    ("sum(P - Y, axis=2)", "the axis of sum() is 0 (column sums) or 1 (row sums), not 2"),
    ("sum(P - Y, keepdims=1)", "sum() takes one keyword argument, axis=0 or axis=1, not keepdims="),
    ("softmax(P, axis=0)", "softmax() takes no keyword arguments"),
    ("(P - Y) @ ones(W1)", "ones() takes sizes (dims or positive integers), not W1"),
    ("(P - Y) @ ones(0)", "ones() takes sizes (dims or positive integers), not 0"),
    ("(P - Y) @ ones(n, n, n)", "ones() takes 1 or 2 sizes, got 3"),
])
def test_bad_sizes_and_axes_are_unreadable_with_the_model_languages_message(tmp_path, claim, message):
    ((verdict, _, got),) = judged(EXAMPLES / "softmax_mlp.sdm", tmp_path, f"d(b2) = {claim}\n")
    assert verdict == "unreadable" and got.endswith(": " + message), got
    # the model language says the same of the same expression
    model = tmp_path / "m.sdm"
    model.write_text((EXAMPLES / "softmax_mlp.sdm").read_text() + f"G = {claim}\n")
    with pytest.raises(symderiv.ModelError, match=re.escape(message)):
        symderiv.load(model)
