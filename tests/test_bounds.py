"""Bounds on every input (the reliability issue, round two): each hostile input that used to
take minutes, gigabytes or a traceback is now a positioned error with exit status 2 (or, for
``check``, a clear "cannot check" with status 1), in a fraction of a second.

``benchmarks/attacks.py`` runs the same inputs as whole commands under a memory bound and
prints their times and peak memory; these tests hold each one to its message and place.
"""

from __future__ import annotations

import pytest

import symderiv
from symderiv.ad.derive import MAX_CLOSED_FORM_SIZE
from symderiv.cli import main
from symderiv.errors import ClaimError, ModelError
from symderiv.frontend import bounds

from .helpers import EXAMPLES

MLP = """model m
dim n_x, n_h, n_y
input x: n_x
target y: n_y
param W: (n_h, n_x)
param b: n_h
param U: (n_y, n_h)
"""

RNN = """model r
dim n_x, n_h
time t = 1..T
input x[t]: n_x
target y[t]: n_h
param W: (n_h, n_x)
param V: (n_h, n_h)
param b: n_h
state h[0] = 0
"""


def error_of(text: str) -> ModelError:
    with pytest.raises(ModelError) as info:
        symderiv.derive(symderiv.parse(text, "m.sdm"))
    return info.value


def nested(fn: str, inner: str, depth: int) -> str:
    return f"{fn}(" * depth + inner + ")" * depth


# ---------------------------------------------------------------------------------------
# The model file


def test_a_line_longer_than_the_bound_is_an_error_at_the_first_character_past_it():
    text = MLP + "loss L = sum(W @ x)" + " " * bounds.MAX_LINE_CHARS + "\n"
    err = error_of(text)
    assert f"a line may hold at most {bounds.MAX_LINE_CHARS:,}" in err.message
    assert (err.pos.line, err.pos.col) == (8, bounds.MAX_LINE_CHARS + 1)


def test_more_equations_than_the_bound_is_an_error_at_the_first_one_past_it():
    n = bounds.MAX_EQUATIONS + 5
    body = "h0 = tanh(W @ x + b)\n" + "".join(f"h{k} = tanh(h{k - 1})\n" for k in range(1, n))
    err = error_of(MLP + body + f"loss L = squared_error(y, U @ h{n - 1})\n")
    assert f"a model may hold at most {bounds.MAX_EQUATIONS:,}" in err.message
    assert err.pos.line == 8 + bounds.MAX_EQUATIONS


def test_an_expression_of_too_many_parts_is_an_error_at_its_start():
    err = error_of(MLP + "c = concat(" + ", ".join(["b"] * 2500) + ")\nloss L = sum(c)\n")
    assert f"an equation may hold at most {bounds.MAX_EXPRESSION_NODES:,}" in err.message
    assert (err.pos.line, err.pos.col) == (8, 5)


def test_a_state_too_far_back_is_an_error_on_its_line():
    err = error_of(RNN + "state h[-10000000000] = 0\nh[t] = tanh(W @ x[t] + V @ h[t-1] + b)\n"
                   "loss L = Sum(squared_error(y[t], h[t]), (t, 1, T))\n")
    assert "a state may be at most 10,000 steps away" in err.message
    assert (err.pos.line, err.pos.col) == (10, 7)


@pytest.mark.parametrize("shape, line", [
    ("(99999999999999999999999, n_x)", 5),
    ("(100000, 100000)", 5),
])
def test_a_literal_size_past_the_bound_is_an_error_at_its_declaration(shape, line):
    text = MLP.replace("param W: (n_h, n_x)", f"param W: {shape}") + "loss L = sum(W)\n"
    err = error_of(text)
    assert "entries even with every dim 1" in err.message and err.pos.line == line


def test_concat_of_concat_that_doubles_sixty_times_is_an_error_at_the_equation_past_the_bound():
    lines = ["c0 = tanh(W @ x + b)"] + [f"c{k} = concat(c{k - 1}, c{k - 1})" for k in range(1, 60)]
    err = error_of(MLP + "\n".join(lines) + "\nloss L = sum(c59)\n")
    # c20 has 2^20 n_h entries: the first past a million at every dim 1
    assert err.message.startswith("c20 is ") and "entries even with every dim 1" in err.message
    assert err.pos.line == 8 + 20


def test_a_literal_size_within_the_bound_is_accepted():
    text = MLP.replace("param W: (n_h, n_x)", "param W: (300, n_x)").replace("param b: n_h", "param b: 300")
    text = text.replace("param U: (n_y, n_h)", "param U: (n_y, 300)")
    d = symderiv.derive(symderiv.parse(text + "loss L = squared_error(y, U @ tanh(W @ x + b))\n", "m.sdm"))
    assert set(d.gradients) == {"W", "b", "U"}


def test_a_number_that_overflows_float64_is_an_error_at_its_equation():
    err = error_of(MLP + "loss L = sum(1e308 * 1e308 * (W @ x))\n")
    assert "beyond ±1e+300" in err.message and err.pos.line == 8


def test_nested_softmaxes_are_an_error_before_the_derivative_is_written_out():
    err = error_of(MLP + "loss L = squared_error(y, U @ " + nested("softmax", "W @ x + b", 16) + ")\n")
    assert f"grows past {MAX_CLOSED_FORM_SIZE:,} terms" in err.message and "name its inner values" in err.message
    assert err.pos.line == 8


