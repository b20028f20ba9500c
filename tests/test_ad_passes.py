"""The passes of the derivation, one at a time: ``tidy``, ``collect`` and ``positive_first`` on
small hand-built matrix expressions, and the sweep (``_Sweep``, ``name_preactivations``,
``_choose_named``) on small models.

Each test asserts what the result means: its structure (what was factored out, what was
cancelled, which term leads) and, through a NumPy evaluator written here from the
definitions of the nodes, that it has the value of what went in at a random point.
"""

import numpy as np
import pytest
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix

import symderiv
from symderiv.ad.derive import _choose_named, _Sweep, name_preactivations
from symderiv.ad.simplify import collect, tidy
from symderiv.ir.expr import (
    Apply,
    At,
    Delta,
    RowSlice,
    add,
    coeff_and_rest,
    hadamard,
    hadamard_div,
    matmul,
    neg,
    positive_first,
    scale,
    sub,
    transpose,
)

n = 3
x, a, b, u, v = (MatrixSymbol(s, n, 1) for s in "xabuv")
W = MatrixSymbol("W", n, n)
h = MatrixSymbol("h", n, 1)

ELEMENTWISE = {"tanh": np.tanh, "exp": np.exp, "log": np.log, "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


def value(e, env: dict):
    """The NumPy value of a matrix expression; ``env`` holds the leaves (symbols, x_t, δx)."""
    if e in env:
        return env[e]
    if isinstance(e, (sp.Number, int, float)):
        return float(e)
    if isinstance(e, OneMatrix):
        return np.ones(tuple(int(s) for s in e.shape))
    if isinstance(e, ZeroMatrix):
        return np.zeros(tuple(int(s) for s in e.shape))
    if isinstance(e, MatAdd):
        return sum(value(t, env) for t in e.args)
    if isinstance(e, MatMul):
        coeff, out = 1.0, None
        for f in e.args:
            f = value(f, env)
            if np.ndim(f) == 0:
                coeff *= f
            else:
                out = f if out is None else out @ f
        return coeff * out
    if isinstance(e, HadamardProduct):
        out = value(e.args[0], env)
        for f in e.args[1:]:
            out = out * value(f, env)
        return out
    if isinstance(e, HadamardPower):
        return value(e.args[0], env) ** float(e.args[1])
    if isinstance(e, Transpose):
        return value(e.arg, env).T
    if isinstance(e, RowSlice):
        return value(e.arg, env)[int(e.start):int(e.stop)]
    if isinstance(e, Apply):
        return ELEMENTWISE[e.fname](value(e.arg, env))
    raise TypeError(f"no value for {type(e).__name__}: {e}")


def point(*symbols, seed: int = 0, positive: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    env = {}
    for s in symbols:
        shape = tuple(int(d) for d in s.shape)
        env[s] = rng.uniform(0.2, 0.9, shape) if positive else rng.standard_normal(shape)
    return env


def assert_same_value(before, after, env):
    assert np.allclose(value(before, env), value(after, env), rtol=1e-12, atol=1e-12), (before, after)


def test_the_evaluator_multiplies_matrices_and_numbers():
    """The reference itself, against NumPy written out by hand."""
    env = point(W, x, a)
    assert np.allclose(value(MatMul(2, W, x), env), 2 * env[W] @ env[x])
    assert np.allclose(value(MatMul(Transpose(x), W, a), env), env[x].T @ env[W] @ env[a])
    assert np.allclose(value(HadamardProduct(x, HadamardPower(a, -1)), env), env[x] / env[a])


# ---------------------------------------------------------------------------------------
# collect


def test_collect_gathers_a_shared_hadamard_factor():
    terms = [hadamard(x, a), hadamard(x, b)]
    out = collect(terms)
    assert isinstance(out, HadamardProduct) and x in out.args
    (rest,) = [f for f in out.args if f != x]
    assert isinstance(rest, MatAdd) and set(rest.args) == {a, b}
    assert_same_value(add(*terms), out, point(x, a, b))


def test_collect_keeps_the_coefficients_of_the_terms_inside():
    terms = [scale(2, hadamard(x, a)), scale(-3, hadamard(b, x))]
    out = collect(terms)
    assert isinstance(out, HadamardProduct) and x in out.args
    (rest,) = [f for f in out.args if f != x]
    assert {coeff_and_rest(t) for t in rest.args} == {(2, a), (-3, b)}
    assert_same_value(add(*terms), out, point(x, a, b, seed=1))


@pytest.mark.parametrize("side", ["left", "right"])
def test_collect_gathers_a_shared_matrix_factor(side):
    if side == "left":  # W a + W b = W (a + b)
        terms, shared, where = [matmul(W, a), matmul(W, b)], W, 0
    else:  # a hᵀ + b hᵀ = (a + b) hᵀ
        terms, shared, where = [matmul(a, transpose(h)), matmul(b, transpose(h))], transpose(h), -1
    out = collect(terms)
    assert isinstance(out, MatMul) and out.args[where] == shared and len(out.args) == 2
    inner = out.args[1 + where] if where == 0 else out.args[0]
    assert isinstance(inner, MatAdd) and set(inner.args) == {a, b}
    assert_same_value(add(*terms), out, point(W, a, b, h, seed=2))


def test_collect_gathers_a_shared_row_slice():
    terms = [RowSlice(a, 0, 2), RowSlice(b, 0, 2)]
    out = collect(terms)
    assert isinstance(out, RowSlice) and (out.start, out.stop) == (0, 2)
    assert isinstance(out.arg, MatAdd) and set(out.arg.args) == {a, b}
    assert_same_value(add(*terms), out, point(a, b, seed=3))


def test_collect_combines_like_terms_first_and_drops_zeros():
    half = sp.Rational(1, 2)
    assert collect([scale(half, a), scale(half, a), ZeroMatrix(n, 1)]) == a
    assert collect([ZeroMatrix(n, 1)]) is None
    assert collect([]) is None


def test_collect_leaves_a_sum_with_nothing_shared():
    terms = [hadamard(x, a), matmul(W, b)]
    out = collect(terms)
    assert isinstance(out, MatAdd) and len(out.args) == 2
    assert_same_value(add(*terms), out, point(x, a, W, b, seed=4))


def test_collect_factors_twice_when_the_rest_shares_again():
    """x ⊙ (W a) + x ⊙ (W b): x comes out, then W out of what is left."""
    terms = [hadamard(x, matmul(W, a)), hadamard(x, matmul(W, b))]
    out = collect(terms)
    assert isinstance(out, HadamardProduct) and x in out.args
    (rest,) = [f for f in out.args if f != x]
    assert isinstance(rest, MatMul) and rest.args[0] == W
    assert_same_value(add(*terms), out, point(x, W, a, b, seed=5))


# ---------------------------------------------------------------------------------------
# tidy


def _powers(e) -> list:
    return [p for p in sp.preorder_traversal(e) if isinstance(p, HadamardPower)]


def test_tidy_cancels_a_division_by_distributing():
    """x ⊙ (a ⊘ x + b) = a + x ⊙ b: no division is left."""
    e = HadamardProduct(x, MatAdd(hadamard_div(a, x), b))
    out = tidy(e)
    assert _powers(out) == []
    assert isinstance(out, MatAdd) and a in out.args and hadamard(x, b) in out.args
    assert_same_value(e, out, point(x, a, b, positive=True))


def test_tidy_turns_bce_through_a_sigmoid_into_p_minus_y():
    """(−y ⊘ p + (1 − y) ⊘ (1 − p)) ⊙ p ⊙ (1 − p): both divisions cancel, leaving
    p ⊙ (1 − y) − (1 − p) ⊙ y, which is p − y."""
    y, z = MatrixSymbol("y", n, 1), MatrixSymbol("z", n, 1)
    p = Apply("sigmoid", z)
    one = OneMatrix(n, 1)
    dp = add(neg(hadamard_div(y, p)), hadamard_div(sub(one, y), sub(one, p)))
    e = HadamardProduct(dp, p, sub(one, p))
    out = tidy(e)
    assert _powers(out) == []
    assert isinstance(out, MatAdd) and len(out.args) == 2
    env = point(y, z, seed=6)
    assert_same_value(e, out, env)
    assert_same_value(sub(p, y), out, env)


def test_tidy_fuses_a_transpose_with_its_division():
    """uᵀ (v ⊘ u) = 1ᵀ v."""
    e = MatMul(Transpose(u), HadamardProduct(v, HadamardPower(u, -1)))
    out = tidy(e)
    assert out == MatMul(OneMatrix(1, n), v)
    assert_same_value(e, out, point(u, v, positive=True, seed=7))


def test_tidy_sums_a_distribution_to_one_only_when_declared():
    r = MatrixSymbol("r", n, 1)
    e = MatMul(OneMatrix(1, n), At(r, 0))
    assert tidy(e, frozenset({"r"})) == OneMatrix(1, 1)
    assert tidy(e) == e
    assert tidy(e, frozenset({"other"})) == e


def test_tidy_pulls_coefficients_in_front_and_keeps_the_value():
    e = MatMul(W, MatMul(3, x)) + MatMul(W, MatMul(-3, x)) + a
    out = tidy(e)
    assert out == a  # 3 W x − 3 W x is nothing
    e = HadamardProduct(MatMul(2, x), MatMul(-1, a))
    out = tidy(e)
    assert coeff_and_rest(out) == (-2, HadamardProduct(x, a))
    assert_same_value(e, out, point(x, a, W, seed=8))


# ---------------------------------------------------------------------------------------
# positive_first


def test_positive_first_moves_a_positive_term_to_the_front():
    r, rhat = MatrixSymbol("r", n, 1), MatrixSymbol("rhat", n, 1)
    e = MatAdd(neg(r), neg(a), rhat, b)
    out = positive_first(e)
    assert out.args == (rhat, neg(r), neg(a), b)  # only the first positive term moves
    assert_same_value(e, out, point(r, rhat, a, b, seed=9))


def test_positive_first_leaves_what_it_cannot_improve():
    all_negative = MatAdd(neg(a), neg(b))
    assert positive_first(all_negative).args == all_negative.args
    leading = MatAdd(a, neg(b))
    assert positive_first(leading).args == leading.args
    assert positive_first(neg(a)) == neg(a)  # not a sum


# ---------------------------------------------------------------------------------------
# The sweep


def _swept(text: str):
    model = symderiv.parse(text, "passes.sdm")
    model, pre = name_preactivations(model)
    sweep = _Sweep(model)
    for q in reversed(model.equations):
        sweep.equation(q)
    return model, pre, sweep


STATIC = "dim n\nparam W: (n, n)\nparam b: n\ninput x: n\ntarget r: n\nz = W @ x + b\nloss L = squared_error(r, z)\n"
RECURRENT = ("dim n\ntime t = 1..T\nparam W: (n, n)\nparam U: (n, n)\ninput x[t]: n\ntarget r[t]: n\n"
             "state h[0] = 0\nh[t] = tanh(W @ x[t] + U @ h[t-1])\n"
             "loss L = Sum(squared_error(r[t], h[t]), (t, 1, T))\n")


def test_the_sweep_gives_each_input_of_a_product_its_vector_jacobian_product():
    """The contribution to W of z = W x + b is δz xᵀ: the gradient of ⟨δz, W x⟩ in W, which
    central differences confirm at a random point."""
    model, _, sweep = _swept(STATIC)
    z = model.quantities["z"].symbol
    (contribution,) = sweep.adjoints["W"].static
    (to_b,) = sweep.adjoints["b"].static
    Wsym, xsym = model.quantities["W"].symbol, model.quantities["x"].symbol
    rng = np.random.default_rng(10)
    k = 3
    env = {Delta(z): rng.standard_normal((k, 1)), Wsym: rng.standard_normal((k, k)), xsym: rng.standard_normal((k, 1))}
    got = value(contribution, env)

    def pairing(w):
        return (env[Delta(z)].T @ (w @ env[xsym])).item()

    fd = np.zeros((k, k))
    for i, j in np.ndindex(k, k):
        step = np.zeros((k, k))
        step[i, j] = 1e-6
        fd[i, j] = (pairing(env[Wsym] + step) - pairing(env[Wsym] - step)) / 2e-6
    assert np.allclose(got, fd, atol=1e-8)
    assert to_b == Delta(z)  # z is b plus something: δb gets δz itself


def test_the_sweep_records_a_lag_as_a_term_from_the_next_step():
    """h[t-1] read by z_h at step t: δh_t gets Uᵀ δz_{h,t+1}, a term of offset +1."""
    model, pre, sweep = _swept(RECURRENT)
    assert pre == {"h": "z_h"}
    adj = sweep.adjoints["h"]
    U = model.quantities["U"].symbol
    z_h = model.quantities["z_h"].symbol
    lagged = [t for t in adj.terms if t.offset == 1]
    assert [t.expr for t in lagged] == [matmul(transpose(U), At(Delta(z_h), 1))]
    assert ("z_h", 1) in adj.consumers and ("L", 0) in adj.consumers
    assert all(t.offset == 0 for t in sweep.adjoints["z_h"].terms)


def test_preactivations_are_named_and_keep_the_forward_values():
    model = symderiv.parse(STATIC.replace("z = W @ x + b", "z = tanh(W @ x + b)"), "pre.sdm")
    named, pre = name_preactivations(model)
    assert pre == {"z": "a_z"}  # the model's own z takes the letter z: the pre-activation is a_z
    y = named.quantities["a_z"]
    assert y.auxiliary and y.expr == model.quantities["z"].expr.arg
    assert named.quantities["z"].expr == Apply("tanh", y.symbol)
    assert named.order.index("a_z") < named.order.index("z")
    k = 3
    leaves = [model.quantities[q].symbol for q in ("W", "b", "x")]
    env = dict(zip(leaves, (np.eye(k) * 0.5 + 0.1, np.ones((k, 1)), np.arange(k)[:, None] / k)))
    before = value(model.quantities["z"].expr, env)
    env[y.symbol] = value(y.expr, env)
    after = value(named.quantities["z"].expr, env)
    assert np.allclose(before, after)


def test_a_preactivation_letter_avoids_the_models_own_names():
    """The pre-activation of y is z_y (never y_y, whatever the model calls its output); a model
    with a quantity z of its own (a GRU's update gate) gets a_h; two activations of one body
    (h_1, h_2) get the whole name (z_h_1, z_h_2), and a layer's number stays a subscript (h1: z_h_1)."""
    text = ("dim n\nparam W: (n, n)\ninput x: n\ntarget r: n\ny = tanh(W @ x)\n"
            "loss L = squared_error(r, y)\n")
    _, pre = name_preactivations(symderiv.parse(text, "letters.sdm"))
    assert pre == {"y": "z_y"}
    _, pre = name_preactivations(symderiv.parse(text.replace("y = tanh(W @ x)", "z = W @ x\ny = tanh(W @ z)"),
                                                "own_z.sdm"))
    assert pre == {"y": "a_y"}
    text = ("dim n\nparam W: (n, n)\ninput x: n\ntarget r: n\nh_1 = tanh(W @ x)\nh_2 = tanh(W @ h_1)\n"
            "loss L = squared_error(r, h_2)\n")
    _, pre = name_preactivations(symderiv.parse(text, "shared.sdm"))
    assert pre == {"h_1": "z_h_1", "h_2": "z_h_2"}
    _, pre = name_preactivations(symderiv.parse(text.replace("h_", "h"), "layers.sdm"))
    assert pre == {"h1": "z_h_1", "h2": "z_h_2"}


@pytest.mark.parametrize("readers, named", [(1, False), (2, True)])
def test_an_activation_read_once_is_inlined_and_one_read_twice_is_named(readers, named):
    second = "o2 = W @ a\nloss L = squared_error(r, o) + squared_error(r, o2)\n" if readers == 2 else \
        "loss L = squared_error(r, o)\n"
    text = "dim n\nparam W: (n, n)\nparam V: (n, n)\ninput x: n\ntarget r: n\na = tanh(W @ x)\no = V @ a\n" + second
    model, _, sweep = _swept(text)
    _choose_named(model, sweep.adjoints)
    assert sweep.adjoints["a"].named is named
    assert sweep.adjoints["o"].named and sweep.adjoints["z_a"].named  # not activations: always named
    d = symderiv.derive(symderiv.parse(text, "inline.sdm"))
    a = d.model.quantities["a"].symbol
    mentions = any(Delta(a) in sp.preorder_traversal(adj.closed) for adj in d.adjoints.values())
    assert mentions is named  # an inlined adjoint appears in no closed form


def test_one_row_softmax_predicate_for_the_sweep_and_the_printer():
    """softmax(Sᵀ)ᵀ is recognised by one function of ir/expr.py: the sweep's meaning (log_softmax too, its
    adjoint is inlined alike) and the printer's (softmax only: log P is computed from P's logits)."""
    import sympy as sp

    from symderiv.ad import derive
    from symderiv.codegen.numpy import printer
    from symderiv.ir.expr import LogSoftmax, Softmax, is_row_softmax

    S = sp.MatrixSymbol("S", 3, 4)
    row, log_row = sp.Transpose(Softmax(sp.Transpose(S))), sp.Transpose(LogSoftmax(sp.Transpose(S)))
    assert is_row_softmax(row) and is_row_softmax(row, log_too=True)
    assert not is_row_softmax(log_row) and is_row_softmax(log_row, log_too=True)
    for other in (Softmax(S), LogSoftmax(S), sp.Transpose(S)):
        assert not is_row_softmax(other) and not is_row_softmax(other, log_too=True)
    assert not hasattr(derive, "_row_softmax") and not hasattr(printer, "_is_row_softmax")
    assert derive.is_row_softmax is printer.is_row_softmax is is_row_softmax
