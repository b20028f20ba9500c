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

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol, OneMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..errors import ModelError
from ..ir.expr import (
    Apply,
    At,
    Delta,
    LogSoftmax,
    Softmax,
    TimeSum,
    add,
    at_step,
    is_zero,
    positive_first,
    shift,
    tree_size,
)
from ..ir.model import Model, Quantity
from ..ir.names import split_name
from ..ops import node_record, vjp
from .simplify import collect, tidy

ACTIVATIONS = (Apply, Softmax, LogSoftmax)

#: The largest adjoint contribution, counted as nodes of its tree written out. The examples'
#: largest closed form has 80; a write-up line holds about 40.
MAX_CLOSED_FORM_SIZE = 5_000


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


class Derivation:
    """Every adjoint and every gradient of a model, as SymPy matrix expressions."""

    def __init__(self, model: Model, adjoints: dict[str, Adjoint], gradients: dict[str, Gradient],
                 preactivations: dict[str, str], seconds: float) -> None:
        self.model = model
        self.adjoints = adjoints
        self.gradients = gradients
        self.preactivations = preactivations  # activation quantity → its pre-activation's name
        self.seconds = seconds

    def adjoint(self, name: str) -> MatrixExpr:
        """The closed form of δ``name`` (per step for a sequence quantity)."""
        return self.adjoints[name].closed

    def gradient(self, name: str) -> MatrixExpr:
        """The closed form of ∂L/∂``name`` for a parameter."""
        return self.gradients[name].expr

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
    sweep = _Sweep(model)
    for q in reversed(model.equations):
        sweep.equation(q)
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
    for name, adj in adjoints.items():
        if adj.closed is not None and tree_size(adj.closed, MAX_CLOSED_FORM_SIZE) > MAX_CLOSED_FORM_SIZE:
            raise _too_large(f"the adjoint of {name}", adj.quantity)
    for name, g in gradients.items():
        if tree_size(g.expr, MAX_CLOSED_FORM_SIZE) > MAX_CLOSED_FORM_SIZE:
            raise _too_large(f"the gradient of {name}", g.param)


def _too_large(what: str, q: Quantity) -> ModelError:
    return ModelError(f"{what} grows past {MAX_CLOSED_FORM_SIZE:,} terms written out; name the inner values of "
                      "nested functions, one equation each, so that every adjoint has a short closed form", q.pos)


# ---------------------------------------------------------------------------------------
# Pre-activations.


def name_preactivations(model: Model) -> tuple[Model, dict[str, str]]:
    """``h = σ(U a + V h₋₁ + b)`` becomes ``y_h = U a + V h₋₁ + b``, ``h = σ(y_h)``."""
    quantities: dict[str, Quantity] = {}
    order: list[str] = []
    pre: dict[str, str] = {}
    taken = set(model.quantities) | set(model.dims) | {model.time_index, getattr(model.length, "name", None)}
    # name → its activation (Apply, Softmax, LogSoftmax) applied to something not a plain name
    activations = {name: q.expr for name, q in model.quantities.items()
                   if q.role == "intermediate" and isinstance(q.expr, ACTIVATIONS) and not _is_ref(q.expr.arg)}
    letter = _preactivation_letter(model)
    bodies = [split_name(name).body for name in activations]
    for name, q in model.quantities.items():
        activation = activations.get(name)
        if activation is not None:
            inner = activation.arg
            y = _preactivation_name(name, taken, letter, bodies.count(split_name(name).body) > 1)
            taken.add(y)
            sym = MatrixSymbol(y, *inner.shape)
            quantities[y] = Quantity(y, "intermediate", sym, q.sequence, q.pos, expr=inner, auxiliary=True)
            ref = At(sym, 0) if q.sequence else sym
            quantities[name] = Quantity(q.name, q.role, q.symbol, q.sequence, q.pos,
                                        expr=activation.func(*(ref if a is inner else a for a in activation.args)))
            pre[name] = y
        else:
            quantities[name] = q
    for name in model.order:
        if name in pre:
            order.append(pre[name])
        order.append(name)
    return Model(model.name, model.path, model.dims, quantities, model.loss, model.time_index, model.length,
                 model.states, model.latex_overrides, order), pre


def _is_ref(e: sp.Basic) -> bool:
    return isinstance(e, (At, MatrixSymbol))


#: Letters for pre-activations, in order of preference: y_h as in the seed homework, else
#: one that no name of the model starts with (a model whose output is y gets a_h, not y_h).
PREACTIVATION_LETTERS = ("y", "a", "u", "s", "v")


