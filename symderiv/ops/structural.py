"""Every node class of the expression IR, and the structural functions of the language.

One ``Node`` record per class: its vector-Jacobian rule (in the spirit of autograd's
``numpy_vjps.py``, written through ``out``, the node's forward value: ``p ⊙ g − p (pᵀ g)``
for a softmax), its numeric evaluation, its tidy rule and its scalar meaning entry by entry
(certification differentiates that meaning itself).  Then one ``LanguageFunction`` record
per structural function of the model language: its arity and how it checks and builds its
expression.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..ir.expr import (
    Apply,
    At,
    AtEnd,
    AtStep,
    ColSlice,
    Concat,
    Delta,
    Det,
    Diag,
    Inv,
    LogDet,
    LogSoftmax,
    Norm2,
    RowSlice,
    Softmax,
    TimeSum,
    Trace,
    Window,
    add,
    coeff_and_rest,
    hadamard,
    inverse,
    matmul,
    neg,
    scalar_times,
    scale,
    sub,
    transpose,
)
from .base import ELEMENTWISE, LanguageFunction, Node, register
from .derivatives import activation_derivative
from .numeric import elementwise_function

# ---------------------------------------------------------------------------------------
# Vector-Jacobian rules.  Each returns one contribution per child of the node.


def _vjp_add(node, g, out):
    return [g for _ in node.args]


def _vjp_matmul(node, g, out):
    coeff = sp.Mul(*[a for a in node.args if not a.is_Matrix])
    mats = [a for a in node.args if a.is_Matrix]
    result = []
    for a in node.args:
        if not a.is_Matrix:
            result.append(None)
            continue
        i = mats.index(a)
        left = [transpose(m) for m in reversed(mats[:i])]
        right = [transpose(m) for m in reversed(mats[i + 1:])]
        result.append(scale(coeff, matmul(*left, g, *right)))
    return result


def _vjp_hadamard(node, g, out):
    return [hadamard(*[b for j, b in enumerate(node.args) if j != i], g) for i in range(len(node.args))]


def _vjp_hadamard_power(node, g, out):
    base, k = node.args
    return [hadamard(scale(k, HadamardPower(base, k - 1) if k != 2 else base), g), None]


def _vjp_transpose(node, g, out):
    return [transpose(g)]


def _vjp_apply(node, g, out):
    # g first: the derivative then reads after what flows in, δc ⊙ o ⊙ (1 − tanh²(c)).
    return [None, hadamard(g, activation_derivative(node.fname, node.arg, out, node.params))] + [None] * len(
        node.params)


def _vjp_softmax(node, g, out):
    # ∂softmax: diag(p) − p pᵀ, symmetric, so  z̄ = p ⊙ g − p (pᵀ g).
    rows, cols = node.shape
    if cols != 1:  # per column: Z̄ = P ⊙ G − P ⊙ (1 1ᵀ (P ⊙ G))
        pg = hadamard(out, g)
        return [sub(pg, hadamard(out, matmul(OneMatrix(rows, 1), OneMatrix(1, rows), pg)))]
    return [sub(hadamard(out, g), matmul(out, transpose(out), g))]


def _vjp_log_softmax(node, g, out):
    # ∂log_softmax: I − p 1ᵀ (p = softmax z), so  z̄ = g − p (1ᵀ g).
    rows, cols = node.shape
    if cols != 1:  # per column: Z̄ = G − P ⊙ (1 1ᵀ G)
        return [sub(g, hadamard(Softmax(node.arg), matmul(OneMatrix(rows, 1), OneMatrix(1, rows), g)))]
    return [sub(g, matmul(Softmax(node.arg), OneMatrix(1, g.shape[0]), g))]


def _vjp_trace(node, g, out):
    n = node.arg.shape[0]
    return [scalar_times(g, Identity(n))]


def _vjp_det(node, g, out):
    # ∂det A = det(A) A⁻ᵀ
    return [scalar_times(hadamard(g, out), transpose(inverse(node.arg)))]


def _vjp_logdet(node, g, out):
    # ∂ log det A = A⁻ᵀ
    return [scalar_times(g, transpose(inverse(node.arg)))]


def _vjp_norm2(node, g, out):
    # ∂‖A‖ = A / ‖A‖
    return [scalar_times(hadamard(g, HadamardPower(out, -1)), node.arg)]


def _vjp_inv(node, g, out):
    # ∂A⁻¹: Ā = −A⁻ᵀ G A⁻ᵀ
    return [neg(matmul(transpose(out), g, transpose(out)))]


def _vjp_diag(node, g, out):
    # the diagonal of G, as a vector: (G ⊙ I) 1
    n = node.shape[0]
    return [matmul(hadamard(g, Identity(n)), OneMatrix(n, 1))]


def _vjp_concat(node, g, out):
    pieces, start = [], sp.Integer(0)
    for part in node.args:
        stop = sp.expand(start + part.shape[0])
        pieces.append(RowSlice(g, start, stop))
        start = stop
    return pieces


def _vjp_timesum(node, g, out):
    return [g]  # per step: the record says over_time


# ---------------------------------------------------------------------------------------
# Numeric evaluation (``ev`` is the evaluator; float64 arrays or mpmath object arrays).


def _ev_add(ev, e, t):
    out = ev.ev(e.args[0], t)
    for a in e.args[1:]:
        out = out + ev.ev(a, t)
    return out


def _ev_matmul(ev, e, t):
    coeff = sp.Mul(*[a for a in e.args if not a.is_Matrix])
    mats = [ev.ev(a, t) for a in e.args if a.is_Matrix]
    out = mats[0]
    for m in mats[1:]:
        out = out.dot(m)
    return out * ev.number(coeff) if coeff != 1 else out


def _ev_hadamard(ev, e, t):
    out = ev.ev(e.args[0], t)
    for a in e.args[1:]:
        out = out * ev.ev(a, t)
    return out


def _ev_hadamard_power(ev, e, t):
    base = ev.ev(e.args[0], t)
    if not e.args[1].is_Integer:  # v ** -0.5: a constant rational power of positive entries
        k = ev.number(e.args[1])
        return np.vectorize(lambda x: x ** k, otypes=[object])(base) if ev.mp else base ** k
    k = int(e.args[1])
    return base ** k if k > 0 else 1 / base ** (-k)


def _ev_apply(ev, e, t):
    fn = elementwise_function(e.fname, e.params, ev.mp)
    x = ev.ev(e.arg, t)
    return np.vectorize(fn, otypes=[object])(x) if ev.mp else fn(x)


def _ev_log_softmax(ev, e, t):
    z = ev.ev(e.arg, t)  # per column (a vector is one column)
    z = z - z.max(axis=0, keepdims=True)
    total = ev.exp(z).sum(axis=0, keepdims=True)
    return z - (np.vectorize(ev.log, otypes=[object])(total) if ev.mp else ev.log(total))


def _ev_softmax(ev, e, t):
    z = ev.ev(e.arg, t)
    ez = ev.exp(z - z.max(axis=0, keepdims=True))
    return ez / ez.sum(axis=0, keepdims=True)


def _as_mp(a):
    import mpmath
    return mpmath.matrix(a.tolist())


def _from_mp(m, rows, cols):
    return np.array([[m[i, j] for j in range(cols)] for i in range(rows)], dtype=object)


def _scalar_value(ev, x):
    out = ev.zeros((1, 1))
    out[0, 0] = x
    return out


def _ev_trace(ev, e, t):
    a = ev.ev(e.arg, t)
    return _scalar_value(ev, sum(a[i, i] for i in range(1, a.shape[0])) + a[0, 0])


def _det_of(ev, a):
    import mpmath
    return mpmath.det(_as_mp(a)) if ev.mp else np.linalg.det(a)


def _ev_det(ev, e, t):
    return _scalar_value(ev, _det_of(ev, ev.ev(e.arg, t)))


def _ev_logdet(ev, e, t):
    import mpmath
    d = _det_of(ev, ev.ev(e.arg, t))
    return _scalar_value(ev, mpmath.log(d) if ev.mp else (np.log(d) if d > 0 else np.nan))


def _ev_norm2(ev, e, t):
    import mpmath
    a = ev.ev(e.arg, t)
    total = (a * a).sum()
    return _scalar_value(ev, mpmath.sqrt(total) if ev.mp else np.sqrt(total))


def _ev_inv(ev, e, t):
    import mpmath
    a = ev.ev(e.arg, t)
    if ev.mp:
        return _from_mp(mpmath.inverse(_as_mp(a)), *a.shape)
    return np.linalg.inv(a)


def _ev_diag(ev, e, t):
    v = ev.ev(e.arg, t)
    n = v.shape[0]
    out = ev.zeros((n, n))
    for i in range(n):
        out[i, i] = v[i, 0]
    return out


def _ev_timesum(ev, e, t):
    out = ev.zeros(e.shape)
    for step in range(1, (ev.T or 0) + 1):
        out = out + ev.ev(e.arg, step)
    return out


# ---------------------------------------------------------------------------------------
# Scalar meanings entry by entry, for certification (``net`` is the unrolled network).


def _sizes(net, e):
    return tuple(net.size(x) for x in e.shape)


def _un_matmul(net, e, step):
    coeff = sp.Mul(*[a for a in e.args if not a.is_Matrix])
    mats = [net.entries(a, step) for a in e.args if a.is_Matrix]
    product = mats[0]
    for m in mats[1:]:
        product = product * m
    return coeff * product


def _un_hadamard(net, e, step):
    product = net.entries(e.args[0], step)
    for a in e.args[1:]:
        product = product.multiply_elementwise(net.entries(a, step))
    return product


def _un_apply(net, e, step):
    f = ELEMENTWISE[e.fname]
    return net.entries(e.arg, step).applyfunc(lambda x: f.scalar(x, *e.params))


def _un_log_softmax(net, e, step):
    z = net.entries(e.arg, step)  # per column
    return sp.Matrix.hstack(*[z[:, j] - sp.ones(z.rows, 1) * sp.log(sum(sp.exp(x) for x in z[:, j]))
                              for j in range(z.cols)])


def _un_softmax(net, e, step):
    z = net.entries(e.arg, step).applyfunc(sp.exp)
    return sp.Matrix.hstack(*[z[:, j] / sum(z[:, j]) for j in range(z.cols)])


def _un_timesum(net, e, step):
    terms = [net.entries(e.arg, t) for t in range(1, net.T + 1)]
    return sum(terms[1:], terms[0])


def _un_slice(net, e, step, rows: bool):
    m = net.entries(e.arg, step)
    a, b = net.size(e.start), net.size(e.stop)
    return m[a:b, :] if rows else m[:, a:b]


# ---------------------------------------------------------------------------------------
# Tidy rules (``t`` is the simplifier: ``t.run``, ``t.product``, ``t.hadamard_product``).


def _tidy_matmul(t, e):
    return t.product([t.run(a) for a in e.args])


def _tidy_hadamard(t, e):
    return t.hadamard_product([t.run(a) for a in e.args])


def _tidy_row_slice(t, e):
    inner = t.run(e.arg)
    if isinstance(inner, MatAdd):
        return add(*[RowSlice(a, e.start, e.stop) for a in inner.args])
    c, rest = coeff_and_rest(inner)
    return scale(c, RowSlice(rest, e.start, e.stop))


def _unsupported(what):
    def rule(*args):
        raise TypeError(f"internal error: {what}")
    return rule


for _record in [
    # Symbols: the sweep keeps its books on them; the evaluator looks their values up.
    Node(At, "symbol", evaluate=lambda ev, e, t: ev.lookup(e.base, t + e.offset),
         unroll=lambda net, e, step: net.value(e.base.name, step + e.offset), tidy="keep"),
    Node(AtStep, "symbol", evaluate=lambda ev, e, t: ev.lookup(e.base, e.step),
         unroll=lambda net, e, step: net.value(e.base.name, e.step), tidy="keep"),
    Node(AtEnd, "symbol", evaluate=lambda ev, e, t: ev.lookup(e.base, (ev.T or 0) + e.offset),
         unroll=lambda net, e, step: net.value(e.base.name, net.steps + e.offset), tidy="keep"),
    Node(MatrixSymbol, "symbol", evaluate=lambda ev, e, t: ev.lookup(e, None),
         unroll=lambda net, e, step: net.value(e.name, None), tidy="keep"),
    Node(Delta, "symbol", evaluate=lambda ev, e, t: ev.lookup(e, None),
         unroll=_unsupported("an adjoint is not part of the model's equations"), tidy="keep"),
    # Constants.
    Node(ZeroMatrix, "constant", evaluate=lambda ev, e, t: ev.zeros(e.shape),
         unroll=lambda net, e, step: sp.zeros(*_sizes(net, e)), tidy="keep"),
    Node(OneMatrix, "constant", evaluate=lambda ev, e, t: ev.ones(e.shape),
         unroll=lambda net, e, step: sp.ones(*_sizes(net, e)), tidy="keep"),
    # The steps of a partial time range: one inside it, zero outside (a constant at each step).
    Node(Window, "constant",
         evaluate=lambda ev, e, t: ev.ones(e.shape) if e.holds(t, ev.T or 0) else ev.zeros(e.shape),
         unroll=lambda net, e, step: sp.Matrix([[1 if e.holds(step, net.steps) else 0]]), tidy="keep"),
    Node(Identity, "constant", evaluate=lambda ev, e, t: ev.zeros(e.shape) + np.eye(ev.size(e.shape[0])),
         unroll=lambda net, e, step: sp.eye(net.size(e.shape[0])), tidy="keep"),
    # SymPy's matrix operations.
    Node(MatAdd, "operation", vjp=_vjp_add, evaluate=_ev_add,
         unroll=lambda net, e, step: sum((net.entries(a, step) for a in e.args[1:]), net.entries(e.args[0], step)),
         tidy=lambda t, e: t.sum([t.run(a) for a in e.args])),
    Node(MatMul, "operation", vjp=_vjp_matmul, evaluate=_ev_matmul, unroll=_un_matmul, tidy=_tidy_matmul),
    Node(HadamardProduct, "operation", vjp=_vjp_hadamard, evaluate=_ev_hadamard, unroll=_un_hadamard,
         tidy=_tidy_hadamard),
    Node(HadamardPower, "operation", vjp=_vjp_hadamard_power, evaluate=_ev_hadamard_power,
         unroll=lambda net, e, step: net.entries(e.args[0], step).applyfunc(lambda x: x ** e.args[1]),
         tidy=lambda t, e: HadamardPower(t.run(e.args[0]), e.args[1])),
    Node(Transpose, "operation", vjp=_vjp_transpose, evaluate=lambda ev, e, t: ev.ev(e.arg, t).T,
         unroll=lambda net, e, step: net.entries(e.arg, step).T, tidy=lambda t, e: transpose(t.run(e.arg))),
    # symderiv's nodes.
    Node(Apply, "operation", vjp=_vjp_apply, evaluate=_ev_apply, unroll=_un_apply),
    Node(Softmax, "operation", vjp=_vjp_softmax, evaluate=_ev_softmax, unroll=_un_softmax,
         latex=r"\operatorname{softmax}", unicode="softmax"),
    Node(LogSoftmax, "operation", vjp=_vjp_log_softmax, evaluate=_ev_log_softmax, unroll=_un_log_softmax),
    Node(Concat, "operation", vjp=_vjp_concat, evaluate=lambda ev, e, t: np.vstack([ev.ev(a, t) for a in e.args]),
         unroll=lambda net, e, step: sp.Matrix.vstack(*[net.entries(a, step) for a in e.args])),
    Node(RowSlice, "operation", evaluate=lambda ev, e, t: ev.ev(e.arg, t)[ev.size(e.start):ev.size(e.stop)],
         unroll=lambda net, e, step: _un_slice(net, e, step, True), tidy=_tidy_row_slice),
    Node(ColSlice, "operation", evaluate=lambda ev, e, t: ev.ev(e.arg, t)[:, ev.size(e.start):ev.size(e.stop)],
         unroll=lambda net, e, step: _un_slice(net, e, step, False), tidy="keep"),
    Node(TimeSum, "operation", vjp=_vjp_timesum, over_time=True, evaluate=_ev_timesum, unroll=_un_timesum),
    Node(Trace, "operation", vjp=_vjp_trace, evaluate=_ev_trace,
         unroll=lambda net, e, step: sp.Matrix([[net.entries(e.arg, step).trace()]]),
         latex=r"\operatorname{tr}", unicode="tr"),
    Node(Det, "operation", vjp=_vjp_det, evaluate=_ev_det,
         unroll=lambda net, e, step: sp.Matrix([[net.entries(e.arg, step).det(method="berkowitz")]]),
         latex=r"\det", unicode="det"),
    Node(LogDet, "operation", vjp=_vjp_logdet, evaluate=_ev_logdet,
         unroll=lambda net, e, step: sp.Matrix([[sp.log(net.entries(e.arg, step).det(method="berkowitz"))]]),
         latex=r"\log\det", unicode="log det"),
    Node(Norm2, "operation", vjp=_vjp_norm2, evaluate=_ev_norm2,
         unroll=lambda net, e, step: sp.Matrix([[sp.sqrt(sum(x ** 2 for x in net.entries(e.arg, step)))]])),
    Node(Inv, "operation", vjp=_vjp_inv, evaluate=_ev_inv,
         unroll=lambda net, e, step: net.entries(e.arg, step).inv(method="ADJ"),
         tidy=lambda t, e: inverse(t.run(e.arg))),
    Node(Diag, "operation", vjp=_vjp_diag, evaluate=_ev_diag,
         unroll=lambda net, e, step: sp.diag(*net.entries(e.arg, step)), latex=r"\operatorname{diag}",
         unicode="diag"),
]:
    register(_record)


# ---------------------------------------------------------------------------------------
# Structural functions of the model language.


def _build_softmax(node_cls):
    def build(ctx, call, args):
        (a,) = args
        if ctx.pending(ctx.resolve(a.shape[1])):  # a lagged quantity not built yet: a vector
            ctx.need_vector(call.args[0], a, call.func.id)
        return node_cls(a)  # of a matrix: per column
    return build


def axis_keyword(ctx: Any, call: ast.Call) -> int | None:
    """The ``axis=`` of sum() and mean(): None, 0 or 1 (``ctx`` needs only ``error`` and ``text``,
    so the claims reader shares the rule and its messages)."""
    axis = None
    fname = call.func.id if isinstance(call.func, ast.Name) else ast.unparse(call.func)
    for kw in call.keywords:
        if kw.arg != "axis":
            raise ctx.error(kw, f"{fname}() takes one keyword argument, axis=0 or axis=1, not "
                                f"{kw.arg or '**'}=")
        value = kw.value
        if not (isinstance(value, ast.Constant) and type(value.value) is int and value.value in (0, 1)):
            raise ctx.error(value, f"the axis of {fname}() is 0 (column sums) or 1 (row sums), not "
                                   f"{ctx.text(value)}")
        axis = value.value
    return axis


def _build_sum(ctx, call, args):
    return _make_sum(*args, axis=axis_keyword(ctx, call))


def _make_sum(a, axis=None):
    rows, cols = a.shape
    if axis == 0:  # the column sums, as a column vector: Aᵀ 1
        return matmul(transpose(a), OneMatrix(rows, 1))
    if axis == 1:  # the row sums: A 1
        return matmul(a, OneMatrix(cols, 1))
    return matmul(OneMatrix(1, rows), a) if cols == 1 else matmul(OneMatrix(1, rows), a, OneMatrix(cols, 1))


def _count(a, axis):
    rows, cols = a.shape
    return rows * cols if axis is None else rows if axis == 0 else cols


def _build_mean(ctx, call, args):
    axis = axis_keyword(ctx, call)
    return _make_mean(*args, axis=axis)


def _make_mean(a, axis=None):
    return scale(1 / sp.sympify(_count(a, axis), strict=True), _make_sum(a, axis))


def _square(ctx, call, a):
    rows, cols = (ctx.resolve(x) for x in a.shape)
    if sp.expand(rows - cols) != 0:
        raise ctx.error(call.args[0], f"{call.func.id}() needs a square matrix, but {ctx.text(call.args[0])} is "
                                      f"{ctx.shape_text(a.shape, ctx.resolve)}")


def _build_square(make):
    def build(ctx, call, args):
        (a,) = args
        _square(ctx, call, a)
        return make(a)
    return build


def _make_norm1(a):
    return _make_sum(Apply("abs", a))


def _build_diag(ctx, call, args):
    (a,) = args
    ctx.need_vector(call.args[0], a, "diag")
    return Diag(a)


def size_argument(ctx: Any, fname: str, node: ast.AST, a: Any) -> sp.Expr:
    """``a``, the argument ``node`` of ``fname()`` (``eye``, ``ones``), as a size: a positive integer or
    dims; else the positioned error (``ctx`` needs only ``error`` and ``text``, so the claims reader
    shares the rule and its message)."""
    a = sp.sympify(a, strict=True)
    if not (a.is_integer and a.is_positive):
        raise ctx.error(node, f"{fname}() takes sizes (dims or positive integers), not {ctx.text(node)}")
    return a


def _size_args(ctx, call, args):
    return [size_argument(ctx, call.func.id, n, a) for a, n in zip(args, call.args)]


def _build_eye(ctx, call, args):
    (n,) = _size_args(ctx, call, args)
    return Identity(n)


def _build_ones(ctx, call, args):
    if len(args) not in (1, 2):
        raise ctx.error(call, f"ones() takes 1 or 2 sizes, got {len(args)}")
    sizes = _size_args(ctx, call, args)
    return _make_ones(*sizes)


def _make_ones(n, m=1):
    return OneMatrix(n, m)


def _build_concat(ctx, call, args):
    for a, n in zip(args, call.args):
        ctx.need_vector(n, a, "concat")
    return Concat(*args)


def _two_vectors(ctx, call, args):
    """cross_entropy(r, p) and squared_error(y, yhat): two vectors of one size, or two
    matrices of one shape."""
    fname = call.func.id
    a, b = args
    matrices = [sp.expand(ctx.resolve(x.shape[1]) - 1) != 0 and not ctx.pending(ctx.resolve(x.shape[1]))
                for x in args]
    if any(matrices):
        ctx.conform(call, a, b, ",", f"{fname}()")
        return
    for x, n in zip(args, call.args):
        ctx.need_vector(n, x, fname)
    sa, sb = (tuple(map(ctx.resolve, x.shape)) for x in args)
    if (sa == (1, 1)) != (sb == (1, 1)) and not any(ctx.pending(x) for x in sa + sb):  # no broadcasting here
        raise ctx.error(call, f"shape mismatch in {fname}(): {ctx.text(call.args[0])} is {ctx.shape_text(sa)} "
                              f"but {ctx.text(call.args[1])} is {ctx.shape_text(sb)}")
    ctx.conform(call, a, b, ",", f"{fname}()")


def apply_function(fname: str, arg: MatrixExpr, *params: sp.Expr) -> MatrixExpr:
    """An elementwise function of the model language applied to ``arg``, as its node; log(exp(u) + 1)
    (or log(1 + exp(u))) is softplus(u): the same value, computed without exp(u), which overflows
    past u ≈ 709 (in every back end's spelling of softplus), and its derivative is σ(u), not
    exp(u) ⊘ (exp(u) + 1), which is inf / inf there."""
    if fname == "log" and not params and "softplus" in ELEMENTWISE:
        u = _softplus_argument(arg)
        if u is not None:
            return Apply("softplus", u)
    return Apply(fname, arg, *params)


def _softplus_argument(e: MatrixExpr) -> MatrixExpr | None:
    """u when ``e`` is exp(u) + 1 (the ones a matrix of ones of u's shape, either term first)."""
    if not isinstance(e, MatAdd) or len(e.args) != 2:
        return None
    for a, b in (e.args, e.args[::-1]):
        if isinstance(a, Apply) and a.fname == "exp" and not a.params and isinstance(b, OneMatrix):
            return a.arg
    return None


def log_of(p: MatrixExpr) -> MatrixExpr:
    """log p, with log(softmax(z)) kept as one node so it is computed stably."""
    if isinstance(p, Softmax) and not isinstance(p, LogSoftmax):
        return LogSoftmax(p.arg)
    return Apply("log", p)


def _make_cross_entropy(r, p):
    if r.shape[1] != 1:  # matrices: −Σᵢⱼ Rᵢⱼ log Pᵢⱼ
        return neg(_make_sum(hadamard(r, log_of(p))))
    return neg(matmul(transpose(r), log_of(p)))


def _make_squared_error(y, yhat):
    diff = sub(yhat, y)
    if diff.shape[1] != 1:  # matrices: ½ ‖Ŷ − Y‖²_F
        return scale(sp.Rational(1, 2), _make_sum(hadamard(diff, diff)))
    # Transpose(...) rather than the builder, which distributes: ½ (ŷ − y)ᵀ (ŷ − y) as written.
    return scale(sp.Rational(1, 2), matmul(sp.Transpose(diff), diff))


def _checked(make):
    def build(ctx, call, args):
        _two_vectors(ctx, call, args)
        return make(*args)
    return build


for _function in [
    LanguageFunction("softmax", 1, _build_softmax(Softmax), Softmax, words=("softmax",), claims=True),
    LanguageFunction("log_softmax", 1, _build_softmax(LogSoftmax), LogSoftmax, words=("logsoftmax", "log_softmax"),
                     claims=True),
    LanguageFunction("sum", 1, _build_sum, _make_sum, claims=True, keywords=("axis",)),
    LanguageFunction("mean", 1, _build_mean, _make_mean, claims=True, keywords=("axis",)),
    LanguageFunction("tr", 1, _build_square(Trace), Trace, words=("tr", "trace"), claims=True),
    LanguageFunction("det", 1, _build_square(Det), Det, words=("det",), claims=True, commands=("det",)),
    LanguageFunction("logdet", 1, _build_square(LogDet), LogDet, claims=True),
    LanguageFunction("inv", 1, _build_square(inverse), inverse, claims=True),
    LanguageFunction("norm1", 1, lambda ctx, call, args: _make_norm1(*args), _make_norm1),
    LanguageFunction("norm2", 1, lambda ctx, call, args: Norm2(*args), Norm2, claims=True),
    LanguageFunction("diag", 1, _build_diag, Diag),
    LanguageFunction("eye", 1, _build_eye, Identity, sizes=True),
    LanguageFunction("ones", None, _build_ones, _make_ones, sizes=True),
    LanguageFunction("concat", None, _build_concat, Concat),
    LanguageFunction("cross_entropy", 2, _checked(_make_cross_entropy), _make_cross_entropy),
    LanguageFunction("squared_error", 2, _checked(_make_squared_error), _make_squared_error),
]:
    register(_function)
