"""The right side of a claim, as read from a hand derivation, before it is judged.

A claim is read into a small tree of frozen nodes rather than straight into SymPy: a wrong
claim often does not even fit together (``W δh`` where ``Wᵀ δh`` was meant), and the tree
can hold it, be rewritten by the diagnosis (transpose a factor, flip a sign, ...) and be
built into a SymPy matrix expression, with its shapes checked, only when it is judged.

Steps are offsets from the claim's own step (``None``: a static quantity).  An entry claim
(``δW_{i,j} = o_{t,j} δh_{t,i}``) is lifted to matrix form (``δh_t o_tᵀ``) by ``lift``, so
every claim is judged, and repaired, as a matrix expression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import sympy as sp
from sympy import HadamardPower, OneMatrix, ZeroMatrix

from ..ir import expr as E
from ..ops import ELEMENTWISE, LANGUAGE, activation_derivative

# ---------------------------------------------------------------------------------------
# Nodes.


@dataclass(frozen=True)
class Val:
    """A quantity of the model (forward value).  ``offset``: a ``Step`` while reading, an int
    offset from the claim's step once anchored, None for a static quantity."""

    name: str
    offset: int | Step | None = None


@dataclass(frozen=True)
class Grad:
    """δ of a quantity: ∂L/∂ it.  For a parameter, its step-t term inside a per-step claim.
    ``offset`` as for ``Val``."""

    name: str
    offset: int | Step | None = None
    #: Written ∂L_t/∂X (the loss of one step in the numerator, ``L = Σ_t L_t``): for a sequence
    #: quantity at that step, the path through later steps is not part of it.
    local: str | None = None  # the step of that loss as written ("t", "4"), else None
    scaled: bool = False  # and the loss is declared a mean, L = (1/T) Σ_t L_t: T times δ


@dataclass(frozen=True)
class Num:
    value: Fraction


@dataclass(frozen=True)
class Ones:
    """𝟏, of the size its neighbours give it."""


@dataclass(frozen=True)
class Zero:
    """𝟎, of the size its neighbours give it."""


@dataclass(frozen=True)
class Terms:
    terms: tuple


@dataclass(frozen=True)
class Neg:
    arg: object


@dataclass(frozen=True)
class Product:
    """Juxtaposition, ``@``, ``\\cdot``: a matrix product, or scaling by a scalar."""

    factors: tuple


@dataclass(frozen=True)
class Hadamard:
    factors: tuple


@dataclass(frozen=True)
class Quotient:
    """Elementwise division (``⊘``, ``\\frac``, ``/``)."""

    num: object
    den: object


@dataclass(frozen=True)
class Power:
    """Elementwise power."""

    base: object
    exponent: int


@dataclass(frozen=True)
class MatrixPower:
    """A square matrix to an integer power (W^{4-j-1} of a sum over fixed steps); negative:
    the inverse's."""

    arg: object
    exponent: int


@dataclass(frozen=True)
class Transposed:
    arg: object


@dataclass(frozen=True)
class Call:
    """An elementwise function, ``softmax``, ``log_softmax``, ``sum``, ...; ``params``: the
    constant parameters of an elementwise function (``leaky_relu(z, 0.1)``), as Fractions;
    ``axis``: the ``axis=`` of ``sum`` and ``mean`` (None: over every entry)."""

    fname: str
    arg: object
    params: tuple = ()
    axis: int | None = None


@dataclass(frozen=True)
class Derivative:
    """f'(arg) of an elementwise function f, entry by entry."""

    fname: str
    arg: object
    params: tuple = ()


@dataclass(frozen=True)
class Rows:
    """Rows ``start..stop`` (1-based, inclusive; sizes as SymPy expressions) of a vector."""

    arg: object
    start: sp.Expr
    stop: sp.Expr


@dataclass(frozen=True)
class OverTime:
    """Σ_{t=start}^{T-last} (``start`` > 1: ``\\sum_{t=2}^{T}``; ``last`` > 0: ``\\sum_{t=1}^{T-1}``)."""

    arg: object
    start: int = 1
    last: int = 0


@dataclass(frozen=True)
class Indicator:
    """The Iverson bracket [first ≤ t ≤ T − last] on the step (the adjoint of a loss over a part
    of the sequence is zero outside it)."""

    first: int = 1
    last: int = 0


@dataclass(frozen=True)
class Jacobian:
    """∂a/∂b of two quantities (``of``, ``wrt``: ``Val`` nodes), read only inside a chain rule;
    ∂a_k/∂b_l with ``entries`` ((k,), (l,)), in an index-summed chain rule."""

    of: object
    wrt: object
    entries: tuple = ((), ())


