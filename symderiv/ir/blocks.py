"""The order in which a model's values are computed when time runs both ways.

A *block* is a static quantity, or a set of sequence quantities that read one another in a
loop (a recurrence), with its direction: forward in time (it reads ``h[t-1]``), backwards
(``g[t+1]``), or neither (no recurrence: any order of steps).  Blocks come in dependency
order: the encoder, then a static ``c = h[T]``, then a decoder whose state starts from ``c``.
The backward pass visits them in reverse, a recurrence's adjoint running against its
direction (a backwards recurrence's adjoint runs forward in time).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import MatrixSymbol

from .expr import At
from .model import Model


@dataclass(frozen=True)
class Block:
    names: tuple[str, ...]  # in the model's order (dependencies at the same step first)
    sequence: bool
    direction: int  # +1 forward in time, -1 backwards, 0 no recurrence (and static)


def depends_on(graph: dict[str, set[str]], node: str, targets: set[str]) -> bool:
    """Whether ``node`` reads (through the graph) any of ``targets``."""
    stack, seen = list(graph.get(node, ())), set()
    while stack:
        n = stack.pop()
        if n in targets:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(graph.get(n, ()))
    return False


def components(graph: dict[str, set[str]]) -> dict[str, int]:
    """Strongly connected components (Tarjan, without recursion): node → its component's number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: dict[str, int] = {}
    counter = 0
    count = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    out[member] = count
                    if member == node:
                        break
                count += 1
    return out


def _reads(model: Model, name: str) -> set[str]:
    """The defined quantities ``name``'s equation and its states read (at any step)."""
    q = model[name]
    exprs = [q.expr] if q.expr is not None else []
    exprs += list(model.states.get(name, {}).values()) + list(model.end_states.get(name, {}).values())
    found = set()
    for e in exprs:
        for s in e.atoms(MatrixSymbol):
            if s.name in model.quantities and model[s.name].expr is not None:
                found.add(s.name)
    return found


def time_blocks(model: Model) -> list[Block]:
    """Every defined quantity (intermediates and the loss) in blocks, dependencies first."""
    names = list(model.order)
    graph = {n: _reads(model, n) & set(names) for n in names}
    comp = components(graph)
    members: dict[int, list[str]] = {}
    for n in names:
        members.setdefault(comp[n], []).append(n)
    after: dict[int, set[int]] = {c: set() for c in members}  # component → the components it reads
    for n in names:
        after[comp[n]] |= {comp[r] for r in graph[n] if comp[r] != comp[n]}
    position = {c: min(names.index(n) for n in ms) for c, ms in members.items()}
    done: set[int] = set()
    blocks = []
    while len(done) < len(members):
        ready = [c for c in members if c not in done and after[c] <= done]
        c = min(ready, key=position.__getitem__)
        done.add(c)
        ms = members[c]
        direction = 0
        if model[ms[0]].sequence:
            for n in ms:
                expr = model[n].expr
                for node in expr.atoms(At) if expr is not None else ():
                    base = node.base
                    if isinstance(base, MatrixSymbol) and base.name in ms and node.offset:
                        direction = 1 if node.offset < 0 else -1
        blocks.append(Block(tuple(ms), model[ms[0]].sequence, direction))
    return blocks


def needs_blocks(model: Model) -> bool:
    """Whether the values need more than the one time loop of the single-loop plan: a recurrence
    backwards in time, a state computed from static values, or a static value between two parts
    of the sequence (c = h_T read by a later recurrence)."""
    if model.end_states:
        return True
    if any(not isinstance(v, (MatrixSymbol, sp.ZeroMatrix)) for steps in model.states.values() for v in steps.values()):
        return True
    names = list(model.order)
    reads = {n: _reads(model, n) & set(names) for n in names}
    seq = {n for n in names if model[n].sequence}

    statics_after_sequence = {n for n in names if n not in seq and depends_on(reads, n, seq)}
    return any(depends_on(reads, n, statics_after_sequence) for n in seq)
