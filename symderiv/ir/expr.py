"""The matrix expression nodes symderiv adds to SymPy, and builders that keep forms tidy.

Everything is a SymPy ``MatrixExpr``; a scalar is a 1x1 matrix, so one set of rules covers
scaling, broadcasting and sums of entries (``sum(v)`` is ``1^T v``).  A time-indexed
quantity is ``At(symbol, offset)``: ``h[t-1]`` is ``At(h, -1)``, so one generic step
describes the whole sequence.  An adjoint is ``Delta(symbol)``, itself time-indexed by ``At``.
"""

from __future__ import annotations

import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    Integer,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    S,
    Transpose,
    ZeroMatrix,
)
from sympy.core.symbol import Str
from sympy.core.sympify import _sympify
from sympy.matrices.expressions.matexpr import MatrixExpr

#: What an expression of a model file builds to: a matrix expression, or a number.
Value = MatrixExpr | sp.Expr


def _str(name: str | Str) -> Str:
    return name if isinstance(name, Str) else Str(name)


class Delta(MatrixExpr):
    """The adjoint ∂L/∂q of a quantity q (same shape as q)."""

    def __new__(cls, base: MatrixSymbol) -> Delta:
        return MatrixExpr.__new__(cls, base)

    @property
    def base(self) -> MatrixSymbol:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.base.shape

    @property
    def name(self) -> str:
        return self.base.name


class _Indexed(MatrixExpr):
    """A quantity (or its adjoint) at a step; the second argument says which."""

    def __new__(cls, base: MatrixExpr, index: int = 0) -> _Indexed:
        return MatrixExpr.__new__(cls, base, Integer(index))

    @property
    def base(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.base.shape


class At(_Indexed):
    """A sequence quantity (or its adjoint) at step ``t + offset``."""

    @property
    def offset(self) -> int:
        return int(self.args[1])


class AtStep(_Indexed):
    """A sequence quantity (or its adjoint) at a fixed step, such as h_0 or δy_{h,1}."""

    @property
    def step(self) -> int:
        return int(self.args[1])


class AtEnd(_Indexed):
    """A sequence quantity (or its adjoint) at the fixed step ``T + offset`` counted from the end
    of the sequence: ``h[T]`` is ``AtEnd(h, 0)``, ``h[T-1]`` is ``AtEnd(h, -1)``."""

    @property
    def offset(self) -> int:
        return int(self.args[1])


class Apply(MatrixExpr):
    """An elementwise function (``sigmoid``, ``tanh``, ...) applied to every entry.

    ``params`` are the function's constant parameters (``leaky_relu(z, alpha)``), numbers
    after the argument; a function without them has the two arguments it always had, so its
    printed and hashed form is unchanged."""

    def __new__(cls, fname, arg, *params):
        return MatrixExpr.__new__(cls, _str(fname), _sympify(arg), *map(_sympify, params))

    @property
    def fname(self) -> str:
        return self.args[0].name

    @property
    def arg(self) -> MatrixExpr:
        return self.args[1]

    @property
    def params(self) -> tuple[sp.Expr, ...]:
        return self.args[2:]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg.shape


class _Unary(MatrixExpr):
    """A node of one matrix argument, shaped like it."""

    def __new__(cls, arg: MatrixExpr) -> _Unary:
        return MatrixExpr.__new__(cls, _sympify(arg))

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg.shape


class Softmax(_Unary):
    """softmax over the entries of a column vector."""


class LogSoftmax(Softmax):
    """log(softmax(z)), kept as one node so it can be computed stably."""


def is_row_softmax(e: sp.Basic, *, log_too: bool = False) -> bool:
    """Whether ``e`` is softmax(Sᵀ)ᵀ: the softmax of every row of S (a sheet whose examples are rows),
    written through transposes since softmax acts on columns.  With ``log_too``, log_softmax(Sᵀ)ᵀ
    (the log of each row's softmax) counts as well."""
    return isinstance(e, Transpose) and (isinstance(e.arg, Softmax) if log_too else type(e.arg) is Softmax)


class Concat(MatrixExpr):
    """Column vectors stacked on top of each other."""

    def __new__(cls, *parts: MatrixExpr) -> Concat:
        return MatrixExpr.__new__(cls, *map(_sympify, parts))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (sp.Add(*(p.shape[0] for p in self.args)), Integer(1))


class _Slice(MatrixExpr):
    """A block of rows or columns ``start .. stop-1`` (0-based, symbolic)."""

    def __new__(cls, arg: MatrixExpr, start: sp.Expr | int, stop: sp.Expr | int) -> _Slice:
        return MatrixExpr.__new__(cls, _sympify(arg), _sympify(start), _sympify(stop))

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def start(self) -> sp.Expr:
        return self.args[1]

    @property
    def stop(self) -> sp.Expr:
        return self.args[2]


class RowSlice(_Slice):
    """Rows of a column vector: the inverse of Concat."""

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (sp.expand(self.stop - self.start), self.arg.shape[1])


class ColSlice(_Slice):
    """Columns of a matrix: the block of W that multiplies one part of a Concat."""

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.arg.shape[0], sp.expand(self.stop - self.start))


