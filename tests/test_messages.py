"""Messages that explain themselves: each names the culprit, at its line and column, and says
what to do; the command line exits with status 2 on a model file it cannot read."""

from __future__ import annotations

import argparse

import pytest

import symderiv
from symderiv.cli import _parser
from symderiv.cli import main as cli_main

from .helpers import EXAMPLES


def _fails(tmp_path, capsys, text: str, name: str = "m.sdm") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert cli_main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


RECURRENT = """dim n_x, n_h
time t = 1..T
input x[t]: n_x
target y[t]: n_h
param W: (n_h, n_x)
param V: (n_h, n_x)
state h[0] = 0
h[t] = tanh({rhs})
loss L = Sum(squared_error(y[t], h[t]), (t, 1, T))
"""


@pytest.mark.parametrize("rhs", ["W @ h[t-1] + V @ x[t]", "V @ x[t] + W @ h[t-1]"])
def test_a_shape_error_blames_the_term_that_reads_the_lag_wrongly(tmp_path, capsys, rhs):
    """h's size n_h comes from V @ x[t]; W (n_h, n_x) cannot multiply h[t-1]: W @ h[t-1] is
    blamed at its '@', in either order, not the V term and not the whole sum."""
    err = _fails(tmp_path, capsys, RECURRENT.format(rhs=rhs))
    col = len("h[t] = tanh(") + rhs.index("@ h[t-1]") + 1
    assert err.startswith(f"{tmp_path / 'm.sdm'}:8:{col}: error: shape mismatch in '@': W is (n_h, n_x) but h[t-1] "
                          "is a vector of size n_h"), err
    assert "V" not in err.splitlines()[0]


def test_a_shape_error_in_a_plain_term_is_still_at_its_operator(tmp_path, capsys):
    text = RECURRENT.format(rhs="V @ h[t-1] + W @ x[t]").replace("param V: (n_h, n_x)", "param V: (n_h, n_h)")
    text = text.replace("param W: (n_h, n_x)", "param W: (n_h, n_h)")
    err = _fails(tmp_path, capsys, text)
    assert ":8:28: error: shape mismatch in '@': W is (n_h, n_h) but x[t] is a vector of size n_x" in err


LAMBDA = "dim n\ninput x: n\ntarget y: n\nparam W: (n, n)\nh = {rhs}\nloss L = squared_error(y, h)\n"


@pytest.mark.parametrize("rhs, col", [("(lambda v: tanh(v))(W @ x)", 6), ("lambda v: W @ v", 5),
                                      ("tanh(lambda: W @ x)", 10), ("lambda(W @ x)", 5),
                                      ("W @ x if lambda else x", 14)])
def test_a_lambda_is_not_part_of_the_language(tmp_path, capsys, rhs, col):
    err = _fails(tmp_path, capsys, LAMBDA.format(rhs=rhs))
    first = err.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'm.sdm'}:5:{col}: error: lambdas are not part of the model language"), err
    assert "invalid syntax" not in err and "write the expression itself" in first


def test_a_syntax_error_says_invalid_syntax_once(tmp_path, capsys):
    err = _fails(tmp_path, capsys, LAMBDA.format(rhs="W @ x +"))
    assert ":5:" in err and "invalid syntax" in err and "invalid syntax: invalid syntax" not in err


@pytest.mark.parametrize("line, role", [("target y: n_y, onehot", "target"), ("target y[t]: n_y, one_hot", "target"),
                                        ("input x: n_x, normalized", "input")])
def test_an_unknown_modifier_lists_the_modifiers(tmp_path, capsys, line, role):
    text = ("dim n_x, n_y\n" + ("time t = 1..T\n" if "[t]" in line else "")
            + ("input x: n_x\n" if role == "target" else "") + line + "\n"
            + ("target y: n_y\n" if role == "input" else "") + "param W: (n_y, n_x)\nloss L = sum(W)\n")
    err = _fails(tmp_path, capsys, text)
    number = text.splitlines().index(line) + 1
    word = line.rsplit(", ", 1)[1]
    col = line.index(word) + 1
    assert f"m.sdm:{number}:{col}: error: unknown modifier '{word}' of {role}" in err, err
    assert "'distribution'" in err
    if role == "target":
        assert "a one-hot target is a distribution" in err and ", distribution'" in err
    else:
        assert "an input takes no modifier" in err


