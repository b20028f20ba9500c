"""The JAX idioms the plan's statements are written with: functional, no array is changed in place.

The same methods as ``numpy.idioms.NumpyIdioms`` (the plan calls them in the same order and
gets statements that write and read the same arrays), written as JAX writes them:

- ``a += b`` is ``a = a + b``; a write into a slice outside the loop is ``a = a.at[1:].add(b)``;
  a write into the loop's step, ``a[i] += b`` or ``f(x, out=a[i])``, is ``a = _put(a, i, a[i] + b)``
  / ``a = _put(a, i, f(x))``: ``a.at[i].set(…)`` written as ``lax.dynamic_update_index_in_dim``
  (the module's helper), which XLA does in place on the scan's carry (``.at[i].set`` is a
  scatter, measurably slower on the CPU);
- allocations are ``jnp.zeros`` (JAX has no uninitialised arrays);
- a split into views records the members (``JaxPrinter.views``): inside the loop a member is
  read from, and written into, its slice of the stack; after the loop the emitter splits the
  stack again, so that the members hold the values the loop wrote;
- the guard of a term that reads δ at t + k (``if i + k < T:`` in NumPy, where i is a Python
  int) is ``jnp.where(i + k < T, term, 0)``: in ``lax.scan`` the step is traced;
- frees are dropped (XLA decides the buffers' lifetimes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp

from ..numpy.idioms import NumpyIdioms
from ..numpy.spelling import group
from ..schedule import Code, Line, line, reads_of
from .printer import Target
from .spelling import call

if TYPE_CHECKING:
    from ...ir.expr import Apply
    from ..numpy.printer import NumpyPrinter

_AT = {"=": "set", "+=": "add", "-=": "add", "*=": "multiply", "/=": "divide"}


@dataclass(frozen=True)
class Loop(Line):
    """The header of a loop over the steps (``backwards``: from T down to 1); the lines after it in
    its statement are the step."""

    backwards: bool = False


class JaxIdioms(NumpyIdioms):
    """JAX's way of writing the statements of a schedule (``printer`` is a ``JaxPrinter``)."""

    def __init__(self, printer: NumpyPrinter):
        super().__init__(printer)
        self._guard: str | None = None  # the condition of the step guard the indented lines are under
        # The indent of a loop's step: 0 in the single-loop plan (the template writes the loop),
        # 1 in a loop ``blocks.BlockPlan`` writes as a statement (``loop``).
        self._step_indent = 0
        self.view_groups: dict[str, Line] = {}  # a stack's array → the line splitting it into its members

    # --- arrays and views -----------------------------------------------------------------

    def alloc(self, array: str, size: sp.Expr, pad: int = 0, zeros: bool = False) -> Line:
        """``array = jnp.zeros((T + pad, B, size), dtype)``: a sequence array the loop fills."""
        pr = self.pr
        length = f"T + {pad}" if pad else "T"
        return line(f"{array} = jnp.zeros(({length}, B, {pr.size(size)}), dtype)", (array,), ("B",),
                    pr.size_reads(size))

    def declare_split(self, names: list[str], array: str, sizes: Sequence[sp.Expr]) -> None:
        """The members recorded as slices of ``array`` before any line is printed: a line of the loop
        that reads a member may be printed before the line splitting the stack (``f = σ(z_f)``
        before the stack's last member ``z_g`` is reached), and must read it from the stack too."""
        start = "0"
        total = sp.Integer(0)
        for k, size in enumerate(sizes):
            total = sp.expand(total + size)
            stop = self.pr.size(total)
            self.pr.views[names[k]] = (array, "" if start == "0" else start, stop if k < len(sizes) - 1 else "")
            start = stop

    def split(self, names: list[str], array: str, sizes: Sequence[sp.Expr], last_axis: bool = True) -> Line:
        """``a, b = jnp.split(array, […])``; the members are recorded as slices of ``array``."""
        if last_axis:
            self.declare_split(names, array, sizes)
        ends, reads, total = [], [], sp.Integer(0)
        for k, size in enumerate(sizes):
            total = sp.expand(total + size)
            stop = self.pr.size(total)
            if k < len(sizes) - 1:
                ends.append(stop)
                reads.append(self.pr.size_reads(total))
        axis = ", axis=-1" if last_axis else ""
        split = line(f"{', '.join(names)} = jnp.split({array}, [{', '.join(ends)}]{axis})", tuple(names),
                     (array,), *reads)
        if last_axis:
            self.view_groups[array] = split
        return split

    def array(self, name: str) -> Code:
        return Target(name, reads=(name,), form="array", base=name)

    def _part(self, array: str, index: str, step: bool = False) -> Target:
        """``array[index]``; for a member of a stack, that part of its slice of the stack.  ``step``:
        the index is the loop's step."""
        view = self.pr.views.get(array)
        if view is None:
            return Target(f"{array}[{index}]", reads=(array,), base=array, index=index, step=index if step else None)
        stack, start, stop = view
        block = f"{index}, :, {start}:{stop}"
        return Target(f"{stack}[{block}]", reads=(stack,), base=stack, index=block, step=index if step else None,
                      block=(start, stop) if step else None)

    def slot(self, array: str) -> Code:
        return self._part(array, "i", step=True)

    def entry(self, array: str, k: int) -> Code:
        return self._part(array, str(k))

    def from_entry(self, array: str, k: int) -> Code:
        return self._part(array, f"{k}:")

    def before_last(self, array: str, k: int) -> Code:
        return self._part(array, f":-{k}")

    def concat(self, codes: Sequence[Code]) -> Code:
        return Code("jnp.concatenate([" + ", ".join(c.text for c in codes) + "])", reads=reads_of(*codes))

    def zeros(self, size: sp.Expr) -> Code:
        return Code(f"jnp.zeros({self.pr.size(size)}, dtype)", reads=self.pr.size_reads(size))

    def _filled(self, shape: str, value: str) -> str:
        """``spread``'s new array of the printed ``shape`` holding ``value`` everywhere."""
        return f"jnp.full({shape}, {value}, dtype)"


    # --- statements -----------------------------------------------------------------------

    def update(self, target: Code, op: str, value: Code, indent: int = 0) -> Line:
        """``target op value`` as a new value of the array ``target`` names (or is part of)."""
        if not isinstance(target, Target):
            raise TypeError(f"cannot write into {target.text}: not an array or a part of one")
        text = value.text
        guarded = self._guard is not None and indent > self._step_indent
        if guarded:  # a term of a step that may not exist
            text = f"jnp.where({self._guard}, {text}, 0)"
        if target.step is not None:  # the loop's step: an in-place dynamic update of the carry
            if op != "=":
                text = f"{target.text} {op[0]} {group(text)}"
            if target.block is None:
                rhs = f"_put({target.base}, {target.step}, {text})"
            else:
                rhs = f"_put_block({target.base}, {target.step}, {target.block[0] or 0}, {text})"
        elif target.index is None:
            rhs = text if op == "=" else f"{target.base} {op[0]} {group(text)}"
        else:
            if op == "-=":  # .at[…] has add, not subtract
                text = f"-{group(text)}"
            rhs = f"{target.base}.at[{target.index}].{_AT[op]}({text})"
        reads = (target.reads,) if op != "=" or target.index is not None else ()
        lead = "    " * (self._step_indent if guarded else indent)
        return line(f"{lead}{target.base} = {rhs}", (target.base,), *reads, value)

    def apply(self, node: Apply, x: Code) -> Code:
        return Code(call(node.fname, x.text, tuple(getattr(node, "params", ()))), reads=x.reads)

    def apply_into(self, fname: str, x: Code, slot: Code, params: tuple = ()) -> Line:
        """f(x) written into ``slot``: ``a = a.at[i].set(f(x))``."""
        return self.update(slot, "=", Code(call(fname, x.text, params), reads=x.reads))

    def multiply_into(self, a: Code, b: Code, slot: Code) -> Line:
        return self.update(slot, "=", self.times(a, b))

    def if_step_exists(self, offset: int, indent: int = 0) -> Line:
        """The terms below (written one indent deeper than the step) exist for the first T − offset
        steps (for a negative offset, in a recurrence backwards in time: the last T + offset)."""
        lead = "    " * self._step_indent
        if offset > 0:
            self._guard = f"i + {offset} < T"
            return Line(f"{lead}# the terms below read δ at t + {offset}, which is zero beyond step T")
        self._guard = f"i >= {-offset}"
        return Line(f"{lead}# the terms below read δ at t - {-offset}, which is zero before step 1")

    def loop(self, backwards: bool) -> Line:
        """The header of a loop over the steps that ``blocks.BlockPlan`` writes as a statement (the
        step's lines follow it, indented once): a ``Loop`` line, which the emitter turns into a
        ``jax.lax.scan`` over the lines after it."""
        self._guard, self._step_indent = None, 1
        return Loop("", backwards=backwards)

    def if_length_reaches(self, s: int) -> Line:
        """Outside the loop T is a Python int (a static shape): a Python ``if``."""
        self._guard = None
        return Line(f"if T >= {s}:")

    def free(self, names: list[str]) -> Line:
        """Nothing: XLA decides when a buffer is reused (the emitter drops ``Free`` statements)."""
        return Line("", tuple(names))

    def state(self, array: str, k: int, value: str, what: str) -> Line:
        """An initial state into its entry of the padding."""
        return line(f"{array} = {array}.at[{k}].set({value})  # {what}", (array,), (array, value))
