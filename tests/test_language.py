"""The model language (MODEL_LANGUAGE.md): what valid files mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp
from sympy import ZeroMatrix

import symderiv
from symderiv import load, parse
from symderiv.ir.expr import At

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed_rnn.sdm"

# The example of MODEL_LANGUAGE.md, verbatim.
SEED_TEXT = """\
# Backprop-through-time homework RNN
model seed_rnn
dim n_x, n_a, n_h, n_o, C
time t = 1..T

input  x[t]: n_x
target r[t]: C, distribution

param W_in: (n_a, n_x)
param b_in: n_a
param U: (n_h, n_a)
param V: (n_h, n_h)
param b_h: n_h
param W: (n_o, n_h)
param b_o: n_o
param W_out: (C, n_o)
param b_out: C

state h[0] = 0

a_in[t]  = sigmoid(W_in @ x[t] + b_in)
h[t]     = sigmoid(U @ a_in[t] + V @ h[t-1] + b_h)
o[t]     = sigmoid(W @ h[t] + b_o)
h_out[t] = W_out @ o[t] + b_out
r_hat[t] = softmax(h_out[t])

loss L = Sum(cross_entropy(r[t], r_hat[t]), (t, 1, T))
"""


def shape(model, *dims):
    """A shape written with the model's dim names; an int stands for itself."""
    return tuple(model.dims[d] if isinstance(d, str) else sp.Integer(d) for d in dims)


def same(a, b) -> bool:
    return sp.expand(sp.sympify(a) - sp.sympify(b)) == 0


def same_shape(model, name, *dims) -> bool:
    return all(same(x, y) for x, y in zip(model[name].shape, shape(model, *dims)))


def write(tmp_path: Path, text: str, name: str = "model.sdm") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------
# The example


@pytest.fixture(scope="module")
def seed():
    return load(SEED)


def test_example_file_is_the_documented_example():
    assert SEED.read_text(encoding="utf-8") == SEED_TEXT


def test_example_parses(seed):
    assert isinstance(seed, symderiv.Model)
    assert seed.name == "seed_rnn"
    assert list(seed.dims) == ["n_x", "n_a", "n_h", "n_o", "C"]
    assert all(d.is_integer and d.is_positive for d in seed.dims.values())
    assert seed.time_index == "t"
    assert seed.length == sp.Symbol("T", integer=True, positive=True)
    assert seed.has_time
    assert seed.loss == "L"


@pytest.mark.parametrize("name, role, dims, sequence", [
    ("x", "input", ("n_x", 1), True),
    ("r", "target", ("C", 1), True),
    ("W_in", "param", ("n_a", "n_x"), False),
    ("b_in", "param", ("n_a", 1), False),
    ("U", "param", ("n_h", "n_a"), False),
    ("V", "param", ("n_h", "n_h"), False),
    ("b_h", "param", ("n_h", 1), False),
    ("W", "param", ("n_o", "n_h"), False),
    ("b_o", "param", ("n_o", 1), False),
    ("W_out", "param", ("C", "n_o"), False),
    ("b_out", "param", ("C", 1), False),
    ("a_in", "intermediate", ("n_a", 1), True),
    ("h", "intermediate", ("n_h", 1), True),
    ("o", "intermediate", ("n_o", 1), True),
    ("h_out", "intermediate", ("C", 1), True),
    ("r_hat", "intermediate", ("C", 1), True),
    ("L", "loss", (1, 1), False),
])
def test_example_quantities(seed, name, role, dims, sequence):
    q = seed[name]
    assert q.role == role
    assert q.shape == shape(seed, *dims)
    assert q.sequence is sequence


def test_example_roles_and_order(seed):
    assert [q.name for q in seed.params] == ["W_in", "b_in", "U", "V", "b_h", "W", "b_o", "W_out", "b_out"]
    assert [q.name for q in seed.data] == ["x", "r"]
    order = seed.order
    assert set(order) == {"a_in", "h", "o", "h_out", "r_hat", "L"}
    for before, after in [("a_in", "h"), ("h", "o"), ("o", "h_out"), ("h_out", "r_hat"), ("r_hat", "L")]:
        assert order.index(before) < order.index(after)
    assert order[-1] == "L"


