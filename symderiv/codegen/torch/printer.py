"""The PyTorch printer: one expression of the schedule as PyTorch code.

The layout is the NumPy printer's (``numpy/printer.py``): a per-example vector is a row of a
``(B, n)`` tensor, a sequence ``(T, B, n)`` padded in front by its lag, a parameter keeps its
shape.  Indexing, slicing, ``@``, ``.T``, ``+ - * / **`` and broadcasting read the same in
PyTorch, so this subclass only respells what NumPy names, as SymPy's printers subclass: the
rules (which operation a product, a sum or a log of a probability is) are ``NumpyPrinter``'s
alone, and this class overrides its spelling hooks (``_sum`` → ``.sum(dim=…)``, ``_ones`` →
``torch.ones(…, device=device)``, ``_einsum``, ``_outer_of``, ``_swap_last``, ``_axis``,
``_call`` with the elementwise table of ``torch/spelling.py``, ``_log_sigmoid`` with
``torch.nn.functional.logsigmoid``), plus the loop's step products kept whole
(``_rows_transpose``, ``_rows_product``).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower
from sympy.printing.pycode import PythonCodePrinter

from ..numpy.printer import NumpyPrinter
from ..schedule import Code
from .spelling import call, group


class _SizePrinter(PythonCodePrinter):
    """A number made of sizes (Python ints) as Python code without ``math``: a power is ``**``
    (√n_k is ``n_k ** 0.5``), any other function of them computed by torch in float64."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": True, "strict": True})

    def _print_Pow(self, e, rational=False):
        base, k = e.args
        b = self._print(base) if base.is_Symbol or base.is_Integer else f"({self._print(base)})"
        if k == -1:
            return f"1 / {b}"
        power = str(abs(k)) if k.is_Integer else repr(float(abs(k)))
        return f"{b} ** {power}" if k > 0 else f"1 / {b} ** {power}"

    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Function):  # log(n), exp(T): computed by torch, a float
            args = ", ".join(self._print(a) for a in expr.args)
            return f"float(torch.{type(expr).__name__}(torch.tensor({args}, dtype=torch.float64)))"
        if isinstance(expr, sp.NumberSymbol):  # π, e
            return repr(float(expr))
        return super()._print(expr, **kwargs)

    def _module_format(self, fqn, register=True):
        raise NotImplementedError(f"no PyTorch form for {fqn} of a size")

    def _print_Rational(self, e):
        return f"({e.p} / {e.q})"


@dataclass(frozen=True)
class StepProduct(Code):
    """``left @ right`` for the loop's step (the batch in rows): ``slot += left @ right`` is then
    written ``slot.addmm_(left, right)``, one operation and no temporary."""

    left: str = ""
    right: str = ""


@dataclass(frozen=True)
class StepHadamard(Code):
    """``left * right`` for the loop's step: ``slot += left * right`` is ``slot.addcmul_(left, right)``."""

    left: str = ""
    right: str = ""


class TorchPrinter(NumpyPrinter):
    """Prints one expression as PyTorch code (modes as in ``NumpyPrinter``).

    Inside the time loop, where every operation's overhead counts, a product ``x_t Wᵀ`` and a
    product ``a ⊙ b`` carry their operands (``StepProduct``, ``StepHadamard``), so that the idioms
    can add them into a slot in one operation, and ``Wᵀ`` is made once before the loop (``_T_W``)."""

    printmethod = "_torch_print"

    library = "PyTorch"
    lib = "torch"
    step_layouts = False  # x W reads W itself: the layout of a step's operands is NumPy's choice (``_step_operand``)

    # --- spelling hooks (``NumpyPrinter``'s rules choose the operation, these write it) ---------

    def _sum(self, text: str, axis: str, keepdims: bool = False) -> str:
        return f"{group(text)}.sum(dim={axis}{', keepdim=True' if keepdims else ''})"

    def _ones(self, shape: str) -> str:
        return f"torch.ones({shape}, dtype=dtype, device=device)"

    def _zeros(self, shape: str) -> str:
        return f"torch.zeros({shape}, dtype=dtype, device=device)"

    def _eye(self, n: str) -> str:
        return f"torch.eye({n}, dtype=dtype, device=device)"

    def _einsum(self, spec: str, *operands: str) -> str:
        return f"torch.einsum('{spec}', {', '.join(operands)})"

    def _outer_of(self, a: str, b: str) -> str:
        return f"torch.outer({a}, {b})"

    def _swap_last(self, text: str) -> str:
        return f"{group(text)}.transpose(-1, -2)"

    def _rows_product(self, code: Code, rows: str, right: str) -> Code:
        """The loop's step product x Wᵀ carries its operands (``StepProduct``)."""
        if self.mode != "step":
            return code
        return StepProduct(code.text, code.batched, code.timed, code.summed, code.reads, code.form, rows, right)

    def _axis(self, axis: str) -> str:
        return f"dim={axis}"

    def _call(self, fname: str, x: str, params: tuple) -> str:
        return call(fname, x, params)

    def _log_sigmoid(self, z: str, negated: bool = False) -> str:
        return f"_logsigmoid(-{group(z)})" if negated else f"_logsigmoid({z})"

    def _arange(self, n: str) -> str:  # the steps of a partial time range (``NumpyPrinter._print_Window``)
        return f"torch.arange({n}, device=device)"

    # --- sizes as values, matrices (version 2) -------------------------------------------------

    def _size_value(self, c) -> str:
        """A number made of sizes (dims, T: Python ints) as code: ``(1 / n_h)``, ``(1 / n_k ** 0.5)``."""
        names = {x: sp.Symbol(self._size_name(x)) for x in c.free_symbols}
        return "(" + _SizePrinter().doprint(c.xreplace(names)) + ")"

    def _print_Trace(self, e):
        code = self._print(e.arg)
        return self._scalar(f"torch.diagonal({code.text}, dim1=-2, dim2=-1).sum(dim=-1)", code)

    def _print_HadamardProduct(self, e):
        code = super()._print_HadamardProduct(e)
        if self.mode == "step" and len(e.args) == 2 and not any(isinstance(f, HadamardPower) for f in e.args):
            a, b = (self._print(f) for f in e.args)
            if a.batched and b.batched:  # both (B, n): the product has the slot's shape
                return StepHadamard(code.text, code.batched, code.timed, code.summed, code.reads, code.form,
                                    a.text, b.text)
        return code


__all__ = ["TorchPrinter"]