class TimeSum(_Unary):
    """Σ_{t=1}^{T} of a per-step expression.  A partial range Σ_{t=a}^{T−k} is the whole sum of
    the summand times its ``Window`` (one inside the range, zero outside it)."""


class Window(MatrixExpr):
    """The 1x1 indicator [a ≤ s ≤ T − k] of the steps of a partial time range, at a step s:
    ``where`` is "t" (s = t + ``at``, the generic step, moved by ``shift``), "step" (the fixed
    step s = ``at``) or "end" (s = T + ``at``).  ``Sum(e, (t, a, T - k))`` is
    ``TimeSum(Window(a, k) e)``: the adjoints of the summand are zero outside the range."""

    def __new__(cls, first: int, last: int = 0, where: str = "t", at: int = 0) -> Window:
        return MatrixExpr.__new__(cls, Integer(first), Integer(last), _str(where), Integer(at))

    @property
    def first(self) -> int:
        return int(self.args[0])

    @property
    def last(self) -> int:
        """k of the last step T − k."""
        return int(self.args[1])

    @property
    def where(self) -> str:
        return self.args[2].name

    @property
    def at(self) -> int:
        return int(self.args[3])

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (Integer(1), Integer(1))

    def moved(self, where: str, k: int) -> Window:
        """At step t + k (``where`` "t"), or at the fixed step k ("step") or T + k ("end") for t."""
        return Window(self.first, self.last, where, self.at + k)

    def holds(self, t: int | None, T: int) -> bool:
        """Whether the step this window reads (at the generic step ``t``) lies in the range."""
        s = {"t": (t or 0) + self.at, "step": self.at, "end": T + self.at}[self.where]
        return self.first <= s <= T - self.last

    def bounds(self) -> tuple[int | None, int | None]:
        """For a window at step t + ``at``: (the lowest t, k of the highest t T − k) it holds at,
        None for a side that holds at every step 1..T."""
        low, high = self.first - self.at, self.last + self.at
        return (low if low > 1 else None), (high if high > 0 else None)


class _ScalarOf(_Unary):
    """A scalar (1x1) function of one square matrix."""

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (Integer(1), Integer(1))


class Trace(_ScalarOf):
    """tr(A): the sum of the diagonal of a square matrix."""


class Det(_ScalarOf):
    """det(A) of a square matrix."""


class LogDet(_ScalarOf):
    """log det(A) of a square matrix (with a positive determinant)."""


class Norm2(_ScalarOf):
    """‖A‖₂: the Euclidean norm of a vector, the Frobenius norm of a matrix."""


class Inv(_Unary):
    """A⁻¹ of a square matrix."""


class Diag(_Unary):
    """diag(v): the square matrix with the vector v on its diagonal."""

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.arg.shape[0], self.arg.shape[0])


def inverse(e: MatrixExpr) -> MatrixExpr:
    """A⁻¹, with (A⁻¹)⁻¹ = A and (Aᵀ)⁻¹ written (A⁻¹)ᵀ."""
    if isinstance(e, Inv):
        return e.arg
    if isinstance(e, Transpose):
        return transpose(inverse(e.arg))
    return Inv(e)


# ---------------------------------------------------------------------------------------
# Builders.  They keep expressions in a small normal form: numeric coefficients pulled to
# the front of a product, zeros dropped, nested sums and products flattened.  We never call
# a global ``simplify``; SymPy's own canonicalisation reorders Hadamard factors, which the
# printers undo for reading.  Their factors and terms are SymPy objects already, so MatMul and MatAdd
# are built without sympifying them again (``_sympify=False``; SymPy still checks the shapes).


#: id(node) → (node, its size written out), shared by every call: the sweep asks about trees that
#: share most of their nodes.  Keyed by identity (the node is held, so its id is not reused):
#: looking up an equal tree by value would compare it entry by entry.
_TREE_SIZES: dict[int, tuple[sp.Basic, int]] = {}
_TREE_SIZES_KEPT = 100_000


