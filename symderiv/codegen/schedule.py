"""The schedule of the generated module: its statements as data.

A statement says what it computes and where (before the time loop, at step t inside it, for
all steps at once after it), and carries the arrays it writes and reads.  Those come from the
expressions it was built from (the printer reports the arrays and sizes each printed node
names), not from the printed text, so which arrays are still live, what the code frees and
which sizes it needs are read off the data (see ``passes``).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp

if TYPE_CHECKING:
    from .names import ArrayNames
    from .passes import Stack


@dataclass(frozen=True)
class Code:
    """Printed code (a back end's printer's answer) and what its value carries in front of the per-example core."""

    text: str
    batched: bool = False  # a batch axis
    timed: bool = False  # a time axis (all steps at once)
    summed: bool = False  # already summed over steps and examples (an outer product in a gradient)
    # The arrays and sizes the code reads, each once, in the order the code names them: what the
    # statements built from it read (their liveness), known from the printed nodes, not from the text.
    reads: tuple[str, ...] = ()
    # "array": only names an array; "view": an array at a step or a slice of one; "expr": computes a new
    # one; "product": computes a new one by one matrix product over all steps (_matvec).
    form: str = "expr"

    def __str__(self) -> str:
        return self.text


def reads_of(*parts: Code | Iterable[str]) -> tuple[str, ...]:
    """The names read by ``parts`` (codes, or tuples of names), each once, in order."""
    return tuple(dict.fromkeys(n for p in parts for n in (p.reads if isinstance(p, Code) else p)))


@dataclass(frozen=True)
class Line:
    """One line of code, with the arrays (and sizes) it writes and reads."""

    text: str
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.text

    @property
    def names(self) -> tuple[str, ...]:
        """Everything the line touches, each once, in the order the line names them."""
        return tuple(dict.fromkeys(self.writes + self.reads))


@dataclass
class Scheduled:
    """A statement of the schedule: what it is (a comment), and its lines."""

    comment: str
    lines: list[Line]

    @property
    def writes(self) -> tuple[str, ...]:
        """The arrays the statement writes, each once."""
        return tuple(dict.fromkeys(n for line in self.lines for n in line.writes))

    @property
    def reads(self) -> tuple[str, ...]:
        """The arrays and sizes the statement reads, each once."""
        return tuple(dict.fromkeys(n for line in self.lines for n in line.reads))

    @property
    def names(self) -> tuple[str, ...]:
        """Everything the statement touches, in the order its lines name them."""
        return tuple(dict.fromkeys(n for line in self.lines for n in line.names))


class AssignAll(Scheduled):
    """A value for all steps at once (or one without time), outside the time loop."""


class AssignStep(Scheduled):
    """The value of one step, inside the time loop (the recurrence)."""


class Accumulate(Scheduled):
    """An adjoint built up term by term (each over the steps where the δ it reads exists)."""


class Free(Scheduled):
    """Arrays no later statement reads: freed, so their memory is reused."""


@dataclass
class Phase:
    """The statements of one pass (forward or backward)."""

    before: list[Scheduled] = field(default_factory=list)  # static, then all steps at once
    alloc: list[Line] = field(default_factory=list)  # the arrays the loop fills (allocations)
    loop: list[Scheduled] = field(default_factory=list)  # one step of the recurrence
    after: list[Scheduled] = field(default_factory=list)  # all steps at once, then static

    def statements(self) -> list[Scheduled]:
        """Before the loop, the loop, after it: in order."""
        return self.before + self.loop + self.after

    def names(self) -> set[str]:
        """Every array and size the pass's code touches."""
        return {n for st in self.statements() for n in st.names} | {n for line in self.alloc for n in line.names}


