"""Printers for derived expressions: LaTeX (write-ups, Markdown) and Unicode (terminal).

One ``_print_<Node>`` method per node type, dispatched by SymPy's ``Printer``.  The two
printers share the structure (what gets parenthesised, the order of Hadamard factors,
x ⊙ y^{∘-1} read as a division) and differ only in their spelling.
"""

from __future__ import annotations

import re
from decimal import Decimal
from string import Template

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose
from sympy.printing.printer import Printer

from ..ir.expr import (
    Apply,
    At,
    AtEnd,
    AtStep,
    Concat,
    Delta,
    LogSoftmax,
    RowSlice,
    Softmax,
    TimeSum,
    Window,
    coeff_and_rest,
    positive_first,
)
from ..ir.model import Model
from ..ops import ELEMENTWISE, NODES


def step_text(offset: int, index: str = "t", minus: str = "-") -> str:
    if offset == 0:
        return index
    return f"{index}{minus}{-offset}" if offset < 0 else f"{index}+{offset}"


class _MathPrinter(Printer):
    """The shared structure; subclasses supply the spelling."""

    printmethod = "_symderiv_print"

    def __init__(self, model: Model):
        super().__init__()
        self.model = model
        self.index = model.time_index or "t"

    # --- spelling hooks -----------------------------------------------------------------
    odot = oslash = plus = minus = ""
    ones = zero = ""

    def name(self, name: str, step: str | None) -> str:
        raise NotImplementedError

    def delta(self, body: str) -> str:
        raise NotImplementedError

    def paren(self, s: str) -> str:
        raise NotImplementedError

    def transpose(self, s: str) -> str:
        raise NotImplementedError

    def fraction(self, p: int, q: int) -> str:
        raise NotImplementedError

    def function(self, fname: str, arg: str, power: int = 1, params: tuple = ()) -> str:
        """f(arg), spelled as the function's record says (its head, or its whole form)."""
        record = ELEMENTWISE.get(fname)
        form = getattr(record, self.form_field, None) if record else None
        if record is not None and form is not None:
            values = dict(zip(record.params, (self.constant(p) for p in params)))
            whole = Template(form).substitute(values, x=arg)
            return self.raised(self.paren(whole), power) if power != 1 else whole
        head = getattr(record, self.form_field.removesuffix("_form")) if record else self.upright(fname)
        return self.applied(head, arg, power)

    form_field = ""  # the record's field with the whole spelling: latex_form, unicode_form

    def upright(self, fname: str) -> str:
        raise NotImplementedError

    def applied(self, head: str, arg: str, power: int) -> str:
        raise NotImplementedError

    def raised(self, base: str, power: int) -> str:
        raise NotImplementedError

    def constant(self, c) -> str:
        """A parameter of a function as a reader writes it: 0.1, not 1/10."""
        c = sp.Rational(c)
        q = int(c.q)
        while q % 2 == 0:
            q //= 2
        while q % 5 == 0:
            q //= 5
        if q == 1:  # a terminating decimal
            return str(Decimal(int(c.p)) / Decimal(int(c.q)))
        return self.fraction(int(c.p), int(c.q))

    def timesum(self, body: str, first: int = 1, last: int = 0) -> str:
        """Σ over steps ``first`` .. T − ``last`` (the whole sequence by default)."""
        raise NotImplementedError

    def window(self, conditions: list[str]) -> str:
        """The indicator of ``conditions`` on the step (an Iverson bracket: [t ≤ T − 1])."""
        raise NotImplementedError

    def _length(self) -> str:
        return self.model.length.name if self.model.length is not None else "T"

    def _print_Window(self, e: Window):
        T, le, minus = self._length(), self.le, self.minus.strip() or "-"

        def end(k: int) -> str:
            return T if k == 0 else f"{T}{self.minus}{k}" if k > 0 else f"{T}{self.plus}{-k}"

        if e.where == "t":
            low, high = e.bounds()
            mid = self.index
            text = (f"{low}{le}" if low is not None else "") + mid + (f"{le}{end(high)}" if high is not None else "")
            return self.window([text]) if text != mid else self.ones
        del minus
        if e.where == "step":  # a fixed step j: first <= j is known, j <= T - k holds once T >= j + k
            if e.first > e.at:
                return self.zero
            need = e.at + e.last
        else:  # step T + j: j <= -k is known, first <= T + j holds once T >= first - j
            if e.at > -e.last:
                return self.zero
            need = e.first - e.at
        return self.ones if need <= 1 else self.window([f"{T}{self.ge}{need}"])

    def slice(self, body: str, start: str, stop: str) -> str:
        raise NotImplementedError

    def stack(self, parts: list[str]) -> str:
        raise NotImplementedError

    def dim(self, e) -> str:
        return str(e)

    # --- leaves -------------------------------------------------------------------------

    def _print_MatrixSymbol(self, e):
        return self.name(e.name, None)

    def _print_At(self, e: At):
        step = step_text(e.offset, self.index, self.minus.strip() or "-")
        if isinstance(e.base, Delta):
            return self.delta(self.name(e.base.name, step))
        return self.name(e.base.name, step)

    def _print_AtEnd(self, e: AtEnd):
        length = self.model.length.name if self.model.length is not None else "T"
        step = step_text(e.offset, length, self.minus.strip() or "-")
        if isinstance(e.base, Delta):
            return self.delta(self.name(e.base.name, step))
        return self.name(e.base.name, step)

    def _print_AtStep(self, e: AtStep):
        if isinstance(e.base, Delta):
            return self.delta(self.name(e.base.name, str(e.step)))
        return self.name(e.base.name, str(e.step))

    def _print_Delta(self, e: Delta):
        return self.delta(self.name(e.name, None))

    def _print_OneMatrix(self, e: OneMatrix):
        if e.shape == (1, 1):
            return "1"
        if e.shape[0] == 1:
            return self.transpose(self.ones)
        return self.ones

    def _print_ZeroMatrix(self, e):
        return self.zero

    def _print_Identity(self, e):
        return "I"

    # --- operations ---------------------------------------------------------------------

    def _print_MatAdd(self, e: MatAdd):
        out = ""
        for i, term in enumerate(positive_first(e).args):
            c, rest = coeff_and_rest(term)
            negative = c.is_Number and c < 0
            body = self._product(-c if negative else c, rest, MatAdd)
            if i == 0:
                out = (self.minus.strip() + body) if negative else body
            else:
                out += (self.minus if negative else self.plus) + body
        return out

    def _product(self, c, rest, within=MatMul) -> str:
        body = self._factor(rest, within) if c != 1 or within is MatMul else self._print(rest)
        if c == 1:
            return body
        if c == -1:
            return self.minus.strip() + body
        if c.is_Rational and c < 0:  # −½ (…), not a fraction of −1
            return self.minus.strip() + self._product(-c, rest, within)
        num = self.fraction(int(sp.Rational(c).p), int(sp.Rational(c).q)) if c.is_Rational else self.coefficient(c)
        if isinstance(rest, OneMatrix) and rest.shape == (1, 1):  # a number in a sum of scalars: s + 1/100000
            return num
        return num + " " + body

    def coefficient(self, c) -> str:
        """A number made of sizes (1/n_h, 1/√n_k) or a constant the model computed."""
        return str(c)

    def divide(self, num: str, den: str) -> str:
        raise NotImplementedError

    def _print_MatMul(self, e: MatMul):
        windows = [a for a in e.args if isinstance(a, Window)]
        if windows and len(windows) < len(e.args):  # [t ≤ T − 1] (p_t − x_{t+1}): the indicator in front
            others = [a for a in e.args if not isinstance(a, Window)]
            rest = others[0] if len(others) == 1 else MatMul(*others)
            return " ".join(self._print(w) for w in windows) + " " + self._factor(rest, MatMul)
        c, rest = coeff_and_rest(e)
        if c == -1:
            return self.minus.strip() + self._factor(rest, MatAdd)
        if c != 1:
            return self._product(c, rest)
        return " ".join(self._factor(a, MatMul) for a in e.args)

    def _factor(self, e, within) -> str:
        """Print ``e`` as a factor of a product, in parentheses when it is a sum."""
        if within is MatMul and isinstance(e, OneMatrix) and e.shape[0] != 1 and e.shape[1] != 1:
            return self.ones + " " + self.transpose(self.ones)  # a matrix of ones in a product: 𝟏 𝟏ᵀ Yᵀ, not 𝟏 Yᵀ
        s = self._print(e)
        if isinstance(e, MatAdd) or (isinstance(e, MatMul) and coeff_and_rest(e)[0] != 1):
            return self.paren(s)
        if within is MatMul and isinstance(e, (HadamardProduct, HadamardPower)):
            return self.paren(s)  # U (r ⊙ h): a matrix product binds tighter than ⊙
        return s

    def _print_HadamardProduct(self, e: HadamardProduct):
        scalars = [f for f in e.args if _broadcast_scalar(f) is not None]
        if scalars and len(scalars) < len(e.args):  # λ w, not w ⊙ 1 λ: a scalar spread over the rest scales it
            rest = [f for f in e.args if f not in scalars]
            body = rest[0] if len(rest) == 1 else HadamardProduct(*rest)
            values = [_broadcast_scalar(f) for f in scalars]
            over = [v.args[0] if v.args[1] == -1 else HadamardPower(v.args[0], -v.args[1]) for v in values
                    if isinstance(v, HadamardPower) and v.args[1] < 0]
            times = [v for v in values if not (isinstance(v, HadamardPower) and v.args[1] < 0)]
            num = " ".join([self._factor(v, MatMul) for v in times] + [self._factor(body, MatMul)])
            if not over:
                return num
            if not times:  # (g ⊙ e) / √(s + ε): the division groups it
                num = self._print(body)
            den = over[0] if len(over) == 1 else HadamardProduct(*over)
            return self.divide(num, self._print(den))
        if e.shape == (1, 1) and all(not (isinstance(f, HadamardPower) and f.args[1] < 0) for f in e.args):
            return " ".join(self._factor(f, MatMul) for f in e.args)  # scalars: λ 1ᵀ w, not λ ⊙ 1ᵀ w
        numer, denom = [], []
        for f in _reading_order(e.args):
            if isinstance(f, HadamardPower) and f.args[1] < 0:
                denom.append(f.args[0] if f.args[1] == -1 else HadamardPower(f.args[0], -f.args[1]))
            else:
                numer.append(f)
        parts = self._collapse_powers(numer)
        out = self.odot.join(parts) if parts else self.ones
        for d in denom:
            out += self.oslash + self._divisor(d)
        return out

    def _divisor(self, d) -> str:
        """What follows ⊘, in parentheses when it is itself a product: a ⊘ (b ⊙ b), since
        a ⊘ b ⊙ b reads (a ⊘ b) ⊙ b.  A power written as one (tanh²(c), b^∘4) binds tighter."""
        s = self._factor(d, HadamardProduct)
        compound = isinstance(d, HadamardProduct) or (isinstance(d, HadamardPower) and d.args[1].is_Integer
                                                      and 1 < d.args[1] <= 3 and not isinstance(d.args[0], Apply))
        return self.paren(s) if compound and self.odot.strip() in s else s

    def _collapse_powers(self, factors) -> list[str]:
        """tanh(c) ⊙ tanh(c) reads tanh²(c); a symbol repeated stays h ⊙ h."""
        out, i = [], 0
        while i < len(factors):
            f = factors[i]
            j = i
            while j + 1 < len(factors) and factors[j + 1] == f:
                j += 1
            if j > i and isinstance(f, Apply):
                out.append(self.function(f.fname, self._print(f.arg), power=j - i + 1, params=f.params))
            else:
                out.extend(self._factor(f, HadamardProduct) for _ in range(j - i + 1))
            i = j + 1
        return out

    def _print_HadamardPower(self, e: HadamardPower):
        base, k = e.args
        if base.shape == (1, 1) and k.is_Integer and k > 0:  # a scalar squared: ‖r‖², not ‖r‖ ⊙ ‖r‖
            b = self._print(base)
            if not (type(base).__name__ in ("Norm2", "MatrixSymbol") or isinstance(base, (At, AtStep))):
                b = self.paren(b)
            return self.raised(b, int(k))
        if k == -1:
            return self.ones + self.oslash + self._factor(base, HadamardProduct)
        if k.is_Integer and 1 < k <= 3:  # tanh²(c), and h ⊙ h rather than h^∘2
            return self.odot.join(self._collapse_powers([base] * int(k)))
        return self.power(self._factor(base, HadamardProduct), k)

    def power(self, base: str, k) -> str:
        raise NotImplementedError

    def inverse(self, s: str, transposed: bool = False) -> str:
        raise NotImplementedError

    def norm(self, s: str) -> str:
        raise NotImplementedError

    def _inverse_of(self, arg) -> str:
        s = self._print(arg)
        return s if isinstance(arg, (MatrixSymbol, At, AtStep, Delta)) else self.paren(s)

    def _print_Inv(self, e):
        return self.inverse(self._inverse_of(e.arg))

    def _print_Norm2(self, e):
        return self.norm(self._print(e.arg))

    def _print_Transpose(self, e: Transpose):
        arg = e.arg
        if type(arg).__name__ == "Inv":  # X⁻ᵀ
            return self.inverse(self._inverse_of(arg.arg), transposed=True)
        s = self._print(arg)
        if not isinstance(arg, (MatrixSymbol, At, AtEnd, AtStep, Delta, OneMatrix)):
            s = self.paren(s)
        return self.transpose(s)

    def _print_Apply(self, e: Apply):
        return self.function(e.fname, self._print(e.arg), params=e.params)

    def _print_Softmax(self, e: Softmax):
        return self.function("softmax", self._print(e.arg))

    def _print_LogSoftmax(self, e: LogSoftmax):
        return self.function("log", self.function("softmax", self._print(e.arg)))

    def _print_Concat(self, e: Concat):
        return self.stack([self._print(a) for a in e.args])

    def _print_RowSlice(self, e: RowSlice):
        return self.slice(self._print(e.arg), self.dim(sp.expand(e.start + 1)), self.dim(e.stop))

    def _print_ColSlice(self, e):
        return self.slice(self._print(e.arg), ":, " + self.dim(sp.expand(e.start + 1)), self.dim(e.stop))

    def _print_TimeSum(self, e: TimeSum):
        window, summand = range_of(e.arg)
        c, rest = coeff_and_rest(summand)
        if c.is_Number and c < 0:  # −Σ_t r_tᵀ log r̂_t rather than Σ_t −r_tᵀ log r̂_t
            rest = rest if c == -1 else sp.MatMul(-c, rest)
            inner = rest if window is None else _with_window(window, rest)
            return self.minus.strip() + self._print(TimeSum(inner))
        body = self._print(summand)
        if isinstance(summand, MatAdd):
            body = self.paren(body)
        return self.timesum(body) if window is None else self.timesum(body, window.first, window.last)

    def _print_Integer(self, e):
        return str(e)

    def _print_Rational(self, e):
        return self.fraction(int(e.p), int(e.q))

    def emptyPrinter(self, e):
        # A structural node without a method of its own: its record's head, applied.
        record = NODES.get(type(e))
        head = getattr(record, self.form_field.removesuffix("_form"), None) if record else None
        if head is not None:
            return self.applied(head, ", ".join(self._print(a) for a in e.args), 1)
        return str(e)


