"""The reverse sweep over one generic time step.

Walk the equations backwards (consumers first); every node hands its adjoint to its
children through its rule in ``ops``.  A contribution to ``h[t-k]`` from the equation at
step t is a term of δh at step t written ``…_{t+k}`` (BPTT), with δ beyond T zero; a
parameter's gradient is Σ_t of what it receives per step.

Then the closed forms: a quantity that is an activation's output and has one consumer (o,
r̂, a_in) is inlined into the adjoint of its pre-activation; every other adjoint keeps its
name (δh^(out)_t, δy_{o,t}, δh_t).  Each closed form is tidied and collected.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol, OneMatrix, Transpose
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..errors import ModelError, UnknownNameError
from ..ir.expr import (
    Apply,
    At,
    AtEnd,
    AtStep,
    Delta,
    LogSoftmax,
    Softmax,
    TimeSum,
    add,
    at_end,
    at_step,
    is_row_softmax,
    is_zero,
    positive_first,
    shift,
    transpose,
    tree_size,
)
from ..ir.model import Model, Quantity
from ..ir.names import PREACTIVATION_LETTERS, split_name
from ..ops import node_record
from .simplify import collect, tidier

ACTIVATIONS = (Apply, Softmax, LogSoftmax)

#: The largest adjoint contribution, counted as nodes of its tree written out. The examples'
#: largest closed form has 80; tanh nested 199 deep in one equation (the nesting limit) has
#: 41,388 and still derives and prints in seconds; 16 nested softmaxes would have 9 million.
MAX_CLOSED_FORM_SIZE = 50_000


@dataclass
class Term:
    """One contribution to an adjoint.  ``offset`` = consumer's step − this quantity's step.

    At step s the term counts when its consumer's step s + offset lies in 1..T (always for
    offset 0 within the sequence; the BPTT terms vanish at the end, δ_{T+1} = 0).
    """

    expr: sp.Basic
    offset: int = 0


@dataclass
class Adjoint:
    """∂L/∂q for one quantity: the chain-rule contributions and the closed form."""

    quantity: Quantity
    symbol: sp.Basic  # δq_t (``At(Delta(q), 0)``) or δq
    terms: list[Term] = field(default_factory=list)  # per step (a sequence quantity)
    per_step: list[sp.Basic] = field(default_factory=list)  # static quantity: summed over t
    static: list[sp.Basic] = field(default_factory=list)  # static quantity: from static equations
    named: bool = True
    closed_terms: list[Term] = field(default_factory=list)
    closed_per_step: sp.Basic | None = None
    closed_static: sp.Basic | None = None
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (quantity, step offset) that read it
    # A sequence quantity read at a fixed step by a static equation (h[T] in p = softmax(U h_T)):
    # δ at that step (``AtEnd(Delta(h), 0)``, ``AtStep(Delta(h), 1)``) → what it receives there
    fixed: dict[sp.Basic, list[sp.Basic]] = field(default_factory=dict)
    closed_fixed: dict[sp.Basic, sp.Basic] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.quantity.name

    @property
    def sequence(self) -> bool:
        return self.quantity.sequence

    @property
    def chain(self) -> MatrixExpr:
        """The one-step chain rule: the adjoint in terms of its consumers' adjoints."""
        if self.sequence:
            return _sum([t.expr for t in self.terms], self.symbol)
        parts = []
        if self.per_step:
            parts.append(TimeSum(_sum(self.per_step, self.symbol)))
        parts.extend(self.static)
        return _sum(parts, self.symbol)

    def fixed_step(self, key: sp.Basic) -> int | tuple[str, int]:
        """Where a fixed contribution lands: a step ``j`` from the start, or ``("end", k)`` for T + k."""
        return ("end", key.offset) if isinstance(key, AtEnd) else key.step

    def at_fixed(self, key: sp.Basic) -> MatrixExpr:
        """The closed form of δq at the fixed step ``key`` (δh_T = W_pᵀ δp + the terms that exist
        at T): the per-step terms moved to that step, those reading δ beyond T left out, and
        what the step receives there."""
        if isinstance(key, AtEnd):
            terms = [at_end(t.expr, key.offset) for t in self.closed_terms if key.offset + t.offset <= 0]
        else:
            terms = [at_step(t.expr, key.step) for t in self.closed_terms]
        return positive_first(_sum(terms + [self.closed_fixed[key]], self.symbol))

    @property
    def closed(self) -> MatrixExpr:
        """The closed form, with named adjoints of other quantities in it."""
        if self.sequence:
            return positive_first(_sum([t.expr for t in self.closed_terms], self.symbol))
        parts = []
        if self.closed_per_step is not None:
            parts.append(TimeSum(self.closed_per_step))
        if self.closed_static is not None:
            parts.append(self.closed_static)
        return _sum(parts, self.symbol)


