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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from ..ir.batch import per_example_names
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
from .schedule import Scheduled

if TYPE_CHECKING:
    from ..ad.derive import Derivation
    from ..ir.model import Model


def params_of(e: sp.Basic) -> tuple:
    """The parameters of an elementwise function's node (none for the functions of today)."""
    return tuple(getattr(e, "params", ()))

def names_value(e: sp.Basic, name: str) -> bool:
    """``e`` is the value of the quantity ``name`` (at some step)."""
    return (isinstance(e, At) and not isinstance(e.base, Delta) and e.base.name == name) or \
        (isinstance(e, MatrixSymbol) and e.name == name)


def applied_value(e: sp.Basic) -> bool:
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


def references(e: sp.Basic) -> set[str]:
    """Names of the quantities (not adjoints) an expression reads."""
    found = set()
    for node in sp.preorder_traversal(e):
        if isinstance(node, (At, AtStep)) and not isinstance(node.base, Delta):
            found.add(node.base.name)
        elif isinstance(node, MatrixSymbol):
            found.add(node.name)
    return found


def adjoint_references(e: sp.Basic) -> set[str]:
    """Names of the quantities whose adjoints an expression reads."""
    found = set()
    for node in sp.preorder_traversal(e):
        if isinstance(node, Delta):
            found.add(node.name)
    return found


def terms_of(e: sp.Basic) -> list:
    """The terms of a sum (a single term otherwise)."""
    return list(e.args) if isinstance(e, MatAdd) else [e]


def sum_of(terms: Sequence[sp.Basic]) -> sp.Basic:
    """The sum of ``terms``."""
    return add(*terms)


# ---------------------------------------------------------------------------------------
# Rewrites for speed: the code computes the same values as the closed forms, in a cheaper order.


def split_concat_products(e: sp.Basic, concats: dict) -> sp.Basic:
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


def slice_through(e: sp.Basic, start: sp.Expr, stop: sp.Expr) -> sp.Basic:
    """Rows start..stop of ``e``, pushed inside where that saves work: [Wᵀ δ]_{1:n_h} = W[:, :n_h]ᵀ δ."""
    if isinstance(e, MatAdd):
        return add(*[slice_through(t, start, stop) for t in e.args])
    c, rest = coeff_and_rest(e)
    if isinstance(rest, MatMul) and len(rest.args) == 2 and isinstance(rest.args[0], Transpose):
        w, v = rest.args[0].arg, rest.args[1]
        return scale(c, matmul(Transpose(ColSlice(w, start, stop)), v))
    return RowSlice(e, start, stop)


def inline_sliced_adjoints(terms: dict, readers_ok: Callable) -> tuple[dict, set]:
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


def data_reach(d: Derivation) -> dict[str, tuple[int, int]]:
    """For sequence data read at other steps by the equations (x[t-1], x[t+2]): how many steps
    it reaches before step 1 and after step T.  Data there is zero, so the code pads its array
    with that many zero steps each side.  The backward pass reads no further: a term that
    reads δ at t + k exists only where t + k <= T, and it reads the data its equation at t + k read."""
    model = d.model
    exprs = [q.expr for q in model.equations if q.expr is not None]
    reach: dict[str, tuple[int, int]] = {}
    for e in exprs:
        for node in e.atoms(At):
            q = model.quantities.get(node.base.name) if isinstance(node.base, MatrixSymbol) else None
            if q is not None and q.role in ("input", "target") and node.offset:
                before, after = reach.get(q.name, (0, 0))
                reach[q.name] = (max(before, -node.offset), max(after, node.offset))
    return reach


def batched_quantities(model: Model) -> set[str]:
    """Quantities whose value depends on the data (and so carries the batch axis): the batch
    rule's per-example values (``ir.batch``); a scalar input is shared by every example."""
    return per_example_names(model)


# ---------------------------------------------------------------------------------------
# Hoisting: what a loop computes that does not need the loop.


def split_by_recurrence(terms: Iterable[sp.Basic], loop: set[str], reads: Callable | None = None) -> tuple[list, list]:
    """(the terms that do not read the recurrence, those that do): the first are computed for all
    steps before the loop, the loop adds the others.  ``reads(t)`` names what a term reads (the
    quantities, by default; the adjoints for a backward term)."""
    reads = reads or references
    outside = [t for t in terms if not reads(t) & loop]
    inside = [t for t in terms if reads(t) & loop]
    return outside, inside


def hoistable_factors(term: sp.Basic) -> tuple | None:
    """(c, the factors that read only forward values, the factors that read adjoints) when a loop
    term c · (a ⊙ b ⊙ δ…) has forward factors worth one array for all steps, else None.

    δc_t = δh_t ⊙ o_t ⊙ (1 − tanh²(c_t)): o_t ⊙ (1 − tanh²(c_t)) is known after the forward pass.
    A single factor that is already an array (o_t) saves nothing."""
    c, rest = coeff_and_rest(term)
    if not isinstance(rest, HadamardProduct):
        return None
    values = [f for f in rest.args if not adjoint_references(f)]
    if len(values) < 2 and all(isinstance(f, (At, MatrixSymbol)) for f in values):
        return None
    return c, values, [f for f in rest.args if adjoint_references(f)]