def test_example_states_and_recurrence(seed):
    n_h = seed.dims["n_h"]
    assert seed.states == {"h": {0: ZeroMatrix(n_h, 1)}}
    assert seed.max_lag("h") == 1
    h = seed["h"]
    assert h.expr.has(At(h.symbol, -1))          # h[t-1]
    assert h.expr.has(At(seed["a_in"].symbol, 0))  # a_in[t]
    assert h.expr.has(seed["V"].symbol)
    assert not seed["o"].expr.has(At(h.symbol, -1))


def test_example_targets(seed):
    assert seed["r"].distribution is True
    assert seed["x"].distribution is False


def test_example_positions(seed):
    assert seed["h"].pos.line == 22
    assert seed["W_in"].pos.line == 9
    assert seed["L"].pos.line == 27
    assert seed["L"].pos.file == str(SEED)


def test_parse_and_load_agree(seed, tmp_path):
    text_model = parse(SEED_TEXT, str(SEED))
    bytes_model = parse(SEED_TEXT.encode("utf-8"), str(SEED))
    for m in (text_model, bytes_model):
        assert m.name == seed.name
        assert m.order == seed.order
        for name, q in seed.quantities.items():
            assert m[name].shape == q.shape
            assert m[name].expr == q.expr


# ---------------------------------------------------------------------------------------
# Lines: any order, comments, continuation


def test_equations_and_declarations_in_any_order(seed):
    lines = [ln for ln in SEED_TEXT.splitlines() if ln.strip()]
    reordered = "\n".join(reversed(lines)) + "\n"  # loss first, dims last
    m = parse(reordered, "seed_rnn_reversed.sdm")
    assert m.name == "seed_rnn"
    for name, q in seed.quantities.items():
        assert m[name].role == q.role
        assert m[name].shape == q.shape
        assert m[name].expr == q.expr
    assert m.states == seed.states
    order = m.order
    for before, after in [("a_in", "h"), ("h", "o"), ("o", "h_out"), ("h_out", "r_hat"), ("r_hat", "L")]:
        assert order.index(before) < order.index(after)


def test_comments(seed):
    text = SEED_TEXT.replace("dim n_x, n_a, n_h, n_o, C", "dim n_x, n_a, n_h, n_o, C   # sizes")
    text = text.replace("state h[0] = 0", "state h[0] = 0  # starts at zero\n    # an indented comment")
    text = text.replace("o[t]     = sigmoid(W @ h[t] + b_o)", "o[t] = sigmoid(W @ h[t] + b_o)#no space")
    text = "#!\n# header\n\n" + text + "# trailing comment without newline"
    m = parse(text, "c.sdm")
    for name, q in seed.quantities.items():
        assert m[name].shape == q.shape
        assert m[name].expr == q.expr
    assert m["h"].pos.line == seed["h"].pos.line + 4


def test_continuation_lines_inside_parentheses(seed):
    text = SEED_TEXT.replace(
        "h[t]     = sigmoid(U @ a_in[t] + V @ h[t-1] + b_h)",
        "h[t] = sigmoid(U @ a_in[t]      # input part\n"
        "               + V @ h[t-1]     # recurrent part\n"
        "\n"
        "               # a comment line in the middle\n"
        "               + b_h\n"
        ")",
    ).replace(
        "loss L = Sum(cross_entropy(r[t], r_hat[t]), (t, 1, T))",
        "loss L = Sum(\n    cross_entropy(r[t],\n                  r_hat[t]),\n    (t, 1, T))",
    ).replace("param W_in: (n_a, n_x)", "param W_in: (n_a,\n              n_x)")
    m = parse(text, "cont.sdm")
    for name, q in seed.quantities.items():
        assert m[name].shape == q.shape
        assert m[name].expr == q.expr
    # the statement after a continued one is still one line each
    assert m["o"].pos.line == seed["o"].pos.line + 6