def test_the_same_softmaxes_named_one_equation_each_derive():
    lines = ["s0 = softmax(W @ x + b)"] + [f"s{k} = softmax(s{k - 1})" for k in range(1, 16)]
    d = symderiv.derive(symderiv.parse(MLP + "\n".join(lines) + "\nloss L = squared_error(y, U @ s15)\n", "m.sdm"))
    assert set(d.gradients) == {"W", "b", "U"}


def test_the_cli_says_so_with_status_2(tmp_path, capsys):
    path = tmp_path / "deep.sdm"
    path.write_text(MLP + "loss L = squared_error(y, U @ " + nested("softmax", "W @ x + b", 22) + ")\n")
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:8:1: error: the derivative through the equation of L grows past" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------
# check


def test_check_of_nested_exponentials_says_it_cannot_check_instead_of_running_for_minutes(tmp_path, capsys):
    path = tmp_path / "exp.sdm"
    path.write_text(MLP + "loss L = sum(" + nested("exp", "W @ x", 6) + ")\n")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "cannot check the gradients" in out and "beyond 2^±4,194,304" in out


# ---------------------------------------------------------------------------------------
# verify


SEED = EXAMPLES / "seed_rnn.sdm"


def verify_of(tmp_path, writeup: str, capsys) -> tuple[int, str]:
    path = tmp_path / "w.md"
    path.write_text(writeup, encoding="utf-8")
    status = main(["verify", str(SEED), str(path)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_huge_exponent_is_unreadable_not_an_exact_power(tmp_path, capsys):
    status, out = verify_of(tmp_path, "$$\\delta \\mathbf{h}_t = 2^{99999999999999} \\mathbf{h}_t$$\n", capsys)
    assert "the exponent 99999999999999 is larger than any derivation needs (at most 64)" in out
    assert status == 1 and "Traceback" not in out


def test_a_five_thousand_digit_number_is_unreadable(tmp_path, capsys):
    status, out = verify_of(tmp_path, "$$\\delta \\mathbf{h}_t = " + "7" * 5000 + "\\mathbf{h}_t$$\n", capsys)
    assert "a number of 5,000 digits; a number may have at most 30" in out
    assert status == 1 and "Traceback" not in out


def test_a_display_of_thousands_of_factors_is_unreadable(tmp_path, capsys):
    status, out = verify_of(tmp_path, "$$\\delta \\mathbf{h}_t = " + " \\odot ".join(["\\mathbf{h}_t"] * 3200)
                            + "$$\n", capsys)
    assert "a display may hold at most 3,000" in out and status == 1


def test_more_claims_than_the_bound_is_an_error_at_the_first_past_it(tmp_path):
    from symderiv.claims.reading import MAX_CLAIMS, read_claims

    claim = "$$\\delta \\mathbf{h}_t = \\mathbf{W}^\\top \\delta \\mathbf{o}_t$$\n\n"
    path = tmp_path / "many.md"
    path.write_text(claim * (MAX_CLAIMS + 3))
    d = symderiv.derive(symderiv.load(SEED))
    with pytest.raises(ClaimError) as info:
        read_claims(path, d)
    assert f"a derivation may hold at most {MAX_CLAIMS}" in info.value.message
    assert info.value.pos.line == 2 * MAX_CLAIMS + 1


def test_check_of_a_literal_size_too_large_for_exact_arithmetic_runs_the_numeric_check_and_says_so(tmp_path, capsys):
    path = tmp_path / "wide.sdm"
    path.write_text(MLP.replace("param W: (n_h, n_x)", "param W: (300, n_x)") + "loss L = sum(tanh(W @ x))\n")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "the exact check is skipped" in out and "scalar values, more than the 600" in out
    assert "agrees with central differences; the closed forms are not certified" in out


def test_a_wrong_gradient_still_fails_check_when_the_exact_check_is_skipped(tmp_path, capsys, monkeypatch):
    from symderiv.check import numcheck

    path = tmp_path / "wide.sdm"
    path.write_text(MLP.replace("param W: (n_h, n_x)", "param W: (300, n_x)") + "loss L = sum(tanh(W @ x))\n")
    real = numcheck.load_generated

    def broken(d):  # the module's gradient of W off by a factor 2
        module = real(d)
        gradients = module.gradients
        module.gradients = lambda params, **data: {k: 2 * v for k, v in gradients(params, **data).items()}
        return module

    monkeypatch.setattr(numcheck, "load_generated", broken)
    assert main(["check", str(path)]) == 1
    assert "DISAGREEMENT" in capsys.readouterr().out


def test_a_time_axis_without_sequence_data_is_a_clean_refusal_of_code_generation(tmp_path, capsys):
    # found by test_generated_models_pass_check_through_every_entry_point: the module crashed on
    # every call (AttributeError: 'NoneType' object has no attribute 'shape')
    path = tmp_path / "timeless.sdm"
    path.write_text("dim n, m\ntime t = 1..T\ninput a: n\nparam w: n\nloss b = sum(w * a)\n")
    assert main(["derive", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no input or target is a sequence, so the module cannot read T" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_scalar_distribution_target_is_an_error_at_the_modifier():
    # found by the fuzzer: check crashed (AxisError) normalising a scalar "distribution"
    err = error_of("dim n\ntarget y: scalar, distribution\nparam w: n\nloss L = sum(w) * y\n")
    assert err.message.startswith("a scalar target cannot be a distribution")
    assert (err.pos.line, err.pos.col) == (2, 19)
