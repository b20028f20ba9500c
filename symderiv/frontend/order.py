"""The order in which definitions are built: every quantity after the ones it uses at the
same step.  A loop must go through a lag (``h[t-1]``), and every lag must reach back only to
steps that have an initial state.  Each tree is checked against the whitelist of Python
syntax a model file may use while its references are collected.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from ..ir.blocks import components
from .source import node_error, operator_offset
from .statements import Definition, ParseState

#: The expression nodes a model file may use; the builder has one method for each.
ALLOWED_NODES = (ast.BinOp, ast.UnaryOp, ast.Call, ast.Attribute, ast.Subscript, ast.Name, ast.Constant,
                 ast.Tuple)
DESCRIBE = {
    ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.JoinedStr: "an f-string",
    ast.Starred: "a starred argument", ast.IfExp: "a conditional expression", ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operator", ast.Dict: "a dict", ast.Set: "a set", ast.List: "a list",
    ast.NamedExpr: "an assignment expression", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.Slice: "a slice", ast.FormattedValue: "an f-string",
}

#: What a model file is told for a Python construct it may not use, where a reason helps.
LAMBDA_MESSAGE = ("lambdas are not part of the model language: a model file defines quantities, not "
                  "functions; write the expression itself (h = tanh(W @ x), not (lambda v: tanh(v))(W @ x))")


def not_allowed(node: ast.AST) -> str:
    """The message for a construct outside the language: ``a comprehension is not allowed …``."""
    if isinstance(node, ast.Lambda):
        return LAMBDA_MESSAGE
    what = "this operator" if isinstance(node, ast.BinOp) else DESCRIBE.get(type(node), f"'{type(node).__name__}'")
    return f"{what} is not allowed in a model file"


#: For every lagged quantity: (lag k, the definition that uses it at t-k, the node x[t-k]).
Lags = dict[str, list[tuple[int, Definition, ast.expr]]]


def definition_order(s: ParseState) -> tuple[list[str], Lags]:
    """Definitions, dependencies first, and every reference to an earlier step, by the name it
    refers to; a cycle not through a lag is an error.  Validates every tree on the way."""
    deps: dict[str, list[tuple[str, ast.expr]]] = {}
    lags: Lags = {}
    for name, d in s.definitions.items():
        deps[name] = []
        for ref, k, node in uses(s, d):
            if ref in s.definitions and k == 0:
                deps[name].append((ref, node))
            if k != 0:  # k < 0: a later step, x[t+2] (see ``check_leads``)
                lags.setdefault(ref, []).append((k, d, node))
    # a state computed from static quantities (state h[0] = tanh(W @ c)) comes after them
    via_state: dict[int, tuple] = {}
    for name, steps in list(s.states.items()) + list(s.end_states.items()):
        if name not in deps:
            continue  # reported by check_states
        for stmt, offset, _ in steps.values():
            tree = _state_tree(stmt, offset)
            for found in ast.walk(tree):
                if isinstance(found, ast.Name) and found.id in s.definitions:
                    deps[name].append((found.id, found))
                    via_state[id(found)] = (stmt, offset)
    order: list[str] = []
    status: dict[str, int] = {}  # 1: on the current path, 2: done
    # Depth-first, dependencies first, with an explicit stack: a file may chain thousands
    # of definitions (h1 = f(h0), h2 = f(h1), ...), deeper than Python's recursion limit.
    for root in s.definitions:
        if status.get(root) == 2:
            continue
        status[root] = 1
        stack = [(root, iter(deps[root]))]
        while stack:
            name, pending = stack[-1]
            for ref, via in pending:
                if status.get(ref) == 2:
                    continue
                if status.get(ref) == 1:
                    path = [n for n, _ in stack]
                    cycle = path[path.index(ref):] + [ref]
                    d = s.definitions[name]  # the reference 'via' in its equation closes the loop
                    stmt, offset = via_state.get(id(via), (d.stmt, d.expr_offset))
                    raise node_error(stmt, offset, stmt.text[offset:], via,
                                     "cycle: " + " -> ".join(cycle)
                                     + " (only a lag such as h[t-1] may close a loop)")
                status[ref] = 1
                stack.append((ref, iter(deps[ref])))
                break
            else:
                stack.pop()
                status[name] = 2
                order.append(name)
    return order, lags


def _state_tree(stmt, offset: int) -> ast.expr:
    from .language import _parse_expr

    return _parse_expr(stmt, offset)


def uses(s: ParseState, d: Definition) -> Iterator[tuple[str, int, ast.expr]]:
    """(name, lag, node) for every quantity a definition uses; validates the tree on the way."""
    text = d.stmt.text[d.expr_offset:]
    indexed = {id(n.value) for n in ast.walk(d.tree) if isinstance(n, ast.Subscript)}
    for node in ast.walk(d.tree):
        if isinstance(node, ast.expr) and not isinstance(node, ALLOWED_NODES):
            if isinstance(node, ast.Compare):
                raise d.stmt.error(not_allowed(node), d.expr_offset + operator_offset(text, node.left))
            raise node_error(d.stmt, d.expr_offset, text, node, not_allowed(node))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            # a fixed step (h[T], h[1]) is read once the whole sequence is known: a dependency
            fixed = fixed_step(s, d, node)
            if fixed is not None and d.sequence:
                raise node_error(d.stmt, d.expr_offset, text, node, fixed_step_in_step(text, node))
            yield node.value.id, 0 if fixed is not None else lag(s, d, node), node
        elif isinstance(node, ast.Name) and node.id in s.definitions and id(node) not in indexed:
            yield node.id, 0, node


def lag(s: ParseState, d: Definition, node: ast.Subscript) -> int:
    """0 for ``x[t]``, k for ``x[t-k]``; anything else is an error."""
    idx = node.slice
    text = d.stmt.text[d.expr_offset:]
    # the callers index names only (the builder refuses anything else first)
    name = node.value.id if isinstance(node.value, ast.Name) else ast.unparse(node.value)
    if s.time_index is None:
        raise node_error(d.stmt, d.expr_offset, text, node,
                         f"'{name}[...]' needs a time axis; add a line 'time t = 1..T'")
    t = s.time_index
    if isinstance(idx, ast.Name) and idx.id == t:
        return 0
    if (isinstance(idx, ast.BinOp) and isinstance(idx.left, ast.Name) and idx.left.id == t
            and isinstance(idx.right, ast.Constant) and type(idx.right.value) is int):
        k = idx.right.value
        if isinstance(idx.op, ast.Sub):  # a literal is never negative: t - -1 is not a Constant
            return k
        if isinstance(idx.op, ast.Add):
            return -k  # a later step: allowed for data, and for a quantity with a state at T + k
    length = s.length.name if s.length is not None else "T"
    raise node_error(d.stmt, d.expr_offset, text, node,
                     f"a step is written {t}, {t}-k or {t}+k with a constant k >= 1, as in {name}[{t}-1], "
                     f"or as a fixed step {length}, {length}-k or a number >= 1 outside a per-step equation")


def fixed_step_in_step(text: str, node: ast.Subscript) -> str:
    """The message for ``h[T]`` inside a per-step equation (or a Sum)."""
    seg = (ast.get_source_segment(text, node) or ast.unparse(node)).replace("\n", " ")
    return (f"a fixed step such as {seg} is read by a static equation or the loss; name it there "
            f"(c = {seg}) and use that name here")


def fixed_step(s: ParseState, d: Definition, node: ast.Subscript) -> tuple[str, int] | None:
    """A fixed step of the sequence: ``("end", -k)`` for ``x[T-k]``, ``("start", j)`` for ``x[j]``;
    None for a step written with the time index (``x[t-1]``).  A fixed step outside 1..T is an error."""
    idx = node.slice
    if s.length is None:
        return None
    length = s.length.name
    text = d.stmt.text[d.expr_offset:]
    name = node.value.id if isinstance(node.value, ast.Name) else ast.unparse(node.value)
    if isinstance(idx, ast.Constant) and type(idx.value) is int:
        if idx.value < 1:
            raise node_error(d.stmt, d.expr_offset, text, node,
                             f"step {idx.value} is before the sequence: its steps are 1..{length}")
        return ("start", idx.value)
    if isinstance(idx, ast.Name) and idx.id == length:
        return ("end", 0)
    if (isinstance(idx, ast.BinOp) and isinstance(idx.op, (ast.Add, ast.Sub)) and isinstance(idx.left, ast.Name)
            and idx.left.id == length and isinstance(idx.right, ast.Constant) and type(idx.right.value) is int):
        k = idx.right.value if isinstance(idx.op, ast.Add) else -idx.right.value
        if k > 0:
            raise node_error(d.stmt, d.expr_offset, text, node,
                             f"step {length}+{k} is beyond the sequence: its steps are 1..{length} "
                             f"(only a 'state {name}[{length}+{k}] = ...' line gives a value there)")
        return ("end", k)
    return None


def check_states(s: ParseState, lags: Lags) -> None:
    """Every ``state`` line is for a sequence defined by an equation, and every lag reaches
    back only to steps that have an initial state."""
    for name, steps in list(s.states.items()) + list(s.end_states.items()):
        stmt, off, _ = next(iter(steps.values()))
        keyword = re.match(r"state\s+", stmt.text)  # a state line starts with it
        at = keyword.end() if keyword else 0  # where the name is
        if name not in s.definitions and name not in s.quantities:
            raise stmt.error(f"'state' for '{name}', which is not defined", at)
        d = s.definitions.get(name)
        if d is None and (data := s.quantities.get(name)) is not None:
            raise stmt.error(f"'state' for '{name}', which is {data.role} data: only quantities "
                             "defined by an equation have initial states", at)
        if d is None or not d.sequence:
            raise stmt.error(f"'state' gives initial values of a sequence quantity, and '{name}' is not one", at)
    for name, lagged in lags.items():
        for k, d, node in lagged:
            text = d.stmt.text[d.expr_offset:]
            target = s.definitions.get(name)
            if target is None:
                continue  # data: zero before step 1 and after T; an unknown name is reported when built
            have = s.states.get(name, {})
            if k < 0:
                length = s.length.name if s.length is not None else "T"
                for step in range(1, -k + 1):
                    if step not in s.end_states.get(name, {}):
                        raise node_error(
                            d.stmt, d.expr_offset, text, node,
                            f"a later step without a state: {name}[{s.time_index}+{-k}] reaches step "
                            f"{length}+{step} after the sequence; add 'state {name}[{length}+{step}] = ...'")
                continue
            for step in range(0, 1 - k - 1, -1):
                if step not in have:
                    raise node_error(d.stmt, d.expr_offset, text, node,
                                     f"lag without a state: {name}[{s.time_index}-{k}] reaches step {step} "
                                     f"before {s.time_index} = 1; add 'state {name}[{step}] = ...'")


def check_directions(s: ParseState, lags: Lags) -> None:
    """No quantity depends on both its own past and its own future: the quantities that read one
    another (at any steps) in a loop run all forward in time (h[t-1]) or all backwards (g[t+1])."""
    graph: dict[str, set[str]] = {n: set() for n in s.definitions}
    for name, d in s.definitions.items():
        for ref, _, _ in uses(s, d):
            if ref in s.definitions:
                graph[name].add(ref)
    component = components(graph)
    edges = [(name, k, d, node) for name, lagged in lags.items() for k, d, node in lagged
             if name in component and component.get(d.name) == component[name]]  # inside one loop
    t = s.time_index
    for name, k, d, node in edges:
        if k >= 0:
            continue
        past = next(((n, j, e) for n, j, e, _ in edges if j > 0 and component[n] == component[name]), None)
        if past is not None:
            n, j, e = past
            raise node_error(d.stmt, d.expr_offset, d.stmt.text[d.expr_offset:], node,
                             f"a cycle through both time directions: {d.name} reads {name}[{t}+{-k}] and "
                             f"{e.name} reads {n}[{t}-{j}] in one loop; a quantity cannot depend on both "
                             "its own past and its own future")