def test_crlf_line_endings(seed):
    m = parse(SEED_TEXT.replace("\n", "\r\n"), "crlf.sdm")
    for name, q in seed.quantities.items():
        assert m[name].expr == q.expr
    assert m["h"].pos.line == seed["h"].pos.line


def test_unusual_characters_in_comments_do_not_split_lines(seed):
    # form feed, NEL and LINE SEPARATOR are not line ends of a model file
    text = SEED_TEXT.replace("# Backprop-through-time homework RNN",
                             "# Backprop\x0cthrough\x85time\u2028homework RNN — σ(z) ∂L/∂W")
    m = parse(text, "u.sdm")
    assert m["h"].pos.line == seed["h"].pos.line
    assert m["h"].expr == seed["h"].expr


def test_tabs_and_spaces(seed):
    text = SEED_TEXT.replace("param V: (n_h, n_h)", "param\tV :\t( n_h ,n_h )").replace(
        "r_hat[t] = softmax(h_out[t])", "\tr_hat [ t ]=softmax( h_out[ t ] )")
    m = parse(text, "tabs.sdm")
    assert m["V"].shape == seed["V"].shape
    assert m["r_hat"].expr == seed["r_hat"].expr


# ---------------------------------------------------------------------------------------
# Declarations


def test_dim_sums_in_shapes():
    text = """\
dim n_x, n_h
time t = 1..T
input x[t]: n_x
target y[t]: n_h
param W: (n_h, n_h + n_x)
param b: n_h
param u: n_h + n_x
state h[0] = 0
z[t] = concat(h[t-1], x[t])
h[t] = tanh(W @ z[t] + b)
loss L = Sum(squared_error(y[t], h[t]) + u.T @ z[t], (t, 1, T))
"""
    m = parse(text, "sums.sdm")
    n_x, n_h = m.dims["n_x"], m.dims["n_h"]
    assert same(m["W"].shape[1], n_h + n_x) and m["W"].shape[0] == n_h
    assert same(m["u"].shape[0], n_h + n_x)
    assert same(m["z"].shape[0], n_h + n_x) and m["z"].shape[1] == 1
    assert m["h"].shape == (n_h, 1)


def test_concat_of_a_lagged_quantity():
    # the usual 'W @ [h_{t-1}; x_t]' recurrence: h[t-1] is used before h's size is known
    text = """\
dim n_x, n_h
time t = 1..T
input x[t]: n_x
target y[t]: n_h
param W: (n_h, n_h + n_x)
param b: n_h
state h[0] = 0
h[t] = tanh(W @ concat(h[t-1], x[t]) + b)
loss L = Sum(squared_error(y[t], h[t]), (t, 1, T))
"""
    m = parse(text, "concat.sdm")
    n_h = m.dims["n_h"]
    assert m["h"].shape == (n_h, 1)
    assert m["h"].expr.has(At(m["h"].symbol, -1))
    assert m.states["h"][0] == ZeroMatrix(n_h, 1)


def test_scalar_param():
    text = """\
dim n
input x: n
param s: scalar
param w: n
loss L = s * (w.T @ x) + s
"""
    m = parse(text, "scalar.sdm")
    assert m["s"].shape == (1, 1)
    assert m["s"].is_scalar and m["s"].kind == "scalar"
    assert m["w"].kind == "vector" and m["w"].is_vector
    assert m["L"].shape == (1, 1)
    assert m.latex("s") == "s"  # a scalar is not bold


def test_integer_sizes():
    m = parse("dim n\nparam W: (2, n)\nparam b: 2\ninput x: n\nloss L = sum(W @ x + b)\n", "ints.sdm")
    assert m["W"].shape == (2, m.dims["n"])
    assert m["b"].shape == (2, 1)


