"""The PyTorch printer: one expression of the schedule as PyTorch code.

The layout is the NumPy printer's (``numpy/printer.py``): a per-example vector is a row of a
``(B, n)`` tensor, a sequence ``(T, B, n)`` padded in front by its lag, a parameter keeps its
shape.  Indexing, slicing, ``@``, ``.T``, ``+ - * / **`` and broadcasting read the same in
PyTorch, so this subclass only respells what NumPy names: its functions (``np.sum`` →
``.sum(dim=…)``, ``np.ones`` → ``torch.ones(…, device=device)``), the elementwise table
(``torch/spelling.py``) and the stable logs (``torch.nn.functional.logsigmoid`` in place of
``np.logaddexp``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import HadamardPower, OneMatrix, Transpose

from ...ir.expr import Softmax
from ..numpy.printer import NumpyPrinter, _is_sigmoid, _join, _one_minus
from ..passes import params_of
from ..schedule import Code, reads_of
from .spelling import call, group

TRANSPOSED = "_T_"  # ``_T_W`` is ``W.T``, made once before the loop that reads it


def transposed(matrix: str) -> str:
    """The name of ``matrix``'s transpose, made before the time loop."""
    return TRANSPOSED + matrix


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

    def _print_OneMatrix(self, e):
        return Code(f"torch.ones({self.core(e)}, dtype=dtype, device=device)", reads=self.core_reads(e))

    def _print_ZeroMatrix(self, e):
        return Code(f"torch.zeros({self.core(e)}, dtype=dtype, device=device)", reads=self.core_reads(e))

    def _arange(self, n: str) -> str:  # the steps of a partial time range (``NumpyPrinter._print_Window``)
        return f"torch.arange({n}, device=device)"

    def _product(self, a, acc: Code, cols) -> Code:
        """``a`` times the value so far (which has ``cols`` columns per example)."""
        p, q = a.shape
        x = group(acc.text)
        if isinstance(a, OneMatrix):
            if p == 1:  # 1ᵀ v: the sum of the entries
                return _join(f"{x}.sum(dim=-1, keepdim=True)" if cols == 1 else f"{x}.sum(dim=0)", acc)
            return _join(f"{x} * torch.ones({self.size(p)}, dtype=dtype, device=device)", acc,
                         order=(acc, self.size_reads(p)))
        left = self._print(a)
        if acc.summed and left.batched:
            raise NotImplementedError(f"no PyTorch form for {a} times a sum of outer products")
        if p != 1 and q != 1:  # a matrix
            if left.batched:
                raise NotImplementedError(f"no PyTorch form for the per-example matrix {a}")
            if cols == 1 and acc.batched:
                if self.mode == "time":
                    # one product over all steps: a new tensor of every step
                    code = _join(f"_matvec({left.text}, {acc.text})", acc, order=(left, acc))
                    return Code(code.text, code.batched, code.timed, code.summed, code.reads, "product")
                right = group(self._print(a.arg).text) if isinstance(a, Transpose) else f"{group(left.text)}.T"
                if self.mode == "step" and not isinstance(a, Transpose) and left.form == "array":
                    right = transposed(left.text)  # Wᵀ once before the loop, not a view a step
                code = _join(f"{x} @ {right}", acc, order=(acc, left))
                return StepProduct(code.text, code.batched, code.timed, code.summed, code.reads, code.form,
                                   acc.text, right) if self.mode == "step" else code
            return _join(f"{group(left.text)} @ {x}", acc, order=(left, acc))
        if p == 1 and q != 1:  # a row vector
            if cols == 1:
                return _join(f"({group(left.text)} * {x}).sum(dim=-1, keepdim=True)", left, acc)
            return _join(f"{group(left.text)} @ {x}", left, acc)
        if cols == 1 or p == 1:  # a column (or a scalar) times a per-example scalar (or row)
            return _join(f"{group(left.text)} * {x}", left, acc)
        if not left.batched and not acc.batched:
            return Code(f"torch.outer({left.text}, {acc.text})", reads=reads_of(left, acc))
        # Σ over steps and examples
        return Code(f"_outer({left.text}, {acc.text})", summed=True, reads=reads_of(left, acc))

    def _print_HadamardProduct(self, e):
        code = super()._print_HadamardProduct(e)
        if self.mode == "step" and len(e.args) == 2 and not any(isinstance(f, HadamardPower) for f in e.args):
            a, b = (self._print(f) for f in e.args)
            if a.batched and b.batched:  # both (B, n): the product has the slot's shape
                return StepHadamard(code.text, code.batched, code.timed, code.summed, code.reads, code.form,
                                    a.text, b.text)
        return code

    def _print_Apply(self, e):
        if e.fname == "log":  # the log of a probability, computed from its logit, stably
            z = self._source(e.arg, lambda x: type(x) is Softmax)
            if z is not None:  # log softmax(z)
                code = self._print(z)
                return _join(f"_log_softmax({code.text})", code)
            z = self._source(e.arg, _is_sigmoid)
            if z is not None:  # log σ(z)
                code = self._print(z)
                return _join(f"_logsigmoid({code.text})", code)
            rest = _one_minus(e.arg)
            z = self._source(rest, _is_sigmoid) if rest is not None else None
            if z is not None:  # log(1 − σ(z)) = log σ(−z)
                code = self._print(z)
                return _join(f"_logsigmoid(-{group(code.text)})", code)
        code = self._print(e.arg)
        return _join(call(e.fname, code.text, params_of(e)), code)

    def _print_TimeSum(self, e):
        inner = self.code(e.arg, "time", 0)
        if inner.summed:
            return inner
        if inner.timed:
            return Code(f"{group(inner.text)}.sum(dim=0)", batched=inner.batched, reads=inner.reads)
        return _join(f"T * {group(inner.text)}", inner)

    def emptyPrinter(self, e: object) -> str:
        raise NotImplementedError(f"no PyTorch form for {type(e).__name__}")


__all__ = ["TorchPrinter"]
