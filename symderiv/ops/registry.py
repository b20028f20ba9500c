"""The table of operations: forward meaning, vector-Jacobian rule, spelling.

In the spirit of autograd's ``numpy_vjps.py``: one entry per operation, and a rule is
written through ``out``, the forward value of the node (``o ⊙ (1 − o)`` for a sigmoid).
To add an elementwise function, add one ``Elementwise`` entry; its derivative is derived
by SymPy and, where it can be, rewritten through the function's output.

A rule ``vjp(node, g, out)`` returns, for each child of ``node``, the adjoint contribution
it receives when the node's own adjoint is ``g``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, OneMatrix, Transpose

from ..ir.expr import (
    Apply,
    Concat,
    LogSoftmax,
    RowSlice,
    Softmax,
    add,
    hadamard,
    matmul,
    scale,
    sub,
    transpose,
)

_z = sp.Symbol("z", real=True)
_s = sp.Symbol("s", real=True)
_u = sp.Symbol("u", positive=True)


@dataclass(frozen=True)
class Elementwise:
    """An elementwise function: its scalar definition and how to spell it."""

    name: str
    scalar: Callable[[sp.Expr], sp.Expr]  # the SymPy meaning, applied to a scalar
    latex: str
    unicode: str
    numpy: str  # the NumPy expression, with {x} for the argument
    public: bool = True  # False for helpers that only appear in derivatives
    numpy_out: str | None = None  # the same, written into an existing array {out}


ELEMENTWISE: dict[str, Elementwise] = {
    e.name: e
    for e in [
        Elementwise("sigmoid", lambda z: 1 / (1 + sp.exp(-z)), r"\sigma", "σ", "_sigmoid({x})",
                    numpy_out="_sigmoid({x}, out={out})"),
        Elementwise("tanh", sp.tanh, r"\tanh", "tanh", "np.tanh({x})", numpy_out="np.tanh({x}, out={out})"),
        Elementwise("relu", lambda z: sp.Max(0, z), r"\operatorname{relu}", "relu", "np.maximum({x}, 0)",
                    numpy_out="np.maximum({x}, 0, out={out})"),
        Elementwise("softplus", lambda z: sp.log(1 + sp.exp(z)), r"\operatorname{softplus}", "softplus",
                    "np.logaddexp(0, {x})", numpy_out="np.logaddexp(0, {x}, out={out})"),
        Elementwise("exp", sp.exp, r"\exp", "exp", "np.exp({x})", numpy_out="np.exp({x}, out={out})"),
        Elementwise("log", sp.log, r"\log", "log", "np.log({x})"),
        # 𝟙[z > 0], the derivative of relu.
        Elementwise("step", sp.Heaviside, r"\mathbb{1}", "𝟙", "({x} > 0).astype(dtype)", public=False),
    ]
}

#: Functions of the language that are not elementwise, with their arity (None: one or more).
STRUCTURAL = {"softmax": 1, "log_softmax": 1, "sum": 1, "concat": None, "cross_entropy": 2,
              "squared_error": 2}
FUNCTIONS = sorted([n for n, e in ELEMENTWISE.items() if e.public] + list(STRUCTURAL) + ["Sum"])


# ---------------------------------------------------------------------------------------
# Activation derivatives, derived by SymPy.


@dataclass(frozen=True)
class ScalarDerivative:
    """f'(z) as a scalar SymPy expression, in ``_s`` (the output) or in ``_z`` (the input)."""

    expr: sp.Expr
    through_output: bool


@cache
def derivative(fname: str) -> ScalarDerivative:
    """f' for an elementwise function, through its output where that is a polynomial.

    σ' = s (1 − s), tanh' = 1 − s², exp' = s; where no such form exists (log, softplus,
    relu) the derivative stays in the input and is matched against the table's functions
    (softplus' is σ, relu' is 𝟙[z > 0]).
    """
    f = ELEMENTWISE[fname].scalar(_z)
    d = sp.diff(f, _z)
    # Substitute before solving: tanh' comes back as 1 - tanh(z)**2 already.
    direct = d.subs(f, _s)
    if not direct.has(_z) and direct.is_polynomial(_s):
        return ScalarDerivative(_tidy_polynomial(direct), True)
    # Else name the exponential u = exp(±z) and solve s = f(u) for u: an algebraic equation,
    # cheap, where solving for z directly takes SymPy a quarter of a second.
    for atom in sorted(f.atoms(sp.exp), key=sp.default_sort_key):
        f_u, d_u = f.subs(atom, _u), d.subs(atom, _u)
        if f_u.has(_z) or d_u.has(_z):
            continue
        for inv in sp.solve(sp.Eq(_s, f_u), _u):
            cand = sp.factor(sp.cancel(d_u.subs(_u, inv)))
            if cand.is_polynomial(_s):
                return ScalarDerivative(_tidy_polynomial(cand), True)
    for other in ELEMENTWISE.values():
        if other.name != fname and _same_function(d, other.scalar(_z)):
            return ScalarDerivative(sp.Function(other.name)(_z), False)
    return ScalarDerivative(d, False)


