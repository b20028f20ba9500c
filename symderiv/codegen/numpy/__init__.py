"""The NumPy back end: the printer of one expression (``printer``), the spelling of the
elementwise functions (``spelling``), the idioms the statements are written with (``idioms``),
and the emitter (``emitter``: a schedule → the context of templates/module.py.j2)."""

from __future__ import annotations

from typing import NamedTuple

from .idioms import NumpyIdioms
from .printer import NumpyPrinter


class Backend(NamedTuple):
    """What a back end gives the plan: its printer class and its idioms class."""

    printer: type  # (derivation, names, pads, batched, values) → a printer with .code(e, mode, window)
    idioms: type  # (printer) → the statements' forms (see ``idioms.NumpyIdioms``)


NUMPY = Backend(NumpyPrinter, NumpyIdioms)

__all__ = ["NUMPY", "Backend", "NumpyIdioms", "NumpyPrinter"]
