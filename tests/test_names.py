"""Names: any identifier the language accepts works, even one that collides with a Python
builtin or with what the generated module itself uses; the few that cannot be used get a
clear, positioned error.

"Works" means: the generated NumPy module (``render(d, "py", ...)``, imported) gives the
loss and gradients that symderiv's own evaluator gives, and its gradients agree with
central differences of its own loss.
"""

from __future__ import annotations

import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symderiv
from symderiv import ModelError
from symderiv.ops import FUNCTIONS

from .helpers import assert_module_is_right

# ---------------------------------------------------------------------------------------
# A recurrent model whose every name is a parameter of this template

TEMPLATE = """\
dim {D1}, {D2}, {D3}
time {t} = 1..{T}
input {x}[{t}]: {D1}
target {r}[{t}]: {D3}, distribution
param {W}: ({D2}, {D1})
param {V}: ({D2}, {D2})
param {b}: {D2}
param {U}: ({D3}, {D2})
param {c}: scalar
state {h}[0] = 0
{h}[{t}] = tanh({W} @ {x}[{t}] + {V} @ {h}[{t}-1] + {b})
{z}[{t}] = {c} * ({U} @ {h}[{t}])
{y}[{t}] = softmax({z}[{t}])
loss {L} = Sum(cross_entropy({r}[{t}], {y}[{t}]), ({t}, 1, {T}))
"""
ROLES = ["D1", "D2", "D3", "t", "T", "x", "r", "W", "V", "b", "U", "c", "h", "z", "y", "L"]
PLAIN = dict(D1="n_x", D2="n_h", D3="C", t="t", T="T", x="x", r="r", W="W", V="V", b="b", U="U", c="c", h="h",
             z="z", y="y", L="L")

# Names the generated module uses itself, Python builtins, and the like ('want' is left out:
# it is a known collision, see test_a_quantity_named_want below).
HOSTILE = [
    "np", "numpy", "range", "sum_", "params", "grads", "data", "out", "loss", "t", "T", "B", "i", "dtype",
    "values", "max", "min", "float", "int", "len", "zip", "reversed", "print", "object", "type", "list", "dict",
    "KeyError", "ValueError", "isinstance", "dims", "seed", "rng", "lr", "init_params", "forward",
    "gradients", "sgd_step", "loss_and_gradients", "DIMS", "PARAMS", "INPUTS", "_softmax", "_log_softmax",
    "_sigmoid", "_concat", "_run", "_prepare", "_external", "_matvec", "_outer", "_p", "_x", "_batched",
    "_values", "_loss", "_grads", "v_p", "v_x", "x", "x_", "h", "y", "z", "a", "e", "k", "s", "v", "p",
    "width", "parts", "step", "self", "os", "sys", "math", "__import__", "__builtins__", "__name__", "y_h",
    "y_z", "T_", "i_", "B_", "L", "C", "n", "m",
]