@dataclass
class Gradient:
    """∂L/∂p = Σ_t per_step + static + the adjoints of the states initialised by p."""

    param: Quantity
    per_step: sp.Basic | None
    static: sp.Basic | None
    initial: list[tuple[str, int, sp.Basic]]  # (quantity, step k <= 0, its adjoint at step k)

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def expr(self) -> MatrixExpr:
        """The closed form of the whole gradient."""
        parts = []
        if self.per_step is not None:
            parts.append(TimeSum(self.per_step))
        if self.static is not None:
            parts.append(self.static)
        parts.extend(e for _, _, e in self.initial)
        return _sum(parts, MatrixSymbol(self.name, *self.param.shape))


def _sum(parts: Iterable[MatrixExpr | None], like: MatrixExpr) -> MatrixExpr:
    parts = [p for p in parts if p is not None and not is_zero(p)]
    if not parts:
        return sp.ZeroMatrix(*like.shape)
    return add(*parts)


class Formula:
    """One closed form of a derivation, ``δh_t = …`` or ``∂L/∂V = …``: printed as a textbook
    writes it (``repr``, ``str``), in LaTeX for Jupyter (``_repr_latex_``), and a SymPy matrix
    expression underneath (``.expr``; attributes such as ``.shape`` and comparison with an
    expression go to it, and SymPy takes a ``Formula`` where it takes the expression)."""

    def __init__(self, model: Model, symbol: MatrixExpr | None, expr: MatrixExpr, of: str | None = None) -> None:
        self.model = model
        self.symbol = symbol  # δX (at step t), or None for a gradient
        self.expr = expr
        self.of = of  # the parameter of a gradient

    def _sides(self, printer) -> tuple[str, str]:
        from ..render.printing import LatexPrinter

        latex = isinstance(printer, LatexPrinter)
        if self.symbol is not None:
            lhs = printer.doprint(self.symbol)
        elif latex:
            lhs = (r"\frac{\partial " + self.model.latex(self.model.loss) + r"}{\partial "
                   + self.model.latex(str(self.of)) + "}")
        else:
            lhs = f"∂{self.model.unicode(self.model.loss)}/∂{self.model.unicode(str(self.of))}"
        return lhs, printer.doprint(self.expr)

    def __repr__(self) -> str:
        from ..render.printing import UnicodePrinter

        lhs, rhs = self._sides(UnicodePrinter(self.model))
        return f"{lhs} = {rhs}"

    __str__ = __repr__

    def _repr_latex_(self) -> str:
        from ..render.printing import LatexPrinter

        lhs, rhs = self._sides(LatexPrinter(self.model))
        return f"$${lhs} = {rhs}$$"

    def _repr_markdown_(self) -> str:
        return self._repr_latex_()

    def _sympy_(self) -> MatrixExpr:
        return self.expr

    def _symderiv_print(self, printer) -> str:  # symderiv's printers print the expression
        return printer._print(self.expr)

    def __eq__(self, other: object) -> bool:
        return self.expr == (other.expr if isinstance(other, Formula) else other)

    def __hash__(self) -> int:
        return hash(self.expr)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("model", "symbol", "expr", "of"):
            raise AttributeError(name)
        return getattr(self.expr, name)