def range_of(e) -> tuple[Window | None, sp.Basic]:
    """The window of a partial time range a summand carries as a factor (``Sum(e, (t, 2, T))`` is
    ``TimeSum(Window(2, 0) e)``) and the summand without it; (None, e) for the whole sequence."""
    def plain(w):
        return isinstance(w, Window) and w.where == "t" and w.at == 0

    c, rest = coeff_and_rest(e)
    if isinstance(rest, HadamardProduct):
        for f in rest.args:
            w = f if plain(f) else _broadcast_scalar(f)
            if plain(w):
                others = [a for a in rest.args if a is not f]
                body = others[0] if len(others) == 1 else HadamardProduct(*others)
                return w, body if c == 1 else sp.MatMul(c, body)
    if isinstance(rest, MatMul) and any(plain(a) for a in rest.args):
        w = next(a for a in rest.args if plain(a))
        others = [a for a in rest.args if a is not w]
        if others and all(not isinstance(a, OneMatrix) for a in others):
            body = others[0] if len(others) == 1 else MatMul(*others)
            return w, body if c == 1 else sp.MatMul(c, body)
    return None, e


def _with_window(w: Window, e):
    from ..ir.expr import scalar_times
    return scalar_times(w, e)


def _broadcast_scalar(f):
    """s when ``f`` is a scalar s spread over a vector or a matrix (1 s, s 1ᵀ, 1 s 1ᵀ), else None."""
    if not isinstance(f, MatMul) or f.shape == (1, 1):
        return None
    mats = list(f.args)
    if isinstance(mats[0], OneMatrix) and mats[0].shape[1] == 1:
        mats = mats[1:]
    if mats and isinstance(mats[-1], OneMatrix) and mats[-1].shape[0] == 1:
        mats = mats[:-1]
    if len(mats) == 1 and getattr(mats[0], "shape", None) == (1, 1) and len(mats) < len(f.args):
        return mats[0]
    return None