def applied_counts(terms: Iterable[sp.Basic]) -> dict[tuple[str, str], int]:
    """How many times the loop terms read f(q_{t+k}), by (f, q)."""
    counts: dict[tuple[str, str], int] = {}
    for t in terms:
        for node in sp.preorder_traversal(t):
            if applied_value(node):
                key = (node.fname, node.arg.base.name)
                counts[key] = counts.get(key, 0) + 1
    return counts


def shared_applications(e: sp.Basic, counts: dict[tuple[str, str], int]) -> list:
    """The nodes f(q_{t+k}) of ``e`` that more than one loop term reads (tanh(c_t) in an LSTM's δc
    and δy_o): each is computed once for all steps.  In a fixed order (by their text)."""
    found = {node for node in sp.preorder_traversal(e) if applied_value(node)}
    return [node for node in sorted(found, key=str) if counts.get((node.fname, node.arg.base.name), 0) >= 2]


# ---------------------------------------------------------------------------------------
# In-place updates: one new array per statement, then updates of it.


def in_place_order(e: sp.Basic, fresh: Callable, full: Callable) -> list[tuple] | None:
    """The operations computing ``e`` for all steps into one new array, or None for one expression.

    Returns [("=", x), (op, y), …] with op in ``+=``, ``-=``, ``*=``, ``/=`` (the operand of ``-=`` and
    ``/=`` without its sign or power), or [("=*", x, y), …] when the array starts as x ⊙ y.
    ``fresh(a)``: the operand a is a new array of every step anyway (a product over all steps, or
    a sum or function not held in an array already); ``full(a)``: a has every step and example.

    W x + b is ``py = W x``, ``py += b``; s ⊙ (1 − s) is ``py = 1 − s``, ``py *= s``; a ⊙ b ⊙ c is
    ``py = a ⊙ b``, ``py *= c``: the same values, without a new array per operation (each costs
    its memory traffic and, fresh, its page faults)."""
    if not isinstance(e, (MatAdd, HadamardProduct)):
        return None
    starts = [a for a in e.args if isinstance(a, MatMul) and fresh(a)]
    if isinstance(e, HadamardProduct) and not starts:
        starts = [a for a in e.args if isinstance(a, (MatAdd, Apply)) and fresh(a)]
    ops: list[tuple]
    if starts:
        ops, first = [("=", starts[0])], starts[:1]
    elif isinstance(e, HadamardProduct) and len(e.args) > 2:
        # the first two factors: one of them has every step and example, so the product does too
        plain = [a for a in e.args if not isinstance(a, HadamardPower)]
        whole = next((a for a in plain if full(a)), None)
        if whole is None or len(plain) < 2:
            return None
        first = [whole, next(a for a in plain if a is not whole)]
        ops = [("=*", first[0], first[1])]
    else:
        return None
    for a in e.args:
        if any(a is f for f in first):
            continue
        if isinstance(e, MatAdd):
            c, rest = coeff_and_rest(a)
            ops.append(("-=", rest) if c == -1 else ("+=", a))
        elif isinstance(a, HadamardPower) and a.args[1] == -1:
            ops.append(("/=", a.args[0]))
        else:
            ops.append(("*=", a))
    return ops


def in_place_step(e: sp.Basic, has_out: Callable) -> list[tuple]:
    """The operations writing ``e`` into its slot of a sequence array inside the loop.

    [("f", node)]: f(x) written into the slot (``has_out(node)``: the back end can); [("*", a, b)]:
    a ⊙ b into the slot; [("=", x)]: a new value; then (op, y) updates, op in ``*=``, ``+=``, ``-=``."""
    if isinstance(e, Apply) and e.fname != "log" and has_out(e):
        return [("f", e)]
    if isinstance(e, HadamardProduct) and not any(isinstance(a, HadamardPower) for a in e.args):
        applied = [a for a in e.args if isinstance(a, Apply) and a.fname != "log" and has_out(a)]
        first = [e.args.index(applied[0])] if applied else [0, 1]  # f(x) into the slot, else a product of two
        ops: list[tuple] = in_place_step(applied[0], has_out) if applied else [("*", e.args[0], e.args[1])]
        return ops + [("*=", f) for k, f in enumerate(e.args) if k not in first]
    if isinstance(e, MatAdd) and not any(isinstance(coeff_and_rest(a)[1], OneMatrix) for a in e.args):
        first, *rest = e.args
        ops = in_place_step(first, has_out) if coeff_and_rest(first)[0] == 1 else [("=", first)]
        for a in rest:
            c, r = coeff_and_rest(a)
            ops.append(("-=", r) if c == -1 else ("+=", a))
        return ops
    return [("=", e)]


