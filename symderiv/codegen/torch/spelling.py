"""How PyTorch spells the elementwise functions (the back end owns the spelling, as in NumPy's
``numpy/spelling.py``).

A function without an entry is printed from its meaning, ``record.scalar(z, *params)``, through
SymPy's Python printer with PyTorch's functions in place of ``math``'s (SymPy's own
``sympy.printing.pytorch`` imports torch when it is imported, and symderiv never does): a
constant is a Python float (``torch.sqrt(2)`` is an error: 2 is not a tensor), a piecewise
function ``torch.where``, ``Max``/``Min`` with a constant ``torch.clamp``, ``Heaviside(z, 0)``
``(z > 0).to(dtype)``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ...ops import ELEMENTWISE
from ..numpy.spelling import group, operand

# name → (the expression, with {x} for the argument; the same written into {out}, or None).
TORCH: dict[str, tuple[str, str | None]] = {
    "sigmoid": ("torch.sigmoid({x})", "torch.sigmoid({x}, out={out})"),
    "tanh": ("torch.tanh({x})", "torch.tanh({x}, out={out})"),
    "relu": ("torch.relu({x})", "torch.clamp({x}, min=0, out={out})"),
    "softplus": ("_softplus({x})", "_softplus({x}, out={out})"),  # log(1 + eˣ) exactly: no threshold
    "exp": ("torch.exp({x})", "torch.exp({x}, out={out})"),
    "log": ("torch.log({x})", None),  # never in place: a stack's slot may be read as a probability first
    "step": ("({x} > 0).to(dtype)", None),  # 𝟙[z > 0], the derivative of relu
}


class _ScalarPrinter(PythonCodePrinter):
    """SymPy's Python printer for a scalar meaning f(z), on tensors: ``z`` stands for the argument's
    code, and ``math.f`` becomes ``torch.f`` (exp, log, sqrt, tanh, sin, cos, erf, …)."""

    def __init__(self, z: sp.Symbol, code: str):
        super().__init__({"fully_qualified_modules": True, "strict": True})
        self.z, self.arg_code = z, code

    def _module_format(self, fqn, register=True):
        if fqn.startswith("math."):
            return "torch." + fqn[len("math."):]
        raise NotImplementedError(f"no PyTorch form for {fqn}")

    def _print_Abs(self, e):
        return f"torch.abs({self._print(e.args[0])})"

    def _print_sign(self, e):
        return f"torch.sign({self._print(e.args[0])})"

    def _print_Piecewise(self, e):
        *pieces, (last, cond) = e.args
        if cond != sp.true:
            raise NotImplementedError("no PyTorch form for a piecewise function without an otherwise branch")
        text = self._branch(last)
        if not any(value.free_symbols for value, _ in e.args):
            # every branch a constant: torch.where of two Python floats is of the default dtype (float32)
            text = f"torch.tensor({text}, dtype=dtype, device=device)"
        for value, c in reversed(pieces):
            text = f"torch.where({self._print(c)}, {self._branch(value)}, {text})"
        return text

    def _branch(self, value) -> str:
        """A branch of torch.where: a constant as a float (a float tensor, not an integer one)."""
        return repr(float(value)) if not value.free_symbols else self._print(value)

    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Expr) and not expr.free_symbols and not expr.is_Integer:
            return repr(float(expr))  # √2, π, 1/2: a float the tensor broadcasts
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, e):
        if e == self.z:
            return self.arg_code
        raise NotImplementedError(f"no PyTorch form for the free symbol {e} in an elementwise function")

    def _minmax(self, e, bound: str, pair: str) -> str:
        consts = [a for a in e.args if not a.free_symbols]
        rest = [self._print(a) for a in e.args if a.free_symbols]
        text = rest[0]
        for other in rest[1:]:
            text = f"torch.{pair}({text}, {other})"
        if consts:
            text = f"torch.clamp({text}, {bound}={float(consts[0])!r})"
        return text

    def _print_Max(self, e):
        return self._minmax(e, "min", "maximum")

    def _print_Min(self, e):
        return self._minmax(e, "max", "minimum")

    def _print_Heaviside(self, e):
        x = self._print(e.args[0])
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        if h0 == 0:
            return f"({group(x)} > 0).to(dtype)"
        return f"torch.heaviside({x}, torch.tensor({float(h0)!r}, dtype=dtype, device=device))"


_Z = sp.Symbol("z", real=True)


def call(fname: str, x: str, params: tuple = ()) -> str:
    """PyTorch code for f(x), ``x`` the argument's code."""
    if fname in TORCH and not params:
        return TORCH[fname][0].format(x=x)
    meaning = ELEMENTWISE[fname].scalar(_Z, *params)
    # f(z) alone, or √z (printed as a call): the argument needs no parentheses of its own (torch.sqrt(a + b))
    alone = (isinstance(meaning, sp.Function) and meaning.args == (_Z,)) or meaning == sp.sqrt(_Z)
    return operand(_ScalarPrinter(_Z, x if alone else group(x)).doprint(meaning))


def call_out(fname: str, x: str, out: str, params: tuple = ()) -> str | None:
    """PyTorch code writing f(x) into the tensor ``out``, or None when the function has no such form."""
    spelling = TORCH[fname][1] if fname in TORCH and not params else None
    return None if spelling is None else spelling.format(x=x, out=out)


def has_out(fname: str, params: tuple = ()) -> bool:
    """Whether f can be written into an existing tensor (f(x, out=…))."""
    return fname in TORCH and not params and TORCH[fname][1] is not None
