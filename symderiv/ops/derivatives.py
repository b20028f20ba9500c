"""Derivatives of the elementwise functions, through their output where that is possible.

f' comes from the record: the derivative it gives, or else SymPy's derivative of its scalar
meaning, rewritten through s = f(z) when that is a rational function of s (σ' = s (1 − s),
tanh' = 1 − s², √' = ½ ⊘ s) and otherwise matched against the other records (softplus' is
σ, relu' is 𝟙[z > 0], sin' is cos).  ``scalar_to_matrix`` turns it into the elementwise
matrix expression the sweep uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower, OneMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..ir.expr import Apply, add, hadamard, scale
from .base import ELEMENTWISE, Z, on_change

_z = Z
_s = sp.Symbol("s", real=True)
_u = sp.Symbol("u", positive=True)


@dataclass(frozen=True)
class ScalarDerivative:
    """f'(z) as a scalar SymPy expression, in ``_s`` (the output) or in ``_z`` (the input)."""

    expr: sp.Expr
    through_output: bool


_derivatives: dict[tuple[str, tuple[sp.Expr, ...]], ScalarDerivative] = {}
_by_class: dict[type, str] = {}
on_change(_derivatives.clear)
on_change(_by_class.clear)


def derivative(fname: str, params: Sequence[sp.Expr] = ()) -> ScalarDerivative:
    """f' for an elementwise function (with its parameters' values), cached."""
    key = (fname, tuple(params))
    if key not in _derivatives:
        _derivatives[key] = _derive(fname, tuple(params))
    return _derivatives[key]


def _derive(fname: str, params: tuple[sp.Expr, ...]) -> ScalarDerivative:
    record = ELEMENTWISE[fname]
    if record.derivative is not None:
        return ScalarDerivative(record.derivative(_z, *params), False)
    f = record.scalar(_z, *params)
    d = sp.diff(f, _z)
    # Substitute before solving: tanh' comes back as 1 - tanh(z)**2 already.
    direct = d.subs(f, _s)
    if not direct.has(_z) and direct.is_polynomial(_s):
        return ScalarDerivative(_tidy_polynomial(direct), True)
    if not direct.has(_z) and direct.is_rational_function(_s):  # √' = 1/(2 s)
        return ScalarDerivative(direct, True)
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
    for other in list(ELEMENTWISE.values()):
        if other.name != fname and not other.params and _same_function(d, other.name):
            return ScalarDerivative(sp.Function(other.name)(_z), False)
    return ScalarDerivative(d, False)


_SCREEN_POINTS = (sp.Rational(-7, 3), sp.Rational(1, 5), sp.Rational(9, 4))
_screens: dict[tuple[str, int], sp.Expr] = {}  # a record's value at a screen point, computed once
on_change(_screens.clear)


def _same_function(a: sp.Expr, name: str) -> bool:
    """Equal as functions of z to the record ``name``'s meaning: a cheap numeric screen, point by
    point (the record's values kept for the next function screened), then SymPy's proof."""
    b = ELEMENTWISE[name].scalar(_z)
    for k, x in enumerate(_SCREEN_POINTS):
        if (name, k) not in _screens:
            _screens[name, k] = b.subs(_z, x).evalf(30)
        va, vb = a.subs(_z, x).evalf(30), _screens[name, k]
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


def _record_of(e: sp.Expr) -> str | None:
    """The record a scalar function application stands for: sp.Function('sigmoid')(z) by
    name, SymPy's own tanh(z), Heaviside(z), sign(z), cos(z) by the class of its meaning."""
    name = getattr(e.func, "__name__", None)
    if isinstance(e.func, sp.core.function.UndefinedFunction):
        return name if name in ELEMENTWISE else None
    if not _by_class:
        for r in list(ELEMENTWISE.values()):
            m = r.scalar(_z) if not r.params else None
            if isinstance(m, sp.Function) and m.args[0] == _z:
                _by_class.setdefault(m.func, r.name)
    return _by_class.get(e.func)


def scalar_to_matrix(e: sp.Expr, var: sp.Symbol, value: MatrixExpr) -> MatrixExpr:
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
    if e.is_Pow and e.exp == sp.Rational(1, 2) and "sqrt" in ELEMENTWISE:
        return Apply("sqrt", scalar_to_matrix(e.base, var, value))
    if isinstance(e, sp.Function) and e.args:
        name = _record_of(e)
        if name is not None:
            return Apply(name, scalar_to_matrix(e.args[0], var, value))
    raise NotImplementedError(f"cannot write {e} elementwise")


def _ordered_add_args(e: sp.Add) -> list[sp.Expr]:
    """Constants first: 1 - s rather than -s + 1."""
    return sorted(e.args, key=lambda a: (not a.is_Number,))


def activation_derivative(fname: str, arg: MatrixExpr, out: MatrixExpr,
                          params: Sequence[sp.Expr] = ()) -> MatrixExpr:
    """f'(arg) as a matrix expression, through ``out`` = f(arg) where possible."""
    d = derivative(fname, params)
    if d.through_output:
        return scalar_to_matrix(d.expr, _s, out)
    return scalar_to_matrix(d.expr, _z, arg)
