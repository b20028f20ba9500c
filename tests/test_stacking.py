"""Rewrites for speed in the generated code. Stacked products: pre-activations W_k v_t + … that multiply the same
vector v_t in the time loop (the gates of an LSTM or GRU) are views of one array, so the loop
does one product per step for all of them, the backward loop one for all their δ, and their
weight gradients are one product over all steps, split by rows.

And f(q_t) read by several loop terms (tanh(c_t) of an LSTM) is computed once for all steps; a
softmax whose log the loss reads is computed with that log, by one call; a value of one step is
written into its slot of the sequence array (np.tanh(c, out=h[i + 1]); h[i + 1] *= o); f(…) written
inside an equation, whose value the backward pass reads too, is kept by the forward pass.

Each model here exercises one case of these rewrites; each is checked against symderiv's own
evaluation and central differences (``assert_module_is_right``), batched against the sum of
single examples, and its forward values against the evaluator, so a wrong block, offset or
split point fails.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symderiv
from symderiv.check.evaluate import evaluate, random_point
from symderiv.render.emit import render

from .helpers import EXAMPLES, GENERATED, assert_module_is_right, generated_module, public_data

HEADER = """model m
dim n_x, n_a, n_b, C
time t = 1..T
input x[t]: n_x
target r[t]: C, distribution
"""

# Four gates over h_{t-1}, one of another size; two have no bias, so their constant blocks are
# zeros; the sigmoids are not next to each other in the model, and go side by side in the stack.
DIFFERENT_SIZES = HEADER + """
param W_a: (n_a, n_x)
param U_a: (n_a, n_a)
param b_a: n_a
param W_b: (n_a, n_x)
param U_b: (n_a, n_a)
param W_c: (n_a, n_x)
param U_c: (n_a, n_a)
param W_e: (n_b, n_x)
param U_e: (n_b, n_a)
param b_e: n_b
param V_e: (n_a, n_b)
param W_y: (C, n_a)
state h[0] = 0
a[t] = sigmoid(W_a @ x[t] + U_a @ h[t-1] + b_a)
b[t] = tanh(W_b @ x[t] + U_b @ h[t-1])
c[t] = sigmoid(U_c @ h[t-1] + W_c @ x[t])
e[t] = sigmoid(W_e @ x[t] + U_e @ h[t-1] + b_e)
h[t] = a[t] * h[t-1] - c[t] * b[t] + V_e @ e[t]
p[t] = softmax(W_y @ h[t])
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
"""

# Two stacks: the first layer's gates over h1_{t-1}, and the second layer's over h1_t (computed in
# the same step) and h2_{t-1}, without a part outside the loop, one of them with a bias.
SAME_STEP_VECTOR = HEADER + """
param W_1: (n_a, n_x)
param U_1: (n_a, n_a)
param A_1: (n_a, n_a)
param B_1: (n_a, n_x)
param W_2: (n_b, n_a)
param U_2: (n_b, n_b)
param A_2: (n_b, n_a)
param B_2: (n_b, n_b)
param c_2: n_b
param W_y: (C, n_b)
state h1[0] = 0
state h2[0] = 0
g1[t] = sigmoid(W_1 @ x[t] + U_1 @ h1[t-1])
k1[t] = tanh(B_1 @ x[t] + A_1 @ h1[t-1])
h1[t] = g1[t] * k1[t]
g2[t] = sigmoid(W_2 @ h1[t] + U_2 @ h2[t-1] + c_2)
k2[t] = tanh(A_2 @ h1[t] + B_2 @ h2[t-1])
h2[t] = g2[t] * k2[t] + (1 - g2[t]) * h2[t-1]
p[t] = softmax(W_y @ h2[t])
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
"""

# A pre-activation the loss reads directly: its δ has a part outside the loop, so only the
# forward pass is stacked and the backward pass keeps one array per δ.
READ_OUTSIDE = HEADER + """
param W_a: (n_a, n_x)
param U_a: (n_a, n_a)
param b_a: n_a
param W_b: (n_a, n_x)
param U_b: (n_a, n_a)
param b_b: n_a
param W_y: (C, n_a)
param V_y: (C, n_a)
state h[0] = 0
ya[t] = W_a @ x[t] + U_a @ h[t-1] + b_a
yb[t] = W_b @ x[t] + U_b @ h[t-1] + b_b
h[t] = sigmoid(ya[t]) * tanh(yb[t])
p[t] = softmax(W_y @ h[t] + V_y @ ya[t])
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
"""

# The LSTM of the zoo with its stacked input [h_{t-1}; x_t]: the recurrent blocks are column
# slices of each W.
LSTM = (EXAMPLES / "lstm_tagger.sdm").read_text(encoding="utf-8")

# tanh(c_t) read by the loop terms of δc (twice) and of δz_o: computed once for all steps;
# tanh(c_{t-1}) (in δz_f) reads the initial state and is left where it is.
SHARED_TANH = HEADER + """
param W_f: (n_a, n_x)
param U_f: (n_a, n_a)
param W_o: (n_a, n_x)
param U_o: (n_a, n_a)
param W_c: (n_a, n_x)
param U_c: (n_a, n_a)
param W_y: (C, n_a)
state h[0] = 0
state c[0] = 0
f[t] = sigmoid(W_f @ x[t] + U_f @ h[t-1])
o[t] = sigmoid(W_o @ x[t] + U_o @ h[t-1])
c[t] = f[t] * c[t-1] + tanh(W_c @ x[t] + U_c @ h[t-1])
h[t] = o[t] * tanh(c[t]) + f[t] * tanh(c[t-1])
p[t] = softmax(W_y @ h[t])
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
"""

# Values of all steps at once, updated in place: a bias subtracted, a product of three arrays.
IN_PLACE = HEADER + """
param W_a: (n_a, n_x)
param b_a: n_a
param W_b: (n_a, n_x)
param W_y: (C, n_a)
param b_y: C
u[t] = W_a @ x[t] - b_a
v[t] = tanh(W_b @ x[t])
w[t] = u[t] * v[t] * u[t]
p[t] = softmax(W_y @ w[t] - b_y)
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
"""

# Functions applied inside an equation whose values the backward pass reads too: kept by the
# forward pass, step by step in the loop (tanh(U h_{t-1})) or for all steps at once (σ(W_a x_t)).
INLINE = HEADER + """
param W_a: (n_a, n_x)
param U: (n_a, n_a)
param W_y: (C, n_a)
state h[0] = 0
h[t] = tanh(U @ h[t-1]) + sigmoid(W_a @ x[t])
p[t] = softmax(W_y @ tanh(h[t]) + W_y @ sigmoid(W_a @ x[t]))
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
"""

# The LSTM with its candidate cell written inside the cell's equation: tanh(W_g z_t + b_g) is kept,
# and read by a factor of δz_i computed before the backward loop, which must not write into it.
LSTM_INLINE = LSTM.replace("g[t] = tanh(W_g @ v[t] + b_g)\n", "").replace(
    "i[t] * g[t]", "i[t] * tanh(W_g @ v[t] + b_g)").replace('latex g "\\tilde{\\mathbf{c}}"', "")

CASES = {
    # name: (model text, what the generated code must contain)
    "different sizes": (DIFFERENT_SIZES, ["_stack0[i] += h[i] @ _stack0_W.T", "np.zeros(n_a, dtype)",
                                          # the two sigmoids side by side, computed by one call
                                          "_stack0_W = np.concatenate([U_a, U_c, U_e, U_b])",
                                          "_sigmoid(_stack0[i, :, :n_b + 2 * n_a], out=_stack0_out0[i])",
                                          "d_h[i] += _d_stack0[i + 1] @ _stack0_W",
                                          "np.split(_stack0, [n_a, 2 * n_a, n_b + 2 * n_a], axis=-1)",
                                          # h_t written into its slot: the first term, then the others
                                          "np.multiply(a_[i], h[i], out=h[i + 1])", "h[i + 1] -= c[i] * b[i]"]),
    "same-step vector": (SAME_STEP_VECTOR, ["_stack0[i] += h1[i] @ _stack0_W.T",
                                            "_stack1[i] = h1[i + 1] @ _stack1_W0.T + h2[i] @ _stack1_W1.T + _stack1_b",
                                            "d_h1[i] = _d_stack1[i] @ _stack1_W0",
                                            "d_h2[i] += _d_stack1[i + 1] @ _stack1_W1",
                                            "_g_stack1_1 = _outer(_d_stack1, h2[:-1])"]),
    "read outside the loop": (READ_OUTSIDE, ["_stack0[i] += h[i] @ _stack0_W.T"]),
    "inline values": (INLINE, ["_sigmoid_in_h = _sigmoid(_matvec(W_a, x_))",
                               "np.tanh(h[i] @ U.T, out=_tanh_in_h[i])", "h[i + 1] += _tanh_in_h[i]",
                               "z_p += _matvec(W_y, _sigmoid_in_h)",  # kept once, read twice
                               "d_h[i] += (d_h[i + 1] * (1 - (_tanh_in_h[i + 1] ** 2))) @ U",
                               "g_U = _outer(d_h * (1 - (_tanh_in_h ** 2)), h[:-1])"]),
    "lstm inline": (LSTM_INLINE, ["_d_z_i_0 = 1 - i_", "_d_z_i_0 *= _tanh_in_c",
                                  "c[i + 1] += i_[i] * _tanh_in_c[i]",
                                  # the input projection inside the tanh, for all steps before the loop
                                  "_tanh_in_c_arg = _matvec(W_g[:, n_h:n_h + n_x], x_)",
                                  "_tanh_in_c_arg[i] += h[i] @ W_g[:, :n_h].T",
                                  "np.tanh(_tanh_in_c_arg[i], out=_tanh_in_c[i])", ", _tanh_in_c_arg  # not read"]),
    "in place": (IN_PLACE, ["u = _matvec(W_a, x_)", "u -= b_a", "z_p -= b_y", "d_z_v = 1 - (v_ ** 2)",
                            "d_z_v *= u ** 2", "d_z_v *= d_w"]),
    "shared tanh": (SHARED_TANH, ["_tanh_c = np.tanh(c[1:])", "(1 - (_tanh_in_c[i + 1] ** 2))) @ U_c",
                                  "g_W_c = _outer(d_c * (1 - (_tanh_in_c ** 2)), x_)",
                                  "(d_h[i + 1] * (1 - (_tanh_c[i] ** 2)) + d_c[i + 1])",
                                  "_d_f_0 = np.tanh(c[:-1])"]),
    "lstm": (LSTM, ["_stack0[i] += h[i] @ _stack0_W.T", "d_h[i] += _d_stack0[i + 1] @ _stack0_W",
                    "_sigmoid(_stack0[i, :, :3 * n_h], out=_stack0_out0[i])",
                    "np.multiply(f[i], c[i], out=c[i + 1])", "c[i + 1] += i_[i] * g[i]",
                    "np.tanh(c[i + 1], out=h[i + 1])", "h[i + 1] *= o[i]",
                    "np.multiply(_d_z_g_0[i], d_c[i], out=d_z_g[i])",
                    "_g_stack0_0 = _outer(_d_stack0, v_)", "_tanh_c = np.tanh(c[1:])",
                    # the cross-entropy reads log p, computed once with p
                    "p_, _log_p = _softmax_and_log(z_p)", "r * _log_p,"]),
}


def source(text):
    """The NumPy module of ``text`` as the plan writes it: without the rewrite of its lines into the
    module's workspace (``codegen/numpy/workspace.py``, tested by tests/test_workspace.py), which spells
    ``1 - i_`` as ``_ws.op(np.subtract, 1, i_)``, and without what the time loops read made once before
    them (``_T_W``, ``_M_W``, ``np.dot``, views of the steps; ``codegen/loops.py``, ``codegen/numpy/loop.py``, tested
    by tests/test_loop_rewrites.py); what these tests check is what the plan computes where."""
    from symderiv.codegen.numpy.printer import NumpyPrinter

    with mock.patch("symderiv.codegen.numpy.emitter.pooled", lambda text, sizes=frozenset(): text), \
            mock.patch("symderiv.codegen.numpy.emitter.around_loop", lambda phase: ([], [])), \
            mock.patch.object(NumpyPrinter, "step_transposes", False), \
            mock.patch.object(NumpyPrinter, "step_layouts", False), \
            mock.patch.object(NumpyPrinter, "step_dot", False):
        return render(symderiv.derive(symderiv.parse(text, "x.sdm")), "py", "x.sdm")


@pytest.mark.parametrize("case", CASES)
def test_the_stacked_form_is_generated(case):
    text, expected = CASES[case]
    code = source(text)
    for line in expected:
        assert line in code, line


def test_a_delta_read_outside_the_loop_is_not_stacked():
    code = source(READ_OUTSIDE)
    assert "_stack0" in code and "_d_stack0" not in code


def test_a_softmax_whose_log_is_not_read_is_computed_directly():
    text = SHARED_TANH.replace("cross_entropy", "squared_error")
    code = source(text)
    assert "p_ = _softmax(z_p)" in code and "_log_softmax(z_p)" not in code


def test_members_under_a_function_without_an_in_place_form_are_computed_one_by_one():
    # log has no ``out=`` form here (it is printed through the softmax or sigmoid it undoes)
    text = DIFFERENT_SIZES.replace("a[t] = sigmoid(", "a[t] = log(").replace("c[t] = sigmoid(", "c[t] = log(")
    code = source(text)
    compile(code, "x.py", "exec")
    assert "a_[i] = np.log(z_a[i])" in code and "_stack0[i] += h[i] @ _stack0_W.T" in code


def test_arrays_the_loop_does_not_read_are_freed_before_it():
    # The seed RNN's output-side gradients are computed before the backward loop, and what only
    # they and the adjoints before the loop read is freed there: the loop reuses that memory.
    code = (GENERATED / "seed_rnn.py").read_text(encoding="utf-8")
    backward = code.split("# ---- backward")[1]
    loop = backward.index("for i in reversed(range(T)):")
    assert backward.index("g_W_out = _outer(d_h_out, o)") < loop
    assert "    del d_h_out, r_hat, r, d_z_o, o\n" in backward[:loop]
    assert "del _x  # each input is held by its name" in code


def test_a_single_gate_is_not_stacked():
    assert "_stack" not in source((EXAMPLES / "seed_rnn.sdm").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES)
def test_stacked_module_is_right(case, tmp_path):
    assert_module_is_right(CASES[case][0], tmp_path, T=4)


@pytest.mark.parametrize("case", CASES)
def test_stacked_forward_values_and_batch(case, tmp_path):
    d = symderiv.derive(symderiv.parse(CASES[case][0], "x.sdm"))
    m = generated_module(d, tmp_path)
    dims = {name: 2 + k for k, name in enumerate(m.DIMS)}
    params = m.init_params(dims, seed=3)
    _, data = random_point(d.model, dims, 4, seed=4)
    x = public_data(d.model, data)
    exact = evaluate(d, dims, 4, params, data)
    values = m.forward(params, **x)
    for q in d.model.equations:
        if q.sequence:
            ref = np.stack([np.asarray(exact.forward[q.name][t], dtype=float)[:, 0] for t in range(1, 5)])
            assert np.allclose(values[q.name], ref, rtol=1e-10, atol=1e-12), q.name
    # A batch of three is the sum of the three examples alone.
    rng = np.random.default_rng(5)
    batch = {k: np.stack([v * rng.normal(1, 0.1, v.shape) for _ in range(3)], axis=-1) for k, v in x.items()}
    batch["r"] = batch["r"] / batch["r"].sum(axis=-2, keepdims=True)
    loss, grads = m.loss_and_gradients(params, **batch)
    singles = [m.loss_and_gradients(params, **{k: v[..., j] for k, v in batch.items()}) for j in range(3)]
    assert np.isclose(loss, sum(s[0] for s in singles), rtol=1e-12)
    for name in params:
        assert np.allclose(grads[name], sum(s[1][name] for s in singles), rtol=1e-10, atol=1e-13), name


@st.composite
def gated_models(draw):
    """A recurrent cell of 2–4 gates over h_{t-1}: each with or without an input term and a bias,
    of size n_a or n_b, under sigmoid, tanh or softplus, in any order; the first (a sigmoid) gates the state,
    the others feed it through a matrix; sometimes with a tanh written inside the state's equation."""
    k = draw(st.integers(2, 4))
    lines, params = [], ["param W_y: (C, n_a)"]
    terms = []
    for j in range(k):
        size = "n_a" if j == 0 else draw(st.sampled_from(["n_a", "n_b"]))
        # the state's gate is a sigmoid, so that the recurrence contracts and float64 stays exact
        act = "sigmoid" if j == 0 else draw(st.sampled_from(["sigmoid", "tanh", "softplus"]))
        parts = [f"U{j} @ h[t-1]"]
        params.append(f"param U{j}: ({size}, n_a)")
        if draw(st.booleans()):
            parts.insert(draw(st.integers(0, 1)), f"W{j} @ x[t]")
            params.append(f"param W{j}: ({size}, n_x)")
        if draw(st.booleans()):
            parts.append(f"b{j}")
            params.append(f"param b{j}: {size}")
        lines.append(f"g{j}[t] = {act}({' + '.join(parts)})")
        if j:
            params.append(f"param V{j}: (n_a, {size})")
            terms.append(f"V{j} @ g{j}[t]")
    if draw(st.booleans()):  # a function written inside the state's equation, maybe times a gate
        terms.append(draw(st.sampled_from(["", "g0[t] * "])) + "tanh(Wq @ x[t] + Uq @ h[t-1])")
        params += ["param Wq: (n_a, n_x)", "param Uq: (n_a, n_a)"]
    lines.append(f"h[t] = g0[t] * h[t-1] + {' + '.join(terms)}")
    return HEADER + "\n".join(params) + "\nstate h[0] = 0\n" + "\n".join(lines) + (
        "\np[t] = softmax(W_y @ h[t])\nloss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))\n")