class Derivation:
    """Every adjoint and every gradient of a model, as SymPy matrix expressions."""

    def __init__(self, model: Model, adjoints: dict[str, Adjoint], gradients: dict[str, Gradient],
                 preactivations: dict[str, str], seconds: float) -> None:
        self.model = model
        self.adjoints = adjoints
        self.gradients = gradients
        self.preactivations = preactivations  # activation quantity → its pre-activation's name
        self.seconds = seconds

    def adjoint(self, name: str) -> Formula:
        """δ``name`` in closed form (at step t for a sequence quantity), shown as a textbook writes
        it: ``δh_t = Wᵀ δz_{o,t} + Vᵀ δz_{h,t+1}``, and in LaTeX in Jupyter; ``.expr`` is the SymPy
        matrix expression.  An unknown name raises an ``UnknownNameError`` (a ``KeyError``) that lists
        the names there are.

        >>> import symderiv
        >>> d = symderiv.derive(symderiv.load("examples/seed_rnn.sdm"))
        >>> d.adjoint("h")
        δh_t = Wᵀ δz_{o,t} + Vᵀ δz_{h,t+1}
        >>> d.adjoint("y")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        symderiv.errors.UnknownNameError: seed_rnn has no adjoint 'y'; the adjoints are of r_hat, h_out, o, ...
        """
        adj = self.adjoints.get(name)
        if adj is None or adj not in self.backward_order:
            names = ", ".join(a.name for a in self.backward_order)
            hint = f" ('{name}' is a parameter: use gradient('{name}'))" if name in self.gradients else ""
            raise UnknownNameError(f"{self.model.name} has no adjoint '{name}'{hint}; the adjoints are of {names}")
        return Formula(self.model, adj.symbol, adj.closed)

    def gradient(self, name: str) -> Formula:
        """∂L/∂``name`` in closed form for a parameter, shown as a textbook writes it
        (``∂L/∂V = Σ_t δz_{h,t} h_{t−1}ᵀ``); ``.expr`` is the SymPy matrix expression.

        >>> import symderiv
        >>> symderiv.derive(symderiv.load("examples/seed_rnn.sdm")).gradient("V")
        ∂L/∂V = Σ_t δz_{h,t} h_{t−1}ᵀ
        """
        g = self.gradients.get(name)
        if g is None:
            raise UnknownNameError(f"{self.model.name} has no parameter '{name}'; the parameters are "
                                   + ", ".join(self.gradients))
        return Formula(self.model, None, g.expr, of=name)

    @property
    def backward_order(self) -> list[Adjoint]:
        """Adjoints in the order a reader (and the backward pass) computes them."""
        return [self.adjoints[q.name] for q in reversed(self.model.equations)
                if q.name in self.adjoints and q.role != "loss"]

    @property
    def named(self) -> list[Adjoint]:
        """The adjoints that keep their own name in the write-up, in backward order."""
        return [a for a in self.backward_order if a.named]

    def _repr_latex_(self) -> str:
        from ..render.printing import derivation_latex
        return derivation_latex(self)

    def __repr__(self) -> str:
        return f"<Derivation of {self.model.name}: {len(self.gradients)} gradients>"


