"""Names that Python's NFKC normalisation would merge, and a second `model` line, are errors."""

from __future__ import annotations

import pytest

import symderiv

BASE = "dim n\nparam W: (n, n)\nparam b: n\n"


def test_a_bold_w_is_not_silently_w():
    with pytest.raises(symderiv.ModelError) as info:
        symderiv.parse(BASE + "loss L = sum(𝐖 @ b)\n", "m.sdm")
    err = info.value
    assert (err.pos.line, err.pos.col) == (4, 14)  # at 𝐖 ...
    assert "'W'" in err.message and "m.sdm:2:7" in err.message  # ... and pointing at W's declaration


def test_a_declared_name_that_nfkc_changes_is_refused():
    with pytest.raises(symderiv.ModelError, match="NFKC"):
        symderiv.parse("dim n\nparam ℌ: n\nloss L = sum(ℌ)\n", "m.sdm")


def test_a_latex_spelling_is_not_read_for_names():
    # Inside a string the NFKC check does not look: 𝐖 there is the TeX allow-list's to refuse
    # (ir/texsafe.py), with its own message, not taken for a second spelling of W.
    with pytest.raises(symderiv.ModelError) as info:
        symderiv.parse(BASE + "loss L = sum(W @ b)\nlatex W \"𝐖ℌ\"\n", "m.sdm")
    assert "latex spelling" in info.value.message and "NFKC" not in info.value.message
    model = symderiv.parse(BASE + "loss L = sum(W @ b)\nlatex W \"\\mathbf{W}\"\n", "m.sdm")
    assert [p.name for p in model.params] == ["W", "b"]


def test_a_second_model_line_is_an_error():
    with pytest.raises(symderiv.ModelError) as info:
        symderiv.parse("model a\n" + BASE + "model b\nloss L = sum(b)\n", "m.sdm")
    assert info.value.pos.line == 5 and "line 1" in info.value.message