@settings(max_examples=max(10, settings.default.max_examples // 4))
@given(gated_models())
def test_random_gated_cells_are_right(tmp_path_factory, text):
    assert_module_is_right(text, tmp_path_factory.mktemp("gated"), T=3)


# A model without time written in one line: every gradient reads tanh(W1 x + b1) and the residual.
ONE_LINE = """model m
dim n_x, n_1, n_y
input x: n_x
target y: n_y
param W1: (n_1, n_x)
param b1: n_1
param W2: (n_y, n_1)
param b2: n_y
loss L = squared_error(y, W2 @ tanh(W1 @ x + b1) + b2)
"""


def test_a_model_without_time_computes_each_repeated_expression_once(tmp_path):
    code = source(ONE_LINE)
    run = code.split("def _run")[1].split("def forward")[0]
    assert run.count("np.tanh(") == 1 and run.count("x_ @ W1.T") == 1, run
    assert "g_W2 = _outer(_v0, _v2)" in run
    assert_module_is_right(ONE_LINE, tmp_path)


@st.composite
def one_line_models(draw):
    """A network without time written as one expression: 1–3 layers under any activation, the
    same layer sometimes read twice, the loss a squared error or a cross-entropy."""
    params, x = [], "x"
    sizes = ["n_x", "n_1", "n_2", "n_y"]
    layers = draw(st.integers(1, 3))
    for k in range(layers):
        out = sizes[k + 1] if k + 1 < layers else "n_y"
        params.append(f"param W{k}: ({out}, {sizes[k]})")
        z = f"W{k} @ {x}"
        if draw(st.booleans()):
            params.append(f"param b{k}: {out}")
            z += f" + b{k}"
        if k + 1 < layers:
            act = draw(st.sampled_from(["tanh", "sigmoid", "softplus"]))
            x = f"{act}({z})"
            if draw(st.booleans()):  # the same hidden layer read twice
                x = f"({x} * {x})"
        else:
            x = z
    loss = draw(st.sampled_from([f"squared_error(y, {x})", f"cross_entropy(y, softmax({x}))"]))
    return ("model m\ndim n_x, n_1, n_2, n_y\ninput x: n_x\ntarget y: n_y, distribution\n"
            + "\n".join(params) + f"\nloss L = {loss}\n")


@settings(max_examples=max(10, settings.default.max_examples // 4))
@given(one_line_models())
def test_random_one_line_models_are_right(tmp_path_factory, text):
    # Against symderiv's own evaluation of the closed forms only: squared tanh layers make some
    # gradients so small that central differences cannot resolve them to 1e-5.
    d = symderiv.derive(symderiv.parse(text, "x.sdm"))
    m = generated_module(d, tmp_path_factory.mktemp("oneline"))
    dims = {name: 2 + k for k, name in enumerate(m.DIMS)}
    params = m.init_params(dims, seed=1)
    _, data = random_point(d.model, dims, None, seed=2)
    loss, grads = m.loss_and_gradients(params, **public_data(d.model, data))
    exact = evaluate(d, dims, None, params, data)
    assert np.isclose(loss, float(exact.loss), rtol=1e-10, atol=1e-12)
    for name, g in grads.items():
        ref = np.asarray(exact.gradients[name], dtype=float).reshape(np.shape(g))
        assert np.allclose(g, ref, rtol=1e-8, atol=1e-12 * max(1.0, np.abs(ref).max())), name