def derive(model: Model) -> Derivation:
    """Derive every adjoint and every parameter gradient of ``model``."""
    start = time.perf_counter()
    model, pre = name_preactivations(model)
    for name in model.latex_overrides:  # the parser let a latex line name a pre-activation (z_h) to come
        if name not in model.quantities:
            named = ", ".join(f"{p} (of {a})" for a, p in pre.items()) or "none"
            raise ModelError(f"{model.path}: 'latex' names '{name}', which is not defined; the pre-activations "
                             f"symderiv names in this model are: {named}")
    sweep = _Sweep(model)
    for q in reversed(model.equations):
        sweep.equation(q)
    for state in computed_states(model):  # state h[0] = tanh(W_0 @ c): through its expression
        sweep.state(*state)
    adjoints = sweep.adjoints
    distributions = frozenset(q.name for q in model.data if q.distribution)
    _choose_named(model, adjoints)
    _close(model, adjoints, distributions)
    gradients = {p.name: _gradient(model, p, sweep, adjoints, distributions) for p in model.params}
    _check_sizes(model, adjoints, gradients)
    return Derivation(model, {k: v for k, v in adjoints.items() if v.quantity.role != "param"}, gradients, pre,
                      time.perf_counter() - start)


def _check_sizes(model: Model, adjoints: dict[str, Adjoint], gradients: dict[str, Gradient]) -> None:
    """Every closed form within MAX_CLOSED_FORM_SIZE nodes written out: inlining an adjoint into
    its consumer's can grow a form the sweep's own bound let through."""
    # A closed form is the sum of its parts (one node more, and a TimeSum around the per-step part):
    # their sizes are added up rather than the sum built and walked again.
    for name, adj in adjoints.items():
        if adj.sequence:
            parts = [t.expr for t in adj.closed_terms]
        else:
            parts = [e for e in (adj.closed_per_step, adj.closed_static) if e is not None]
        if _parts_size(parts) > MAX_CLOSED_FORM_SIZE:
            raise _too_large(f"the adjoint of {name}", adj.quantity)
    for name, g in gradients.items():
        parts = [e for e in (g.per_step, g.static) if e is not None] + [e for _, _, e in g.initial]
        if _parts_size(parts) > MAX_CLOSED_FORM_SIZE:
            raise _too_large(f"the gradient of {name}", g.param)


def _parts_size(parts: list[sp.Basic]) -> int:
    """The size written out of the sum of ``parts`` (at least), stopping once past MAX_CLOSED_FORM_SIZE."""
    total = len(parts) + 1
    for e in parts:
        total += tree_size(e)
        if total > MAX_CLOSED_FORM_SIZE:
            break
    return total


def _too_large(what: str, q: Quantity) -> ModelError:
    return ModelError(f"{what} grows past {MAX_CLOSED_FORM_SIZE:,} terms written out; name the inner values of "
                      "nested functions, one equation each, so that every adjoint has a short closed form", q.pos)


# ---------------------------------------------------------------------------------------
# Pre-activations.


def name_preactivations(model: Model) -> tuple[Model, dict[str, str]]:
    """``h = σ(U a + V h₋₁ + b)`` becomes ``z_h = U a + V h₋₁ + b``, ``h = σ(z_h)``."""
    quantities: dict[str, Quantity] = {}
    order: list[str] = []
    pre: dict[str, str] = {}
    taken = set(model.quantities) | set(model.dims) | {model.time_index, getattr(model.length, "name", None)}
    # name → its activation (Apply, Softmax, LogSoftmax) applied to something not a plain name
    activations = {name: q.expr for name, q in model.quantities.items()
                   if q.role == "intermediate" and isinstance(q.expr, ACTIVATIONS) and not _is_ref(q.expr.arg)}
    # the row form P = softmax(Sᵀ)ᵀ of something not a plain name: its pre-activation is the row-shaped S
    rows = {name: e.arg for name, q in model.quantities.items()
            if q.role == "intermediate" and (e := q.expr) is not None and is_row_softmax(e, log_too=True)
            and not _is_ref(e.arg.arg) and not (isinstance(e.arg.arg, Transpose) and _is_ref(e.arg.arg.arg))}
    letter = _preactivation_letter(model)
    bodies = {name: split_name(name).body for name in [*activations, *rows]}
    shared = Counter(bodies.values())
    for name, q in model.quantities.items():
        activation = activations.get(name) or rows.get(name)
        if activation is not None:
            row = name in rows
            inner = transpose(activation.arg) if row else activation.arg
            y = _preactivation_name(name, taken, letter, shared[bodies[name]] > 1)
            taken.add(y)
            sym = MatrixSymbol(y, *inner.shape)
            quantities[y] = Quantity(y, "intermediate", sym, q.sequence, q.pos, expr=inner, auxiliary=True)
            ref = At(sym, 0) if q.sequence else sym
            if row:
                expr = Transpose(activation.func(Transpose(ref)))
            else:
                expr = activation.func(*(ref if a is inner else a for a in activation.args))
            quantities[name] = Quantity(q.name, q.role, q.symbol, q.sequence, q.pos, expr=expr)
            pre[name] = y
        else:
            quantities[name] = q
    for name in model.order:
        if name in pre:
            order.append(pre[name])
        order.append(name)
    overrides = dict(model.latex_overrides)
    for act, z in pre.items():
        spelled = _preactivation_spelling(model.latex_overrides.get(act), act, split_name(z).body)
        if spelled is not None and z not in overrides:
            overrides[z] = spelled
    return Model(model.name, model.path, model.dims, quantities, model.loss, model.time_index, model.length,
                 model.states, overrides, order, model.end_states), pre