def test_target_distribution():
    text = """\
dim n, C
time t = 1..T
input x[t]: n
target r[t]: C, distribution
target y: C
param W: (C, n)
param c: C
loss L = Sum(cross_entropy(r[t], softmax(W @ x[t])), (t, 1, T)) + squared_error(y, c)
"""
    m = parse(text, "dist.sdm")
    assert m["r"].distribution is True
    assert m["r"].role == "target" and m["r"].sequence
    assert m["y"].distribution is False
    assert m["y"].role == "target" and not m["y"].sequence
    assert m["x"].distribution is False


def test_static_input_and_target():
    m = parse("dim n\ninput x: n\ntarget y: n, distribution\nparam W: (n, n)\n"
              "loss L = cross_entropy(y, softmax(W @ x))\n", "static_data.sdm")
    assert not m["x"].sequence and not m["y"].sequence
    assert m["y"].distribution


def test_latex_override():
    text = SEED_TEXT + 'latex W_in "\\mathbf{W}_{xh}"\nlatex h "\\boldsymbol{\\eta}"\nlatex L "J" # a comment\n'
    m = parse(text, "latex.sdm")  # ('#' inside a spelling is refused: tests/test_tex_allowlist.py)
    assert m.latex_overrides == {"W_in": r"\mathbf{W}_{xh}", "h": r"\boldsymbol{\eta}", "L": "J"}
    assert m.latex("W_in") == r"\mathbf{W}_{xh}"
    assert r"\boldsymbol{\eta}" in m.latex("h", "t-1")
    assert "t-1" in m.latex("h", "t-1")
    assert m.latex("b_h") == r"\mathbf{b}_h"  # others keep the default


def test_latex_override_may_come_before_the_name():
    m = parse('latex w "\\omega"\ndim n\nparam w: n\nloss L = sum(w)\n', "early.sdm")
    assert m.latex("w") == r"\omega"


@pytest.mark.parametrize("name, step, expected", [
    ("W_in", None, r"\mathbf{W}^{(\mathrm{in})}"),
    ("b_h", None, r"\mathbf{b}_h"),
    ("a_in", "t", r"\mathbf{a}^{(\mathrm{in})}_t"),
    ("r_hat", "t", r"\hat{\mathbf{r}}_t"),
    ("h", "t-1", r"\mathbf{h}_{t-1}"),
    ("L", None, r"\mathcal{L}"),
    ("W_out", None, r"\mathbf{W}^{(\mathrm{out})}"),
    ("h_out", "t", r"\mathbf{h}^{(\mathrm{out})}_t"),
    ("V", None, r"\mathbf{V}"),
])
def test_default_latex_names(seed, name, step, expected):
    assert seed.latex(name, step) == expected


def test_states_with_lag_two_and_param_initial_states():
    text = """\
dim n
time t = 1..T
input x[t]: n
param A: (n, n)
param B: (n, n)
param h0: n
param h_m1: n
state h[0] = h0
state h[-1] = h_m1
h[t] = tanh(A @ h[t-1] + B @ h[t-2] + x[t])
loss L = Sum(sum(h[t]), (t, 1, T))
"""
    m = parse(text, "lag2.sdm")
    assert m.states == {"h": {0: m["h0"].symbol, -1: m["h_m1"].symbol}}
    assert m.max_lag("h") == 2
    assert m["h"].expr.has(At(m["h"].symbol, -1))
    assert m["h"].expr.has(At(m["h"].symbol, -2))
    assert m["h"].shape == (m.dims["n"], 1)


def test_state_zero_as_float_and_mixed_initial_states():
    text = """\
dim n
time t = 1..T
input x[t]: n
param h0: n
state h[-1] = 0.0
state h[0] = h0
h[t] = h[t-1] * h[t-2] + x[t]
loss L = Sum(sum(h[t]), (t, 1, T))
"""
    m = parse(text, "mixed.sdm")
    n = m.dims["n"]
    assert m.states["h"] == {0: m["h0"].symbol, -1: ZeroMatrix(n, 1)}


def test_state_lines_may_follow_the_equation():
    text = "dim n\ntime t = 1..T\ninput x[t]: n\nh[t] = h[t-1] + x[t]\nloss L = Sum(sum(h[t]), (t, 1, T))\n" \
           "state h[0] = 0\n"
    m = parse(text, "late_state.sdm")
    assert m.max_lag("h") == 1


