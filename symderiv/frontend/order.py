"""The order in which definitions are built: every quantity after the ones it uses at the
same step.  A loop must go through a lag (``h[t-1]``), and every lag must reach back only to
steps that have an initial state.  Each tree is checked against the whitelist of Python
syntax a model file may use while its references are collected.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

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
            if k > 0:
                lags.setdefault(ref, []).append((k, d, node))
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
                    raise node_error(d.stmt, d.expr_offset, d.stmt.text[d.expr_offset:], via,
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
            yield node.value.id, lag(s, d, node), node
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
        if isinstance(idx.op, ast.Sub):
            if k < 0:
                raise node_error(d.stmt, d.expr_offset, text, node,
                                 f"future reference {name}[{t}+{-k}]: only the current step or earlier ones")
            return k
        if isinstance(idx.op, ast.Add):
            if k == 0:
                return 0
            raise node_error(d.stmt, d.expr_offset, text, node,
                             f"future reference {name}[{t}+{k}]: only the current step or earlier ones")
    raise node_error(d.stmt, d.expr_offset, text, node,
                     f"a step is written {t} or {t}-k with a constant k >= 1, as in {name}[{t}-1]")


def check_states(s: ParseState, lags: Lags) -> None:
    """Every ``state`` line is for a sequence defined by an equation, and every lag reaches
    back only to steps that have an initial state."""
    for name, steps in s.states.items():
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
                q = s.quantities.get(name)
                if q is None:
                    continue  # reported as an unknown name when built
                raise node_error(d.stmt, d.expr_offset, text, node,
                                 f"'{name}' is {q.role} data: only quantities defined by an equation can be "
                                 "used at an earlier step")
            have = s.states.get(name, {})
            for step in range(0, 1 - k - 1, -1):
                if step not in have:
                    raise node_error(d.stmt, d.expr_offset, text, node,
                                     f"lag without a state: {name}[{s.time_index}-{k}] reaches step {step} "
                                     f"before {s.time_index} = 1; add 'state {name}[{step}] = ...'")