def _preactivation_spelling(spelling: str | None, activation: str, letter: str) -> str | None:
    """The pre-activation in the notation the model file chose for its activation: h1 spelled
    ``\\mathbf{h}^{[1]}`` gives ``\\mathbf{z}^{[1]}`` (not z_{h,1} beside h^{[1]})."""
    if spelling is None:
        return None
    body = re.match(r"[A-Za-z]+?(?=\d|$)", split_name(activation).body)
    m = re.fullmatch(r"\\mathbf\{([A-Za-z])\}(\^\{[^{}]*\}|_\{[^{}]*\}|_[A-Za-z0-9])", spelling)
    if m is None or body is None or m.group(1) != body.group(0):
        return None
    return "\\mathbf{" + letter + "}" + m.group(2)


def _is_ref(e: sp.Basic) -> bool:
    return isinstance(e, (At, MatrixSymbol))


def _preactivation_letter(model: Model) -> str:
    bodies = {split_name(name).body for name in model.quantities}
    return next((c for c in PREACTIVATION_LETTERS if c not in bodies), PREACTIVATION_LETTERS[0])


def _preactivation_name(name: str, taken: set[str | None], letter: str = "z", shared_body: bool = False) -> str:
    """``z_h`` for ``h``, ``z_h_1`` for ``h1`` (a layer's number stays a subscript: z_{h,1}); the whole
    name (``z_h_1``, ``z_h_2``) where several activations share a body."""
    parts = split_name(name)
    layer = re.fullmatch(r"([A-Za-z]+?)(\d+)", parts.body)
    body = f"{layer.group(1)}_{layer.group(2)}" if layer else parts.body
    first = [] if shared_body else [f"{letter}_{body}"]
    whole = f"{letter}_{layer.group(1)}_{layer.group(2)}" + name[len(parts.body):] if layer else f"{letter}_{name}"
    candidates = itertools.chain(first, [whole], (f"{whole}_{i}" for i in range(2, 100)))  # made as needed
    return next(c for c in candidates if c not in taken)


# ---------------------------------------------------------------------------------------
# The sweep.


