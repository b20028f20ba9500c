"""The schedule of the generated module: its statements as data.

A statement says what it computes and where (before the time loop, at step t inside it, for
all steps at once after it), and carries the arrays it writes and reads.  Those come from the
expressions it was built from (the printer reports the arrays and sizes each printed node
names), not from the printed text, so which arrays are still live, what the code frees and
which sizes it needs are read off the data (see ``passes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        return tuple(dict.fromkeys(n for line in self.lines for n in line.writes))

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for line in self.lines for n in line.reads))

    @property
    def names(self) -> tuple[str, ...]:
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
        return self.before + self.loop + self.after

    def names(self) -> set[str]:
        """Every array and size the pass's code touches."""
        return {n for st in self.statements() for n in st.names} | {n for line in self.alloc for n in line.names}


def line(text: str, writes=(), *reads) -> Line:
    """A line writing ``writes`` (names) and reading ``reads`` (printed codes, or tuples of names), in order."""
    found = dict.fromkeys(n for r in reads for n in (r.reads if hasattr(r, "reads") else r))
    return Line(text, tuple(writes), tuple(found))