CASES = {
    "plain": PLAIN,
    "generated-code-names": dict(D1="np", D2="range", D3="B", t="i", T="T", x="data", r="out", W="params",
                                 V="grads", b="loss", U="values", c="dtype", h="max", z="sum_", y="float",
                                 L="len"),
    "time-swapped": dict(D1="t", D2="i", D3="n", t="T", T="t_", x="x", r="r", W="W", V="V", b="b", U="U",
                         c="c", h="h", z="z", y="y", L="loss"),
    "module-api": dict(D1="DIMS", D2="PARAMS", D3="INPUTS", t="t", T="T", x="forward", r="gradients",
                       W="init_params", V="sgd_step", b="loss_and_gradients", U="dims", c="seed", h="rng",
                       z="lr", y="_want", L="zip"),
    "helpers": dict(D1="_p", D2="_x", D3="_batched", t="t", T="T", x="_softmax", r="_log_softmax",
                    W="_sigmoid", V="_concat", b="_run", U="_prepare", c="_external", h="_values", z="_loss",
                    y="_grads", L="_matvec"),
    "prefixed": dict(D1="v_p", D2="v_x", D3="_outer", t="t", T="T", x="x_", r="r", W="W", V="v", b="_W",
                     U="v_W", c="e", h="y_h", z="y_z", y="p", L="s"),
    "python": dict(D1="os", D2="sys", D3="math", t="t", T="T", x="print", r="object", W="KeyError",
                   V="ValueError", b="isinstance", U="type", c="self", h="__import__", z="__builtins__",
                   y="__name__", L="reversed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_names_that_collide_with_generated_code_or_builtins(case, tmp_path):
    assert_module_is_right(TEMPLATE.format(**CASES[case]), tmp_path)


@settings(max_examples=max(10, settings.default.max_examples // 4))
@given(st.permutations(HOSTILE).map(lambda names: dict(zip(ROLES, names)))
       .filter(lambda names: "params" not in (names["x"], names["r"])))  # known: test_data_named_params
def test_any_assignment_of_hostile_names(tmp_path_factory, names):
    assert_module_is_right(TEMPLATE.format(**names), tmp_path_factory.mktemp("names"))


def test_static_model_with_hostile_names(tmp_path):
    text = """\
dim np, range
input data: np
target out: range
param params: (range, np)
param grads: range
param T: scalar
z = T * (params @ data) + grads
loss loss = squared_error(out, tanh(z))
"""
    assert_module_is_right(text, tmp_path)


def test_relu_step_and_a_quantity_named_step(tmp_path):
    # relu's derivative is spelled 'step' in the closed forms; a quantity may be called 'step' too
    text = """\
dim n, k
input x: n
param W: (k, n)
param step: k
a = relu(W @ x + step)
loss L = sum(a * a)
"""
    assert_module_is_right(text, tmp_path)


# The generated module names the adjoint of X `d_X` and the gradient of parameter X `g_X`,
# unless the model itself uses that name.

def test_a_param_named_like_an_adjoint(tmp_path):
    text = """\
dim n, k
time t = 1..T
input x[t]: n
param W: (k, n)
param d_y_h: (k, k)
state h[0] = 0
h[t] = tanh(W @ x[t] + d_y_h @ h[t-1])
loss L = Sum(sum(h[t] * h[t]), (t, 1, T))
"""
    assert_module_is_right(text, tmp_path)


def test_a_param_named_like_a_gradient(tmp_path):
    text = """\
dim n, k
input x: n
param W: (k, n)
param g_W: (k, n)
param b: n
h = tanh(W @ x + g_W @ b)
loss L = sum(h * h)
"""
    assert_module_is_right(text, tmp_path)


def test_a_quantity_named_want(tmp_path):
    assert_module_is_right(TEMPLATE.format(**dict(PLAIN, y="want")), tmp_path)


def test_data_named_params(tmp_path):
    assert_module_is_right(TEMPLATE.format(**dict(PLAIN, x="params")), tmp_path)


# ---------------------------------------------------------------------------------------
# Names that cannot be used: a clear error at the name


@pytest.mark.parametrize("name", sorted(set(keyword.kwlist) | set(keyword.softkwlist)))
@pytest.mark.parametrize("place", ["param {}: n", "input {}: n", "{} = sum(b)", "loss {} = sum(b)", "dim n2, {}",
                                   "model {}"])
def test_python_keywords_cannot_be_names(name, place):
    line = place.format(name)
    loss = "" if place.startswith("loss") else "loss L = sum(b)\n"
    text = f"dim n\nparam b: n\n{line}\n{loss}"
    with pytest.raises(ModelError) as info:
        symderiv.parse(text, "k.sdm")
    err = info.value
    assert err.pos.line == 3 and err.pos.col == line.index(name, 1 if place.startswith("{}") else 4) + 1 \
        if not place.startswith("{}") else err.pos.col == 1, err.format()
    assert "keyword" in err.message and f"'{name}'" in err.message, err.format()


PLACES = ["param {}: n", "target {}: n", "{} = sum(b)", "loss {} = sum(b)", "dim n2, {}", "time {} = 1..T"]


@pytest.mark.parametrize("place", PLACES)
def test_d_is_a_name_in_version_2(place):
    """Version 2, "Names": d (a claims file's d(...) is another matter) names anything."""
    line = place.format("d")
    loss = "" if place.startswith("loss") else "loss L = sum(b)\n"
    symderiv.parse(f"dim n\nparam b: n\n{line}\n{loss}", "f.sdm")


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("place", PLACES)
def test_function_names_cannot_be_names(name, place):
    line = place.format(name)
    loss = "" if place.startswith("loss") else "loss L = sum(b)\n"
    text = f"dim n\nparam b: n\n{line}\n{loss}"
    with pytest.raises(ModelError) as info:
        symderiv.parse(text, "f.sdm")
    err = info.value
    assert err.pos.line == 3, err.format()
    assert err.pos.col == (1 if place.startswith("{}") else line.index(name, 4) + 1), err.format()
    assert "function" in err.message and f"'{name}'" in err.message, err.format()


@pytest.mark.parametrize("name", ["2x", "x-y", "x.y", "é", "x y", "$x", "x'"])
def test_names_that_are_not_identifiers(name):
    with pytest.raises(ModelError) as info:
        symderiv.parse(f"dim n\nparam b: n\nparam {name}: n\nloss L = sum(b)\n", "f.sdm")
    assert info.value.pos.line == 3