def _same_function(a: sp.Expr, b: sp.Expr) -> bool:
    """Equal as functions of z: a cheap numeric screen, then SymPy's proof."""
    for x in (sp.Rational(-7, 3), sp.Rational(1, 5), sp.Rational(9, 4)):
        va, vb = a.subs(_z, x).evalf(30), b.subs(_z, x).evalf(30)
        if not (va.is_number and vb.is_number) or abs(va - vb) > 1e-20:
            return False
    return sp.simplify(a - b) == 0


def _tidy_polynomial(p: sp.Expr) -> sp.Expr:
    """s - s**2 → s*(1 - s), 1 - s**2 stays: factor out s only, never a sign."""
    p = sp.expand(p)
    if p.is_Add and p.subs(_s, 0) == 0:
        rest = sp.expand(p / _s)
        if rest.is_Add and all(c < 0 for c, _ in [t.as_coeff_Mul() for t in rest.args if t.has(_s)]):
            return sp.Mul(_s, rest, evaluate=False)
    return p


def scalar_to_matrix(e: sp.Expr, var: sp.Symbol, value):
    """Turn a scalar SymPy expression in ``var`` into the elementwise matrix expression in ``value``."""
    if e == var:
        return value
    if e.is_Number:
        return scale(e, OneMatrix(*value.shape))
    if e.is_Add:
        return add(*[scalar_to_matrix(a, var, value) for a in _ordered_add_args(e)])
    if e.is_Mul:
        coeff, rest = e.as_coeff_mul()
        return scale(coeff, hadamard(*[scalar_to_matrix(a, var, value) for a in rest]))
    if e.is_Pow and e.exp.is_Integer:
        base = scalar_to_matrix(e.base, var, value)
        if e.exp > 0:
            return hadamard(*([base] * int(e.exp))) if e.exp <= 3 else HadamardPower(base, e.exp)
        return HadamardPower(base, e.exp)
    if isinstance(e, sp.Function) and len(e.args) == 1:
        name = type(e).__name__
        if name == "Heaviside":
            name = "step"
        if name in ELEMENTWISE:
            return Apply(name, scalar_to_matrix(e.args[0], var, value))
    raise NotImplementedError(f"cannot write {e} elementwise")


def _ordered_add_args(e: sp.Add):
    """Constants first: 1 - s rather than -s + 1."""
    return sorted(e.args, key=lambda a: (not a.is_Number,))


def activation_derivative(fname: str, arg, out):
    """f'(arg) as a matrix expression, through ``out`` = f(arg) where possible."""
    d = derivative(fname)
    if d.through_output:
        return scalar_to_matrix(d.expr, _s, out)
    return scalar_to_matrix(d.expr, _z, arg)


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
    return [None, hadamard(g, activation_derivative(node.fname, node.arg, out))]


def _vjp_softmax(node, g, out):
    # ∂softmax: diag(p) − p pᵀ, symmetric, so  z̄ = p ⊙ g − p (pᵀ g).
    return [sub(hadamard(out, g), matmul(out, transpose(out), g))]


def _vjp_log_softmax(node, g, out):
    # ∂log_softmax: I − p 1ᵀ (p = softmax z), so  z̄ = g − p (1ᵀ g).
    return [sub(g, matmul(Softmax(node.arg), OneMatrix(1, g.shape[0]), g))]


def _vjp_concat(node, g, out):
    pieces, start = [], sp.Integer(0)
    for part in node.args:
        stop = sp.expand(start + part.shape[0])
        pieces.append(RowSlice(g, start, stop))
        start = stop
    return pieces


VJP = {
    MatAdd: _vjp_add,
    MatMul: _vjp_matmul,
    HadamardProduct: _vjp_hadamard,
    HadamardPower: _vjp_hadamard_power,
    Transpose: _vjp_transpose,
    Apply: _vjp_apply,
    Softmax: _vjp_softmax,
    LogSoftmax: _vjp_log_softmax,
    Concat: _vjp_concat,
}


def vjp(node, g, out):
    """Contributions to the children of ``node`` given its adjoint ``g`` and value ``out``."""
    rule = VJP.get(type(node))
    if rule is None:
        raise TypeError(f"no vector-Jacobian rule for {type(node).__name__}")
    return rule(node, g, out)
