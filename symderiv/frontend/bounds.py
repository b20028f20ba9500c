"""Bounds on a model file, each a positioned error: what symderiv refuses before it spends
time or memory on it.

A course's model is a few dozen lines; these bounds sit orders of magnitude above that and
below what would take a command minutes or gigabytes (``benchmarks/attacks.py`` measures
both sides). They are checked in three places: on the text (``check_text``: the file's size
and its lines' length), on the statements once read (``check_statements``: how many
equations, how big one expression, how far back a state), and on the built model
(``check_model``: how many entries a value has, how far a lag reaches, how large a number
is). The bound on the size of a derivative is ``ad.derive``'s (``MAX_CLOSED_FORM_SIZE``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

import sympy as sp

from ..errors import ModelError, Position
from ..ir.expr import At
from ..ir.model import Model
from .source import Source, SourceLine
from .statements import ParseState

MAX_FILE_BYTES = 1_000_000  # a course's model is a few kilobytes
MAX_LINE_CHARS = 10_000  # a physical line
MAX_EQUATIONS = 1_000  # derive, render and codegen take about 10 ms an equation
MAX_EXPRESSION_NODES = 2_000  # one equation's expression, counted as syntax nodes
MAX_LAG = 10_000  # h[t-k], x[t+k], state h[-k]: k at most this
MAX_ENTRIES = 1_000_000  # entries of one value with every dim 1 (a literal size, or concat of concat)
MAX_NUMBER = 1e300  # a number's magnitude: far from float64's overflow at 1.8e308

_LINE_END = re.compile(r"\r\n|\r|\n")  # as the parser splits lines


def check_text(text: str, filename: str) -> None:
    """The file's size and the length of each of its lines."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise ModelError(f"the model file is {size:,} bytes; a model file may hold at most {MAX_FILE_BYTES:,}",
                         Position(filename, 1, 1))
    for number, line in enumerate(_LINE_END.split(text), 1):
        if len(line) > MAX_LINE_CHARS:
            raise ModelError(f"line {number} is {len(line):,} characters long; a line may hold at most "
                             f"{MAX_LINE_CHARS:,}", Position(filename, number, MAX_LINE_CHARS + 1))


def check_statements(state: ParseState, source: Source) -> None:
    """How many equations, how large each expression, how far back each state."""
    for k, d in enumerate(state.definitions.values()):
        if k == MAX_EQUATIONS:
            raise d.stmt.error(f"more than {MAX_EQUATIONS:,} equations; a model may hold at most {MAX_EQUATIONS:,}")
        nodes = sum(1 for _ in ast.walk(d.tree))
        if nodes > MAX_EXPRESSION_NODES:
            raise d.stmt.error(f"this expression has {nodes:,} parts; an equation may hold at most "
                               f"{MAX_EXPRESSION_NODES:,} (name its inner values, one equation each)", d.expr_offset)
    for name, steps in state.states.items():
        for step, entry in steps.items():
            stmt = entry[0]
            if isinstance(step, int) and abs(step) > MAX_LAG:
                raise _at(stmt, name, f"a state {abs(step):,} steps before the sequence; a state may be at "
                                      f"most {MAX_LAG:,} steps away")


def _at(stmt: SourceLine, name: str, message: str) -> ModelError:
    offset = stmt.text.find(name)
    return stmt.error(message, max(offset, 0))


def check_model(model: Model) -> None:
    """Every value's number of entries, every lag, every number."""
    ones = {d: 1 for d in model.dims.values()}
    if model.length is not None:
        ones[model.length] = 1
    for q in model.quantities.values():
        entries = sp.Mul(*q.symbol.shape).subs(ones)
        if entries.is_Number and entries > MAX_ENTRIES:
            shape = " × ".join(str(x) for x in q.symbol.shape)
            raise ModelError(f"{q.name} is {shape}: more than {MAX_ENTRIES:,} entries even with every dim 1; "
                             "symderiv checks and generates code for values up to that size", q.pos)
        if q.expr is None:
            continue
        for node in _nodes(q.expr):
            if isinstance(node, At) and isinstance(node.offset, (int, sp.Integer)) and abs(int(node.offset)) > MAX_LAG:
                raise ModelError(f"{q.name} reads a value {abs(int(node.offset)):,} steps away; a lag may be at "
                                 f"most {MAX_LAG:,} steps", q.pos)
            if isinstance(node, sp.Number) and node.is_finite is False:
                raise ModelError(f"the equation of {q.name} holds {node}, which is not a finite number", q.pos)
            if isinstance(node, sp.Number) and bool(abs(node) > MAX_NUMBER):
                raise ModelError(f"the equation of {q.name} holds the number {sp.Float(node, 3)}, beyond "
                                 f"±{MAX_NUMBER:g} (float64 overflows at 1.8e308)", q.pos)


def _nodes(e: sp.Basic) -> Iterable[sp.Basic]:
    """Every node of ``e``, each distinct one once (a derivative's tree may share subtrees)."""
    seen: set[sp.Basic] = set()
    stack = [e]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(node.args)