@dataclass
class Schedule:
    """What the generated module computes, in order: the forward and backward passes, the value
    table, and the forward arrays freed between the passes.  Back-end neutral in its structure
    (which statement, where, reading and writing what); the lines it holds are the NumPy
    printer's (see the package docstring)."""

    names: ArrayNames  # the Python identifier of each model value, adjoint and gradient
    pads: dict[str, int]  # a sequence's lag: its array is padded in front by that many steps
    forward: Phase
    backward: Phase
    values: ValueTable
    stacks: list[Stack]  # the gates held as views of one array
    free_before_backward: list[str]
    # What the module accepts (``signature.Argument``): every back end checks its arguments against it.
    arguments: list = field(default_factory=list)
    # The array of the loss's terms read once per call (a penalty), when it has terms of both kinds.
    loss_once: str | None = None

    def names_used(self, *phases: Phase) -> set[str]:
        """The arrays and sizes the code of ``phases`` (default: both) touches."""
        return set().union(*(ph.names() for ph in (phases or (self.forward, self.backward))))


def line(text: str, writes: Iterable[str] = (), *reads: Code | Iterable[str]) -> Line:
    """A line writing ``writes`` (names) and reading ``reads`` (printed codes, or tuples of names), in order."""
    found = dict.fromkeys(n for r in reads for n in (r.reads if hasattr(r, "reads") else r))
    return Line(text, tuple(writes), tuple(found))


# ---------------------------------------------------------------------------------------
# The value table: which array holds which value.


@dataclass(frozen=True)
class Value:
    """An array of the code's own and the value it holds (at step t, for one of every step)."""

    array: str
    expr: object  # what it holds; for ``per_step``, the value at step t
    kind: str  # why it exists: "repeated", "kept", "log", "shared", "factor", "argument", "stack", …
    per_step: bool = False  # one entry per step: the value at t + k is the array at k
    batched: bool = True
    timed: bool = False  # (a value without time) computed for all steps: carries the time axis
    summed: bool = False  # already summed over steps and examples
    lookup: bool = False  # any expression equal to ``expr`` (at a step t + k, k >= 0) reads the array


class ValueTable:
    """(an expression, shifted to step t) → the array that holds it: one table for every value the
    code computes once and reads again, in place of one cache per rewrite.

    A value with ``lookup`` is read by the printer wherever its expression appears once it is in
    the table (that is, once the statement computing it is scheduled); one without is read only
    where the pass that made it substituted its array (``At(MatrixSymbol(array), k)``).
    """

    def __init__(self, taken: Container[str], reach: int = 0):
        self.taken = taken  # names the model and the module use already (a live view)
        self.reach = reach  # a value of step t + k is read up to k = reach
        self.arrays: dict[str, Value] = {}
        self.reserved: set[str] = set()  # names given out for values not computed yet
        self._by_expr: dict = {}
        self._types: set[type] = set()  # the node types a lookup can match (a cheap screen)
        self._shifted = False  # some looked-up value is per step

    def fresh(self, base: str) -> str:
        """A new array name: ``base``, with ``_`` appended while it is taken."""
        while base in self.taken or base in self.arrays or base in self.reserved:
            base += "_"
        return base

    def reserve(self, name: str) -> str:
        """Hold ``name`` for a value that will be added later (or not at all)."""
        self.reserved.add(name)
        return name

    def add(self, value: Value) -> Value:
        """Put ``value`` in the table (its statement is scheduled now)."""
        self.arrays[value.array] = value
        if value.lookup or value.kind == "shared":
            self._by_expr.setdefault(value.expr, value)
        if value.lookup:
            self._types.add(type(value.expr))
            self._shifted |= value.per_step
        return value

    def get(self, expr: sp.Basic) -> Value | None:
        """The value holding ``expr`` (exactly), if any."""
        return self._by_expr.get(expr)

    def find(self, e: sp.Basic, shift: Callable[[sp.Basic, int], sp.Basic]) -> tuple[Value, int] | None:
        """(value, k) when ``e`` is a looked-up value at step t + k (k = 0 for one without time)."""
        if type(e) not in self._types:
            return None
        v = self._by_expr.get(e)
        if v is not None and v.lookup:
            return v, 0
        if self._shifted:
            for k in range(1, self.reach + 1):
                v = self._by_expr.get(shift(e, -k))
                if v is not None and v.lookup and v.per_step:
                    return v, k
        return None

    def of_kind(self, *kinds: str) -> list[Value]:
        """The values made for ``kinds``, in the order they were added."""
        return [v for v in self.arrays.values() if v.kind in kinds]
