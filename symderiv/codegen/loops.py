"""What a time loop's code reads once, before the loop, instead of at every step: the back ends' one set.

At a small size a step is a handful of array operations, each about a microsecond of dispatch, and
whatever a step's line makes on the way (a transposed view ``W.T``, a step's view ``h[i]``) costs as
much as an operation.  Two things are therefore made before the loop, by the NumPy and PyTorch
modules alike:

- **the matrices of the step products**: the printers name them where a step multiplies by one
  (``transposed``: ``_T_W`` for x Wᵀ; ``as_read``: ``_M_W`` for x W, NumPy's alone), the emitters make
  each once (``step_operands`` lists them), laid out as the back end's BLAS multiplies fastest (a
  transposed operand cost float32 products about a third of their speed, and OpenBLAS's Haswell
  kernels took up to 2.2 times as long by rows as by columns in float64: ``benchmarks/step_layout.py``);
- **the steps of every array the loop indexes** (``step_views``), as views made once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .schedule import Line, Phase, Scheduled

TRANSPOSED = "_T_"  # ``_T_W`` is ``W.T``, made once before the loop that reads it
AS_READ = "_M_"  # ``_M_W`` is ``W`` as a step's product x W reads it, made once before the loop


def transposed(matrix: str) -> str:
    """The name of ``matrix``'s transpose, made before the time loop."""
    return TRANSPOSED + matrix


def as_read(matrix: str) -> str:
    """The name of ``matrix`` as a step's product reads it (laid out for BLAS), made before the time loop."""
    return AS_READ + matrix


_OPERAND = re.compile(rf"(?<!\w)({TRANSPOSED}|{AS_READ})(\w+)")


def _operands(lines: Iterable[Line]) -> list[tuple[str, str]]:
    """(name, what it is) of every step operand the lines read: (``_T_W``, ``W.T``), (``_M_W``, ``W``)."""
    found = ((m.group(0), m.group(2) + (".T" if m.group(1) == TRANSPOSED else ""))
             for ln in lines for m in _OPERAND.finditer(ln.text))
    return list(dict.fromkeys(found))


def step_operands(phase: Phase) -> list[tuple[str, str]]:
    """The matrices the step products of ``phase``'s code read (``_T_W``, ``_M_W``), as (name, the
    matrix it is: ``W.T``, ``W``) in order of appearance: each is made once, before the phase's loop."""
    return _operands(ln for st in phase.statements() for ln in st.lines)


def transposed_in(phase: Phase) -> list[str]:
    """The matrices the code of ``phase`` reads transposed (``_T_W``: its time loops), in order of
    appearance: each is transposed once, before the phase's loop (``_T_W = W.T``)."""
    return [m.removesuffix(".T") for name, m in step_operands(phase) if name.startswith(TRANSPOSED)]


def transposes_before_use(phases: Iterable[Phase], make: Callable[[str, str], str]) -> None:
    """In each pass whose time loops are statements of their own (``codegen.blocks``: no ``phase.loop``;
    a pass with one loop makes them before it), make each matrix its steps' products read (``_T_W``,
    ``_M_W``) by the line ``make(name, matrix)`` (``make("_T_W", "W.T")``), put at the start of the first
    statement that reads it: after every statement before it, one of which may compute W (a matrix the
    pass computes, ``M = A @ B``), and once for all the pass's loops; and deleted (``del _T_W``) at the end
    of the last statement that reads it, so that it keeps no memory alive past its loops (the workspace's
    arena is laid out by when arrays die)."""
    for phase in phases:
        if phase.loop:
            continue
        made: set[str] = set()
        last: dict[str, object] = {}  # each name → the last statement that reads it
        for st in phase.statements():
            found = _operands(st.lines)
            needed = [(name, m) for name, m in found if name not in made]
            st.lines[:0] = [Line(make(name, m), (name,), (m.removesuffix(".T"),)) for name, m in needed]
            made.update(name for name, _ in needed)
            last.update((name, st) for name, _ in found)
        for st in phase.statements():
            done = [name for name, at in last.items() if at is st]
            if done:
                st.lines.append(Line(f"del {', '.join(done)}  # read by the loops above only", (), tuple(done)))


# A step of an array in the loop: ``h[i]``, ``h[i + 1]``, ``_stack0[i, :, :3 * n_h]`` (the loop's index is i).
_STEP = re.compile(r"(?<![\w.\])])([A-Za-z_]\w*)\[(i(?: [+-] \d+)?)((?:, [^\[\]]*)?)\]")
_ASSIGNED = re.compile(r"\s*([A-Za-z_]\w*)\[[^\]]*\]\s*([-+*/@]|//|\*\*)?=(?!=)")
VIEWS = "_s"  # ``_s_h`` holds the steps of ``h`` as views, made once before the loop


def step_views(loop: list[Scheduled], lists: bool = False) -> list[tuple[str, str]]:
    """The steps of every array the loop's lines index by step, as views made once before the loop
    (``_s_h = h.unbind(0)`` in PyTorch, ``list(h)`` in NumPy), and the loop reads ``_s_h[i + 1]``
    where it read ``h[i + 1]``.

    Indexing an array is a call into the library (a view made, at every step, for every operand); a
    sequence's item is not: at a small size that indexing was about 40% of a PyTorch loop.  The views
    share the arrays' memory, so every in-place write through them is a write into the array.  Returns
    (name of the sequence, the array or its slice whose steps it holds), in order; the loop's lines are
    rewritten in place.  An indexed assignment (``h[i] = v``) keeps the array: a sequence's item would be
    replaced, not written into.  So does an in-place update (``h[i] += v``) unless the views are a list
    (``lists``, NumPy's): ``_s_h[i] += v`` then updates the view in place and puts the same view back,
    where ``h[i] += v`` also writes the step into itself (an indexed assignment, about 0.3 µs)."""
    views: dict[str, str] = {}  # the source (``h``, ``_stack0[:, :, :3 * n_h]``) → its sequence's name

    def view(m: re.Match) -> str:
        name, step, rest = m.group(1), m.group(2), m.group(3)
        if re.search(r"\bi\b", rest):
            return m.group(0)
        source = f"{name}[:{rest}]" if rest else name
        if source not in views:
            views[source] = f"{VIEWS}_{name}" if not rest else f"{VIEWS}{len(views)}_{name}"
        return f"{views[source]}[{step}]"

    for st in loop:
        lines = []
        for ln in st.lines:
            assigned = _ASSIGNED.match(ln.text)
            head = assigned.end() if assigned and not (lists and assigned.group(2)) else 0
            text = ln.text[:head] + _STEP.sub(view, ln.text[head:])
            lines.append(Line(text, ln.writes, ln.reads))
        st.lines = lines
    return [(name, source) for source, name in views.items()]
