"""The JAX back end: the printer of one expression (``printer``, a subclass of the NumPy
printer), the spelling of the elementwise functions (``spelling``), the functional idioms the
statements are written with (``idioms``: ``.at[…].set``, no in-place update), and the emitter
(``emitter``: a schedule → the context of templates/module_jax.py.j2, each time loop a
``jax.lax.scan``).  Nothing here imports JAX: the generated module does."""

from __future__ import annotations

from .idioms import JaxIdioms
from .printer import JaxPrinter

__all__ = ["JaxIdioms", "JaxPrinter"]