class _Sweep:
    def __init__(self, model: Model) -> None:
        self.model = model
        # The names the loss depends on, through any chain of equations: the equation of any other
        # quantity (one only a penalty reads, once the loss is split by the batch rule) is skipped.
        self.needed = _needed(model)
        self.adjoints: dict[str, Adjoint] = {}
        for q in model.quantities.values():
            if q.role in ("intermediate", "param", "loss"):
                sym = At(Delta(q.symbol), 0) if q.sequence else Delta(q.symbol)
                self.adjoints[q.name] = Adjoint(q, sym)

    def equation(self, q: Quantity) -> None:
        if q.role != "loss" and q.name not in self.needed:
            return  # the loss does not depend on q: δq is 0 and hands nothing on
        g = OneMatrix(1, 1) if q.role == "loss" else self.adjoints[q.name].symbol
        self.consumer = q.name
        self.back(q.expr, g, self.model.ref(q.name), q.sequence)

    def state(self, name: str, step: sp.Basic, value: MatrixExpr) -> None:
        """A state computed from static values receives δ of its quantity at its step (δh_0)."""
        self.consumer = name
        # the value of the state is the quantity at that step (h_0): its derivative reads it so
        self.back(value, step, step.func(self.model[name].symbol, step.args[1]), False)

    def _consumed(self, adj: Adjoint, offset: int) -> None:
        if (self.consumer, offset) not in adj.consumers:
            adj.consumers.append((self.consumer, offset))

    def back(self, node: MatrixExpr, g: MatrixExpr, out: MatrixExpr, step: bool) -> None:
        if is_zero(g):
            return
        if isinstance(node, (AtEnd, AtStep)):  # a fixed step, read by a static equation
            adj = self.adjoints.get(node.base.name)
            if adj is not None:
                adj.fixed.setdefault(node.func(Delta(node.base), node.args[1]), []).append(g)
            return
        if isinstance(node, At):
            adj = self.adjoints.get(node.base.name)
            if adj is not None:  # data is not differentiated
                adj.terms.append(Term(shift(g, -node.offset), -node.offset))
                self._consumed(adj, -node.offset)
            return
        if isinstance(node, MatrixSymbol):
            adj = self.adjoints.get(node.name)
            if adj is not None:
                (adj.per_step if step else adj.static).append(g)
                self._consumed(adj, 0)
            return
        record = node_record(node)  # an unknown node is an internal error
        if record.kind == "constant":
            return
        if record.vjp is None:
            raise TypeError(f"internal error: the sweep cannot differentiate {type(node).__name__} ({node})")
        for child, contribution in zip(node.args, record.vjp(node, g, out)):
            if contribution is not None and getattr(child, "is_Matrix", False):
                self._bounded(contribution)
                # the value under a transpose is the transposed value: P = softmax(Sᵀ)ᵀ's softmax is Pᵀ
                value = transpose(out) if isinstance(node, Transpose) and out is not node else child
                self.back(child, contribution, value, step or record.over_time)

    def _bounded(self, e: MatrixExpr) -> None:
        """A contribution written out past MAX_CLOSED_FORM_SIZE nodes is an error at its equation:
        nested functions in one equation (softmax of softmax of …) grow the derivative's tree
        geometrically, and the write-up and the module would print all of it."""
        size = tree_size(e)
        if size > MAX_CLOSED_FORM_SIZE:
            q = self.model[self.consumer]
            raise ModelError(f"the derivative through the equation of {q.name} grows past "
                             f"{MAX_CLOSED_FORM_SIZE:,} terms written out; name its inner values, one "
                             "equation each, so that every adjoint has a short closed form", q.pos)


def _needed(model: Model) -> set[str]:
    """The names the loss's equation reads, and the names their equations and their states
    (``state s[0] = tanh(W_0 @ c)``) read, transitively."""
    needed: set[str] = set()
    todo = [model.loss]
    while todo:
        name = todo.pop()
        q = model.quantities[name]
        reads = [q.expr] if q.expr is not None else []
        for states in (model.states, model.end_states):
            reads += [v for v in states.get(name, {}).values() if isinstance(v, sp.Basic)]
        for e in reads:
            for s in _symbols_read(e):
                if s not in needed and s in model.quantities:
                    needed.add(s)
                    todo.append(s)
    return needed