def test_model_name_line(tmp_path):
    m = load(write(tmp_path, "model mine\ndim n\nparam w: n\nloss L = sum(w)\n", "other_name.sdm"))
    assert m.name == "mine"


def test_default_model_name_is_the_file_stem(tmp_path):
    path = write(tmp_path, "dim n\nparam w: n\nloss L = sum(w)\n", "my_net.sdm")
    m = load(path)
    assert m.name == "my_net"
    assert m.path == str(path)
    assert parse("dim n\nparam w: n\nloss L = sum(w)\n", "some/dir/two_layer.sdm").name == "two_layer"


def test_model_line_anywhere_in_the_file():
    m = parse("dim n\nparam w: n\nloss L = sum(w)\nmodel at_the_end\n", "x.sdm")
    assert m.name == "at_the_end"


def test_static_model_without_time():
    text = """\
# a two-layer perceptron
dim n_x, n_h, C
input x: n_x
target y: C, distribution
param W1: (n_h, n_x)
param b1: n_h
param W2: (C, n_h)
param b2: C
z = W1 @ x + b1
a = relu(z)
p = softmax(W2 @ a + b2)
loss L = cross_entropy(y, p)
"""
    m = parse(text, "mlp.sdm")
    assert not m.has_time
    assert m.time_index is None and m.length is None
    assert m.states == {}
    assert not any(q.sequence for q in m.quantities.values())
    assert m["z"].shape == shape(m, "n_h", 1)
    assert m["p"].shape == shape(m, "C", 1)
    assert m["L"].shape == (1, 1)
    assert m.order == ["z", "a", "p", "L"]


def test_quantities_named_like_python_builtins():
    text = """\
dim n, k
time t = 1..T
input x[t]: n
input sum_x: n
param np: (n, n)
param range: scalar
param params: (k, n)
param len: k
param list: scalar
out[t] = np @ x[t] + range * sum_x
loss[t] = sum(out[t]) * list
print = params @ sum_x + len
dict[t] = loss[t] * print
loss L = Sum(sum(dict[t]), (t, 1, T))
"""
    m = parse(text, "builtins.sdm")
    n, k = m.dims["n"], m.dims["k"]
    assert m["np"].shape == (n, n) and m["np"].role == "param"
    assert m["range"].shape == (1, 1)
    assert m["params"].shape == (k, n)
    assert m["sum_x"].role == "input"
    assert m["out"].shape == (n, 1) and m["out"].sequence
    assert m["loss"].role == "intermediate" and m["loss"].shape == (1, 1)
    assert m["print"].shape == (k, 1) and not m["print"].sequence
    assert m["dict"].shape == (k, 1)
    assert m.loss == "L" and m["L"].role == "loss"


def test_static_intermediate_named_loss():
    m = parse("dim n\nparam w: n\ninput x: n\nloss = w.T @ x\nloss L = loss * loss\n", "l.sdm")
    assert m["loss"].role == "intermediate"
    assert m.loss == "L"
    assert m.order == ["loss", "L"]


@pytest.mark.parametrize("name", ["dim", "time", "param", "state", "model", "latex", "input", "target"])
def test_statement_keywords_as_quantity_names(name):
    m = parse(f"dim n\nparam w: n\n{name} = sum(w)\nloss L = {name} * 2\n", "kw.sdm")
    assert m[name].role == "intermediate"


def test_names_without_the_time_index():
    # names such as 'tt', 'T_x', 't0' are not the time index or the length
    text = """\
dim n
time t = 1..T
input x[t]: n
param tt: n
param t0: scalar
T_x[t] = tt * x[t] + t0
loss L = Sum(sum(T_x[t]), (t, 1, T))
"""
    m = parse(text, "tnames.sdm")
    assert m["T_x"].sequence and m["T_x"].shape == (m.dims["n"], 1)