@dataclass(frozen=True)
class ChainRule:
    """∂L/∂a · ∂a/∂b · ∂b/∂c …: the adjoint ``start`` (δa) carried back along each link (the
    direct dependence of a on b, through the pre-activations symderiv named), whatever the
    order or layout the write-up multiplies the factors in."""

    start: object
    links: tuple


@dataclass(frozen=True)
class Entry:
    """An entry ``X_i`` or ``X_{i,j}``; only before ``lift``."""

    arg: object
    indices: tuple


@dataclass(frozen=True)
class IndexSum:
    """Σ over an entry index; only before ``lift``."""

    index: str
    arg: object


@dataclass(frozen=True)
class Given:
    """A piece of the derivation itself (a SymPy expression), put in by a repair."""

    expr: object


LEAVES = (Val, Grad, Num, Ones, Zero, Given, Indicator)
FUNCTIONS = tuple(name for name, e in ELEMENTWISE.items() if e.public) + tuple(
    name for name, f in LANGUAGE.items() if f.claims)


def children(node) -> tuple:
    """The sub-expressions of a node, in order."""
    if isinstance(node, LEAVES):
        return ()
    if isinstance(node, (Terms, Product, Hadamard)):
        return tuple(node.terms if isinstance(node, Terms) else node.factors)
    if isinstance(node, Quotient):
        return (node.num, node.den)
    if isinstance(node, Power):
        return (node.base,)
    if isinstance(node, Jacobian):
        return (node.of, node.wrt)
    if isinstance(node, ChainRule):
        return (node.start,) + tuple(node.links)
    return (node.arg,)


def with_children(node, kids: tuple):
    """The node with its sub-expressions replaced."""
    if isinstance(node, Terms):
        return Terms(tuple(kids))
    if isinstance(node, (Product, Hadamard)):
        return type(node)(tuple(kids))
    if isinstance(node, Quotient):
        return Quotient(*kids)
    if isinstance(node, Power):
        return Power(kids[0], node.exponent)
    if isinstance(node, LEAVES):
        return node
    if isinstance(node, Jacobian):
        return replace(node, of=kids[0], wrt=kids[1])
    if isinstance(node, ChainRule):
        return ChainRule(kids[0], tuple(kids[1:]))
    return replace(node, arg=kids[0])