def _preactivation_letter(model: Model) -> str:
    bodies = {split_name(name).body for name in model.quantities}
    return next((c for c in PREACTIVATION_LETTERS if c not in bodies), PREACTIVATION_LETTERS[0])


def _preactivation_name(name: str, taken: set[str | None], letter: str = "y", shared_body: bool = False) -> str:
    """``y_h`` for ``h``; the whole name (``y_h_1``, ``y_h_2``) where several activations share a body."""
    parts = split_name(name)
    first = [] if shared_body else [f"{letter}_{parts.body}"]
    candidates = first + [f"{letter}_{name}"] + [f"{letter}_{name}_{i}" for i in range(2, 100)]
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

    def _consumed(self, adj: Adjoint, offset: int) -> None:
        if (self.consumer, offset) not in adj.consumers:
            adj.consumers.append((self.consumer, offset))

    def back(self, node: MatrixExpr, g: MatrixExpr, out: MatrixExpr, step: bool) -> None:
        if is_zero(g):
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
        for child, contribution in zip(node.args, vjp(node, g, out)):
            if contribution is not None and getattr(child, "is_Matrix", False):
                self._bounded(contribution)
                self.back(child, contribution, child, step or record.over_time)

    def _bounded(self, e: MatrixExpr) -> None:
        """A contribution written out past MAX_CLOSED_FORM_SIZE nodes is an error at its equation:
        nested functions in one equation (softmax of softmax of …) grow the derivative's tree
        geometrically, and the write-up and the module would print all of it."""
        size = tree_size(e, MAX_CLOSED_FORM_SIZE)
        if size > MAX_CLOSED_FORM_SIZE:
            q = self.model[self.consumer]
            raise ModelError(f"the derivative through the equation of {q.name} grows past "
                             f"{MAX_CLOSED_FORM_SIZE:,} terms written out; name its inner values, one "
                             "equation each, so that every adjoint has a short closed form", q.pos)


def _needed(model: Model) -> set[str]:
    """The names the loss's equation reads, and the names their equations read, transitively."""
    needed: set[str] = set()
    todo = [model.loss]
    while todo:
        q = model.quantities[todo.pop()]
        if q.expr is None:
            continue
        for s in q.expr.atoms(MatrixSymbol):
            if s.name not in needed and s.name in model.quantities:
                needed.add(s.name)
                todo.append(s.name)
    return needed


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
        adj.named = not (q.role == "intermediate" and isinstance(q.expr, ACTIVATIONS) and single
                         and _named_or_loss(adjoints[adj.consumers[0][0]]))


def _named_or_loss(adj: Adjoint) -> bool:
    return adj.named or adj.quantity.role == "loss"


def _close(model: Model, adjoints: dict[str, Adjoint], distributions: frozenset[str]) -> None:
    """Closed forms, consumers first, with inlined adjoints substituted."""
    seq_inline: dict[Delta, MatrixExpr] = {}  # Delta(q) → δq_t, for a sequence quantity (used as At(Delta(q), k))
    static_inline: dict[MatrixExpr, MatrixExpr] = {}  # Delta(q) → δq, for a static one

    def finish(e: MatrixExpr) -> MatrixExpr:
        return tidy(_substitute(e, seq_inline, static_inline), distributions)

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
        else:
            adj.closed_per_step = collect([finish(e) for e in adj.per_step])
            adj.closed_static = collect([finish(e) for e in adj.static])
        if not adj.named:
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
    if not e.args or not (seq_inline or static_inline):
        return e
    done = {} if done is None else done
    if e not in done:
        args = [_substitute(a, seq_inline, static_inline, done) for a in e.args]
        done[e] = e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)
    return done[e]


def _gradient(model: Model, p: Quantity, sweep: _Sweep, adjoints: dict[str, Adjoint],
              distributions: frozenset[str]) -> Gradient:
    adj = adjoints[p.name]
    initial: list[tuple[str, int, sp.Basic]] = []
    for qname, steps in model.states.items():
        for k, value in sorted(steps.items(), reverse=True):
            if value == p.symbol:
                initial.append((qname, k, at_step_adjoint(adjoints[qname], k)))
    return Gradient(p, adj.closed_per_step, adj.closed_static, initial)


def at_step_adjoint(adj: Adjoint, k: int) -> MatrixExpr:
    """δq at a state step k <= 0: only the terms whose consumer step k + offset is >= 1."""
    terms = [at_step(t.expr, k) for t in adj.closed_terms if k + t.offset >= 1]
    return _sum(terms, adj.symbol)
