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

import sympy as sp
from sympy import HadamardPower, OneMatrix, Transpose
from sympy.printing.pycode import PythonCodePrinter

from ...ir.expr import LogSoftmax, Softmax
from ..numpy.printer import NumpyPrinter, _is_row_softmax, _is_sigmoid, _join, _one_minus
from ..passes import params_of
from ..schedule import Code, reads_of
from .spelling import call, group

TRANSPOSED = "_T_"  # ``_T_W`` is ``W.T``, made once before the loop that reads it


def transposed(matrix: str) -> str:
    """The name of ``matrix``'s transpose, made before the time loop."""
    return TRANSPOSED + matrix


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

    def _print_OneMatrix(self, e):
        return Code(f"torch.ones({self.core(e)}, dtype=dtype, device=device)", reads=self.core_reads(e))

    def _print_ZeroMatrix(self, e):
        return Code(f"torch.zeros({self.core(e)}, dtype=dtype, device=device)", reads=self.core_reads(e))

    def _arange(self, n: str) -> str:  # the steps of a partial time range (``NumpyPrinter._print_Window``)
        return f"torch.arange({n}, device=device)"

    def _product(self, a, acc: Code, cols) -> Code:
        """``a`` times the value so far (which has ``cols`` columns per example): NumPy's cases
        (``NumpyPrinter._product``) in PyTorch's spelling, the loop's step products kept whole."""
        p, q = a.shape
        x = group(acc.text)
        if isinstance(a, OneMatrix) and (p, q) == (1, 1):  # a 1x1 one: the identity
            return acc
        if isinstance(a, OneMatrix) and p != 1 and q != 1:  # 1 1ᵀ: the sums spread over p rows
            if cols == 1:
                return _join(f"{x}.sum(dim=-1, keepdim=True) * torch.ones({self.size(p)}, dtype=dtype, "
                             "device=device)", acc, order=(acc, self.size_reads(p)))
            return _join(f"{x}.sum(dim=-2, keepdim=True) * torch.ones(({self.size(p)}, 1), dtype=dtype, "
                         "device=device)", acc, order=(acc, self.size_reads(p)))
        if isinstance(a, OneMatrix) and (p == 1 or cols == 1 or not acc.batched):
            if p == 1:  # 1ᵀ v: the sum of the entries
                if cols != 1 and q != 1 and (acc.batched or acc.timed) and not acc.summed:  # per example: (…, q, c)
                    return _join(f"{x}.sum(dim=-2)", acc)
                return _join(f"{x}.sum(dim=-1, keepdim=True)" if cols == 1 else f"{x}.sum(dim=0)", acc)
            if cols != 1:  # 1 vᵀ: a row spread over p rows
                return _join(f"{x}[..., None, :] * torch.ones(({self.size(p)}, 1), dtype=dtype, device=device)",
                             acc, order=(acc, self.size_reads(p)))
            return _join(f"{x} * torch.ones({self.size(p)}, dtype=dtype, device=device)", acc,
                         order=(acc, self.size_reads(p)))  # 1 s: a scalar spread over a vector
        left = self._print(a)
        if left.summed and (acc.batched or acc.timed):  # (δs_t 1 1ᵀ ⊙ I) M_tᵀ: each example's own products
            left = self.per_example(a)
        if acc.summed and left.batched:
            raise NotImplementedError(f"no PyTorch form for {a} times a sum of outer products")
        if p != 1 and q != 1 and (left.batched or (cols != 1 and q != 1 and acc.batched)):
            return self._matrix_product(a, left, acc, cols)
        if p != 1 and q != 1:  # a matrix
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
            if left.batched and acc.batched:  # vᵀ M per example
                return _join(f"torch.einsum('...i,...ij->...j', {left.text}, {acc.text})", left, acc)
            return _join(f"{group(left.text)} @ {x}", left, acc)
        if cols == 1 or p == 1:  # a column (or a scalar) times a per-example scalar (or row)
            return _join(f"{group(left.text)} * {x}", left, acc)
        if not left.batched and not acc.batched:
            return Code(f"torch.outer({left.text}, {acc.text})", reads=reads_of(left, acc))
        if self.outer_per_example:  # a (…, p, cols) matrix of each example
            return _join(f"{group(left.text)}[..., :, None] * {x}[..., None, :]", left, acc)
        # Σ over steps and examples
        return Code(f"_outer({left.text}, {acc.text})", summed=True, reads=reads_of(left, acc))

    def _matrix_product(self, a, left: Code, acc: Code, cols) -> Code:
        """A matrix times the value so far, where a per-example matrix (…, rows, cols) is involved."""
        if cols == 1:  # A x: a column per example
            if isinstance(a, Transpose):
                inner = self._print(a.arg)
                return _join(f"torch.einsum('...ji,...j->...i', {inner.text}, {acc.text})", inner, acc)
            return _join(f"torch.einsum('...ij,...j->...i', {left.text}, {acc.text})", left, acc)
        return _join(f"{group(left.text)} @ {group(acc.text)}", left, acc)

    # --- sizes as values, matrices (version 2) -------------------------------------------------

    def _size_value(self, c) -> str:
        """A number made of sizes (dims, T: Python ints) as code: ``(1 / n_h)``, ``(1 / n_k ** 0.5)``."""
        names = {x: sp.Symbol(self._size_name(x)) for x in c.free_symbols}
        return "(" + _SizePrinter().doprint(c.xreplace(names)) + ")"

    def _print_Transpose(self, e):
        code = self._print(e.arg)
        rows, cols = e.arg.shape
        if rows != 1 and cols != 1:
            if code.batched or code.timed:  # a per-example matrix (…, rows, cols)
                return _join(f"{group(code.text)}.transpose(-1, -2)", code)
            return _join(f"{group(code.text)}.T", code)
        return code  # a vector is held the same way as its transpose

    def _print_Softmax(self, e):
        code = self._print(e.arg)
        if self._is_matrix(e):  # per column: the rows' axis, second last
            return _join(f"_softmax({code.text}, dim=-2)", code)
        return _join(f"_softmax({code.text})", code)

    def _print_LogSoftmax(self, e):
        code = self._print(e.arg)
        if self._is_matrix(e):
            return _join(f"_log_softmax({code.text}, dim=-2)", code)
        return _join(f"_log_softmax({code.text})", code)

    def _print_Trace(self, e):
        code = self._print(e.arg)
        return self._scalar(f"torch.diagonal({code.text}, dim1=-2, dim2=-1).sum(dim=-1)", code)

    def _print_Det(self, e):
        code = self._print(e.arg)
        return self._scalar(f"torch.linalg.det({code.text})", code)

    def _print_LogDet(self, e):
        code = self._print(e.arg)
        return self._scalar(f"torch.linalg.slogdet({code.text})[1]", code)

    def _print_Norm2(self, e):
        code = self._print(e.arg)
        axes = "(-2, -1)" if self._is_matrix(e.arg) else "-1"
        return _join(f"torch.sqrt(({group(code.text)} ** 2).sum(dim={axes}))[..., None]", code)

    def _print_Inv(self, e):
        code = self._print(e.arg)
        return _join(f"torch.linalg.inv({code.text})", code)

    def _print_Diag(self, e):
        code = self._print(e.arg)
        n = self.size(e.shape[0])
        return _join(f"{group(code.text)}[..., None] * torch.eye({n}, dtype=dtype, device=device)", code,
                     order=(code, self.size_reads(e.shape[0])))

    def _print_Identity(self, e):
        return Code(f"torch.eye({self.size(e.shape[0])}, dtype=dtype, device=device)",
                    reads=self.size_reads(e.shape[0]))

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
            rows = self._source(e.arg, _is_row_softmax)
            if rows is not None:  # P = softmax(Sᵀ)ᵀ: log P = log_softmax(Sᵀ)ᵀ
                return self._print(Transpose(LogSoftmax(rows.arg)))
            z = self._source(e.arg, lambda x: type(x) is Softmax)
            if z is not None:  # log softmax(z)
                code = self._print(z)
                dim = ", dim=-2" if self._is_matrix(z) else ""  # of a matrix: per column
                return _join(f"_log_softmax({code.text}{dim})", code)
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