def _symbols_read(e: sp.Basic, names: set[str] | None = None) -> set[str]:
    """The names of the matrix symbols in ``e`` (a walk of its own: ``atoms`` is four times slower)."""
    names = set() if names is None else names
    if isinstance(e, MatrixSymbol):
        names.add(e.name)
    else:
        for a in e.args:
            if a.args:  # a number or a name's string has none
                _symbols_read(a, names)
    return names


# ---------------------------------------------------------------------------------------
# Closed forms.


def _choose_named(model: Model, adjoints: dict[str, Adjoint]) -> None:
    """Inline the adjoint of an activation's output that has one consumer; name the rest.

    One consumer may read the output more than once (binary cross-entropy reads p in log p and
    in log(1 − p)); its terms then form one closed form, inlined all the same.  The consumer's
    own adjoint must be named (or be the loss's), so inlining never nests: in a chain
    h_k = tanh(h_{k−1}) every other adjoint is named, and closed forms stay short.
    """
    for q in reversed(model.equations):
        adj = adjoints[q.name]
        one_reader = len(adj.consumers) == 1 and adj.consumers[0][1] == 0
        single = one_reader and ((adj.terms and not adj.per_step and not adj.static) or (
            not adj.terms and not adj.per_step and adj.static))
        # ``single`` implies one reader: the consumer is looked up only then
        adj.named = not (q.role == "intermediate" and _is_activation(q.expr) and single and not adj.fixed
                         and _named_or_loss(adjoints[adj.consumers[0][0]]))


def _is_activation(e: sp.Basic) -> bool:
    """An activation's output: ``σ(z)``, or the row form ``softmax(Sᵀ)ᵀ`` (an activation of each row,
    written through transposes since softmax acts on columns): its adjoint is inlined alike, so that
    cross-entropy fuses with the row softmax as with the column one (δS = (P ⊙ Y 1 1ᵀ − Y) / N, not
    through −Y ⊘ P)."""
    return isinstance(e, ACTIVATIONS) or is_row_softmax(e, log_too=True)


def _named_or_loss(adj: Adjoint) -> bool:
    return adj.named or adj.quantity.role == "loss"


def _close(model: Model, adjoints: dict[str, Adjoint], distributions: frozenset[str]) -> None:
    """Closed forms, consumers first, with inlined adjoints substituted."""
    seq_inline: dict[Delta, MatrixExpr] = {}  # Delta(q) → δq_t, for a sequence quantity (used as At(Delta(q), k))
    static_inline: dict[MatrixExpr, MatrixExpr] = {}  # Delta(q) → δq, for a static one

    tidy = tidier(distributions)  # the terms share subtrees (what flows into an equation reaches each child)
    substituted: dict[sp.Basic, sp.Basic] = {}  # subtree → with the inlined adjoints so far (cleared when they grow)

    def finish(e: MatrixExpr) -> MatrixExpr:
        return tidy(_substitute(e, seq_inline, static_inline, substituted))

    for q in list(reversed(model.equations)) + model.params:
        adj = adjoints[q.name]
        if q.role == "loss":
            continue
        if adj.sequence:
            groups: dict[int, list[MatrixExpr]] = {}
            for t in adj.terms:
                groups.setdefault(t.offset, []).append(finish(t.expr))
            adj.closed_terms = [Term(positive_first(e), k) for k, es in sorted(groups.items())
                                if (e := collect(es)) is not None and not is_zero(e)]
            adj.closed_fixed = {key: positive_first(e) for key, es in adj.fixed.items()
                                if (e := collect([finish(x) for x in es])) is not None and not is_zero(e)}
        else:
            adj.closed_per_step = collect([finish(e) for e in adj.per_step])
            adj.closed_static = collect([finish(e) for e in adj.static])
        if not adj.named:
            substituted.clear()
            if adj.sequence:
                seq_inline[adj.symbol.base] = adj.closed_terms[0].expr if adj.closed_terms else \
                    sp.ZeroMatrix(*q.shape)
            else:
                static_inline[adj.symbol] = adj.closed


