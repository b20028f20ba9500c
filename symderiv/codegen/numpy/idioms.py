"""The NumPy idioms the plan's statements are written with: allocations, views, in-place forms.

The plan (``codegen.plan``) decides what each statement does; these methods say how NumPy does
it, each returning a ``schedule.Line`` (with the arrays it writes and reads) or a printed
``Code``.  A second back end writes its own class with the same methods (and its printer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sympy as sp

from ..loops import transposed
from ..schedule import Code, Line, line, reads_of
from .spelling import call, call_out, group, has_out

if TYPE_CHECKING:
    from ...ir.expr import Apply
    from .printer import NumpyPrinter


class NumpyIdioms:
    """NumPy's way of writing the statements of a schedule (``printer`` prints the expressions)."""

    def __init__(self, printer: NumpyPrinter):
        self.pr = printer

    # --- arrays and views -----------------------------------------------------------------

    def has_out(self, node: sp.Basic) -> bool:
        """Whether f(…) can be written into an existing array (f(x, out=…))."""
        return has_out(node.fname, tuple(getattr(node, "params", ())))

    def alloc(self, array: str, size: sp.Expr, pad: int = 0, zeros: bool = False) -> Line:
        """``array = np.empty((T + pad, B, size), dtype)`` (``np.zeros`` with ``zeros``): a sequence array."""
        pr = self.pr
        fill = "np.zeros" if zeros else "np.empty"
        length = f"T + {pad}" if pad else "T"
        return line(f"{array} = {fill}(({length}, B, {pr.size(size)}), dtype)", (array,), ("B",), pr.size_reads(size))

    def split_points(self, sizes: Sequence[sp.Expr]) -> tuple[list[str], list[tuple[str, ...]]]:
        """Where blocks of ``sizes`` end, printed (all but the last), and the sizes each reads."""
        ends, reads, total = [], [], sp.Integer(0)
        for size in sizes[:-1]:
            total = sp.expand(total + size)
            ends.append(self.pr.size(total))
            reads.append(self.pr.size_reads(total))
        return ends, reads

    def declare_split(self, names: list[str], array: str, sizes: Sequence[sp.Expr]) -> None:
        """Told, before any line is printed, that ``names`` will be the members of the stack ``array``
        (``split`` writes the line later, where the plan places it).  NumPy's members are views,
        which read the same whenever they were split off: nothing to do."""

    def split(self, names: list[str], array: str, sizes: Sequence[sp.Expr], last_axis: bool = True) -> Line:
        """``a, b = np.split(array, […])``: views of one array, by blocks of ``sizes``."""
        ends, reads = self.split_points(sizes)
        axis = ", axis=-1" if last_axis else ""
        return line(f"{', '.join(names)} = np.split({array}, [{', '.join(ends)}]{axis})", tuple(names),
                    (array,), *reads)

    def array(self, name: str) -> Code:
        """A whole array, by its name."""
        return Code(name, reads=(name,), form="array")

    def slot(self, array: str) -> Code:
        """The array's entry of the loop's step."""
        return Code(f"{array}[i]", reads=(array,))

    def entry(self, array: str, k: int) -> Code:
        """The entry k of an array of steps (an initial state in its padding)."""
        return Code(f"{array}[{k}]", reads=(array,))

    def from_entry(self, array: str, k: int) -> Code:
        """Every entry from k on: the steps of a padded sequence."""
        return Code(f"{array}[{k}:]", reads=(array,))

    def before_last(self, array: str, k: int) -> Code:
        """Every entry but the last k: the steps t with t + k <= T."""
        return Code(f"{array}[:-{k}]", reads=(array,))

    def block(self, array: str, start: sp.Expr, stop: sp.Expr) -> Code:
        """Entries start..stop of the vector of the loop's step (one activation block of a stack)."""
        pr = self.pr
        first = "" if pr.size(start) == "0" else pr.size(start)
        return Code(f"{array}[i, :, {first}:{pr.size(stop)}]", reads=reads_of((array,), pr.size_reads(start),
                                                                             pr.size_reads(stop)))

    def concat(self, codes: Sequence[Code]) -> Code:
        """The blocks one above the other: [W_1; W_2; …]."""
        return Code("np.concatenate([" + ", ".join(c.text for c in codes) + "])", reads=reads_of(*codes))

    def zeros(self, size: sp.Expr) -> Code:
        """A vector of zeros (a block without a bias)."""
        return Code(f"np.zeros({self.pr.size(size)}, dtype)", reads=self.pr.size_reads(size))

    # --- products and sums ----------------------------------------------------------------

    def all_steps_product(self, matrix: Code, vectors: Code) -> Code:
        """M v for every step and example at once: one matrix product."""
        return Code(f"_matvec({matrix.text}, {vectors.text})", reads=reads_of(matrix, vectors), form="product")

    def step_product(self, vector: Code, matrix: str) -> Code:
        """M v for the loop's step, the batch in rows: v Mᵀ (``np.dot`` of Mᵀ made before the loop, as the
        printer's step products: ``NumpyPrinter._rows_product``)."""
        pr = self.pr
        if pr.step_dot and pr.step_transposes:
            return Code(f"{pr.lib}.dot({vector.text}, {transposed(matrix)})", reads=reads_of(vector, (matrix,)))
        return Code(f"{group(vector.text)} @ {matrix}.T", reads=reads_of(vector, (matrix,)))

    def plus(self, codes: Sequence[Code]) -> Code:
        """The sum of ``codes``."""
        return Code(" + ".join(c.text for c in codes), reads=reads_of(*codes))

    def times(self, a: Code, b: Code) -> Code:
        """a ⊙ b."""
        return Code(f"{group(a.text)} * {group(b.text)}", reads=reads_of(a, b))

    def sum_examples(self, code: Code, matrix: bool = False) -> Code:
        """Σ over every step and example (of a matrix per example, with ``matrix``)."""
        return Code(f"_sum_examples{'_matrix' if matrix else ''}({code.text})", reads=code.reads)

    def times_length(self, code: Code) -> Code:
        """T times a value the same at every step (per example, if ``code`` is)."""
        return Code(f"T * {group(code.text)}", batched=code.batched, reads=code.reads)

    def times_examples(self, code: Code, but_one: bool = False) -> Code:
        """B (or B − 1) times a value the same for every example."""
        factor = "(B - 1)" if but_one else "B"
        return Code(f"{factor} * {group(code.text)}", reads=reads_of(("B",), code))

    def spread(self, code: Code, size: sp.Expr, timed: bool = False, cols: sp.Expr = 1) -> Code:
        """A value the same for every example (and, ``timed``, at every step) as a full array of its
        own, (B, size) or (T, B, size), or (…, B, size, cols) for a matrix: one for each, which later
        statements update in place."""
        pr = self.pr
        shape = f"({'T, ' if timed else ''}B, {pr.size(size)}{'' if cols == 1 else ', ' + pr.size(cols)})"
        return Code(self._filled(shape, code.text), batched=True, timed=timed,
                    reads=reads_of(("B",), code, pr.size_reads(size), () if cols == 1 else pr.size_reads(cols)))

    def _filled(self, shape: str, value: str) -> str:
        """A new array of the printed ``shape`` holding ``value`` everywhere (``spread``'s)."""
        return f"np.full({shape}, {value}, dtype)"

    # --- statements -----------------------------------------------------------------------

    def update(self, target: Code, op: str, value: Code, indent: int = 0) -> Line:
        """``target op value`` (op: =, +=, -=, *=, /=); it writes the array ``target`` is part of."""
        reads = (target.reads,) if op != "=" else ()
        return line(f"{'    ' * indent}{target.text} {op} {value.text}", target.reads, *reads, value)

    def apply(self, node: Apply, x: Code) -> Code:
        """f(x) for the node ``node`` = f(…), with ``x`` as its argument."""
        text, helpers = call(node.fname, x.text, tuple(getattr(node, "params", ())))
        self.pr.helpers |= helpers
        return Code(text, reads=x.reads)

    def apply_into(self, fname: str, x: Code, slot: Code, params: tuple = ()) -> Line:
        """f(x) written into ``slot``: f(x, out=slot)."""
        text = call_out(fname, x.text, slot.text, params)
        if text is None:
            raise ValueError(f"{fname} has no form writing into an existing array (ask has_out first)")
        return line(text, slot.reads, x)

    def multiply_into(self, a: Code, b: Code, slot: Code) -> Line:
        """a ⊙ b written into ``slot``."""
        return line(f"np.multiply({a.text}, {b.text}, out={slot.text})", slot.reads, a, b)

    def softmax_and_log(self, p: str, log: str, z: Code) -> Line:
        """softmax(z) and its log, by one call with one exponential."""
        return line(f"{p}, {log} = _softmax_and_log({z.text})", (p, log), z)

    def if_step_exists(self, offset: int, indent: int = 0) -> Line:
        """The guard of a term reading δ at t + offset: it exists for the first T − offset steps
        (for a negative offset, a recurrence backwards in time: for the last T + offset)."""
        test = f"i + {offset} < T" if offset > 0 else f"i >= {-offset}"
        return Line(f"{'    ' * indent}if {test}:")

    def loop(self, backwards: bool) -> Line:
        """The header of a loop over the steps, written as a statement's line (``plan`` puts the
        single-loop plan's loop in the template; ``blocks`` writes one per recurrence)."""
        return Line("for i in reversed(range(T)):" if backwards else "for i in range(T):")

    def if_length_reaches(self, s: int) -> Line:
        """The guard of a term through an initial state read at step s."""
        return Line(f"if T >= {s}:")

    def free(self, names: list[str]) -> Line:
        """Drop the arrays ``names``: their memory is reused."""
        return Line(f"del {', '.join(names)}", tuple(names))

    def comment(self, text: str, indent: int = 0) -> Line:
        """A comment line."""
        return Line(f"{'    ' * indent}# {text}")

    def state(self, array: str, k: int, value: str, what: str) -> Line:
        """An initial state into its entry of the padding."""
        return line(f"{array}[{k}] = {value}  # {what}", (array,), (value,))