def test_distribution_is_still_a_modifier():
    model = symderiv.parse("dim n\ninput x: n\ntarget y: n, distribution\nparam W: (n, n)\n"
                           "loss L = cross_entropy(y, softmax(W @ x))\n", "ok.sdm")
    assert model["y"].distribution


# ---------------------------------------------------------------------------------------
# A write-up's name the model does not have.

WRITEUP = r"""\begin{align}
\delta \mathbf{a}_t &= \delta \mathbf{h}_t \odot (\mathbf{1} - \mathbf{h}_t \odot \mathbf{h}_t)
\end{align}
"""


def test_verify_says_what_the_model_calls_a_preactivation_and_how_to_spell_it(tmp_path, capsys):
    writeup = tmp_path / "mine.tex"
    writeup.write_text(WRITEUP)
    assert cli_main(["verify", str(EXAMPLES / "char_rnn.sdm"), str(writeup)]) == 1
    out = capsys.readouterr().out
    assert "line 2, column 1:" in out and "unreadable: line 2, column 8: unknown name \\mathbf{a}_{t}" in out
    assert "the model calls it z_h (the argument of tanh in h, written \\mathbf{z}_{h,t})" in out
    assert 'add a line to the model file: latex z_h "\\mathbf{a}"' in out
    assert "\\delta \\mathbf{a}_{t} \\triangleq" in out


def test_the_latex_line_the_message_suggests_makes_the_claim_readable(tmp_path, capsys):
    model = tmp_path / "char_rnn.sdm"
    model.write_text((EXAMPLES / "char_rnn.sdm").read_text() + 'latex z_h "\\mathbf{a}"\n')
    writeup = tmp_path / "mine.tex"
    writeup.write_text(WRITEUP)
    assert cli_main(["verify", str(model), str(writeup)]) == 0
    assert "1 correct" in capsys.readouterr().out
    tex = symderiv.api.write(symderiv.derive(symderiv.load(model)), tmp_path / "out", formats="tex")[0].read_text()
    assert r"\mathbf{h}_t &= \tanh\left({\mathbf{a}}_{t}\right)" in tex


def test_a_latex_line_for_a_preactivation_the_model_does_not_have_is_an_error(tmp_path, capsys):
    model = tmp_path / "gru.sdm"  # the GRU's pre-activations are a_z, a_r, a_n (the model has a z)
    model.write_text((EXAMPLES / "gru_regressor.sdm").read_text() + 'latex z_h "\\mathbf{a}"\n')
    assert cli_main(["show", str(model)]) == 2
    err = capsys.readouterr().err
    assert "'latex' names 'z_h', which is not defined" in err and "a_n (of n)" in err


# ---------------------------------------------------------------------------------------
# The command line's own help.


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((name, a) for a in sub._actions)
        else:
            yield "symderiv", action


def test_every_argument_and_option_of_every_command_has_help():
    seen = list(_actions(_parser()))
    assert {c for c, _ in seen} == {"symderiv", "derive", "show", "check", "verify"}
    for command, action in seen:
        if isinstance(action, argparse._SubParsersAction):
            assert all(choice.help for choice in action._choices_actions)
            continue
        assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 8, (command, action.dest)
    positionals = [(c, a.dest) for c, a in seen if not a.option_strings
                   and not isinstance(a, argparse._SubParsersAction)]
    assert ("verify", "claims") in positionals and ("derive", "model") in positionals


@pytest.mark.parametrize("command", ["derive", "show", "check", "verify"])
def test_every_command_help_shows_each_argument_with_its_help(command, capsys):
    with pytest.raises(SystemExit):
        cli_main([command, "--help"])
    out = capsys.readouterr().out
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        assert action.help.split(" (")[0][:30] in " ".join(out.split())
