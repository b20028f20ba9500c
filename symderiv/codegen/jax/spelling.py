"""How JAX spells the elementwise functions (the back end owns the spelling, as in SymPy, where
``JaxPrinter`` is a small ``NumPyPrinter`` subclass with its own module).

A function without an entry here is printed from its meaning, ``record.scalar(z, *params)``,
by SymPy's own ``JaxPrinter`` (``jax.numpy`` as ``jnp``; erf from ``jax.scipy.special``).

Which functions are written *into a slot* (``f(x, out=…)`` in NumPy) is the schedule's
decision and the same as NumPy's (``numpy.spelling.has_out``): JAX writes that slot with
``a.at[i].set(f(x))``, so the JAX module runs the very schedule the NumPy module runs.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import JaxPrinter

from ...ops import ELEMENTWISE
from ..numpy.spelling import group, operand

# name → the expression, with {x} for the argument.
JAX: dict[str, str] = {
    "sigmoid": "jax.nn.sigmoid({x})",
    "tanh": "jnp.tanh({x})",
    "relu": "jnp.maximum({x}, 0)",
    "softplus": "jnp.logaddexp(0, {x})",  # log(1 + eˣ) without overflow
    "exp": "jnp.exp({x})",
    "log": "jnp.log({x})",
    "step": "({x} > 0).astype(dtype)",  # 𝟙[z > 0], the derivative of relu
}


class _ScalarPrinter(JaxPrinter):
    """SymPy's JAX printer for a scalar meaning f(z), with ``z`` standing for the argument's code."""

    def __init__(self, z: sp.Symbol, code: str):
        super().__init__({"fully_qualified_modules": True, "strict": True})
        self.z, self.arg_code = z, code

    def _module_format(self, fqn, register=True):
        # The generated module imports jax and jax.numpy as jnp.
        if fqn.startswith("jax.numpy."):
            return "jnp." + fqn[len("jax.numpy."):]
        if fqn.startswith("numpy."):  # a constant SymPy takes from NumPy (pi, e): jnp has it too
            return "jnp." + fqn[len("numpy."):]
        return fqn

    def _print_Symbol(self, e):
        if e == self.z:
            return self.arg_code
        raise NotImplementedError(f"no JAX form for the free symbol {e} in an elementwise function")

    def _print_erf(self, e):
        return f"jax.scipy.special.erf({self._print(e.args[0])})"


_Z = sp.Symbol("z", real=True)


def call(fname: str, x: str, params: tuple = ()) -> str:
    """JAX code for f(x), ``x`` the argument's code."""
    if fname in JAX and not params:
        return JAX[fname].format(x=x)
    return operand(_ScalarPrinter(_Z, group(x)).doprint(ELEMENTWISE[fname].scalar(_Z, *params)))
