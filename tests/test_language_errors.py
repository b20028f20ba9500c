"""Bad model files: every mistake is a ``ModelError`` at the right FILE:LINE:COL.

Each case gives the model text, the line and column (1-based, computed by hand from the
text) of the offending token, and words its message must contain.  Columns of a
statement's expression start at 8 for ``h[t] = ...``.

Conventions checked here (see MODEL_LANGUAGE.md, "Bad input"):
  * a reference to a quantity (unknown name, lag, future step, bad step) points at its name;
  * a binary operator (shape mismatch, '**', a comparison) points at the operator;
  * a disallowed attribute points at the attribute name; a keyword argument at the keyword;
  * a declaration points at the name or the size it got wrong;
  * a statement that cannot be read at all points at its first character.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import symderiv
from symderiv import ModelError, SymderivError, load, parse

ROOT = Path(__file__).resolve().parent.parent

# Five lines; a case's own statements start at line 6.
PRE = """\
dim n_in, n_out
time t = 1..T
input x[t]: n_in
param W: (n_out, n_in)
param b: n_out
"""
LOSS = "loss L = Sum(sum(h[t]), (t, 1, T))\n"


# ---------------------------------------------------------------------------------------
# Helpers


def write(tmp_path: Path, text: str | bytes, name: str = "bad.sdm") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))  # no newline translation
    return path


def model_error(tmp_path: Path, text: str | bytes, name: str = "bad.sdm") -> ModelError:
    path = write(tmp_path, text, name)
    with pytest.raises(ModelError) as info:
        load(path)
    err = info.value
    assert isinstance(err, SymderivError)
    assert err.pos is not None, err.format()
    assert err.pos.file == str(path)
    assert err.format().startswith(f"{path}:{err.pos.line}:{err.pos.col}: error: {err.message}")
    return err


def check(tmp_path: Path, text: str | bytes, line: int, col: int, *words: str, name: str = "bad.sdm") -> ModelError:
    """The error is at (line, col), its message has every word, and the offending line is shown."""
    err = model_error(tmp_path, text, name)
    assert (err.pos.line, err.pos.col) == (line, col), err.format()
    for word in words:
        assert word.lower() in err.message.lower(), f"{word!r} not in: {err.format()}"
    if isinstance(text, str):
        source_lines = text.split("\n")
        if line <= len(source_lines) and source_lines[line - 1].strip() and "\x00" not in text:
            shown = err.format().split("\n")
            assert len(shown) == 3, err.format()
            src = source_lines[line - 1].expandtabs(1)
            assert shown[1].endswith(src), err.format()
            indent = len(shown[1]) - len(src)
            assert shown[2].index("^") - indent == col - 1, err.format()
    return err


# ---------------------------------------------------------------------------------------
# Unknown names, names defined twice


def test_unknown_name(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ y[t] + b\n" + LOSS, 6, 12, "unknown name", "'y'")


def test_unknown_static_name(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t] + bias\n" + LOSS, 6, 19, "unknown name", "'bias'")


def test_unknown_name_in_loss_suggests_spelling(tmp_path):
    # loss L = Sum(sum(H[t]), ...): 'H' is column 18
    err = check(tmp_path, PRE + "h[t] = W @ x[t]\nloss L = Sum(sum(H[t]), (t, 1, T))\n", 7, 18,
                "unknown name", "'H'")
    assert "'h'" in err.message  # did you mean 'h'?


# The nearest known name, as difflib finds it: among the names in scope (quantities, data, params,
# dims), then the function names; the name in scope in other letter case first.
@pytest.mark.parametrize("body, line, col, message", [
    ("h[t] = W @ xx[t] + b\n", 6, 12, "unknown name 'xx'; did you mean 'x'?"),
    ("h[t] = W @ x[t] + bb\n", 6, 19, "unknown name 'bb'; did you mean 'b'?"),
    ("h[t] = W @ x[t] + rellu\n", 6, 19, "unknown name 'rellu'; did you mean 'relu'?"),
    ("h[t] = W @ x[t] + b / n_ot\n", 6, 23, "unknown name 'n_ot'; did you mean 'n_out'?"),
    ("h[t] = W @ x[t] + b\nq[t] = h[t] + hh[t-1]\n", 7, 15, "unknown name 'hh'; did you mean 'h'?"),
    ("h[t] = W @ x[t] + zz\n", 6, 19, "unknown name 'zz'"),
    ("h[t] = rleu(W @ x[t] + b)\n", 6, 8, "unknown function 'rleu' (did you mean 'relu'?); the model language has "),
    ("h[t] = tahn(W @ x[t])\n", 6, 8, "unknown function 'tahn' (did you mean 'tanh'?); the model language has "),
    ("h[t] = frobnicate(W @ x[t])\n", 6, 8, "unknown function 'frobnicate'; the model language has "),
])
def test_an_unknown_name_suggests_the_nearest_known_one(tmp_path, body, line, col, message):
    err = check(tmp_path, PRE + body + LOSS, line, col)
    assert err.message.startswith(message), err.message
    if message.endswith("'zz'"):
        assert err.message == message  # nothing is close: no guess
    # the command line: the same message at FILE:LINE:COL, exit status 2, no traceback
    path = write(tmp_path, PRE + body + LOSS, "typo.sdm")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "symderiv", "show", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{path}:{line}:{col}: error: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("size, message", [
    ("n_ou", "unknown dim 'n_ou'; declare it with 'dim' (did you mean 'n_out'?)"),
    ("q", "unknown dim 'q'; declare it with 'dim'"),
])
def test_an_unknown_dim_suggests_the_nearest_dim(tmp_path, size, message):
    err = check(tmp_path, PRE.replace("param b: n_out", f"param b: {size}") + "h[t] = W @ x[t] + b\n" + LOSS, 5, 10)
    assert err.message == message


def test_unknown_name_on_continuation_line(tmp_path):
    text = PRE + (
        "h[t] = sigmoid(W @ x[t]\n"   # line 6
        "               + b\n"        # line 7
        "               + zz)\n"      # line 8: 'zz' at column 18
    ) + LOSS
    check(tmp_path, text, 8, 18, "unknown name", "'zz'")


def test_unknown_name_after_comment_inside_parentheses(tmp_path):
    text = PRE + (
        "h[t] = (W @ x[t]   # the input part\n"  # line 6
        "        # a comment line inside the statement\n"
        "\n"
        "        + c)\n"                       # line 9: 'c' at column 11
    ) + LOSS
    check(tmp_path, text, 9, 11, "unknown name", "'c'")


def test_unknown_name_as_initial_state(tmp_path):
    text = PRE + "state h[0] = h_init\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 6, 14, "unknown name", "'h_init'")


def test_equation_defined_twice(tmp_path):
    err = check(tmp_path, PRE + "h[t] = W @ x[t]\nh[t] = b\n" + LOSS, 7, 1, "defined twice", "'h'")
    assert "line 6" in err.message


def test_param_defined_twice(tmp_path):
    err = check(tmp_path, PRE + "param W: n_in\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 7,
                "defined twice", "'W'")
    assert "line 4" in err.message


def test_param_with_the_name_of_a_dim(tmp_path):
    check(tmp_path, PRE + "param n_in: n_in\nh[t] = W @ x[t]\n" + LOSS, 6, 7, "defined twice", "'n_in'")


def test_equation_redefines_an_input(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t]\nx[t] = W.T @ b\n" + LOSS, 7, 1, "defined twice", "'x'")


def test_equation_redefines_the_time_index(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t]\nt = sum(b)\n" + LOSS, 7, 1, "defined twice", "'t'")


def test_dim_defined_twice(tmp_path):
    check(tmp_path, "dim n, m, n\nparam b: n\nloss L = sum(b)\n", 1, 11, "defined twice", "'n'")


def test_loss_name_defined_twice(tmp_path):
    check(tmp_path, PRE + "L = sum(b)\nloss L = sum(b)\n", 7, 6, "defined twice", "'L'")


# ---------------------------------------------------------------------------------------
# Shapes


def test_shape_mismatch_in_sum_names_both_shapes(tmp_path):
    # h[t] = W @ x[t] + x[t]: the '+' is column 17
    err = check(tmp_path, PRE + "h[t] = W @ x[t] + x[t]\n" + LOSS, 6, 17, "shape mismatch", "n_out", "n_in")
    assert "W @ x[t]" in err.message and "x[t]" in err.message


def test_shape_mismatch_in_matmul_names_both_shapes(tmp_path):
    # h[t] = W @ b: '@' is column 10; W is (n_out, n_in), b a vector of size n_out
    check(tmp_path, PRE + "h[t] = W @ b\n" + LOSS, 6, 10, "shape mismatch", "(n_out, n_in)", "size n_out")


def test_shape_mismatch_in_hadamard(tmp_path):
    check(tmp_path, PRE + "h[t] = b * x[t]\n" + LOSS, 6, 10, "shape mismatch", "size n_out", "size n_in")


def test_shape_mismatch_on_continuation_line(tmp_path):
    text = PRE + (
        "h[t] = (W @ x[t]\n"   # line 6
        "        - x[t])\n"    # line 7: '-' at column 9
    ) + LOSS
    check(tmp_path, text, 7, 9, "shape mismatch", "n_out", "n_in")


def test_shape_mismatch_in_a_function_of_two_vectors(tmp_path):
    # loss L = Sum(cross_entropy(...), ...): the call starts at column 14
    text = PRE + "loss L = Sum(cross_entropy(x[t], softmax(W @ x[t])), (t, 1, T))\n"
    check(tmp_path, text, 6, 14, "shape mismatch", "cross_entropy", "n_in", "n_out")


def test_a_string_with_an_invalid_escape_is_refused_without_a_python_warning(tmp_path):
    # Found by the fuzzing: Python's parser warned about "\m" on stderr before the refusal.
    text = 'dim n\nparam b: n\nh = b + "\\m"\nloss L = sum(h)\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(tmp_path, text, 3, 9, "only numbers are allowed as constants")


@pytest.mark.parametrize("fname", ["cross_entropy", "squared_error"])
def test_a_function_of_two_vectors_does_not_broadcast_a_scalar(tmp_path, fname):
    # Found by the fuzzing: a scalar against a vector of a literal size reached SymPy's ShapeError.
    text = f"dim n\ninput a: scalar\nloss x = sum({fname}(a, concat(a, a)))\n"
    check(tmp_path, text, 3, 14, "shape mismatch", fname, "a is a scalar", "size 2")


def test_shape_mismatch_of_a_lagged_quantity(tmp_path):
    # h is n_out, but W.T @ h[t-1] needs h[t-1] to have n_out rows and gives n_in ones:
    # h[t] = W.T @ h[t-1] is reported where h is defined (column 8, start of the expression)
    text = PRE + "state h[0] = 0\nh[t] = W.T @ h[t-1]\n" + LOSS
    check(tmp_path, text, 7, 8, "shape mismatch", "n_in", "n_out")


def test_shape_mismatch_of_an_initial_state(tmp_path):
    text = PRE + "state h[0] = W\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 6, 14, "shape mismatch", "(n_out, n_in)", "size n_out")


def test_matmul_of_numbers(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t] * (2 @ 3)\n" + LOSS, 6, 22, "'@'")


# ---------------------------------------------------------------------------------------
# Functions


def test_unknown_function(tmp_path):
    check(tmp_path, PRE + "h[t] = softsign(W @ x[t])\n" + LOSS, 6, 8, "unknown function", "softsign")


@pytest.mark.parametrize("call", ["print(b)", "eval(b)", "exec(b)", "open(b)", "getattr(b)", "W(x[t])",
                                  "globals()", "__import__(b)"])
def test_call_of_anything_not_listed(tmp_path, call):
    check(tmp_path, PRE + f"h[t] = {call}\n" + LOSS, 6, 8, "unknown function", call.split("(")[0])


def test_call_of_a_method(tmp_path):
    check(tmp_path, PRE + "h[t] = np.tanh(W @ x[t])\n" + LOSS, 6, 8, "call of", "np.tanh", "not allowed")


def test_call_of_a_call(tmp_path):
    check(tmp_path, PRE + "h[t] = sigmoid(b)(b)\n" + LOSS, 6, 8, "call of", "not allowed")


def test_wrong_number_of_arguments(tmp_path):
    check(tmp_path, PRE + "h[t] = sigmoid(b, b)\n" + LOSS, 6, 8, "sigmoid", "1 argument", "2")


def test_function_used_as_a_value(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t] + tanh\n" + LOSS, 6, 19, "tanh", "function")


# ---------------------------------------------------------------------------------------
# Cycles, lags, future references


def test_cycle(tmp_path):
    text = PRE + (
        "h[t] = g[t] + b\n"   # line 6
        "g[t] = h[t]\n"       # line 7: the reference to h closes the loop (column 8)
    ) + LOSS
    check(tmp_path, text, 7, 8, "cycle", "h -> g -> h")


def test_cycle_of_a_static_quantity_with_itself(tmp_path):
    # s = sum(b) + s: the second 's' is column 14
    check(tmp_path, PRE + "s = sum(b) + s\nloss L = s\n", 6, 14, "cycle", "s -> s")


def test_cycle_at_the_same_step(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t] + h[t]\n" + LOSS, 6, 19, "cycle", "h -> h")


def test_lag_without_state(tmp_path):
    # h[t] = tanh(W @ x[t] + h[t-1]): 'h' of h[t-1] is column 24
    check(tmp_path, PRE + "h[t] = tanh(W @ x[t] + h[t-1])\n" + LOSS, 6, 24, "state", "h[0]")


def test_lag_of_two_with_only_one_state(tmp_path):
    text = PRE + "state h[0] = 0\nh[t] = tanh(W @ x[t] + h[t-2])\n" + LOSS
    check(tmp_path, text, 7, 24, "state", "h[-1]")


def test_future_reference(tmp_path):
    # version 2: a later step of a quantity needs a state after the sequence (data needs none)
    text = PRE + "state h[0] = 0\nh[t] = tanh(W @ x[t] + h[t+1])\n" + LOSS
    check(tmp_path, text, 7, 24, "later step without a state", "h[t+1]", "state h[T+1]")


def test_future_reference_as_negative_lag(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t - -1]\n" + LOSS, 6, 12)


# ---------------------------------------------------------------------------------------
# The loss


def test_loss_not_a_scalar(tmp_path):
    # loss L = Sum(W @ x[t], ...): the expression starts at column 10
    check(tmp_path, PRE + "loss L = Sum(W @ x[t], (t, 1, T))\n", 6, 10, "scalar", "L", "size n_out")


def test_static_loss_not_a_scalar(tmp_path):
    check(tmp_path, PRE + "loss L = W\n", 6, 10, "scalar", "(n_out, n_in)")


def test_missing_loss(tmp_path):
    # reported at the end of the file
    check(tmp_path, PRE + "h[t] = W @ x[t]\n", 6, 1, "no loss")


def test_second_loss(tmp_path):
    text = PRE + "h[t] = W @ x[t]\n" + LOSS + "loss M = sum(b)\n"
    check(tmp_path, text, 8, 1, "second loss", "'L'")


def test_loss_of_a_sequence_without_sum(tmp_path):
    check(tmp_path, PRE + "loss L = sum(W @ x[t])\n", 6, 18, "'x[...]'", "Sum")


# ---------------------------------------------------------------------------------------
# Disallowed Python constructs


def test_attribute_other_than_transpose(tmp_path):
    # h[t] = W.shape: 'shape' is column 10
    check(tmp_path, PRE + "h[t] = W.shape\n" + LOSS, 6, 10, "attribute", ".shape", "not allowed")


def test_dunder_attribute(tmp_path):
    check(tmp_path, PRE + "h[t] = x.__class__\n" + LOSS, 6, 10, "attribute", "__class__")


def test_dunder_attribute_after_transpose(tmp_path):
    # W.T.__class__: '__class__' is column 12
    check(tmp_path, PRE + "h[t] = W.T.__class__\n" + LOSS, 6, 12, "attribute", "__class__")


def test_attribute_on_a_continuation_line(tmp_path):
    text = PRE + "h[t] = (W @ x[t] + b\n        ).__dict__\n" + LOSS
    check(tmp_path, text, 7, 11, "attribute", "__dict__")


def test_lambda(tmp_path):
    check(tmp_path, PRE + "h[t] = (lambda: W)()\n" + LOSS, 6, 9, "lambdas are not part of the model language")


def test_lambda_as_argument(tmp_path):
    check(tmp_path, PRE + "h[t] = sigmoid(lambda z: z)\n" + LOSS, 6, 16, "lambdas are not part of the model language")


@pytest.mark.parametrize("expr, col", [
    ("sum([b for i in W])", 12),      # list comprehension, at '['
    ("sum({b for i in W})", 12),      # set comprehension
    ("sum({i: b for i in W})", 12),   # dict comprehension
    ("sum((b for i in W))", 12),      # generator expression, at its '('
    ("sum(b for i in W)", 11),        # a bare generator argument owns the call's parentheses
])
def test_comprehension(tmp_path, expr, col):
    check(tmp_path, PRE + f"h[t] = {expr}\n" + LOSS, 6, col, "comprehension", "not allowed")


def test_f_string(tmp_path):
    check(tmp_path, PRE + "h[t] = f'{W}'\n" + LOSS, 6, 8, "f-string", "not allowed")


def test_starred_argument(tmp_path):
    check(tmp_path, PRE + "h[t] = concat(*b)\n" + LOSS, 6, 15, "starred", "not allowed")


def test_keyword_argument(tmp_path):
    check(tmp_path, PRE + "h[t] = softmax(z=b)\n" + LOSS, 6, 16, "keyword")


def test_double_star_argument(tmp_path):
    check(tmp_path, PRE + "h[t] = softmax(**b)\n" + LOSS, 6, 16, "keyword")


def test_power_by_a_non_constant_exponent(tmp_path):
    # version 2: a ** k is an elementwise power by a constant number k; the exponent is pointed at
    check(tmp_path, PRE + "h[t] = b ** b\n" + LOSS, 6, 13, "exponent", "constant number", "'b'")


@pytest.mark.parametrize("op", ["<", "<=", "==", "!=", ">", "is", "in", "not in", "is not"])
def test_comparison(tmp_path, op):
    check(tmp_path, PRE + f"h[t] = b {op} b\n" + LOSS, 6, 10, "comparison", "not allowed")


@pytest.mark.parametrize("expr, col, words", [
    ("x[0]", 8, ["step"]),
    ("x[1:2]", 8, ["step"]),
    ("x[t*2]", 8, ["step"]),
    ("x[t-k]", 8, ["step"]),
    ("x[t-1.5]", 8, ["step"]),
    ("x[t, 1]", 8, ["step"]),
    ("x[s]", 8, ["step"]),
    ("x[1-t]", 8, ["step"]),
    ("x[t][0]", 8, ["only a name"]),
    ("(W @ x[t])[0]", 8, ["only a name"]),
    ("b[t]", 8, ["'b'", "not a sequence"]),
    ("b[0]", 8, ["step"]),
    ("W @ x", 12, ["'x'", "sequence", "x[t]"]),
])
def test_subscripts_other_than_t_or_t_minus_k(tmp_path, expr, col, words):
    check(tmp_path, PRE + f"h[t] = {expr}\n" + LOSS, 6, col, *words)


@pytest.mark.parametrize("expr, col, words", [
    ("'abc'", 8, ["constant", "str"]),
    ("b'abc'", 8, ["constant", "bytes"]),
    ("1j * b", 8, ["constant", "complex"]),
    ("... * b", 8, ["constant"]),
    ("None * b", 8, ["constant"]),
    ("True * b", 8, ["constant"]),
    ("b if b else b", 8, ["conditional", "not allowed"]),
    ("b and b", 8, ["boolean", "not allowed"]),
    ("(c := b)", 9, ["assignment", "not allowed"]),
    ("[b]", 8, ["list", "not allowed"]),
    ("{b}", 8, ["set", "not allowed"]),
    ("{1: b}", 8, ["dict", "not allowed"]),
    ("(b, b)", 8, ["tuple"]),          # a parenthesised tuple starts at its "("
    ("b // 2", 10, ["'//'"]),
    ("b % 2", 10, ["'%'"]),
    ("b | b", 10, ["'|'"]),
    ("~b", 8, ["operator", "not allowed"]),
    ("not b", 8, ["operator", "not allowed"]),
    ("b / 0", 10, ["division by zero"]),
])
def test_other_python_constructs(tmp_path, expr, col, words):
    check(tmp_path, PRE + f"h[t] = {expr}\n" + LOSS, 6, col, *words)


def test_time_index_as_a_value(tmp_path):
    check(tmp_path, PRE + "h[t] = t * b\n" + LOSS, 6, 8, "time index", "'t'")


def test_dim_as_an_exponent(tmp_path):
    # version 2: a dim inside an expression is its value, but an exponent is a constant number
    check(tmp_path, PRE + "h[t] = b ** n_in\n" + LOSS, 6, 13, "exponent", "constant number", "n_in")


def test_invalid_syntax(tmp_path):
    # h[t] = W @@ x[t]: Python reports the second '@' (column 11)
    check(tmp_path, PRE + "h[t] = W @@ x[t]\n" + LOSS, 6, 11, "invalid syntax")


def test_missing_expression(tmp_path):
    check(tmp_path, PRE + "h[t] =\n" + LOSS, 6, 7, "expression is missing")


def test_nesting_too_deep(tmp_path):
    # the 201st '(' of 'h = (((...': the first one is column 5
    text = PRE + "h = " + "(" * 300 + "b" + ")" * 300 + "\nloss L = sum(h)\n"
    check(tmp_path, text, 6, 205, "nested")


# ---------------------------------------------------------------------------------------
# Nothing in a model file is executed


def test_import_system_is_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pwned = tmp_path / "PWNED"
    text = PRE + "h[t] = __import__('os').system('touch PWNED')\n" + LOSS
    check(tmp_path, text, 6, 8, "call of", "not allowed")
    assert not pwned.exists()


@pytest.mark.parametrize("line, pos", [
    ("h[t] = W @ x[t] + __import__('os').system('touch PWNED')", (6, 19)),
    ("state h[0] = __import__('os').system('touch PWNED')", (6, 14)),
    ("param U: __import__('os').system('touch PWNED')", (6, 10)),
    ("param U: (n_in, __import__('os').system('touch PWNED'))", (6, 17)),
    ("input y: __import__('os').system('touch PWNED')", (6, 10)),
    ("loss L = Sum(sum(W @ x[t]), (t, 1, __import__('os').system('touch PWNED')))", (6, 36)),
    ("h[t] = [__import__('os').system('touch PWNED') for _ in W]", (6, 8)),
    ("h[t] = (lambda: __import__('os').system('touch PWNED'))()", (6, 9)),
    ("h[t] = b if __import__('os').system('touch PWNED') else b", (6, 8)),
])
def test_nothing_is_executed_anywhere(tmp_path, monkeypatch, line, pos):
    monkeypatch.chdir(tmp_path)
    if line.startswith("loss"):
        text = PRE + line + "\n"
    elif line.startswith("h[t]"):
        text = PRE + line + "\n" + LOSS
    else:
        text = PRE + line + "\n" + "h[t] = W @ x[t]\n" + LOSS
    err = model_error(tmp_path, text)
    assert (err.pos.line, err.pos.col) == pos, err.format()
    assert not (tmp_path / "PWNED").exists()


def test_huge_constant_expression_is_not_evaluated(tmp_path):
    # evaluating 9 ** 9 ** 9 ** 9 would never finish: 9 ** 9 is computed, 9 ** (9 ** 9) is refused at its '**'
    check(tmp_path, PRE + "h[t] = b * 9 ** 9 ** 9 ** 9\n" + LOSS, 6, 19, "'**'", "too large")


# ---------------------------------------------------------------------------------------
# Malformed declarations


@pytest.mark.parametrize("line, col, words", [
    ("dim n_in, 3m", 11, ["'3m'", "dim name"]),
    ("dim n_in,, m", 10, ["dim name"]),
    ("dim n_in m", 5, ["'n_in m'", "dim name"]),
    ("dim n_in, m-1", 11, ["dim name"]),
    ("dim", 1, ["dim"]),
])
def test_bad_dim(tmp_path, line, col, words):
    check(tmp_path, line + "\nparam b: n_in\nloss L = sum(b)\n", 1, col, *words)


@pytest.mark.parametrize("line, col, words", [
    ("param U: (n_out, k)", 18, ["unknown dim", "'k'"]),
    ("param U: k", 10, ["unknown dim", "'k'"]),
    ("param U: (k, n_in)", 11, ["unknown dim", "'k'"]),
    ("param U: (n_out, n_in + k)", 25, ["unknown dim", "'k'"]),
    ("param U: T", 10, ["unknown dim", "'T'"]),
    ("param U: (n_out, n_in, n_in)", 10, ["(ROWS, COLS)"]),
    ("param U: n_out - n_in", 10, ["size"]),
    ("param U: 0", 10, ["size"]),
    ("param U: (n_out, 1.5)", 18, ["size"]),
    ("param U", 1, ["param NAME"]),
    ("param U:", 9, ["expression is missing"]),
])
def test_bad_param_shape(tmp_path, line, col, words):
    check(tmp_path, PRE + line + "\nh[t] = W @ x[t]\n" + LOSS, 6, col, *words)


def test_param_shape_with_unknown_dim_on_continuation_line(tmp_path):
    text = PRE + "param U: (n_out,\n          k)\nh[t] = W @ x[t]\n" + LOSS
    check(tmp_path, text, 7, 11, "unknown dim", "'k'")


def test_state_with_positive_step(tmp_path):
    text = PRE + "state h[1] = 0\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 6, 9, "<= 0", "1")


def test_state_with_a_step_that_is_not_a_number(tmp_path):
    text = PRE + "state h[t-1] = 0\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 6, 9, "integer")


def test_state_defined_twice(tmp_path):
    text = PRE + "state h[0] = 0\nstate h[0] = b\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 7, 7, "defined twice", "h[0]")


def test_state_of_a_static_quantity(tmp_path):
    text = PRE + "state g[0] = 0\ng = 2 * b\nh[t] = W @ x[t] + g\n" + LOSS
    check(tmp_path, text, 6, 7, "'g'", "sequence")


def test_state_of_an_input(tmp_path):
    text = PRE + "state x[0] = 0\nh[t] = W @ x[t]\n" + LOSS
    check(tmp_path, text, 6, 7, "'x'", "input")


def test_state_of_an_undefined_name(tmp_path):
    text = PRE + "state q[0] = 0\nh[t] = W @ x[t]\n" + LOSS
    check(tmp_path, text, 6, 7, "'q'", "not defined")


def test_state_state_name_position_with_extra_spaces(tmp_path):
    text = PRE + "state   q[0] = 0\nh[t] = W @ x[t]\n" + LOSS
    check(tmp_path, text, 6, 9, "'q'", "not defined")


def test_state_that_is_an_expression(tmp_path):
    # version 2 allows an expression; W @ b is still checked (W has n_in columns, b is n_out)
    text = PRE + "state h[0] = W @ b\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 6, 16, "shape mismatch", "'@'")


def test_state_that_is_a_sequence(tmp_path):
    text = PRE + "state h[0] = tanh(W @ x)\nh[t] = W @ x[t] + h[t-1]\n" + LOSS
    check(tmp_path, text, 6, 23, "static", "'x' is a sequence", "c = x[T]")


@pytest.mark.parametrize("line, col, words", [
    ("input y[s]: n_in", 9, ["y[t]"]),
    ("input y[t-1]: n_in", 9, ["y[t]"]),
    ("input y[0]: n_in", 9, ["y[t]"]),
    ("input y[]: n_in", 9, ["y[t]"]),
    ("target y[T]: n_in", 10, ["y[t]"]),
    ("input y: k", 10, ["unknown dim", "'k'"]),
    ("input y[t]: (n_in, n_in, n_in)", 13, ["(ROWS, COLS)"]),  # version 2: a per-step matrix is (ROWS, COLS)
    ("input y: n_in, distribution", 16, ["only a target"]),
    ("input y[t]", 1, ["input NAME"]),
])
def test_bad_data_declaration(tmp_path, line, col, words):
    check(tmp_path, PRE + line + "\nh[t] = W @ x[t]\n" + LOSS, 6, col, *words)


def test_sequence_input_without_time_axis(tmp_path):
    check(tmp_path, "dim n\ninput y[t]: n\nparam b: n\nloss L = sum(b)\n", 2, 9, "time")


def test_sequence_equation_without_time_axis(tmp_path):
    check(tmp_path, "dim n\nparam b: n\nh[t] = b\nloss L = sum(b)\n", 3, 3, "time")


def test_second_time(tmp_path):
    text = PRE + "time s = 1..S\nh[t] = W @ x[t]\n" + LOSS
    check(tmp_path, text, 6, 1, "second time")


@pytest.mark.parametrize("line, col, words", [
    ("time t = 0..T", 1, ["time t = 1..T"]),
    ("time t = 1..", 1, ["time t = 1..T"]),
    ("time", 1, ["time t = 1..T"]),
    ("time t = 1..t", 13, ["different names"]),
    ("time lambda = 1..T", 6, ["keyword"]),
    ("time t = 1..n", 13, ["defined twice", "'n'"]),
])
def test_bad_time(tmp_path, line, col, words):
    check(tmp_path, "dim n\n" + line + "\nparam b: n\nloss L = sum(b)\n", 2, col, *words)


def test_latex_of_an_undefined_name(tmp_path):
    text = PRE + 'latex q "q"\nh[t] = W @ x[t]\n' + LOSS
    check(tmp_path, text, 6, 7, "'q'", "not defined")


def test_latex_without_quotes(tmp_path):
    text = PRE + "latex W \\mathbf{W}\nh[t] = W @ x[t]\n" + LOSS
    check(tmp_path, text, 6, 1, "latex")


@pytest.mark.parametrize("line, col, words", [
    ("model 3rnn", 1, ["model NAME"]),
    ("model", 1, ["model NAME"]),
    ("model a b", 1, ["model NAME"]),
    ("model class", 7, ["keyword"]),
])
def test_bad_model_line(tmp_path, line, col, words):
    check(tmp_path, PRE + line + "\nh[t] = W @ x[t]\n" + LOSS, 6, col, *words)


@pytest.mark.parametrize("line", ["foo bar", "h[t] == b", "h[t]", "paramW: n_in", "5 = b"])
def test_unreadable_statement(tmp_path, line):
    check(tmp_path, PRE + line + "\nh[t] = W @ x[t]\n" + LOSS, 6, 1)


# ---------------------------------------------------------------------------------------
# Names that cannot be used


@pytest.mark.parametrize("text, line, col, word", [
    (PRE + "lambda[t] = W @ x[t]\n" + LOSS, 6, 1, "'lambda'"),
    (PRE + "None = sum(b)\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 1, "'None'"),
    (PRE + "param class: n_in\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 7, "'class'"),
    (PRE + "input def[t]: n_in\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 7, "'def'"),
    (PRE + "target import: n_in\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 8, "'import'"),
    (PRE + "loss if = sum(b)\n", 6, 6, "'if'"),
    ("dim n, for\nparam b: n\nloss L = sum(b)\n", 1, 8, "'for'"),
    (PRE + "model import\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 7, "'import'"),
])
def test_python_keyword_as_a_name(tmp_path, text, line, col, word):
    check(tmp_path, text, line, col, "keyword", word)


@pytest.mark.parametrize("text, line, col, word", [
    (PRE + "sigmoid[t] = W @ x[t]\n" + LOSS, 6, 1, "'sigmoid'"),
    (PRE + "param softmax: n_in\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 7, "'softmax'"),
    (PRE + "input exp[t]: n_in\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 7, "'exp'"),
    (PRE + "Sum = sum(b)\n" + LOSS.replace("h[t]", "W @ x[t]"), 6, 1, "'Sum'"),
    (PRE + "concat[t] = W @ x[t]\n" + LOSS, 6, 1, "'concat'"),
    (PRE + "loss sum = sum(b)\n", 6, 6, "'sum'"),
    ("dim n, tanh\nparam b: n\nloss L = sum(b)\n", 1, 8, "'tanh'"),
    ("dim n\ntime log = 1..T\nparam b: n\nloss L = sum(b)\n", 2, 6, "'log'"),
])
def test_function_name_of_the_language_as_a_name(tmp_path, text, line, col, word):
    check(tmp_path, text, line, col, "function", word)


# ---------------------------------------------------------------------------------------
# The file itself


def test_invalid_utf8(tmp_path):
    # line 6 is '# café ' + an invalid byte: the bad byte is character 8 of the line
    data = PRE.encode() + "# café ".encode() + b"\xff\n" + LOSS.encode()
    err = check(tmp_path, data, 6, 8, "utf-8")
    assert "# café" in err.format()  # the line is shown


def test_invalid_utf8_on_first_line(tmp_path):
    check(tmp_path, b"\x80dim n\n", 1, 1, "utf-8")


def test_nul_byte(tmp_path):
    check(tmp_path, PRE + "h[t] = W @ x[t]\x00\n" + LOSS, 6, 16, "nul")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   \n# x\n"])
def test_empty_file(tmp_path, text):
    err = model_error(tmp_path, text)
    assert "no loss" in err.message
    assert err.pos.col == 1


def test_unclosed_parenthesis(tmp_path):
    # h[t] = sigmoid(W @ x[t]: the '(' never closed is column 15
    check(tmp_path, PRE + "h[t] = sigmoid(W @ x[t]\n" + LOSS, 6, 15, "unclosed")


def test_unclosed_parenthesis_at_end_of_file(tmp_path):
    check(tmp_path, PRE + LOSS + "h[t] = (sigmoid(W @ x[t])\n", 7, 8, "unclosed")


def test_unclosed_parenthesis_in_declaration(tmp_path):
    check(tmp_path, PRE + "param U: (n_out, n_in\n" + LOSS, 6, 10, "unclosed")


def test_unmatched_closing_parenthesis(tmp_path):
    # h[t] = sigmoid(W @ x[t])): the extra ')' is column 25
    check(tmp_path, PRE + "h[t] = sigmoid(W @ x[t]))\n" + LOSS, 6, 25, "unmatched", "')'")


def test_unmatched_closing_bracket_on_continuation_line(tmp_path):
    text = PRE + "h[t] = (W @ x[t]\n        + b]\n" + LOSS
    check(tmp_path, text, 7, 12, "invalid syntax")


def test_file_that_does_not_exist(tmp_path):
    with pytest.raises(ModelError) as info:
        load(tmp_path / "missing.sdm")
    assert "cannot read" in info.value.message
    assert "missing.sdm" in info.value.format()


def test_parse_names_the_file(tmp_path):
    with pytest.raises(ModelError) as info:
        parse(PRE + "h[t] = W @ y[t]\n" + LOSS, "some/where.sdm")
    assert info.value.format().startswith("some/where.sdm:6:12: error: unknown name 'y'")


def test_error_is_exported():
    assert symderiv.ModelError is ModelError
    assert issubclass(ModelError, SymderivError)


# ---------------------------------------------------------------------------------------
# The command line: exit status 2, FILE:LINE:COL: error:, never a traceback

CLI_CASES = {
    "unknown-name": (PRE + "h[t] = W @ y[t] + b\n" + LOSS, 6, 12),
    "defined-twice": (PRE + "h[t] = W @ x[t]\nh[t] = b\n" + LOSS, 7, 1),
    "shape-mismatch": (PRE + "h[t] = W @ x[t] + x[t]\n" + LOSS, 6, 17),
    "unknown-function": (PRE + "h[t] = softsign(W @ x[t])\n" + LOSS, 6, 8),
    "cycle": (PRE + "h[t] = g[t] + b\ng[t] = h[t]\n" + LOSS, 7, 8),
    "lag-without-state": (PRE + "h[t] = tanh(W @ x[t] + h[t-1])\n" + LOSS, 6, 24),
    "future-reference": (PRE + "state h[0] = 0\nh[t] = tanh(W @ x[t] + h[t+1])\n" + LOSS, 7, 24),
    "loss-not-scalar": (PRE + "loss L = Sum(W @ x[t], (t, 1, T))\n", 6, 10),
    "missing-loss": (PRE + "h[t] = W @ x[t]\n", 6, 1),
    "attribute": (PRE + "h[t] = W.shape\n" + LOSS, 6, 10),
    "import-system": (PRE + "h[t] = __import__('os').system('touch PWNED')\n" + LOSS, 6, 8),
    "lambda": (PRE + "h[t] = (lambda: W)()\n" + LOSS, 6, 9),
    "comprehension": (PRE + "h[t] = sum([b for i in W])\n" + LOSS, 6, 12),
    "keyword-name": (PRE + "param class: n_in\n" + LOSS, 6, 7),
    "function-name": (PRE + "sigmoid[t] = W @ x[t]\n" + LOSS, 6, 1),
    "bad-dim": ("dim n, 3m\nparam b: n\nloss L = sum(b)\n", 1, 8),
    "unknown-dim": (PRE + "param U: (n_out, k)\n" + LOSS, 6, 18),
    "positive-state": (PRE + "state h[1] = 0\nh[t] = W @ x[t] + h[t-1]\n" + LOSS, 6, 9),
    "second-loss": (PRE + "h[t] = W @ x[t]\n" + LOSS + "loss M = sum(b)\n", 8, 1),
    "invalid-utf8": (PRE.encode() + b"# \xff\n" + LOSS.encode(), 6, 3),
    "nul": (PRE + "h[t] = W @ x[t]\x00\n" + LOSS, 6, 16),
    "empty": ("", 1, 1),
    "unclosed": (PRE + "h[t] = sigmoid(W @ x[t]\n" + LOSS, 6, 15),
    "deep-nesting": (PRE + "h = " + "(" * 300 + "b" + ")" * 300 + "\nloss L = sum(h)\n", 6, 205),
}


@pytest.mark.skipif(not (ROOT / "symderiv" / "cli.py").exists(), reason="symderiv/cli.py is not written yet")
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_reports_bad_model(tmp_path, case):
    text, line, col = CLI_CASES[case]
    path = write(tmp_path, text, f"{case}.sdm")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "symderiv", "show", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{path}:{line}:{col}: error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.skipif(not (ROOT / "symderiv" / "cli.py").exists(), reason="symderiv/cli.py is not written yet")
@pytest.mark.parametrize("target", ["missing.sdm", "."])
def test_cli_reports_unreadable_file(tmp_path, target):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "symderiv", "show", str(tmp_path / target)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_byte_order_mark_does_not_shift_columns(tmp_path):
    data = b"\xef\xbb\xbf" + (PRE + "h[t] = W @ y[t] + b\n" + LOSS).encode()
    err = check(tmp_path, data, 6, 12, "unknown name", "'y'")
    assert err.format().splitlines()[1].endswith("h[t] = W @ y[t] + b")
    err = check(tmp_path, b"\xef\xbb\xbfdim n, 3m\nparam b: n\nloss L = sum(b)\n", 1, 8, "'3m'")
    assert err.format().splitlines()[1].endswith("dim n, 3m")
