"""The JAX printer: one expression of the schedule as ``jax.numpy`` code.

A subclass of the NumPy printer, as SymPy's ``JaxPrinter`` is a small subclass of its
``NumPyPrinter``: the layout is the same (a vector is a row, the batch in front: a step of a
sequence is ``(B, n)``, all steps ``(T, B, n)``, padded in front by the lag), ``jax.numpy``
has NumPy's names, and the runtime helpers (``_matvec``, ``_outer``, ``_softmax``, …) are
the JAX module's own under the same names.  What differs:

- the array library is ``jnp`` (``np.ones`` → ``jnp.ones``, …);
- the elementwise functions are JAX's (``spelling.JAX``: ``jax.nn.sigmoid``);
- a *view*: NumPy holds the members of a stack (``f, i, o = np.split(gates, …)``) as views
  that see every write into the stack; JAX arrays are values, so inside the time loop a
  member is read straight from the stack, ``gates[i, :, :n_h]``, which is always current
  (``views``, filled by the idioms' ``split``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from ..numpy.printer import NumpyPrinter
from ..schedule import Code
from .spelling import call

_NP = re.compile(r"\bnp\.")


@dataclass(frozen=True)
class Target(Code):
    """Code naming an array or a part of one, which a statement can write: ``base[index]``."""

    base: str = ""
    index: str | None = None  # None: the whole array
    step: str | None = None  # inside the loop: the step's index ("i + 1"), the index being ``step`` (+ ``block``)
    block: tuple[str, str] | None = None  # the entries (start, stop) of a stack's member, at ``step``


class JaxPrinter(NumpyPrinter):
    """Prints one expression as JAX code (modes as ``NumpyPrinter``'s)."""

    printmethod = "_jax_print"
    # a step is the body of ``lax.scan``, traced once: Wᵀ is a view there, ``@`` XLA's dot
    step_transposes = False
    step_layouts = False
    step_dot = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # A member of a stack → (the stack's array, first entry, end entry), both printed sizes.
        self.views: dict[str, tuple[str, str, str]] = {}

    def code(self, e: sp.Basic, mode: str = "static", window: int = 0) -> Code:
        """``e`` as JAX code: NumPy's printed form with ``jax.numpy`` for ``numpy``."""
        c = super().code(e, mode, window)
        text = _NP.sub("jnp.", c.text)
        if "jax.scipy.special." in text:
            self.helpers.add("jax.scipy.special")
        return replace(c, text=text) if text != c.text else c

    def at(self, name: str, array: str, offset: int, is_delta: bool) -> Code:
        """As NumPy's, as a ``Target`` (a statement may write it); a member of a stack, inside the
        loop, is read from (and written into) the stack itself."""
        c = super().at(name, array, offset, is_delta)
        if c.text == array:
            return Target(**vars(c), base=array)
        index = c.text[len(array) + 1:-1]  # "i + 1" of "h[i + 1]", "1:" of "h[1:]"
        if self.mode == "step" and array in self.views:
            stack, start, stop = self.views[array]
            block = f"{index}, :, {start}:{stop}"
            return Target(f"{stack}[{block}]", batched=True, reads=(stack,), form="view", base=stack, index=block,
                          step=index, block=(start, stop))
        return Target(**vars(c), base=array, index=index, step=index if self.mode == "step" else None)

    def _print_AtEnd(self, e):
        """A fixed step counted from the end (h[T] is ``h[-1]``), as a ``Target``: δh_T is written there."""
        return self._fixed(super()._print_AtEnd(e))

    def _print_AtStep(self, e):
        """A fixed step counted from the start (h[1]), as a ``Target``."""
        return self._fixed(super()._print_AtStep(e))

    @staticmethod
    def _fixed(c: Code) -> Target:
        array, index = c.text[:-1].split("[", 1)  # "d_h[-1]" → "d_h", "-1"
        return Target(**vars(c), base=array, index=index)

    def _weak(self, text: str) -> str:
        """jnp's functions of Python numbers are weakly typed already (they keep a float32 array's
        dtype), and inside jit they are traced: ``float()`` of one would fail."""
        return f"({text})"

    def _call(self, fname: str, x: str, params: tuple) -> str:
        """f(x) in JAX's spelling (``spelling.JAX``); the stable logs of a softmax or a sigmoid are
        NumPy's forms, in jnp."""
        return call(fname, x, params)