# ---------------------------------------------------------------------------------------
# Frees: read off the statements' reads and writes.


def dead_after(before: list[Scheduled], later: set[str], arrays: set[str], keep: set[str]) -> list[str]:
    """The arrays among ``arrays`` that the statements ``before`` touch and nothing ``later`` does
    (except ``keep``: parameters, gradients), in the order the statements first name them."""
    order = dict.fromkeys(n for st in before for n in st.names)
    return [n for n in order if n in arrays and n not in keep and n not in later]


def unused_by(candidates: Iterable[str], used: set[str], groups: Iterable[tuple[str, list[str]]] = ()) -> list[str]:
    """The ``candidates`` (arrays of one pass) that ``used`` (what the next pass touches) lacks; then
    each array of ``groups`` ((array, its views)) whose views all are in that list."""
    free = [a for a in candidates if a not in used]
    free += [array for array, views in groups if all(v in free for v in views)]
    return free


# ---------------------------------------------------------------------------------------
# Stacking gates.


@dataclass(frozen=True)
class StackFacts:
    """What ``find_stacks`` asks the back end about a term (the printer knows; the pass decides)."""

    static_product: Callable  # t → (A, v) when t is A v with A the same for every step and example, else None
    key: Callable  # (v, mode) → a key naming the vector v ("step": inside the loop, "time": all steps)
    timed: Callable  # t → whether t has the time axis (computed for all steps)
    batched: Callable  # t → whether t has the batch axis
    has_out: Callable  # f(…) → whether f can be written into an existing array


def find_stacks(seq: Iterable[str], code_expr: dict, loop: set[str], pads: dict, sizes: dict,
                facts: StackFacts) -> list[Stack]:
    """Loop quantities Σ_j W_kj v_j + (parts outside the loop) with the same vectors v_j: the gates
    of an LSTM or a GRU.

    Each becomes a view of one (T, B, Σ n_k) array, so the loop computes all of them with one
    product [W_1j; W_2j; …] v_j per vector, and the backward pass reads all their δ with one
    product too.  A member's part outside the loop must be products with the same vectors for
    every member, plus constants (biases), so that it is one product per vector as well.  Members
    under the same elementwise function (with an in-place form) go side by side, and their
    activations are views of one array too, computed by one call.
    """
    by_key: dict[tuple, list] = {}
    for n in seq:
        if n not in loop or pads[n]:
            continue
        inside: dict[tuple, tuple] = {}
        outside: dict[tuple, tuple] = {}
        consts: list = []
        for t in terms_of(code_expr[n]):
            prod = facts.static_product(t)
            if references(t) & loop:
                if prod is None:
                    break
                key, found = facts.key(prod[1], "step"), inside
            elif prod is not None and facts.timed(t):
                key, found = facts.key(prod[1], "time"), outside
            elif not (facts.batched(t) or facts.timed(t)):
                consts.append(t)
                continue
            else:
                break
            if key in found:
                break
            found[key] = prod
        else:
            if inside:
                key = (tuple(sorted(inside)), tuple(sorted(outside)))
                by_key.setdefault(key, []).append((n, inside, outside, consts))
    # The members' activations: n_k = f(y_k) with nothing else, computed in the loop.
    activation: dict[str, tuple[str, str]] = {}
    for n in seq:
        e = code_expr[n]
        if n in loop and not pads[n] and isinstance(e, Apply) and facts.has_out(e) \
                and isinstance(e.arg, At) and e.arg.offset == 0 and not isinstance(e.arg.base, Delta):
            activation.setdefault(e.arg.base.name, (e.fname, n))
    stacks: list[Stack] = []
    for (inside_keys, outside_keys), members in by_key.items():
        if len(members) < 2:
            continue
        # Members with the same activation side by side, so one call computes all of them.
        fnames = list(dict.fromkeys(activation[f[0]][0] for f in members if f[0] in activation))
        members.sort(key=lambda f: fnames.index(activation[f[0]][0]) if f[0] in activation else len(fnames))
        name = f"_stack{len(stacks)}"
        products = [(members[0][1][key][1], [f[1][key][0] for f in members], f"{name}_W{j}" if len(inside_keys) > 1
                     else f"{name}_W") for j, key in enumerate(inside_keys)]
        projections = [(members[0][2][key][1], [f[2][key][0] for f in members]) for key in outside_keys]
        stack = Stack(name, [f[0] for f in members], [sizes[f[0]] for f in members],
                      products, projections, [f[3] for f in members])
        for fname in fnames:
            run = [k for k, f in enumerate(members) if activation.get(f[0], ("",))[0] == fname]
            if len(run) > 1:
                outputs = [activation[members[k][0]][1] for k in run]
                stack.activations.append((fname, outputs, run[0], run[-1] + 1,
                                          f"{name}_out{len(stack.activations)}"))
        stacks.append(stack)
    return stacks
