"""The PyTorch idioms the plan's statements are written with: the NumPy ones respelt.

Views, in-place updates (``+=``, ``*=`` on a view write through), slots of a sequence, ``del``
and the guards read the same in PyTorch as in NumPy; what changes is the allocations (with the
module's ``dtype`` and ``device``), the split into views (``torch.tensor_split``), the
concatenation (``torch.cat``), products written into a slot (``torch.mul(…, out=…)``) and the
spelling of f(x) (``torch/spelling.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sympy as sp

from ...ir.expr import Apply
from ..loops import transposed
from ..numpy.idioms import NumpyIdioms
from ..numpy.spelling import group
from ..schedule import Code, Line, line, reads_of
from .printer import StepHadamard, StepProduct
from .spelling import call, call_out, has_out

_IN_PLACE = {"+=": "add_", "-=": "sub_", "*=": "mul_", "/=": "div_"}
# A step's slot, as the printer and ``slot`` write it: ``h[i]``, ``h[i + 1]`` (the time loop's index is i).
_STEP_SLOT = re.compile(r"\[i(?: [+-] \d+)?\]\Z")


class TorchIdioms(NumpyIdioms):
    """PyTorch's way of writing the statements of a schedule (``printer`` prints the expressions)."""

    def has_out(self, node: sp.Basic) -> bool:
        """Whether f(…) can be written into an existing tensor (f(x, out=…))."""
        return has_out(node.fname, tuple(getattr(node, "params", ())))

    def alloc(self, array: str, size: sp.Expr, pad: int = 0, zeros: bool = False) -> Line:
        """``array = torch.empty((T + pad, B, size), …)`` (``torch.zeros`` with ``zeros``): a sequence tensor."""
        pr = self.pr
        fill = "torch.zeros" if zeros else "torch.empty"
        length = f"T + {pad}" if pad else "T"
        return line(f"{array} = {fill}(({length}, B, {pr.size(size)}), dtype=dtype, device=device)", (array,),
                    ("B",), pr.size_reads(size))

    def split(self, names: list[str], array: str, sizes: Sequence[sp.Expr], last_axis: bool = True) -> Line:
        """``a, b = torch.tensor_split(array, […])``: views of one tensor, by blocks of ``sizes``."""
        ends, reads = self.split_points(sizes)
        axis = ", dim=-1" if last_axis else ""
        return line(f"{', '.join(names)} = torch.tensor_split({array}, [{', '.join(ends)}]{axis})", tuple(names),
                    (array,), *reads)

    def step_product(self, vector: Code, matrix: str) -> Code:
        """M v for the loop's step, the batch in rows: v Mᵀ."""
        return StepProduct(f"{group(vector.text)} @ {transposed(matrix)}", reads=reads_of(vector, (matrix,)),
                           left=vector.text, right=transposed(matrix))

    def update(self, target: Code, op: str, value: Code, indent: int = 0) -> Line:
        """``target op value``; at a step, ``slot += v Mᵀ`` is ``slot.addmm_(v, M.T)`` and
        ``slot += a ⊙ b`` is ``slot.addcmul_(a, b)``: one operation, no temporary."""
        if op == "+=" and isinstance(value, (StepProduct, StepHadamard)) and _STEP_SLOT.search(target.text):
            method = "addmm_" if isinstance(value, StepProduct) else "addcmul_"
            return line(f"{'    ' * indent}{target.text}.{method}({value.left}, {value.right})", target.reads,
                        target.reads, value)
        if op == "=" and _STEP_SLOT.search(target.text):  # into the step's view, no temporary
            pad = "    " * indent
            if isinstance(value, StepProduct):
                return line(f"{pad}torch.mm({value.left}, {value.right}, out={target.text})", target.reads, value)
            if isinstance(value, StepHadamard) and value.batched:  # out= must not broadcast up to the slot
                return line(f"{pad}torch.mul({value.left}, {value.right}, out={target.text})", target.reads, value)
            return line(f"{pad}{target.text}.copy_({value.text})", target.reads, value)
        if op in _IN_PLACE and _STEP_SLOT.search(target.text):  # not written back through __setitem__
            return line(f"{'    ' * indent}{target.text}.{_IN_PLACE[op]}({value.text})", target.reads,
                        target.reads, value)
        return super().update(target, op, value, indent)

    def plus(self, codes: Sequence[Code]) -> Code:
        """The sum of ``codes`` (one code: itself, so that a product stays one)."""
        return codes[0] if len(codes) == 1 else super().plus(codes)

    def concat(self, codes: Sequence[Code]) -> Code:
        """The blocks one above the other: [W_1; W_2; …]."""
        return Code("torch.cat([" + ", ".join(c.text for c in codes) + "])", reads=reads_of(*codes))

    def zeros(self, size: sp.Expr) -> Code:
        """A vector of zeros (a block without a bias)."""
        return Code(f"torch.zeros({self.pr.size(size)}, dtype=dtype, device=device)", reads=self.pr.size_reads(size))

    def _filled(self, shape: str, value: str) -> str:
        """``spread``'s new array of the printed ``shape`` holding ``value`` everywhere."""
        return f"torch.zeros({shape}, dtype=dtype, device=device).add_({value})"


    def apply(self, node: Apply, x: Code) -> Code:
        """f(x) for the node ``node`` = f(…), with ``x`` as its argument."""
        return Code(call(node.fname, x.text, tuple(getattr(node, "params", ()))), reads=x.reads)

    def apply_into(self, fname: str, x: Code, slot: Code, params: tuple = ()) -> Line:
        """f(x) written into ``slot``: f(x, out=slot)."""
        text = call_out(fname, x.text, slot.text, params)
        if text is None:
            raise ValueError(f"{fname} has no form writing into an existing tensor (ask has_out first)")
        return line(text, slot.reads, x)

    def multiply_into(self, a: Code, b: Code, slot: Code) -> Line:
        """a ⊙ b written into ``slot``."""
        return line(f"torch.mul({a.text}, {b.text}, out={slot.text})", slot.reads, a, b)