def _substitute(e: sp.Basic, seq_inline: dict[Delta, MatrixExpr], static_inline: dict[MatrixExpr, MatrixExpr],
                done: dict[sp.Basic, sp.Basic] | None = None) -> sp.Basic:
    """Replace inlined adjoint symbols by their closed forms (shifted to the right step).

    ``done`` remembers replaced subtrees: an expression shares them (softmax's rule reads its
    output twice), and rebuilding each copy makes nested softmaxes exponential."""
    if isinstance(e, At):
        return shift(seq_inline[e.base], e.offset) if e.base in seq_inline else e
    if isinstance(e, Delta):
        return static_inline.get(e, e)
    if not e.args or isinstance(e, MatrixSymbol) or not (seq_inline or static_inline):
        return e
    done = {} if done is None else done
    known = done.get(e)
    if known is None:  # a number, a name or a size holds no adjoint
        args = [_substitute(a, seq_inline, static_inline, done) if getattr(a, "is_Matrix", False) else a
                for a in e.args]
        known = done[e] = e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)
    return known


def computed_states(model: Model) -> list[tuple[str, sp.Basic, MatrixExpr]]:
    """(quantity, δ at the state's step, the state's expression) for every state that is
    neither zero nor a param: its adjoint δh_0 (``AtStep(Delta(h), 0)``; ``AtEnd`` after T)
    is what flows back into the expression."""
    found = []
    for name, steps in model.states.items():
        for k, value in sorted(steps.items(), reverse=True):
            if not _plain_state(model, value):
                found.append((name, AtStep(Delta(model[name].symbol), k), value))
    for name, steps in model.end_states.items():
        for k, value in sorted(steps.items()):
            if not _plain_state(model, value):
                found.append((name, AtEnd(Delta(model[name].symbol), k), value))
    return found


def _plain_state(model: Model, value: sp.Basic) -> bool:
    """Zero, or a param (whose gradient takes δ at the state's step directly)."""
    return isinstance(value, sp.ZeroMatrix) or (isinstance(value, MatrixSymbol) and value.name in model.quantities
                                                and model[value.name].role == "param")


def state_adjoint(adj: Adjoint, key: sp.Basic) -> MatrixExpr:
    """δq at a state's step: ``at_step_adjoint`` before the sequence, ``at_end_adjoint`` after it."""
    return at_end_adjoint(adj, key.offset) if isinstance(key, AtEnd) else at_step_adjoint(adj, key.step)


def _gradient(model: Model, p: Quantity, sweep: _Sweep, adjoints: dict[str, Adjoint],
              distributions: frozenset[str]) -> Gradient:
    adj = adjoints[p.name]
    initial: list[tuple[str, int, sp.Basic]] = []
    for qname, steps in model.states.items():
        for k, value in sorted(steps.items(), reverse=True):
            if value == p.symbol:
                initial.append((qname, k, at_step_adjoint(adjoints[qname], k)))
    for qname, steps in model.end_states.items():  # a state after the sequence: step T + k
        for k, value in sorted(steps.items()):
            if value == p.symbol:
                initial.append((qname, k, at_end_adjoint(adjoints[qname], k)))
    return Gradient(p, adj.closed_per_step, adj.closed_static, initial)


def at_end_adjoint(adj: Adjoint, k: int) -> MatrixExpr:
    """δq at a state step T + k, k >= 1: only the terms whose consumer step T + k + offset is <= T."""
    terms = [at_end(t.expr, k) for t in adj.closed_terms if k + t.offset <= 0]
    return _sum(terms, adj.symbol)


def at_step_adjoint(adj: Adjoint, k: int) -> MatrixExpr:
    """δq at a state step k <= 0: only the terms whose consumer step k + offset is >= 1."""
    terms = [at_step(t.expr, k) for t in adj.closed_terms if k + t.offset >= 1]
    return _sum(terms, adj.symbol)
