"""The passes of the code generator: small functions over the schedule and its expressions.

Each says one thing the generated code does to be fast, and is tested on its own
(tests/test_codegen_passes.py); ``plan.ModulePlan`` applies them in order.

- splitting ``W [h; x]`` (``split_concat_products``, ``slice_through``, ``inline_sliced_adjoints``);
- hoisting: the part of a loop sum that does not read the recurrence (``split_by_recurrence``),
  the factors of a loop term that only read forward values (``hoistable_factors``), and f(q_t)
  read by several loop terms (``applied_counts``, ``shared_applications``);
- stacking gates: which pre-activations become views of one array (``Stack``, in ``plan``);
- in-place updates: ``py = a`` then ``py op= b`` for a sum or product (``in_place_order``);
- frees: what the backward pass's statements before its loop leave dead (``dead_after``), and
  the forward arrays the backward pass never reads (``unused_by``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, Transpose

from ..ir.expr import (
    Apply,
    At,
    AtStep,
    ColSlice,
    Concat,
    Delta,
    RowSlice,
    add,
    coeff_and_rest,
    matmul,
    scale,
    shift,
)
from ..ops import ELEMENTWISE


def names_value(e, name: str) -> bool:
    """``e`` is the value of the quantity ``name`` (at some step)."""
    return (isinstance(e, At) and not isinstance(e.base, Delta) and e.base.name == name) or \
        (isinstance(e, MatrixSymbol) and e.name == name)


def applied_value(e) -> bool:
    """f(q_{t+k}) for an elementwise f and a forward sequence quantity q."""
    return (isinstance(e, Apply) and isinstance(e.arg, At) and not isinstance(e.arg.base, Delta)
            and e.arg.offset >= 0 and e.fname in ELEMENTWISE)  # q_{t−1} would need the initial state


@dataclass
class Stack:
    """Pre-activations Σ_j W_kj v_j + … held as views of one array (see ``ModulePlan._stacks``)."""

    name: str  # the array
    members: list[str]  # the quantities, in order
    sizes: list  # their sizes
    inside: list  # (v_j, [W_kj for each member], name of [W_1j; W_2j; …]) for each vector the loop reads
    outside: list  # (u, [M_k for each member]) for each vector the parts outside the loop multiply
    consts: list  # the constant terms of each member
    adjoint: str | None = None  # the array their δ are views of, when the backward loop fills them
    # (f, [f(y_k) …], first k, last k + 1, array): consecutive members under the same elementwise
    # function, whose values are views of one array computed by one call
    activations: list = field(default_factory=list)


def recurrent(graph: dict[str, set[str]]) -> set[str]:
    """Nodes on a cycle of ``graph`` (node → the nodes it reads)."""
    on_cycle = set()
    for start in graph:
        stack, seen = list(graph[start]), set()
        while stack:
            n = stack.pop()
            if n == start:
                on_cycle.add(start)
                break
            if n in seen:
                continue
            seen.add(n)
            stack.extend(graph.get(n, ()))
    return on_cycle


def depends_on(graph: dict[str, set[str]], node: str, targets: set[str]) -> bool:
    stack, seen = list(graph.get(node, ())), set()
    while stack:
        n = stack.pop()
        if n in targets:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(graph.get(n, ()))
    return False


def references(e) -> set[str]:
    """Names of the quantities (not adjoints) an expression reads."""
    found = set()
    for node in sp.preorder_traversal(e):
        if isinstance(node, (At, AtStep)) and not isinstance(node.base, Delta):
            found.add(node.base.name)
        elif isinstance(node, MatrixSymbol):
            found.add(node.name)
    return found


def adjoint_references(e) -> set[str]:
    found = set()
    for node in sp.preorder_traversal(e):
        if isinstance(node, Delta):
            found.add(node.name)
    return found


def terms_of(e) -> list:
    return list(e.args) if isinstance(e, MatAdd) else [e]


def sum_of(terms):
    return add(*terms)


# ---------------------------------------------------------------------------------------
# Rewrites for speed: the code computes the same values as the closed forms, in a cheaper order.


def split_concat_products(e, concats: dict):
    """W z_t with z_t = [h_{t-1}; x_t] becomes W[:, :n_h] h_{t-1} + W[:, n_h:] x_t.

    The block that multiplies the input is then computed for all steps before the time loop,
    and only the recurrent block stays in it.  ``concats`` maps a quantity defined as a
    Concat to that definition.
    """
    if isinstance(e, MatMul):
        c, rest = coeff_and_rest(e)
        mats = list(rest.args) if isinstance(rest, MatMul) else [rest]
        if len(mats) == 2:
            parts = _concat_parts(mats[1], concats)
            if parts is not None:
                terms, start = [], sp.Integer(0)
                for part in parts:
                    stop = sp.expand(start + part.shape[0])
                    terms.append(matmul(ColSlice(mats[0], start, stop), split_concat_products(part, concats)))
                    start = stop
                return scale(c, add(*terms))
    if getattr(e, "is_Matrix", False) and e.args and not isinstance(e, (At, AtStep, MatrixSymbol, Delta)):
        args = [split_concat_products(a, concats) if getattr(a, "is_Matrix", False) else a for a in e.args]
        if all(a is b for a, b in zip(args, e.args)):
            return e
        return add(*args) if isinstance(e, MatAdd) else e.func(*args)
    return e


def _concat_parts(v, concats: dict):
    if isinstance(v, Concat):
        return list(v.args)
    if isinstance(v, At) and not isinstance(v.base, Delta) and v.base.name in concats:
        return list(shift(concats[v.base.name], v.offset).args)
    return None


def slice_through(e, start, stop):
    """Rows start..stop of ``e``, pushed inside where that saves work: [Wᵀ δ]_{1:n_h} = W[:, :n_h]ᵀ δ."""
    if isinstance(e, MatAdd):
        return add(*[slice_through(t, start, stop) for t in e.args])
    c, rest = coeff_and_rest(e)
    if isinstance(rest, MatMul) and len(rest.args) == 2 and isinstance(rest.args[0], Transpose):
        w, v = rest.args[0].arg, rest.args[1]
        return scale(c, matmul(Transpose(ColSlice(w, start, stop)), v))
    return RowSlice(e, start, stop)


def inline_sliced_adjoints(terms: dict, readers_ok) -> tuple[dict, set]:
    """Replace [δz_{t+k}]_{a:b} by the rows a..b of δz's own closed form, where δz is read only so.

    ``terms`` maps a named sequence adjoint to its (offset, expression) terms; returns the new
    terms and the adjoints no longer needed.  δz of an LSTM's stacked input is the case: only
    its h-rows are read, and computing those alone skips the rows of the input.
    """
    dropped = set()
    for z, z_terms in terms.items():
        if any(offset != 0 for offset, _ in z_terms) or not readers_ok(z):
            continue
        reads = [(n, i) for n, ts in terms.items() if n != z for i, (_, t) in enumerate(ts)
                 if z in adjoint_references(t)]
        if not reads or not all(_only_sliced(terms[n][i][1], z) for n, i in reads):
            continue
        closed = add(*[t for _, t in z_terms])
        for n, i in reads:
            offset, t = terms[n][i]
            terms[n][i] = (offset, _replace_sliced(t, z, closed))
        dropped.add(z)
    return {n: ts for n, ts in terms.items() if n not in dropped}, dropped


def _only_sliced(e, z) -> bool:
    if isinstance(e, RowSlice) and isinstance(e.arg, At) and isinstance(e.arg.base, Delta) and e.arg.base.name == z:
        return True
    if isinstance(e, Delta) and e.name == z:
        return False
    return all(_only_sliced(a, z) for a in e.args if isinstance(a, sp.Basic))


def _replace_sliced(e, z, closed):
    if isinstance(e, RowSlice) and isinstance(e.arg, At) and isinstance(e.arg.base, Delta) and e.arg.base.name == z:
        return slice_through(shift(closed, e.arg.offset), e.start, e.stop)
    if not e.args or not getattr(e, "is_Matrix", False):
        return e
    args = [_replace_sliced(a, z, closed) if getattr(a, "is_Matrix", False) else a for a in e.args]
    return e.func(*args)


def batched_quantities(model) -> set[str]:
    """Quantities whose value depends on the data (and so carries the batch axis)."""
    batched = {q.name for q in model.data}
    changed = True
    while changed:
        changed = False
        for q in model.quantities.values():
            if q.name in batched or q.expr is None:
                continue
            if references(q.expr) & batched or q.sequence:
                batched.add(q.name)
                changed = True
    return batched