def tree_size(e: sp.Basic) -> int:
    """The number of nodes of ``e`` written out as a tree (what a printer prints), counted over
    its distinct subtrees, so in time linear in the expression's DAG (the nodes not met before)."""
    known = _TREE_SIZES.get(id(e))
    if known is not None:
        return known[1]
    if len(_TREE_SIZES) > _TREE_SIZES_KEPT:
        _TREE_SIZES.clear()
    return _tree_size(e, 0)


#: How deep ``_tree_size`` recurses before it counts the rest with a stack of its own.
_RECURSION = 200


def _tree_size(node: sp.Basic, depth: int) -> int:
    # Recursion is the fast way in Python for the usual shallow trees; a deep one (tanh nested 199
    # times) goes on with the explicit stack below Python's recursion limit.
    sizes = _TREE_SIZES
    n = 1
    for a in node.args:
        known = sizes.get(id(a))
        if known is not None:
            n += known[1]
        elif depth < _RECURSION:
            n += _tree_size(a, depth + 1)
        else:
            n += _tree_size_deep(a)
    sizes[id(node)] = (node, n)
    return n


def _tree_size_deep(e: sp.Basic) -> int:
    sizes = _TREE_SIZES
    stack: list[tuple[sp.Basic, bool]] = [(e, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in sizes:
            continue
        if ready:
            n = 1 + sum(sizes[id(a)][1] for a in node.args)
            sizes[id(node)] = (node, n)
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if id(a) not in sizes)
    return sizes[id(e)][1]


def is_zero(e: sp.Basic) -> bool:
    return isinstance(e, ZeroMatrix) or (not getattr(e, "is_Matrix", False) and e == 0)


def same_shape(a: MatrixExpr, b: MatrixExpr) -> bool:
    return all(sp.expand(x - y) == 0 for x, y in zip(a.shape, b.shape))


def zeros_like(e: MatrixExpr) -> ZeroMatrix:
    return ZeroMatrix(*e.shape)


def coeff_and_rest(e: MatrixExpr) -> tuple[sp.Expr, MatrixExpr]:
    """Split ``c * X`` into a number ``c`` and the matrix part ``X``."""
    if isinstance(e, MatMul):
        coeffs = [a for a in e.args if not a.is_Matrix]
        if coeffs:
            mats = [a for a in e.args if a.is_Matrix]
            c = sp.Mul(*coeffs)
            rest = mats[0] if len(mats) == 1 else MatMul(*mats, _sympify=False)
            return c, rest
    return Integer(1), e


def positive_first(e: MatrixExpr) -> MatrixExpr:
    """``e`` with a term of positive sign leading its sum: r̂ − r, not −r + r̂ (the other terms
    keep their order).  Anything but a sum, or a sum of negative terms only, is ``e`` as is."""
    if not isinstance(e, MatAdd):
        return e
    args = list(e.args)
    for i, a in enumerate(args):
        c, _ = coeff_and_rest(a)
        if not (c.is_Number and c < 0):
            if not i:
                return e  # already so
            args.insert(0, args.pop(i))
            return MatAdd(*args, _sympify=False)
    return e


def add(*terms: MatrixExpr) -> MatrixExpr:
    """Sum of matrix expressions of one shape; like terms combine, zeros vanish, order stays."""
    combined: dict = {}
    for term in terms:
        for t in term.args if isinstance(term, MatAdd) else (term,):
            if is_zero(t):
                continue
            c, rest = coeff_and_rest(t)
            before = combined.get(rest)
            combined[rest] = c if before is None else before + c
    flat = [scale(c, rest) for rest, c in combined.items() if c is S.One or c != 0]
    if not flat:
        return zeros_like(terms[0])
    return flat[0] if len(flat) == 1 else MatAdd(*flat, _sympify=False)


def scale(c: sp.Expr | int | float, e: MatrixExpr) -> MatrixExpr:
    """Number times matrix."""
    c = _sympify(c)
    if c is S.One:  # the usual case, without comparing numbers
        return e
    if c == 0 or is_zero(e):
        return zeros_like(e)
    if c == 1:
        return e
    c0, rest = coeff_and_rest(e)
    c = c * c0
    if c == 1:
        return rest
    if isinstance(rest, MatMul):
        return MatMul(c, *rest.args, _sympify=False)
    return MatMul(c, rest, _sympify=False)


def neg(e: MatrixExpr) -> MatrixExpr:
    return scale(-1, e)


def sub(a: MatrixExpr, b: MatrixExpr) -> MatrixExpr:
    return add(a, neg(b))


def matmul(*factors: MatrixExpr | sp.Expr) -> MatrixExpr:
    """Matrix product; numeric coefficients are collected in front."""
    coeff = Integer(1)
    mats: list[MatrixExpr] = []
    for f in factors:
        if not getattr(f, "is_Matrix", False):
            coeff *= f
            continue
        if is_zero(f):
            rows = factors[0].shape[0] if factors[0].is_Matrix else f.shape[0]
            return ZeroMatrix(rows, factors[-1].shape[1])
        c, rest = coeff_and_rest(f)
        if c is not S.One:
            coeff *= c
        mats.extend(rest.args if isinstance(rest, MatMul) else [rest])
    # A 1x1 all-ones factor between others is the identity (it comes from broadcasting).
    if len(mats) > 1:
        mats = [m for m in mats if not (isinstance(m, OneMatrix) and m.shape == (1, 1))] or mats[:1]
    mats = _cancel_inverses(mats)
    product = mats[0] if len(mats) == 1 else MatMul(*mats, _sympify=False)
    return product if coeff is S.One else scale(coeff, product)


def _cancel_inverses(mats: list[MatrixExpr]) -> list[MatrixExpr]:
    """A⁻¹ A = A A⁻¹ = I and A⁻ᵀ Aᵀ = Aᵀ A⁻ᵀ = I dropped, and I between other factors."""
    if len(mats) < 2 or not any(isinstance(m, (Inv, sp.Identity)) or (isinstance(m, Transpose) and isinstance(
            m.arg, Inv)) for m in mats):
        return mats  # nothing to cancel or drop (most products: one pass over the factors)

    def inverse_pair(a, b):
        for x, y in ((a, b), (b, a)):
            if isinstance(x, Inv) and x.arg == y:
                return True
            if isinstance(x, Transpose) and isinstance(x.arg, Inv) and isinstance(y, Transpose) and x.arg.arg == y.arg:
                return True
        return False

    out: list[MatrixExpr] = []
    for m in mats:
        if out and inverse_pair(out[-1], m):
            n = out.pop().shape[0]
            out.append(sp.Identity(n))
        else:
            out.append(m)
    kept = [m for m in out if not isinstance(m, sp.Identity)]
    return kept or out[:1]


def hadamard(*factors: MatrixExpr) -> MatrixExpr:
    """Elementwise product; numeric coefficients are pulled out, x ⊙ x^{∘-1} cancels."""
    coeff = Integer(1)
    flat = []
    for f in factors:
        c, rest = coeff_and_rest(f)
        coeff *= c
        if is_zero(rest):
            return zeros_like(rest)
        if isinstance(rest, HadamardProduct):
            flat.extend(rest.args)
        elif isinstance(rest, OneMatrix) or _all_ones(rest):  # x ⊙ 𝟏 = x, and x ⊙ 𝟏𝟏ᵀ = x
            continue
        else:
            flat.append(rest)
    flat = _cancel_powers(flat)
    if not flat:
        return scale(coeff, OneMatrix(*factors[0].shape))
    product = flat[0] if len(flat) == 1 else HadamardProduct(*flat)
    return scale(coeff, product)


def _all_ones(e: MatrixExpr) -> bool:
    """1 1ᵀ: a product of all-ones factors whose inner sizes are 1 is all ones."""
    return isinstance(e, MatMul) and all(isinstance(a, OneMatrix) for a in e.args) and all(
        a.shape[1] == 1 for a in e.args[:-1])


def _cancel_powers(factors: list[MatrixExpr]) -> list[MatrixExpr]:
    """Merge x ⊙ x^{∘k} into x^{∘(k+1)} and drop x^{∘0}; keeps first-seen order."""
    if not any(isinstance(f, HadamardPower) for f in factors) and len(set(factors)) == len(factors):
        return list(factors)  # distinct factors and no powers: nothing to merge (most products)
    powers: dict = {}
    order = []
    for f in factors:
        base, exp = (f.args[0], f.args[1]) if isinstance(f, HadamardPower) else (f, Integer(1))
        if base not in powers:
            order.append(base)
            powers[base] = Integer(0)
        powers[base] += exp
    out = []
    for base in order:
        k = powers[base]
        if k == 0:
            continue
        out.append(base if k == 1 else HadamardPower(base, k))
    return out


def hadamard_div(a: MatrixExpr, b: MatrixExpr) -> MatrixExpr:
    return hadamard(a, HadamardPower(b, -1))


def transpose(e: MatrixExpr) -> MatrixExpr:
    if isinstance(e, Transpose):
        return e.arg
    if isinstance(e, (ZeroMatrix, OneMatrix)):
        return type(e)(e.shape[1], e.shape[0])
    if isinstance(e, (sp.Identity, Diag)):  # symmetric: diag(g)ᵀ is diag(g)
        return e
    if isinstance(e, Inv) and isinstance(e.arg, (sp.Identity, Diag)):  # and so is its inverse
        return e
    if e.shape == (1, 1):  # a scalar is its own transpose
        return e
    c, rest = coeff_and_rest(e)
    if c != 1:
        return scale(c, transpose(rest))
    if isinstance(rest, MatMul):
        return matmul(*[transpose(f) for f in reversed(rest.args)])
    if isinstance(rest, MatAdd):
        return add(*[transpose(t) for t in rest.args])
    if isinstance(rest, HadamardProduct) and any(_transposes_away(f) for f in rest.args):
        # (A ⊙ B)ᵀ = Aᵀ ⊙ Bᵀ where that takes a transpose off: (Pᵀ ⊙ δPᵀ)ᵀ is P ⊙ δP, (λ 1ᵀ ⊙ wᵀ)ᵀ is
        # λ w; (r ⊙ h)ᵀ is kept
        return hadamard(*[transpose(f) for f in rest.args])
    return Transpose(rest)


def _transposes_away(f: MatrixExpr) -> bool:
    """``f`` is a transpose, or a number spread over a row (λ 1ᵀ): its transpose has none."""
    if isinstance(f, Transpose):
        return True
    return isinstance(f, MatMul) and any(isinstance(a, OneMatrix) for a in f.args) and all(
        a.shape == (1, 1) or isinstance(a, OneMatrix) for a in f.args if getattr(a, "is_Matrix", False))


def broadcast(e: MatrixExpr | sp.Expr, shape: tuple[sp.Expr, sp.Expr]) -> MatrixExpr:
    """A 1x1 expression (or a number) spread over ``shape``."""
    rows, cols = shape
    if not getattr(e, "is_Matrix", False):
        return scale(e, OneMatrix(rows, cols))
    c, rest = coeff_and_rest(e)
    if isinstance(rest, OneMatrix) and rest.shape == (1, 1):  # a number written as a 1x1 matrix
        return scale(c, OneMatrix(rows, cols))
    if (rows, cols) == (1, 1):
        return e
    if cols == 1:
        return matmul(OneMatrix(rows, 1), e)
    if rows == 1:
        return matmul(e, OneMatrix(1, cols))
    return matmul(OneMatrix(rows, 1), e, OneMatrix(1, cols))


def scalar_times(s: MatrixExpr | sp.Expr, e: MatrixExpr) -> MatrixExpr:
    """A scalar (a number or a 1x1 expression) times ``e``: ``s e`` for a vector (a matrix
    product with a 1x1 factor), ``1 s 1ᵀ ⊙ e`` for a matrix; a number just scales."""
    if not getattr(s, "is_Matrix", False):
        return scale(s, e)
    c, rest = coeff_and_rest(s)
    if isinstance(rest, OneMatrix) and rest.shape == (1, 1):
        return scale(c, e)
    if e.shape == (1, 1):
        return hadamard(s, e)
    return hadamard(broadcast(s, e.shape), e)


def _timed(x: sp.Basic) -> bool:
    return isinstance(x, At) or (isinstance(x, Window) and x.where == "t")


def shift(e: MatrixExpr, k: int) -> MatrixExpr:
    """Move every time-indexed symbol (and window) of ``e`` by ``k`` steps."""
    if k == 0:
        return e
    return e.replace(_timed, lambda x: At(x.base, x.offset + k) if isinstance(x, At) else x.moved("t", k))


def at_step(e: MatrixExpr, k: int) -> MatrixExpr:
    """``e`` (written at step t) evaluated at step ``k``: every ``At(b, i)`` becomes ``AtStep(b, k + i)``."""
    return e.replace(_timed, lambda x: AtStep(x.base, k + x.offset) if isinstance(x, At) else x.moved("step", k))


def at_end(e: MatrixExpr, k: int) -> MatrixExpr:
    """``e`` (written at step t) evaluated at step ``T + k``: every ``At(b, i)`` becomes ``AtEnd(b, k + i)``."""
    return e.replace(_timed, lambda x: AtEnd(x.base, k + x.offset) if isinstance(x, At) else x.moved("end", k))
