"""``verify`` reads claims about the matrix functions of version 2: \\operatorname{tr}, \\det,
\\log\\det, X^{-1}, X^{-\\top}, \\|v\\|_2 (and \\lVert v \\rVert_2), ^\\top on matrices."""

from __future__ import annotations

import json

import pytest

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
