"""The NumPy printer and the plan of the generated module.

Inside the generated code every vector carries a trailing batch axis: a per-step vector of
size n is ``(n, B)``, a per-example scalar ``(1, B)``; parameters have no batch axis (a
vector parameter is ``(n, 1)``).  Sequence quantities are arrays over steps, padded in front
by their lag so that ``h[t-1]`` at loop index ``i`` is ``h[i + P - 1]``.  The printer tracks
which values carry the batch axis to turn a vector product into the right operation: a
per-example inner product, a broadcast, or an outer product summed over the batch.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower, MatMul, MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.printing.printer import Printer

from .derive import Derivation
from .expr import Apply, At, AtStep, Delta, Softmax, TimeSum, coeff_and_rest, shift, transpose
from .ops import ELEMENTWISE

RESERVED = set(keyword.kwlist) | {
    # what the generated module itself defines or uses
    "np", "params", "data", "grads", "out", "i", "T", "B", "lr", "dims", "seed", "rng", "dtype", "loss", "values",
    "forward", "gradients", "sgd_step", "init_params", "loss_and_gradients",
    "v", "a", "k", "e", "s", "z", "x", "p", "width", "parts",
    # builtins it calls
    "range", "sum", "float", "dict", "len", "max", "min", "abs", "tuple", "int", "str", "zip", "list",
}


@dataclass
class Names:
    """Python identifiers for the model's names, avoiding what the module itself uses."""

    table: dict[str, str]

    @classmethod
    def for_model(cls, d: Derivation) -> Names:
        table = {}
        used = set(RESERVED)
        for name in list(d.model.quantities) + list(d.model.dims):
            py = name
            if py.startswith("_"):  # the module's own helpers start with "_"
                py = "v" + py
            while py in used:
                py = py + "_"
            used.add(py)
            table[name] = py
        return cls(table)

    def value(self, name: str) -> str:
        return self.table[name]

    def adjoint(self, name: str) -> str:
        return "d_" + self.table[name]

    def grad(self, name: str) -> str:
        return "g_" + self.table[name]


def group(code: str) -> str:
    """``code`` as one operand: parenthesised unless it already is one (a name, an index, a call, a group)."""
    depth = 0
    for ch in code:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch == " ":
            return f"({code})"
    return code