def positions(node, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    """Every (path, sub-expression) of the tree, the root first."""
    yield path, node
    for i, kid in enumerate(children(node)):
        yield from positions(kid, path + (i,))


def replace_at(node, path: tuple, new):
    """The tree with the sub-expression at ``path`` replaced by ``new``."""
    if not path:
        return new
    kids = list(children(node))
    kids[path[0]] = replace_at(kids[path[0]], path[1:], new)
    return with_children(node, tuple(kids))


def transform(node, fn: Callable):
    """Rebuild bottom-up, applying ``fn`` to every node after its children."""
    kids = children(node)
    if kids:
        node = with_children(node, tuple(transform(k, fn) for k in kids))
    return fn(node)


def shift(node, k: int):
    """Move every step of the tree by ``k``."""
    if k == 0:
        return node

    def move(n):
        if isinstance(n, (Val, Grad)) and isinstance(n.offset, int):
            return replace(n, offset=n.offset + k)
        if isinstance(n, Given):
            return Given(E.shift(n.expr, k))
        return n

    return transform(node, move)


def depends_on_step(node) -> bool:
    """True if the value changes with t (a step appears outside every Σ_t)."""
    if isinstance(node, OverTime):
        return False
    if isinstance(node, (Val, Grad)):
        return isinstance(node.offset, int)
    if isinstance(node, Given):
        return _has_step(node.expr)
    return any(depends_on_step(k) for k in children(node))


def _has_step(e) -> bool:
    if isinstance(e, E.TimeSum):
        return False
    if isinstance(e, E.At):
        return True
    return any(_has_step(a) for a in getattr(e, "args", ()))


def references(node) -> set[tuple[str, str]]:
    """(``"value"`` or ``"grad"``, name) for every quantity the tree names."""
    found = set()
    for _, n in positions(node):
        if isinstance(n, Val):
            found.add(("value", n.name))
        elif isinstance(n, Grad):
            found.add(("grad", n.name))
    return found


def contains(node, kinds) -> bool:
    return any(isinstance(n, kinds) for _, n in positions(node))


# ---------------------------------------------------------------------------------------
# Claims.


class ReadError(Exception):
    """A claim that cannot be read; ``pos`` is an offset into the file, when known."""

    def __init__(self, message: str, pos: int | None = None):
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass(frozen=True)
class Step:
    """A step as written: t + offset (base ``"t"``), T + offset (``"T"``) or the fixed step ``offset`` (``""``)."""

    base: str
    offset: int

    def text(self, index: str = "t", length: str = "T") -> str:
        if not self.base:
            return str(self.offset)
        name = index if self.base == "t" else length
        if self.offset == 0:
            return name
        return f"{name}{self.offset:+d}"


STEP_T = Step("t", 0)


@dataclass(frozen=True)
class Target:
    """What a claim is about: δ of ``name`` at ``step`` (None: static), or one entry of it."""

    name: str
    step: Step | None = None
    indices: tuple = ()
    local: str | None = None  # written ∂L_t/∂X: the step of the loss (see ``Grad.local``)
    scaled: bool = False  # L = (1/T) Σ_t L_t: the claim is T times the step's part

    def label(self, index: str = "t", length: str = "T") -> str:
        """``o[t]``, ``W_out[i, j]``, ``h_out[t][i]``: the model language's spelling."""
        text = self.name
        if self.step is not None:
            text += f"[{self.step.text(index, length)}]"
        if self.indices:
            text += "[" + ", ".join(self.indices) + "]"
        return text


@dataclass
class Claim:
    """One claim of a hand derivation: where it is, what it says, or why it cannot be read.

    ``rhs`` is in matrix form with steps relative to the target's step.
    """

    line: int
    col: int
    text: str
    target: Target | None = None
    rhs: object = None
    problem: str | None = None
    assumed: tuple = ()  # how an ambiguous notation was read, for the message ("· as elementwise")


def make_claim(model, line: int, col: int, text: str, target_node, rhs_node) -> Claim:
    """A claim from its two read sides: the target checked, steps anchored, entries lifted."""
    target = None
    try:
        target = claim_target(model, target_node)
        rhs = anchor_steps(model, rhs_node, target.step)
        if target.indices or contains(rhs, (Entry, IndexSum)):
            rhs = lift(rhs, target.indices)
        return Claim(line, col, text, target, rhs)
    except (ReadError, LiftError) as exc:
        return Claim(line, col, text, target, None, str(exc))


def claim_target(model, node) -> Target:
    """The target of a left side that reads ``δX``, ``δX_{i,j}`` or ``(δX)_i``."""
    indices: tuple = ()
    if isinstance(node, Entry):
        node, indices = node.arg, tuple(node.indices)
    if not isinstance(node, Grad):
        raise ReadError("the left side is not δ of one quantity (or an entry of one)")
    q = model.quantities[node.name]
    if q.role == "loss":
        raise ReadError(f"δ{node.name} is 1 by definition; claim the gradient of something else")
    if q.role in ("input", "target"):
        raise ReadError(f"'{node.name}' is {q.role} data, which is not differentiated")
    if len(indices) > (1 if q.is_vector else 2) or (q.is_scalar and indices):
        raise ReadError(f"'{node.name}' is {q.kind}: it has no entry {', '.join(indices)}")
    if q.is_vector and len(indices) == 2:
        raise ReadError(f"'{node.name}' is a vector: one entry index, not two")
    step = node.offset if q.sequence else None
    if isinstance(step, int):
        raise TypeError("internal error: a claim's target is read before its steps are anchored")
    if q.sequence and step is None:
        step = STEP_T
    return Target(node.name, step, indices, node.local, node.scaled)


def anchor_steps(model, node, anchor: Step | None):
    """Steps as offsets from the claim's own step (``anchor``; None: a static target, whose
    claim is at a general step t); a missing step on a sequence quantity is that step.  A
    claim about a static value may name fixed steps (``δh_1``), which stay ``Step`` s."""

    def fix(n):
        if not isinstance(n, (Val, Grad)):
            return n
        q = model.quantities[n.name]
        if isinstance(n, Grad) and q.role in ("input", "target", "loss"):
            raise ReadError(f"δ of '{n.name}', which is {'the loss' if q.role == 'loss' else q.role + ' data'}: "
                            "it has no gradient")
        if not q.sequence:
            return n
        if n.offset is None:
            # unstepped, at the claim's step; in a claim about h_{t-1} (what cell t passes back,
            # δh_{t-1} = W^T δz), at the cell's step t
            back = anchor is not None and anchor.base == "t" and anchor.offset < 0
            return replace(n, offset=-anchor.offset if back else 0)
        if anchor is None and n.offset.base in ("", "T"):  # a fixed step: δh_1, h_T
            return n
        here = anchor or STEP_T
        if n.offset.base != here.base:
            left = here.text() if anchor is not None else "a whole gradient"
            raise ReadError(f"the claim mixes steps: {n.offset.text()} on the right, {left} on the left")
        return replace(n, offset=n.offset.offset - here.offset)

    return transform(node, fix)


# ---------------------------------------------------------------------------------------
# Entry claims → matrix form.


class LiftError(Exception):
    """An entry expression that has no matrix form we can read."""


@dataclass(frozen=True)
class _Lifted:
    """``node`` whose (r, c) entry is the scalar expression at rows index = r, cols index = c."""

    node: object
    rows: str | None = None
    cols: str | None = None

    @property
    def indices(self) -> tuple:
        return tuple(i for i in (self.rows, self.cols) if i is not None)


def lift(node, indices: tuple):
    """The matrix whose (i, j) entry is the entry expression ``node`` (``indices`` = (i, j))."""
    out = _Lift(list(indices)).run(node)
    free = [i for i in out.indices if i not in indices]
    if free:
        raise LiftError(f"the index {free[0]} is neither on the left side nor summed over")
    return _orient(out, tuple(indices))


class _Lift:
    def __init__(self, order: list[str]):
        self.targets = tuple(order)
        self.order = order  # the target's indices, then summed ones as they are met

    def run(self, node) -> _Lifted:
        if isinstance(node, Entry):
            if contains(node.arg, (Entry, IndexSum)):
                raise LiftError("an entry of an entry")
            if len(set(node.indices)) != len(node.indices):
                raise LiftError("a diagonal entry such as A_{i,i}")
            return _Lifted(node.arg, *node.indices)
        if isinstance(node, LEAVES):
            return _Lifted(node)
        if isinstance(node, IndexSum):
            return self._index_sum(node)
        if isinstance(node, Transposed) and contains(node.arg, Entry):
            raise LiftError("the transpose of an entry")
        if isinstance(node, Call) and node.fname not in ELEMENTWISE:
            if contains(node.arg, Entry):
                raise LiftError(f"{node.fname} of single entries")
            return _Lifted(node)
        kids = [self.run(k) for k in children(node)]
        if isinstance(node, Product) and len(kids) > 1:
            return self._product(kids)
        union = self._union(kids)
        return _Lifted(with_children(node, tuple(_broadcast(k, union) for k in kids)), *union)

    def _union(self, parts: list[_Lifted]) -> tuple:
        seen = {i for p in parts for i in p.indices}
        if len(seen) > 2:
            raise LiftError("more than two entry indices in one expression")
        ordered = sorted(seen, key=self._rank)
        return tuple(ordered) + (None,) * (2 - len(ordered))

    def _rank(self, index: str) -> int:
        if index not in self.order:
            self.order.append(index)
        return self.order.index(index)

    def _product(self, kids: list[_Lifted]) -> _Lifted:
        """u_i v_j is the outer product u vᵀ; anything else is an elementwise product."""
        union = self._union(kids)
        scalars = [k.node for k in kids if not k.indices]
        rows = [k.node for k in kids if k.indices == (union[0],)]
        cols = [k.node for k in kids if union[1] is not None and k.indices == (union[1],)]
        if len(scalars) + len(rows) + len(cols) == len(kids) and rows and cols:
            outer = Product((_hadamard(rows), Transposed(_hadamard(cols))))
            return _Lifted(Product((*scalars, outer)) if scalars else outer, *union)
        vectors = [_broadcast(k, union) for k in kids if k.indices]
        if not vectors:
            return _Lifted(Product(tuple(k.node for k in kids)))
        body = _hadamard(vectors)
        return _Lifted(Product((*scalars, body)) if scalars else body, *union)

    def _index_sum(self, node: IndexSum) -> _Lifted:
        j = node.index
        if j in self.targets:
            raise LiftError(f"the summed index {j} is also on the left side")
        body = self.run(node.arg)
        if j not in body.indices:
            raise LiftError(f"the sum over {j} has no term that depends on {j}")
        if body.indices == (j,):
            return _Lifted(Product((Transposed(Ones()), body.node)))
        other = body.rows if body.cols == j else body.cols
        matrix = body.node if body.cols == j else Transposed(body.node)
        return _Lifted(Product((matrix, Ones())), other)


def _hadamard(nodes: list):
    return nodes[0] if len(nodes) == 1 else Hadamard(tuple(nodes))


def _broadcast(part: _Lifted, union: tuple):
    """``part`` spread over the entry indices ``union`` (rows, cols)."""
    have = part.indices
    if not have or (part.rows, part.cols) == union:
        return part.node
    rows, cols = union
    if cols is None:
        raise LiftError("inconsistent entry indices")
    if have == (cols, rows):
        return Transposed(part.node)
    if have == (rows,):
        return Product((part.node, Transposed(Ones())))
    if have == (cols,):
        return Product((Ones(), Transposed(part.node)))
    raise LiftError("inconsistent entry indices")


def _orient(part: _Lifted, indices: tuple):
    if not part.indices:
        return part.node
    union = tuple(indices) + (None,) * (2 - len(indices))
    return _broadcast(part, union)


# ---------------------------------------------------------------------------------------
# Building into SymPy.


class ShapeMismatch(Exception):
    """The tree does not fit together; the message says where."""


class _NeedsSize(Exception):
    """𝟏 or 𝟎 with nothing next to it to give its size."""


class ClaimExpressionBuilder:
    """Builds claim trees into SymPy matrix expressions over a derivation's symbols.

    ``stepwise``: the claim depends on the step, so δ of a parameter in it means the
    parameter's step-t term (what homework writes), not the whole Σ_t gradient.
    ``describe`` turns a SymPy expression into text for messages.
    """

    def __init__(self, derivation, stepwise: bool, describe: Callable = str):
        self.d = derivation
        self.model = derivation.model
        self.stepwise = stepwise
        self.describe = describe
        self._cache: dict = {}

    def build(self, node, like=None):
        """The SymPy expression (a number for a constant); raises ``ShapeMismatch``."""
        key = (node, like)
        if key not in self._cache:
            try:
                self._cache[key] = ("ok", self._build(node, like))
            except (ShapeMismatch, _NeedsSize) as exc:
                self._cache[key] = ("error", exc)
        status, value = self._cache[key]
        if status == "error":
            raise value
        return value

    def expression(self, node, shape=None):
        """The matrix expression of a claim side; with ``shape``, a number or 𝟏 is spread over it.
        Raises ``ShapeMismatch``."""
        try:
            e = self.build(node, shape)
        except _NeedsSize as exc:
            raise ShapeMismatch(str(exc)) from None
        if not _is_matrix(e):
            if shape is None:
                raise ShapeMismatch("a plain number, not a vector or a matrix")
            return E.broadcast(e, shape)
        return e

    def _build(self, node, like):
        method = getattr(self, "_" + type(node).__name__)
        return method(node, like)

    # --- leaves -------------------------------------------------------------------------

    def _Val(self, node: Val, like):
        q = self.model.quantities[node.name]
        return _at(q.symbol, node.offset) if q.sequence else q.symbol

    def _Grad(self, node: Grad, like):
        if node.scaled and self.model.length is not None:  # ∂L_t/∂X with L = (1/T) Σ_t L_t
            return E.scale(self.model.length, self.build(replace(node, scaled=False), like))
        q = self.model.quantities[node.name]
        if q.role == "param":
            g = self.d.gradients[node.name]
            if node.local is not None and g.per_step is not None:  # ∂J_3/∂W: step 3's term; ∂J_t/∂W: step t's
                return E.at_step(g.per_step, int(node.local)) if node.local.isdigit() else g.per_step
            return g.per_step if self.stepwise and g.per_step is not None else g.expr
        delta = E.Delta(q.symbol)
        return _at(delta, node.offset) if q.sequence else delta

    def _Num(self, node: Num, like):
        return sp.Rational(node.value.numerator, node.value.denominator)

    def _Ones(self, node, like):
        if like is None:
            raise _NeedsSize("cannot tell the size of 𝟏 here")
        return OneMatrix(*like)

    def _Zero(self, node, like):
        if like is None:
            return sp.Integer(0)
        return ZeroMatrix(*like)

    def _Given(self, node: Given, like):
        return node.expr

    # --- operations ---------------------------------------------------------------------

    def _siblings(self, nodes, like) -> list:
        """Build nodes that share one shape: those that know their size first, then the rest."""
        built: list = [None] * len(nodes)
        pending = []
        for i, n in enumerate(nodes):
            try:
                built[i] = self.build(n, like)
            except _NeedsSize:
                pending.append(i)
        shape = like or next((b.shape for b in built if _is_matrix(b) and b.shape != (1, 1)), None) \
            or next((b.shape for b in built if _is_matrix(b)), None)
        for i in pending:
            if shape is None:
                raise _NeedsSize("cannot tell the size of 𝟏 here")
            built[i] = self.build(nodes[i], shape)
        return built

    def _common_shape(self, built: list, what: str):
        """The shape every matrix part must have (1x1 parts and numbers are spread over it)."""
        mats = [b for b in built if _is_matrix(b)]
        if not mats:
            return None
        big = [b for b in mats if b.shape != (1, 1)]
        shape = big[0].shape if big else (1, 1)
        for b in big[1:]:
            if not E.same_shape(b, big[0]):
                raise ShapeMismatch(f"cannot {what} {self._shaped(big[0])} and {self._shaped(b)}")
        return shape

    def _shaped(self, e) -> str:
        return f"{self.describe(e)} ({shape_text(e.shape)})"

    def _Terms(self, node: Terms, like):
        built = self._siblings(node.terms, like)
        shape = self._common_shape(built, "add")
        if shape is None:
            return sp.Add(*built)
        return E.add(*[_spread(b, shape) for b in built])

    def _Neg(self, node: Neg, like):
        inner = self.build(node.arg, like)
        return E.neg(inner) if _is_matrix(inner) else -inner

    def _Hadamard(self, node: Hadamard, like):
        built = self._siblings(node.factors, like)
        shape = self._common_shape(built, "multiply elementwise")
        if shape is None:
            return sp.Mul(*built)
        coeff = sp.Mul(*[b for b in built if not _is_matrix(b)])
        mats = [_spread(b, shape) for b in built if _is_matrix(b)]
        return E.scale(coeff, E.hadamard(*mats))

    def _Quotient(self, node: Quotient, like):
        num, den = self._siblings((node.num, node.den), like)
        if not _is_matrix(den):
            if den == 0:
                raise ShapeMismatch("division by zero")
            return E.scale(1 / den, num) if _is_matrix(num) else num / den
        if not _is_matrix(num):
            return E.scale(num, HadamardPower(den, -1))
        shape = self._common_shape([num, den], "divide")
        return E.hadamard_div(_spread(num, shape), _spread(den, shape))

    def _Power(self, node: Power, like):
        base = self.build(node.base, like)
        k = node.exponent
        if not _is_matrix(base):
            return base ** k
        if k == 0:
            return OneMatrix(*base.shape)
        if 0 < k <= 3:
            return E.hadamard(*([base] * k))
        return HadamardPower(base, k)

    def _MatrixPower(self, node: MatrixPower, like):
        base = self.build(node.arg)
        if not _is_matrix(base) or base.shape[0] != base.shape[1] or base.shape == (1, 1):
            raise ShapeMismatch(f"a matrix power of {self._shaped(base) if _is_matrix(base) else 'a number'}, "
                                "which is not a square matrix")
        k = abs(node.exponent)
        if k == 0:
            return sp.Identity(base.shape[0])
        out = base
        for _ in range(k - 1):
            out = self._times(out, base)
        return E.inverse(out) if node.exponent < 0 else out

    def _Transposed(self, node: Transposed, like):
        inner = self.build(node.arg, None if like is None else (like[1], like[0]))
        return E.transpose(inner) if _is_matrix(inner) else inner

    def _Product(self, node: Product, like):
        factors = list(node.factors)
        built: list = [None] * len(factors)
        for i, f in enumerate(factors):
            try:
                built[i] = self.build(f)
            except _NeedsSize:
                continue
        for i, f in enumerate(factors):
            if built[i] is None:
                built[i] = self.build(f, self._ones_shape(built, i, f, like))
        out = built[0]
        for b in built[1:]:
            out = self._times(out, b)
        return out

    def _ones_shape(self, built: list, i: int, node, like):
        """The size of a 𝟏 (or 𝟏ᵀ) factor from the factor beside it."""
        row = isinstance(node, Transposed)
        if row:
            right = next((b for b in built[i + 1:] if _is_matrix(b)), None)
            cols = right.shape[0] if right is not None else (like[1] if like else None)
            if cols is None:
                raise _NeedsSize("cannot tell the size of 𝟏ᵀ here")
            return (1, cols)
        left = next((b for b in reversed(built[:i]) if _is_matrix(b)), None)
        rows = left.shape[1] if left is not None else (like[0] if like else None)
        if rows is None:
            raise _NeedsSize("cannot tell the size of 𝟏 here")
        return (rows, 1)

    def _times(self, a, b):
        if not _is_matrix(a) or not _is_matrix(b):
            return E.scale(a, b) if _is_matrix(b) else (E.scale(b, a) if _is_matrix(a) else a * b)
        if sp.expand(a.shape[1] - b.shape[0]) == 0:
            return E.matmul(a, b)
        if a.shape == (1, 1):  # a scalar quantity times a matrix scales it
            return E.hadamard(E.broadcast(a, b.shape), b)
        if b.shape == (1, 1):
            return E.hadamard(a, E.broadcast(b, a.shape))
        raise ShapeMismatch(f"cannot multiply {self._shaped(a)} by {self._shaped(b)}")

    def _Call(self, node: Call, like):
        arg = self.build(node.arg, like if node.axis is None else None)
        if not _is_matrix(arg):
            if node.fname in ELEMENTWISE:  # of a number or a size (sqrt(n_k)): a number, as in a model file
                value = ELEMENTWISE[node.fname].scalar(arg, *map(sp.Rational, node.params))
                if value.is_finite is False:
                    raise ShapeMismatch(f"{node.fname}({arg}) is not finite")
                return value
            raise ShapeMismatch(f"{node.fname} of a plain number")
        if node.fname in ELEMENTWISE:
            return E.Apply(node.fname, arg, *map(sp.Rational, node.params))
        if node.axis is not None:
            return LANGUAGE[node.fname].make(arg, axis=node.axis)
        square = arg.shape[0] == arg.shape[1] and arg.shape != (1, 1)
        if node.fname == "inv" and not square:  # v^{-1} of a vector: 1 ⊘ v, entry by entry
            return HadamardPower(arg, -1)
        if node.fname in ("tr", "det", "logdet", "inv") and not square:
            raise ShapeMismatch(f"{node.fname} needs a square matrix, not {self._shaped(arg)}")
        if arg.shape[1] != 1 and node.fname in ("concat", "diag"):
            raise ShapeMismatch(f"{node.fname} needs a column vector, not {self._shaped(arg)}")
        return LANGUAGE[node.fname].make(arg)

    def _Derivative(self, node: Derivative, like):
        arg = self.build(node.arg, like)
        if not _is_matrix(arg):
            raise ShapeMismatch(f"{node.fname}' of a plain number")
        fname, params = node.fname, tuple(map(sp.Rational, node.params))
        if fname == "?":  # f'(z): the function the model applies to z
            applied = self._applied_to(arg)
            if applied is None:
                raise ShapeMismatch(f"f'({self.describe(arg)}): the model applies no one elementwise function to it")
            fname, params = applied
        return activation_derivative(fname, arg, E.Apply(fname, arg, *params), params)

    def _applied_to(self, arg) -> tuple | None:
        """(function, params) of the one elementwise function the model applies to ``arg``."""
        found = set()
        for q in self.model.equations:
            for n in sp.preorder_traversal(q.expr):
                if isinstance(n, E.Apply) and n.fname in ELEMENTWISE:
                    for k in range(-2, 3):
                        if E.shift(n.arg, k) == arg:
                            found.add((n.fname, tuple(n.params)))
        return found.pop() if len(found) == 1 else None

    def _Rows(self, node: Rows, like):
        inner = self.build(node.arg)
        if not _is_matrix(inner) or inner.shape[1] != 1:
            raise ShapeMismatch("rows of something that is not a column vector")
        start, stop = node.start - 1, node.stop
        if (sp.expand(stop - start) <= 0) is sp.true or (sp.expand(inner.shape[0] - stop) < 0) is sp.true:
            raise ShapeMismatch(f"rows {node.start}..{node.stop} of {self._shaped(inner)}")
        return E.RowSlice(inner, start, stop)

    def _Indicator(self, node: Indicator, like):
        if (node.first, node.last) == (1, 0):
            return OneMatrix(1, 1)
        return E.Window(node.first, node.last)

    def _OverTime(self, node: OverTime, like):
        inner = self.build(node.arg, like)
        if not _is_matrix(inner):
            return inner
        if node.last > 0:  # Σ_{t=s}^{T-k}: the summand at the steps of the range only
            return E.TimeSum(E.scalar_times(E.Window(node.start, node.last), inner))
        total = E.TimeSum(inner)
        if node.start > 1:  # Σ_{t=s}^{T}: the terms of steps 1..s-1 taken out
            total = E.add(total, *[E.neg(E.at_step(inner, k)) for k in range(1, node.start)])
        return total

    def _Jacobian(self, node: Jacobian, like):
        of_val: Val = node.of  # type: ignore[assignment]
        wrt: Val = node.wrt  # type: ignore[assignment]
        of = self.model.quantities[of_val.name]
        if not of.is_scalar:
            raise ShapeMismatch("a Jacobian ∂a/∂b outside a chain rule ∂L/∂a ∂a/∂b")
        # ∂s/∂b of a scalar s (a loss term, J = L + s): its gradient, the column of b's shape
        carried = self._carried(of.name, of_val.offset, OneMatrix(1, 1), wrt.name, wrt.offset, depth=0)
        if carried is None:
            raise ShapeMismatch(f"∂{of.name}/∂{wrt.name}: {of.name} does not depend on {wrt.name} directly")
        return carried

    def _ChainRule(self, node: ChainRule, like):
        cot = self.build(node.start)
        if not _is_matrix(cot):
            raise ShapeMismatch("the chain rule starts from a plain number")
        here = node.links[0].of if node.links else None
        for link in node.links:
            of, wrt = link.of, link.wrt
            if here is None or of.name != here.name or of.offset != here.offset:
                raise ShapeMismatch("the factors of the chain rule do not link up")
            carried = self._carried(of.name, of.offset, cot, wrt.name, wrt.offset, depth=0)
            if carried is None:
                # ∂h_t/∂h_{t-1} of an LSTM: through the step's own values (o_t, c_t, the gates),
                # the other inputs of the step (c_{t-1}, x_t) held fixed
                carried = self._carried(of.name, of.offset, cot, wrt.name, wrt.offset, depth=0, within_step=True)
            if carried is None:
                raise ShapeMismatch(f"∂{of.name}/∂{wrt.name}: {of.name} does not depend on {wrt.name}")
            cot = carried
            here = wrt
        return cot

    def _carried(self, a: str, oa, cot, b: str, ob, depth: int, within_step: bool = False):
        """The adjoint ``cot`` of a (at offset ``oa``) carried back to b (at ``ob``) through the
        equation of a, and through any pre-activation symderiv named on the way; None if none.
        ``within_step``: through every value a's step computes on the way (not only symderiv's
        pre-activations), never through a value of another step or a parameter."""
        q = self.model.quantities[a]
        if q.expr is None or depth > (MAX_STEP_DEPTH if within_step else 4):
            return None
        parts = []
        symbol = E.At(E.Delta(q.symbol), 0) if q.sequence else E.Delta(q.symbol)
        fixed = isinstance(oa, Step) and oa.base == ""  # ∂p_3/∂y_3: at step 3
        for c, oc, g in _reads(self.model, q, symbol):
            if isinstance(oa, int) and isinstance(g, sp.Basic):
                g = E.shift(g, oa)
            elif fixed and isinstance(g, sp.Basic):
                g = E.at_step(g, oa.offset)
            here = _at(E.Delta(q.symbol), oa) if q.sequence else E.Delta(q.symbol)
            g = g.xreplace({here: cot})
            if oc is not None and isinstance(oa, int):
                oc_claim: int | Step | None = oa + oc
            elif oc is not None and fixed:
                oc_claim = Step("", oa.offset + oc)
            else:
                oc_claim = None
            target = self.model.quantities[c]
            if c == b and (not target.sequence or oc_claim == ob):
                parts.append(g)
            elif target.auxiliary and c != a:
                deeper = self._carried(c, oc_claim, g, b, ob, depth + 1, within_step)
                if deeper is not None:
                    parts.append(deeper)
            elif (within_step and c != a and target.expr is not None and target.role not in ("param", "loss")
                  and target.sequence and oc == 0):
                deeper = self._carried(c, oc_claim, g, b, ob, depth + 1, within_step)
                if deeper is not None:
                    parts.append(deeper)
        return E.add(*parts) if parts else None

    def _Entry(self, node, like):
        raise ShapeMismatch("an entry outside an entry claim")

    _IndexSum = _Entry


#: How many equations of one step a Jacobian ∂h_t/∂h_{t-1} is carried through (an LSTM's is 4:
#: h_t, c_t, f_t, net_{f,t}).
MAX_STEP_DEPTH = 8


def earlier_params(model, name: str) -> set:
    """The parameters that reach ``name`` at step t through a value of an earlier step as well
    (W reaches h_t through h_{t-1}; V reaches q_t = V h_t only at step t)."""
    def closure(n: str, seen: set) -> set:
        if n in seen:
            return set()
        seen.add(n)
        q = model.quantities[n]
        if q.role == "param":
            return {n}
        if q.expr is None:
            return set()
        out: set = set()
        for c, _, _ in _reads(model, q, E.Delta(q.symbol)):
            out |= closure(c, seen)
        return out

    def walk(n: str, seen: set) -> set:
        if n in seen:
            return set()
        seen.add(n)
        q = model.quantities[n]
        if q.expr is None or q.role == "param":
            return set()
        out: set = set()
        symbol = E.At(E.Delta(q.symbol), 0) if q.sequence else E.Delta(q.symbol)
        for c, oc, _ in _reads(model, q, symbol):
            if oc is not None and oc < 0:
                out |= closure(c, set())
            elif model.quantities[c].role != "param":
                out |= walk(c, seen)
        return out

    return walk(name, set())


def _reads(model, q, symbol) -> list:
    """(quantity c, offset of c from q's step or None, the adjoint q's equation sends to c,
    written at q's step in terms of ``symbol`` = δq) for every quantity q's equation reads."""
    from ..ad.derive import _Sweep  # the sweep's own rule for one equation

    sweep = _Sweep(model)
    sweep.consumer = q.name
    sweep.back(q.expr, symbol, model.ref(q.name), q.sequence)
    out: list[tuple[str, int | None, object]] = []
    for c, adj in sweep.adjoints.items():
        for term in adj.terms:
            out.append((c, -term.offset, E.shift(term.expr, -term.offset)))
        for g in adj.per_step + adj.static:
            out.append((c, None, g))
    return out


def _at(base, offset):
    """``base`` at a step: an offset from t, or a fixed ``Step``."""
    if isinstance(offset, Step):
        return E.AtEnd(base, offset.offset) if offset.base == "T" else E.AtStep(base, offset.offset)
    return E.At(base, offset or 0)


def _is_matrix(e) -> bool:
    return getattr(e, "is_Matrix", False)


def _spread(e, shape):
    """A number or a 1x1 value spread over ``shape``; anything else as it is."""
    if not _is_matrix(e) or (e.shape == (1, 1) and tuple(shape) != (1, 1)):
        return E.broadcast(e, shape)
    return e


def shape_text(shape) -> str:
    rows, cols = shape
    if rows == 1 and cols == 1:
        return "a scalar"
    if cols == 1:
        return f"a vector of size {rows}"
    return f"{rows} × {cols}"

