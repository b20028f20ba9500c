"""The NumPy printer: one expression of the schedule as NumPy code.

Layout of values in the generated code (row convention, the batch in front):

- a per-example vector of size n is a row of a ``(B, n)`` array; a per-example scalar is
  ``(B, 1)``; a sequence stacks the steps in front, ``(T, B, n)``, padded in front by its
  lag so that ``h[t-1]`` is ``h[i + P - 1]``;
- a parameter keeps its shape; a vector parameter is 1-D ``(n,)``, a scalar ``(1,)``.

So ``W x`` is ``x @ W.T`` for one step and ``_matvec(W, x)`` for all steps at once (one
matrix product over all T·B rows).  The plan computes everything that does not feed the
recurrence for all steps at once, before or after the time loop; only the recurrence
itself loops over t.  Parameter gradients are one product over all steps and examples
(Σ_t δ_t h_tᵀ = Δᵀ H).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import sympy as sp
from sympy import HadamardPower, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix
from sympy.printing.printer import Printer

from ...ad.derive import Derivation
from ...ir.expr import (
    Apply,
    At,
    AtEnd,
    AtStep,
    Delta,
    LogSoftmax,
    Softmax,
    Window,
    coeff_and_rest,
    is_row_softmax,
    shift,
)
from ..loops import as_read, transposed
from ..names import ArrayNames
from ..passes import params_of
from ..schedule import Code, ValueTable, reads_of
from .spelling import call, group


def _join(text: str, *parts: Code, order=None) -> Code:
    """Code made of ``parts``; it reads what they read (``order``: the codes it names, in order, if not ``parts``)."""
    return Code(text, any(p.batched for p in parts), any(p.timed for p in parts), any(p.summed for p in parts),
                reads_of(*(parts if order is None else order)))


class NumpyPrinter(Printer):
    """Prints one expression as NumPy code.

    Mode ``static``: outside the time loop; ``step``: inside it, at loop index ``i``;
    ``time``: all steps at once, over the window of steps t with t + ``window`` <= T (a term
    that reads δ at t + k is computed for the first T - k steps only).
    """

    printmethod = "_numpy_print"

    def __init__(self, d: Derivation, names: ArrayNames, pads: dict[str, int], batched: set[str], values: ValueTable):
        super().__init__()
        self.d, self.model, self.names, self.pads, self.batched_names = d, d.model, names, pads, batched
        self.values = values  # the schedule's: read here, never written
        self.mode, self.window = "static", 0
        # True while printing the adjoint of a per-example matrix quantity: a column times a row of
        # per-example vectors is then each example's own outer product, not their sum (_outer).
        self.outer_per_example = False
        self.helpers: set[str] = set()  # runtime helpers of the module the printed code calls (_erf)
        self.tails: dict[str, int] = {}  # data padded after step T by this many zero steps (x[t+2])

    def _print(self, expr, **kwargs):
        found = self.values.find(expr, shift)
        if found is not None:  # computed once already: read its array
            value, k = found
            if value.per_step:
                return self.at(value.array, value.array, k, False)
            return Code(value.array, value.batched, value.timed, value.summed, (value.array,), "array")
        return super()._print(expr, **kwargs)

    def _array(self, name: str) -> str:
        """The array of a model value, or one of the code's own (a value in the table)."""
        return name if name in self.values.arrays else self.names.value(name)

    @contextlib.contextmanager
    def outer_products_per_example(self, on: bool = True) -> Iterator[None]:
        """While inside: an outer product of per-example vectors is (``on``) or is not each example's
        own (…, p, q); the setting before is restored after."""
        saved, self.outer_per_example = self.outer_per_example, on
        try:
            yield
        finally:
            self.outer_per_example = saved

    def per_example(self, e: sp.Basic) -> Code:
        """``e`` with every outer product of per-example vectors in it kept per example (…, p, q),
        where the value is multiplied by another that is each example's own."""
        with self.outer_products_per_example():
            return self._print(e)

    def code(self, e: sp.Basic, mode: str = "static", window: int = 0) -> Code:
        """``e`` as NumPy code in ``mode`` (see the class docstring)."""
        saved = self.mode, self.window
        self.mode, self.window = mode, window
        try:
            return self._print(e)
        finally:
            self.mode, self.window = saved

    # --- sizes and leaves ---------------------------------------------------------------

    def size(self, e: sp.Basic) -> str:
        """A size (a dim expression) as code."""
        e = sp.sympify(e, strict=True)
        if e.is_Integer:
            return str(e)
        return " + ".join(self._size_term(t) for t in sp.Add.make_args(e))

    def _size_term(self, t) -> str:
        c, rest = t.as_coeff_Mul()
        name = self.names.value(rest.name) if rest.is_Symbol else str(rest)
        return name if c == 1 else f"{c} * {name}"

    def size_reads(self, e: sp.Basic) -> tuple[str, ...]:
        """The names of the sizes ``size(e)`` prints, in order."""
        e = sp.sympify(e, strict=True)
        if e.is_Integer:
            return ()
        found = (t.as_coeff_Mul()[1] for t in sp.Add.make_args(e))
        return reads_of(*((self.names.value(x.name) for x in sorted(r.free_symbols, key=str)) for r in found))

    def core_reads(self, e: sp.Basic) -> tuple[str, ...]:
        """The names of the sizes ``core(e)`` prints, in order."""
        rows, cols = e.shape
        if rows != 1 and cols != 1:
            return reads_of(self.size_reads(rows), self.size_reads(cols))
        return self.size_reads(rows if cols == 1 else cols)

    def core(self, e: sp.Basic) -> str:
        """The per-example shape of ``e`` as a NumPy shape."""
        rows, cols = e.shape
        if rows != 1 and cols != 1:
            return f"({self.size(rows)}, {self.size(cols)})"
        return f"({self.size(rows if cols == 1 else cols)},)"

    def at(self, name: str, array: str, offset: int, is_delta: bool) -> Code:
        """The array of ``name`` at step t + ``offset``, in the current mode."""
        pad = 0 if is_delta else self.pads.get(name, 0)
        if self.mode == "step":
            k = pad + offset
            index = "i" if k == 0 else f"i + {k}" if k > 0 else f"i - {-k}"
            return Code(f"{array}[{index}]", batched=True, reads=(array,), form="view")
        if self.mode == "time":
            # Steps t = 1 .. T - window; the array is T + pad long, so the slice ends
            # (offset - window) from its end.
            start, end = pad + offset, offset - self.window - (0 if is_delta else self.tails.get(name, 0))
            text = f"{array}[{start or ''}:{end or ''}]"
            whole = text == f"{array}[:]"
            return Code(array if whole else text, batched=True, timed=True, reads=(array,),
                        form="array" if whole else "view")
        raise ValueError(f"{array} at a step outside the time loop")

    def _print_At(self, e: At):
        if isinstance(e.base, Delta):
            return self.at(e.base.name, self.names.adjoint(e.base.name), e.offset, True)
        return self.at(e.base.name, self._array(e.base.name), e.offset, False)

    def _print_AtEnd(self, e: AtEnd):
        # step T + k: counted from the end of the array, padded in front or not
        is_delta = isinstance(e.base, Delta)
        array = self.names.adjoint(e.base.name) if is_delta else self._array(e.base.name)
        tail = 0 if is_delta else self.tails.get(e.base.name, 0)
        return Code(f"{array}[{e.offset - 1 - tail}]", batched=True, reads=(array,), form="view")

    def _print_AtStep(self, e: AtStep):
        if isinstance(e.base, Delta):
            array = self.names.adjoint(e.base.name)
            return Code(f"{array}[{e.step - 1}]", batched=True, reads=(array,), form="view")
        name, array = e.base.name, self.names.value(e.base.name)
        return Code(f"{array}[{self.pads.get(name, 0) + e.step - 1}]", batched=True, reads=(array,), form="view")

    def _print_MatrixSymbol(self, e):
        value = self.values.arrays.get(e.name)
        if value is not None:
            return Code(value.array, batched=value.batched, reads=(value.array,), form="array")
        array = self.names.value(e.name)
        return Code(array, batched=e.name in self.batched_names, reads=(array,), form="array")

    def _print_Delta(self, e):
        array = self.names.adjoint(e.name)
        return Code(array, batched=e.name in self.batched_names, reads=(array,), form="array")

    def _print_OneMatrix(self, e):
        return Code(self._ones(self.core(e)), reads=self.core_reads(e))

    def _print_ZeroMatrix(self, e):
        return Code(self._zeros(self.core(e)), reads=self.core_reads(e))

    # --- operations ---------------------------------------------------------------------

    def _number(self, c) -> str:
        c = sp.sympify(c, strict=True)
        if c.free_symbols:  # a size used as a value: 1 / n_h, 1 / sqrt(n_k)
            return self._size_value(c)
        if not c.is_Rational:  # sigmoid(1), log(2): a constant the model computed, as a float
            return repr(float(c))
        return str(c.p) if c.q == 1 else f"({c.p} / {c.q})"

    def _size_value(self, c) -> str:
        """A number made of sizes (dims, T) as code: ``(1 / n_h)``, ``(1 / np.sqrt(n_k))``."""
        from sympy.printing.pycode import pycode

        names = {x: sp.Symbol(self._size_name(x)) for x in c.free_symbols}
        text = pycode(c.xreplace(names), fully_qualified_modules=True).replace("math.", "np.")
        return self._weak(text)

    def _weak(self, text: str) -> str:
        """A number of sizes as a scalar that keeps the arrays' dtype: a NumPy function of a size is a
        float64 scalar, which would make a float32 result float64; a Python float (NumPy's "weak"
        scalar) does not."""
        return f"float({text})" if "np." in text else f"({text})"

    def _size_name(self, x) -> str:
        """A dim's identifier; the sequence length is the module's T."""
        return "T" if x == self.model.length else self.names.value(x.name)

    def _number_reads(self, c) -> tuple[str, ...]:
        c = sp.sympify(c, strict=True)
        return tuple(self.names.value(x.name) for x in sorted(c.free_symbols, key=str) if x != self.model.length)

    def _coeff(self, c) -> Code:
        """A coefficient as code, reading the sizes it is made of."""
        return Code(self._number(c), reads=self._number_reads(c))

    # --- per-example matrices (version 2): a value (…, rows, cols) ---------------------------

    @staticmethod
    def _is_matrix(e) -> bool:
        return e.shape[0] != 1 and e.shape[1] != 1

    def _print_MatAdd(self, e):
        codes = [self._print(coeff_and_rest(t)[1]) for t in e.args]
        if any(c.summed for c in codes) and any(c.batched and not c.summed for c in codes):
            return self._summed_sum(e, codes)
        text, parts = "", []
        for k, term in enumerate(e.args):
            c, rest = coeff_and_rest(term)
            negative = c.is_Number and c < 0
            if negative:
                c = -c
            if isinstance(rest, OneMatrix) and rest.shape[0] * rest.shape[1] != 1 or rest == OneMatrix(1, 1):
                body = self._number(c)  # 1 − o: NumPy broadcasts the number
            else:
                code = self._print(rest)
                parts.append(code)
                if c != 1 and sp.sympify(c, strict=True).free_symbols:
                    parts.append(self._coeff(c))
                body = code.text if c == 1 else f"{self._number(c)} * {group(code.text)}"
                if negative:
                    body = group(body)
            text += ("-" if negative else "") if k == 0 else (" - " if negative else " + ")
            text += body
        return _join(text, *parts)

    def _print_MatMul(self, e):
        """Fold the product from the right, so a vector product stays per example."""
        c, rest = coeff_and_rest(e)
        mats = list(rest.args) if isinstance(rest, MatMul) else [rest]
        acc_expr = mats[-1]
        acc = self._print(acc_expr)
        cols = acc_expr.shape[1]  # a product from the left keeps the columns
        for a in reversed(mats[:-1]):
            acc = self._product(a, acc, cols)
        if c == -1:
            return _join("-" + group(acc.text), acc)
        if c != 1:
            return _join(f"{self._number(c)} * {group(acc.text)}", acc, self._coeff(c))
        return acc

    def _product(self, a, acc: Code, cols) -> Code:
        """``a`` times the value so far (which has ``cols`` columns per example).

        The rules are the back ends' one set: a subclass changes how an operation is spelled
        (``_sum``, ``_ones``, ``_einsum``, ``_outer_of``, ``_rows_transpose``, ``_rows_product``),
        never which operation a product is."""
        p, q = a.shape
        x = group(acc.text)
        if isinstance(a, OneMatrix) and (p, q) == (1, 1):  # a 1x1 one: the identity
            return acc
        if isinstance(a, OneMatrix) and p != 1 and q != 1:  # 1 1ᵀ: the sums spread over p rows
            if cols == 1:
                return _join(f"{self._sum(acc.text, '-1', keepdims=True)} * {self._ones(self.size(p))}", acc,
                             order=(acc, self.size_reads(p)))
            return _join(f"{self._sum(acc.text, '-2', keepdims=True)} * {self._ones(f'({self.size(p)}, 1)')}", acc,
                         order=(acc, self.size_reads(p)))
        if isinstance(a, OneMatrix) and (p == 1 or cols == 1 or not acc.batched):
            if p == 1:  # 1ᵀ v: the sum of the entries
                if cols != 1 and q != 1 and (acc.batched or acc.timed) and not acc.summed:  # per example: (…, q, c)
                    return _join(self._sum(acc.text, "-2"), acc)
                if cols == 1:
                    return _join(self._sum(acc.text, "-1", keepdims=True), acc)
                return _join(self._sum(acc.text, "0"), acc)
            if cols != 1:  # 1 vᵀ: a row spread over p rows
                return _join(f"{x}[..., None, :] * {self._ones(f'({self.size(p)}, 1)')}", acc,
                             order=(acc, self.size_reads(p)))
            return _join(f"{x} * {self._ones(self.size(p))}", acc,  # 1 s: a scalar spread over a vector
                         order=(acc, self.size_reads(p)))
        # (1 x_bᵀ for every example b is an outer product summed over them, below.)
        left = self._print(a)
        if left.summed and (acc.batched or acc.timed):  # (δs_t 1 1ᵀ ⊙ I) M_tᵀ: each example's own products
            left = self.per_example(a)
        if acc.summed and left.batched:
            raise NotImplementedError(f"no {self.library} form for {a} times a sum of outer products")
        if p != 1 and q != 1 and (left.batched or (cols != 1 and q != 1 and acc.batched)):
            return self._matrix_product(a, left, acc, cols)
        if p != 1 and q != 1:  # a matrix
            if cols == 1 and acc.batched:
                if self.mode == "time":
                    # one product over all steps: a new array of every step
                    return replace(_join(f"_matvec({left.text}, {acc.text})", acc, order=(left, acc)), form="product")
                # x W^T per row; for a transposed matrix that is x W.
                right = self._rows_plain(self._print(a.arg)) if isinstance(a, Transpose) else self._rows_transpose(left)
                return self._rows_product(_join(f"{x} @ {right}", acc, order=(acc, left)), acc.text, right)
            return _join(f"{group(left.text)} @ {x}", left, acc)
        if p == 1 and q != 1:  # a row vector
            if cols == 1:
                return _join(self._sum(f"{group(left.text)} * {x}", "-1", keepdims=True), left, acc)
            if left.batched and acc.batched:  # vᵀ M per example
                return _join(self._einsum("...i,...ij->...j", left.text, acc.text), left, acc)
            return _join(f"{group(left.text)} @ {x}", left, acc)
        if cols == 1 or p == 1:  # a column (or a scalar) times a per-example scalar (or row)
            return _join(f"{group(left.text)} * {x}", left, acc)
        if not left.batched and not acc.batched:
            return Code(self._outer_of(left.text, acc.text), reads=reads_of(left, acc))
        if self.outer_per_example:  # a (…, p, cols) matrix of each example
            return _join(f"{group(left.text)}[..., :, None] * {x}[..., None, :]", left, acc)
        # Σ over steps and examples
        return Code(f"_outer({left.text}, {acc.text})", summed=True, reads=reads_of(left, acc))

    def _matrix_product(self, a, left: Code, acc: Code, cols) -> Code:
        """A matrix times the value so far, where a per-example matrix (…, rows, cols) is involved."""
        if cols == 1:  # A x: a column per example
            if isinstance(a, Transpose):
                inner = self._print(a.arg)
                return _join(self._einsum("...ji,...j->...i", inner.text, acc.text), inner, acc)
            return _join(self._einsum("...ij,...j->...i", left.text, acc.text), left, acc)
        return _join(f"{group(left.text)} @ {group(acc.text)}", left, acc)

    # --- spelling hooks: how the array library writes an operation the rules chose ---------------
    # (the PyTorch printer overrides these and nothing of the rules; the JAX printer respells np.)

    library = "NumPy"  # in the message of an expression without a form
    lib = "np"  # the array library's module: its functions of NumPy's names (sqrt, linalg.det, linalg.inv)

    def _sum(self, text: str, axis: str, keepdims: bool = False) -> str:
        """The sum of the array ``text`` along ``axis``."""
        return f"np.sum({text}, axis={axis}{', keepdims=True' if keepdims else ''})"

    def _ones(self, shape: str) -> str:
        """A new array of ones of the printed ``shape``, in the module's dtype."""
        return f"np.ones({shape}, dtype)"

    def _zeros(self, shape: str) -> str:
        """A new array of zeros of the printed ``shape``, in the module's dtype."""
        return f"np.zeros({shape}, dtype)"

    def _eye(self, n: str) -> str:
        """The identity of the printed size ``n``, in the module's dtype."""
        return f"np.eye({n}, dtype=dtype)"

    def _einsum(self, spec: str, *operands: str) -> str:
        """An Einstein sum of the operands (``spec`` as NumPy's subscripts)."""
        return f"np.einsum('{spec}', {', '.join(operands)})"

    def _outer_of(self, a: str, b: str) -> str:
        """The outer product a bᵀ of two vectors (parameters: one each, no examples)."""
        return f"np.outer({a}, {b})"

    def _swap_last(self, text: str) -> str:
        """A per-example matrix (…, rows, cols) transposed: its last two axes swapped."""
        return f"np.swapaxes({text}, -1, -2)"

    # Whether a step's product x Wᵀ reads Wᵀ made once before the loop (``loops.transposed``: the
    # emitter must make it), whether x W reads W so made (``loops.as_read``: laid out for BLAS, NumPy's
    # ``_step_operand``), and whether it is spelled ``np.dot`` (see ``_rows_product``).
    step_transposes = True
    step_layouts = True
    step_dot = True

    def _rows_transpose(self, matrix: Code) -> str:
        """Wᵀ, the right operand of the per-row product x Wᵀ (W a matrix of no example); at a step of
        the loop, ``_T_W``, made once before the loop (``codegen.loops``), not a view a step."""
        if self.step_transposes and self.mode == "step" and matrix.form == "array":
            return transposed(matrix.text)
        return f"{group(matrix.text)}.T"

    def _rows_plain(self, matrix: Code) -> str:
        """W, the right operand of the per-row product x W (Wᵀ a matrix of no example); at a step of the
        loop, ``_M_W``, made once before the loop in the layout BLAS multiplies fastest (``codegen.loops``)."""
        if self.step_layouts and self.mode == "step" and matrix.form == "array":
            return as_read(matrix.text)
        return group(matrix.text)

    def _rows_product(self, code: Code, rows: str, right: str) -> Code:
        """The per-row product ``rows @ right`` (``code``), as the printer returns it; a subclass may
        mark a step's product so that its idioms can write it into a slot in one operation.  At a step,
        ``np.dot``: the same BLAS product of two matrices (B rows by a weight matrix) as ``@``, with a
        third less dispatch (``@`` goes through the matmul ufunc's machinery)."""
        if self.step_dot and self.mode == "step":
            return replace(code, text=f"{self.lib}.dot({rows}, {right})")
        return code

    def _axis(self, axis: str) -> str:
        """The keyword argument naming an axis: ``axis=-2``."""
        return f"axis={axis}"

    def _call(self, fname: str, x: str, params: tuple) -> str:
        """f(x) for an elementwise function (``spelling.NUMPY``, else from its meaning)."""
        text, helpers = call(fname, x, params)
        self.helpers |= helpers
        return text

    def _log_sigmoid(self, z: str, negated: bool = False) -> str:
        """log σ(z) (``negated``: log σ(−z) = log(1 − σ(z))) from the logit's code ``z``, stably."""
        return f"-np.logaddexp(0, {z})" if negated else f"-np.logaddexp(0, -{group(z)})"

    def _summed_sum(self, e, codes) -> Code:
        """A sum of which a term is summed over the examples already (Σ x xᵀ, an outer product in
        a gradient) and another is per example: the latter summed too, so none counts B times."""
        matrix = e.shape[0] != 1 and e.shape[1] != 1  # a per-example term is (…, rows, cols)
        terms = []
        for term, code in zip(e.args, codes):
            c, _ = coeff_and_rest(term)
            body = code.text if c == 1 else f"{self._number(c)} * {group(code.text)}"
            if (code.batched or code.timed) and not code.summed:
                body = f"_sum_examples_matrix({body})" if matrix else f"_sum_examples({body})"
            terms.append(Code(body, summed=True, reads=code.reads))
        return Code(" + ".join(group(t.text) if " " in t.text else t.text for t in terms), summed=True,
                    reads=reads_of(*terms))

    def _print_HadamardProduct(self, e):
        num = [f for f in e.args if not (isinstance(f, HadamardPower) and f.args[1] < 0)]
        den = [f.args[0] if f.args[1] == -1 else HadamardPower(f.args[0], -f.args[1])
               for f in e.args if isinstance(f, HadamardPower) and f.args[1] < 0]
        codes = [self._print(f) for f in num]
        if any(c.summed for c in codes) and any(c.batched and not c.summed for c in codes):
            raise NotImplementedError(f"no {self.library} form for {e}: a sum over the examples times a value per "
                                      "example")
        text = " * ".join(group(c.text) for c in codes) if codes else "1"
        dens = [self._print(f) for f in den]
        for c in dens:
            text += f" / {group(c.text)}"
        return _join(text, *codes, *dens)

    def _print_HadamardPower(self, e):
        base, k = e.args
        code = self._print(base)
        if k == -1:
            return _join(f"1 / {group(code.text)}", code)
        return _join(f"{group(code.text)} ** {int(k) if k.is_Integer else self._number(k)}", code)

    def _print_Transpose(self, e):
        code = self._print(e.arg)
        rows, cols = e.arg.shape
        if rows != 1 and cols != 1:
            if code.batched or code.timed:  # a per-example matrix (…, rows, cols)
                return _join(self._swap_last(code.text), code)
            return _join(f"{group(code.text)}.T", code)
        return code  # a vector is held the same way as its transpose

    def _print_Apply(self, e):
        if e.fname == "log":  # the log of a probability, computed from its logit, stably
            rows = self._source(e.arg, is_row_softmax)
            if rows is not None:  # P = softmax(Sᵀ)ᵀ, the softmax of every row: log P = log_softmax(Sᵀ)ᵀ
                return self._print(Transpose(LogSoftmax(rows.arg)))
            z = self._source(e.arg, lambda x: type(x) is Softmax)
            if z is not None:  # log softmax(z)
                code = self._print(z)
                axis = f", {self._axis('-2')}" if self._is_matrix(z) else ""  # of a matrix: per column
                return _join(f"_log_softmax({code.text}{axis})", code)
            z = self._source(e.arg, _is_sigmoid)
            if z is not None:  # log σ(z) = −softplus(−z)
                code = self._print(z)
                return _join(self._log_sigmoid(code.text), code)
            rest = _one_minus(e.arg)
            z = self._source(rest, _is_sigmoid) if rest is not None else None
            if z is not None:  # log(1 − σ(z)) = log σ(−z) = −softplus(z)
                code = self._print(z)
                return _join(self._log_sigmoid(code.text, negated=True), code)
        code = self._print(e.arg)
        return _join(self._call(e.fname, code.text, params_of(e)), code)

    def _source(self, e, defined_as):
        """z when ``e`` names a quantity defined as f(z) with ``defined_as(f(z))``, else None."""
        if isinstance(e, At) and not isinstance(e.base, Delta):
            q = self.model.quantities.get(e.base.name)
            if q is not None and q.expr is not None and defined_as(q.expr):
                return shift(q.expr.args[-1], e.offset)
        if isinstance(e, MatrixSymbol):
            q = self.model.quantities.get(e.name)
            if q is not None and q.expr is not None and defined_as(q.expr):
                return q.expr.args[-1]
        return None

    def _print_Softmax(self, e):
        code = self._print(e.arg)
        if self._is_matrix(e):  # per column: the rows' axis, second last
            return _join(f"_softmax({code.text}, {self._axis('-2')})", code)
        return _join(f"_softmax({code.text})", code)

    def _print_LogSoftmax(self, e):
        code = self._print(e.arg)
        if self._is_matrix(e):
            return _join(f"_log_softmax({code.text}, {self._axis('-2')})", code)
        return _join(f"_log_softmax({code.text})", code)

    def _scalar(self, text: str, code: Code) -> Code:
        return _join(f"{text}[..., None]", code)

    def _print_Trace(self, e):
        code = self._print(e.arg)
        return self._scalar(f"np.trace({code.text}, axis1=-2, axis2=-1)", code)

    def _print_Det(self, e):
        code = self._print(e.arg)
        return self._scalar(f"{self.lib}.linalg.det({code.text})", code)

    def _print_LogDet(self, e):
        code = self._print(e.arg)
        return self._scalar(f"{self.lib}.linalg.slogdet({code.text})[1]", code)

    def _print_Norm2(self, e):
        code = self._print(e.arg)
        axes = "(-2, -1)" if self._is_matrix(e.arg) else "-1"
        return _join(f"{self.lib}.sqrt({self._sum(f'{group(code.text)} ** 2', axes)})[..., None]", code)

    def _print_Inv(self, e):
        code = self._print(e.arg)
        return _join(f"{self.lib}.linalg.inv({code.text})", code)

    def _print_Diag(self, e):
        code = self._print(e.arg)
        n = self.size(e.shape[0])
        return _join(f"{group(code.text)}[..., None] * {self._eye(n)}", code,
                     order=(code, self.size_reads(e.shape[0])))

    def _print_Identity(self, e):
        return Code(self._eye(self.size(e.shape[0])), reads=self.size_reads(e.shape[0]))

    def _print_Concat(self, e):
        codes = [self._print(a) for a in e.args]
        return _join("_concat(" + ", ".join(c.text for c in codes) + ")", *codes)

    def _print_ColSlice(self, e):
        code = self._print(e.arg)
        return self._slice(code, f"{group(code.text)}[:, {self._range(e)}]", e)

    def _print_RowSlice(self, e):
        code = self._print(e.arg)
        return self._slice(code, f"{group(code.text)}[..., {self._range(e)}]", e)

    def _slice(self, code: Code, text: str, e) -> Code:
        sliced = _join(text, code, order=(code, self._range_reads(e)))
        return replace(sliced, form="view") if code.form == "array" else sliced  # a view of an array

    def _range_reads(self, e) -> tuple[str, ...]:
        return reads_of(() if e.start == 0 else self.size_reads(e.start), self.size_reads(e.stop))

    def _range(self, e) -> str:
        return ("" if e.start == 0 else self.size(e.start)) + ":" + self.size(e.stop)

    def _print_TimeSum(self, e):
        inner = self.code(e.arg, "time", 0)
        if inner.summed:
            return inner
        if inner.timed:
            return Code(self._sum(inner.text, "0"), batched=inner.batched, reads=inner.reads)
        return _join(f"T * {group(inner.text)}", inner)

    def _print_Window(self, e: Window):
        """[a ≤ s ≤ T − k], one per example (shape (1,)): a step's truth value inside the loop
        (index i is step i + 1), one per step over the mode's window of steps, or a fact about T."""
        ones = self._print(OneMatrix(1, 1))
        if e.where == "t" and self.mode in ("step", "time"):
            low, high = e.bounds()  # the lowest step, and k of the highest step T − k, or None: every step
            index = "i" if self.mode == "step" else f"{self._arange(f'T - {self.window}' if self.window else 'T')}"
            conditions = ([f"({index} >= {low - 1})"] if low is not None else []) + \
                ([f"({index} < T - {high})"] if high is not None else [])
            if not conditions:
                return ones
            holds = conditions[0] if len(conditions) == 1 else "(" + " & ".join(conditions) + ")"
            if self.mode == "time":  # (steps, 1, 1): a scalar per step, as a sequence's (T, B, 1)
                holds = f"{holds}[:, None, None]"
            return Code(f"{holds} * {ones.text}", timed=self.mode == "time", reads=ones.reads)
        if e.where == "t":
            raise ValueError(f"{e} at a step outside the time loop")
        if e.where == "step":  # step j: first <= j is known; j <= T - k once T >= j + k
            if e.first > e.at:
                return self._print(ZeroMatrix(1, 1))
            need = e.at + e.last
        else:  # step T + j: j <= -k is known; first <= T + j once T >= first - j
            if e.at > -e.last:
                return self._print(ZeroMatrix(1, 1))
            need = e.first - e.at
        return ones if need <= 1 else Code(f"(T >= {need}) * {ones.text}", reads=ones.reads)

    def _arange(self, n: str) -> str:
        """The steps' indices 0 .. n − 1 as an array."""
        return f"np.arange({n})"

    def emptyPrinter(self, e: object) -> str:
        raise NotImplementedError(f"no {self.library} form for {type(e).__name__}")


def _is_sigmoid(e) -> bool:
    return isinstance(e, Apply) and e.fname == "sigmoid"


def _one_minus(e):
    """x when ``e`` is 1 − x (a vector of ones minus x), else None."""
    if isinstance(e, MatAdd) and len(e.args) == 2:
        for a, b in (e.args, e.args[::-1]):
            c, rest = coeff_and_rest(b)
            if isinstance(a, OneMatrix) and c == -1:
                return rest
    return None