def _has_delta(e) -> bool:
    return any(isinstance(n, Delta) for n in sp.preorder_traversal(e))


def _reading_order(factors):
    """A bare adjoint first, a compound factor holding an adjoint last, the rest in the
    order of construction: δh_t ⊙ o_t ⊙ (1 − tanh²(c_t)) and o_t ⊙ (1 − o_t) ⊙ W^T δh_t."""
    def group(f):
        if _has_delta(f):
            return 0 if isinstance(f, (At, AtEnd, AtStep, Delta)) else 2
        return 1
    return sorted(factors, key=group)


class LatexPrinter(_MathPrinter):
    """LaTeX in the model's own notation (bold vectors, δ labels, ⊙, ⊘, ^⊤)."""

    odot, oslash, plus, minus = r" \odot ", r" \oslash ", " + ", " - "
    ones, zero = r"\mathbf{1}", r"\mathbf{0}"

    def name(self, name, step):
        if name in self.model.quantities:
            return self.model.latex(name, step)
        from ..ir.names import latex_name
        return latex_name(name, bold=True, step=step)

    def delta(self, body):
        return r"\delta " + body

    def paren(self, s):
        return r"\left(" + s + r"\right)"

    def transpose(self, s):
        return "{" + s + r"}^{\top}"

    def fraction(self, p, q):
        return str(p) if q == 1 else rf"\frac{{{p}}}{{{q}}}"

    form_field = "latex_form"

    def upright(self, fname):
        return rf"\operatorname{{{fname}}}"

    def applied(self, head, arg, power):
        sup = f"^{{{power}}}" if power != 1 else ""
        return head + sup + r"\left(" + arg + r"\right)"

    def raised(self, base, power):
        return base + f"^{{{power}}}"

    def divide(self, num, den):
        return rf"\frac{{{num}}}{{{den}}}"

    def coefficient(self, c):
        names = {x: sp.Symbol(self.dim(x)) for x in c.free_symbols}
        return sp.latex(c.xreplace(names)) if names else sp.latex(c)

    def inverse(self, s, transposed=False):
        return "{" + s + "}^{-" + (r"\top" if transposed else "1") + "}"

    def norm(self, s):
        return r"\left\|" + s + r"\right\|_2"

    def power(self, base, k):
        if "^" in base or "'" in base:  # \mathbf{W}^{(\mathrm{in})}^{\circ 4} would be a double superscript
            base = "{" + base + "}"
        return base + rf"^{{\circ {k}}}"

    le, ge = r" \le ", r" \ge "

    def timesum(self, body, first=1, last=0):
        T = self._length() + (f"-{last}" if last else "")
        return rf"\sum_{{{self.index}={first}}}^{{{T}}} " + body

    def window(self, conditions):
        return r"\left[" + ", ".join(conditions) + r"\right]"

    def slice(self, body, start, stop):
        return r"\left[" + body + r"\right]_{" + start + ":" + stop + "}"

    def stack(self, parts):
        return r"\begin{bmatrix} " + r" \\ ".join(parts) + r" \end{bmatrix}"

    def dim(self, e):
        return sp.latex(e)