def test_other_time_index_name():
    text = "dim n\ntime k = 1..K\ninput x[k]: n\nh[k] = x[k] + h[k-1]\nstate h[0] = 0\n" \
           "loss J = Sum(sum(h[k]), (k, 1, K))\n"
    m = parse(text, "k.sdm")
    assert m.time_index == "k" and m.length.name == "K"
    assert m.max_lag("h") == 1


# ---------------------------------------------------------------------------------------
# Expressions


def test_expression_shapes():
    text = """\
dim n, m
time t = 1..T
input x[t]: n
input v: m
param W: (m, n)
param c: scalar
a[t] = W @ x[t]
b[t] = W.T @ a[t]
s[t] = sum(a[t])
g[t] = 1 - sigmoid(a[t])
q[t] = -a[t] * g[t] / (exp(a[t]) + 1) + 0.5 * v
u[t] = concat(a[t], x[t], v)
r[t] = log_softmax(u[t]) + log(softplus(u[t])) + relu(u[t]) + tanh(u[t])
w = c * W / 2
loss L = Sum(s[t] + sum(r[t]) + squared_error(a[t], q[t]) + x[t].T @ (w.T @ v), (t, 1, T))
"""
    m = parse(text, "exprs.sdm")
    n, mm = m.dims["n"], m.dims["m"]
    assert m["a"].shape == (mm, 1)
    assert m["b"].shape == (n, 1)
    assert m["s"].shape == (1, 1)
    assert m["g"].shape == (mm, 1)
    assert m["q"].shape == (mm, 1)
    assert same(m["u"].shape[0], 2 * mm + n)
    assert same(m["r"].shape[0], 2 * mm + n)
    assert m["w"].shape == (mm, n) and not m["w"].sequence
    assert m["L"].shape == (1, 1)


def test_sum_over_time_in_a_static_equation():
    text = """\
dim n
time t = 1..T
input x[t]: n
param w: n
total = Sum(x[t], (t, 1, T))
loss L = w.T @ total
"""
    m = parse(text, "total.sdm")
    assert not m["total"].sequence
    assert m["total"].shape == (m.dims["n"], 1)


def test_static_quantities_inside_per_step_equations():
    text = """\
dim n
time t = 1..T
input x[t]: n
param w: n
v = 2 * w
h[t] = v * x[t]
loss L = Sum(sum(h[t]), (t, 1, T))
"""
    m = parse(text, "static_in_step.sdm")
    assert not m["v"].sequence and m["h"].sequence
    assert m.order.index("v") < m.order.index("h")


def test_transpose_of_transpose():
    m = parse("dim n\nparam w: n\ninput x: n\nloss L = -x.T.T.T @ w\n", "tt.sdm")
    assert m["L"].shape == (1, 1)


def test_scientific_and_float_constants():
    m = parse("dim n\nparam w: n\nloss L = 1e-3 * sum(w) + 2.5 + 1_000\n", "consts.sdm")
    assert m["L"].shape == (1, 1)


def test_quantity_computed_from_a_lag_of_a_later_quantity():
    # z depends on h[t-1] and h on z[t]: z's size is only known once h is built
    text = """\
dim n
time t = 1..T
input x[t]: n
param V: (n, n)
state h[0] = 0
z[t] = V @ h[t-1]
h[t] = tanh(z[t] + x[t])
loss L = Sum(sum(h[t]), (t, 1, T))
"""
    m = parse(text, "pre.sdm")
    n = m.dims["n"]
    assert m["z"].shape == (n, 1)
    assert m["h"].shape == (n, 1)
    assert m.order.index("z") < m.order.index("h")
    # every reference to z carries z's final size
    assert m["h"].expr.has(At(m["z"].symbol, 0))


def test_byte_order_mark(tmp_path, seed):
    path = tmp_path / "bom.sdm"
    path.write_bytes(b"\xef\xbb\xbf" + SEED_TEXT.replace("# Backprop-through-time homework RNN\n", "").encode())
    m = load(path)
    assert m.name == "seed_rnn"
    assert m["h"].expr == seed["h"].expr
    assert m["h"].pos.line == seed["h"].pos.line - 1
