"""How NumPy spells the elementwise functions: the back end owns the spelling, not the operation.

As in SymPy, where ``NumPyPrinter`` holds ``_known_functions_numpy`` and a JAX or CuPy printer
is a small subclass with its own table: the operations (``symderiv.ops``) say what a function
*means* (``record.scalar``), and this table says how the generated NumPy module computes it.

A function without an entry here is printed from its meaning: ``record.scalar(z, *params)``
through SymPy's own NumPy printer, with the argument's code in place of ``z``.  SymPy's
functions NumPy has no ufunc for (``erf``) are runtime helpers of the generated module
(``_erf``), which the template defines only in a module that calls them.
"""

from __future__ import annotations

import ast

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ...ops import ELEMENTWISE

# name → (the expression, with {x} for the argument; the same written into {out}, or None).
# An in-place form is what lets the plan write a step into its slot of a sequence array, and
# compute the activations of a stack with one call; without one the plan assigns a new array.
NUMPY: dict[str, tuple[str, str | None]] = {
    "sigmoid": ("_sigmoid({x})", "_sigmoid({x}, out={out})"),  # through tanh: no overflow warning
    "tanh": ("np.tanh({x})", "np.tanh({x}, out={out})"),
    "relu": ("np.maximum({x}, 0)", "np.maximum({x}, 0, out={out})"),
    "softplus": ("np.logaddexp(0, {x})", "np.logaddexp(0, {x}, out={out})"),  # log(1 + eˣ) without overflow
    "exp": ("np.exp({x})", "np.exp({x}, out={out})"),
    "log": ("np.log({x})", None),  # never in place: a stack's slot may be read as a probability first
    "step": ("({x} > 0).astype(dtype)", None),  # 𝟙[z > 0], the derivative of relu
}

# Runtime helpers the generated module defines only when a printed function calls them.
HELPERS = ("_erf",)


def operand(code: str) -> str:
    """``code`` as one operand of anything (``x.sum()``, ``x ** 2``, ``1 / x``): as it is when it is a
    name, a call, an index or an attribute, else in parentheses.  SymPy prints a meaning without
    spaces (``(1/2)*z*(_erf(…) + 1)``), which ``group`` would take for one operand.  (``code`` is the
    module's own printed code, never a model file's text.)"""
    try:
        node = ast.parse(code, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):  # too deep to parse: parentheses are always safe
        return f"({code})"
    return code if isinstance(node, (ast.Name, ast.Call, ast.Subscript, ast.Attribute)) else f"({code})"


def group(code: str) -> str:
    """``code`` as one operand: parenthesised unless it already is one (a name, an index, a call, a group)."""
    depth = 0
    for ch in code:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch == " ":
            return f"({code})"
    return code


class _ScalarPrinter(NumPyPrinter):
    """SymPy's NumPy printer for a scalar meaning f(z), with ``z`` standing for the argument's code."""

    def __init__(self, z: sp.Symbol, code: str):
        super().__init__({"fully_qualified_modules": True, "strict": True})
        self.z, self.arg_code = z, code
        self.helpers: set[str] = set()

    def _module_format(self, fqn, register=True):
        # The generated module imports numpy as np.
        if fqn.startswith("numpy."):
            fqn = "np." + fqn[len("numpy."):]
        return fqn

    def _print_Symbol(self, e):
        if e == self.z:
            return self.arg_code
        raise NotImplementedError(f"no NumPy form for the free symbol {e} in an elementwise function")

    def _print_erf(self, e):
        # NumPy has no erf: the module's own helper (see templates/module.py.j2).
        self.helpers.add("_erf")
        return f"_erf({self._print(e.args[0])})"


_Z = sp.Symbol("z", real=True)


def call(fname: str, x: str, params: tuple = ()) -> tuple[str, frozenset[str]]:
    """NumPy code for f(x), ``x`` the argument's code; and the runtime helpers it calls."""
    if fname in NUMPY and not params:
        return NUMPY[fname][0].format(x=x), frozenset()
    meaning = ELEMENTWISE[fname].scalar(_Z, *params)
    # f(z) or z^k alone: the argument needs no parentheses of its own (np.sqrt(a + b))
    alone = (isinstance(meaning, sp.Function) and meaning.args == (_Z,)) or (meaning.is_Pow and meaning.base == _Z)
    printer = _ScalarPrinter(_Z, x if alone else group(x))
    text = operand(printer.doprint(meaning))
    return text, frozenset(printer.helpers)


def call_out(fname: str, x: str, out: str, params: tuple = ()) -> str | None:
    """NumPy code writing f(x) into the array ``out``, or None when the function has no such form."""
    spelling = NUMPY[fname][1] if fname in NUMPY and not params else None
    return None if spelling is None else spelling.format(x=x, out=out)


def has_out(fname: str, params: tuple = ()) -> bool:
    """Whether f can be written into an existing array (f(x, out=…))."""
    return fname in NUMPY and not params and NUMPY[fname][1] is not None