class UnicodePrinter(_MathPrinter):
    """Readable terminal math: ``δy_{o,t} = o_t ⊙ (1 − o_t) ⊙ W^(out)ᵀ δh^(out)_t``."""

    odot, oslash, plus, minus = " ⊙ ", " ⊘ ", " + ", " − "
    ones, zero = "1", "0"

    def name(self, name, step):
        return self.model.unicode(name, step.replace("-", "−") if step else step)

    def delta(self, body):
        return "δ" + body

    def paren(self, s):
        return "(" + s + ")"

    def transpose(self, s):
        return s + "ᵀ"

    def fraction(self, p, q):
        return str(p) if q == 1 else f"{p}/{q}"

    form_field = "unicode_form"

    def upright(self, fname):
        return fname

    def applied(self, head, arg, power):
        return f"{head}{self._superscript(power)}({arg})"

    def raised(self, base, power):
        return base + self._superscript(power)

    @staticmethod
    def _superscript(power):
        return {2: "²", 3: "³"}.get(power, f"^{power}") if power != 1 else ""

    def divide(self, num, den):
        return f"({num}) / {den}" if " " in num else f"{num} / {den}"

    def coefficient(self, c):
        text = str(c)
        return re.sub(r"sqrt\(([A-Za-z_0-9]+)\)", r"√\1", text)

    def inverse(self, s, transposed=False):
        return s + ("⁻ᵀ" if transposed else "⁻¹")

    def norm(self, s):
        return f"‖{s}‖₂"

    def power(self, base, k):
        return f"{base}^∘{k}"

    le, ge = " ≤ ", " ≥ "

    def timesum(self, body, first=1, last=0):
        if (first, last) == (1, 0):
            return f"Σ_{self.index} " + body
        T = self._length() + (f"−{last}" if last else "")
        return f"Σ_{{{self.index}={first}}}^{{{T}}} " + body

    def window(self, conditions):
        return "[" + ", ".join(conditions) + "]"

    def slice(self, body, start, stop):
        return f"[{body}]_{{{start}:{stop}}}"

    def stack(self, parts):
        return "[" + "; ".join(parts) + "]"


def latex(model: Model, e) -> str:
    return LatexPrinter(model).doprint(e)


def unicode(model: Model, e) -> str:
    return UnicodePrinter(model).doprint(e)


def derivation_latex(d) -> str:
    """The closed forms of a derivation as one LaTeX ``aligned`` block (for Jupyter)."""
    rows = []
    for adj in d.named:
        rows.append(latex(d.model, adj.symbol) + " &= " + latex(d.model, adj.closed))
    for g in d.gradients.values():
        lhs = r"\frac{\partial " + d.model.latex(d.model.loss) + r"}{\partial " + d.model.latex(g.name) + "}"
        rows.append(lhs + " &= " + latex(d.model, g.expr))
    return "$$\\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}$$"