class NumpyPrinter(Printer):
    """Prints one expression as NumPy code at loop index ``i`` (0-based step t - 1)."""

    def __init__(self, d: Derivation, names: Names, pads: dict[str, int], batched: set[str]):
        super().__init__()
        self.d, self.model, self.names, self.pads, self.batched_names = d, d.model, names, pads, batched

    # --- what carries the batch axis ----------------------------------------------------

    def batched(self, e) -> bool:
        if isinstance(e, (At, AtStep)):
            return isinstance(e.base, Delta) or e.base.name in self.batched_names
        if isinstance(e, Delta):
            return e.name in self.batched_names
        if isinstance(e, MatrixSymbol):
            return e.name in self.batched_names
        if isinstance(e, (OneMatrix, ZeroMatrix)) or not getattr(e, "is_Matrix", False):
            return False
        if isinstance(e, TimeSum):
            return self.batched(e.arg)
        if isinstance(e, MatMul):
            return self._matmul(e)[1]
        return any(self.batched(a) for a in e.args if getattr(a, "is_Matrix", False))

    # --- leaves -------------------------------------------------------------------------

    def size(self, e) -> str:
        e = sp.sympify(e)
        if e.is_Integer:
            return str(e)
        return " + ".join(self._size_term(t) for t in sp.Add.make_args(e))

    def _size_term(self, t) -> str:
        c, rest = t.as_coeff_Mul()
        name = self.names.value(rest.name) if rest.is_Symbol else str(rest)
        return name if c == 1 else f"{c} * {name}"

    def _index(self, name: str, offset: int) -> str:
        pad = self.pads.get(name, 0) + offset
        return f"i + {pad}" if pad > 0 else f"i - {-pad}" if pad < 0 else "i"

    def _print_At(self, e: At):
        if isinstance(e.base, Delta):
            return f"{self.names.adjoint(e.base.name)}[{self._index('', e.offset)}]"
        return f"{self.names.value(e.base.name)}[{self._index(e.base.name, e.offset)}]"

    def _print_AtStep(self, e: AtStep):
        if isinstance(e.base, Delta):
            return f"{self.names.adjoint(e.base.name)}[{e.step - 1}]"
        return f"{self.names.value(e.base.name)}[{self.pads.get(e.base.name, 0) + e.step - 1}]"

    def _print_MatrixSymbol(self, e):
        return self.names.value(e.name)

    def _print_Delta(self, e):
        return self.names.adjoint(e.name)

    def _print_OneMatrix(self, e):
        return f"np.ones(({self.size(e.shape[0])}, {self.size(e.shape[1])}), dtype)"

    def _print_ZeroMatrix(self, e):
        return f"np.zeros(({self.size(e.shape[0])}, {self.size(e.shape[1])}), dtype)"

    # --- operations ---------------------------------------------------------------------

    def _print_MatAdd(self, e):
        out = ""
        for k, term in enumerate(e.args):
            if isinstance(coeff_and_rest(term)[1], OneMatrix) and len(e.args) > 1:
                term = coeff_and_rest(term)[0]  # 1 − o: NumPy broadcasts the number
            c, rest = coeff_and_rest(term)
            if c.is_Number and c < 0:
                body = self._scaled(-c, rest)
                out += ("-" if k == 0 else " - ") + body
            else:
                out += ("" if k == 0 else " + ") + self._scaled(c, term if c == 1 else rest)
        return out

    def _scaled(self, c, rest) -> str:
        if not getattr(rest, "is_Matrix", False):
            return self._number(rest)
        if c == 1:  # a term of a sum needs no parentheses
            return self._print(rest)
        return f"{self._number(c)} * {self._paren(rest)}"

    def _number(self, c) -> str:
        c = sp.Rational(c)
        return str(c.p) if c.q == 1 else f"({c.p} / {c.q})"

    def _paren(self, e) -> str:
        return group(self._print(e))

    def _matmul(self, e):
        """(code, batched) for a product, grouped from the right so vector products stay per example.

        Per example a batched value is a column (n, B), a scalar (1, B); a row vector is held
        as its transpose.  So, multiplying the value so far (``acc``) by a factor on its left:
        an unbatched factor is a plain ``@``; a batched row times a column is a per-example
        inner product; a batched column times a per-example scalar is a broadcast product; a
        batched column times a batched row is an outer product, summed over the batch (it
        only occurs in a parameter's gradient).
        """
        c, rest = coeff_and_rest(e)
        mats = list(rest.args) if isinstance(rest, MatMul) else [rest]
        last = mats[-1]
        code = self._paren(last) if len(mats) > 1 else self._print(last)
        batched, rows, cols = self.batched(last), last.shape[0], last.shape[1]
        for a in reversed(mats[:-1]):
            inner = group(code)  # the product so far, as one operand
            if isinstance(a, OneMatrix) and a.shape[0] == 1:
                code = f"{inner}.sum(axis=0, keepdims=True)"  # 1ᵀ v
            elif not self.batched(a):
                code = f"{self._paren(a)} @ {inner}"
            elif a.shape[0] == 1 and cols == 1:
                code = f"np.sum({self._paren(transpose(a))} * {inner}, axis=0, keepdims=True)"
            elif a.shape[1] == 1 and (rows, cols) == (1, 1):
                code = f"{self._paren(a)} * {inner}"
            elif a.shape[1] == 1 and rows == 1 and batched:
                code = f"{self._paren(a)} @ {inner}"
                batched, rows = False, a.shape[0]
                continue
            else:
                raise NotImplementedError(f"no batched NumPy form for the product {e}")
            batched = batched or self.batched(a)
            rows = a.shape[0]
        if c == -1:
            code = f"-{code}"
        elif c != 1:
            code = f"{self._number(c)} * {code}"
        return code, batched

    def _print_MatMul(self, e):
        return self._matmul(e)[0]

    def _print_Transpose(self, e):
        # A batched vector is transposed only as the right factor of an outer product.
        return self._paren(e.arg) + ".T"

    def _print_HadamardProduct(self, e):
        num = [self._paren(f) for f in e.args if not (isinstance(f, HadamardPower) and f.args[1] < 0)]
        den = [f.args[0] if f.args[1] == -1 else HadamardPower(f.args[0], -f.args[1])
               for f in e.args if isinstance(f, HadamardPower) and f.args[1] < 0]
        out = " * ".join(num) if num else "1"
        for f in den:
            out += f" / {self._paren(f)}"
        return out

    def _print_HadamardPower(self, e):
        base, k = e.args
        if k == -1:
            return f"1 / {self._paren(base)}"
        return f"{self._paren(base)} ** {int(k)}"

    def _print_Apply(self, e: Apply):
        if e.fname == "log":
            q = self._softmax_source(e.arg)
            if q is not None:  # log r̂ where r̂ = softmax(z): computed as log_softmax(z), stably
                return f"_log_softmax({self._print(q)})"
        return ELEMENTWISE[e.fname].numpy.format(x=self._print(e.arg))

    def _softmax_source(self, e):
        """z when ``e`` names a quantity defined as softmax(z), else None."""
        if isinstance(e, At) and not isinstance(e.base, Delta):
            q = self.model.quantities.get(e.base.name)
            if q is not None and type(q.expr) is Softmax:
                return shift(q.expr.arg, e.offset)
        if isinstance(e, MatrixSymbol):
            q = self.model.quantities.get(e.name)
            if q is not None and type(q.expr) is Softmax:
                return q.expr.arg
        return None

    def _print_Softmax(self, e):
        return f"_softmax({self._print(e.arg)})"

    def _print_LogSoftmax(self, e):
        return f"_log_softmax({self._print(e.arg)})"

    def _print_Concat(self, e):
        return "_concat(" + ", ".join(self._print(a) for a in e.args) + ")"

    def _print_RowSlice(self, e):
        return f"{self._paren(e.arg)}[{self.size(e.start)}:{self.size(e.stop)}]"

    def _print_TimeSum(self, e):
        return f"sum({self._print(e.arg)} for i in range(T))"

    def emptyPrinter(self, e):
        raise NotImplementedError(f"no NumPy form for {type(e).__name__}")
