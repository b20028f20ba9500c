"""Numeric versions of the elementwise functions, made from their records.

float64: the record's stable override where it has one (σ through tanh), else SymPy's
``lambdify`` of its meaning over NumPy arrays.  mpmath: ``lambdify`` of the meaning, one
entry at a time, so certification computes with the very meaning it differentiates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import numpy as np
import sympy as sp

from .base import ELEMENTWISE, Z, on_change

_functions: dict = {}
on_change(_functions.clear)

#: NumPy has no erf; the exact gelu and Φ need one that takes arrays.
_FLOAT64_EXTRAS = {"erf": np.vectorize(math.erf, otypes=[float])}


def elementwise_function(fname: str, params: tuple = (), mp: bool = False) -> Callable:
    """f with its parameters' values: over a float64 array, or (``mp``) on one mpmath number."""
    key = (fname, tuple(params), mp)
    if key not in _functions:
        _functions[key] = _make(fname, tuple(params), mp)
    return _functions[key]


def _make(fname: str, params: tuple, mp: bool) -> Callable:
    record = ELEMENTWISE[fname]
    meaning = record.scalar(Z, *params)
    if not mp:
        if record.float64 is not None and not params:
            return record.float64
        return sp.lambdify(Z, meaning, modules=[_FLOAT64_EXTRAS, "numpy"])
    f = sp.lambdify(Z, meaning, modules="mpmath")

    def exact(x):
        # Max, Heaviside and Piecewise give Python ints on some branches: keep every entry mpmath's.
        y = mpmath.mpmathify(f(x))
        if mpmath.isfinite(y) and y != 0 and abs(mpmath.mag(y)) > MAX_EXACT_MAGNITUDE_BITS:
            digits = int(MAX_EXACT_MAGNITUDE_BITS * 0.30103)
            raise ExactOverflow(f"{fname} of a value near 2^{int(mpmath.mag(x)) if x != 0 else 0} is beyond "
                                f"2^±{MAX_EXACT_MAGNITUDE_BITS:,} (about 10^±{digits:,})")
        return y

    return exact


#: The largest binary exponent an exact value may reach. exp(exp(exp(…))) at a random point
#: otherwise asks mpmath for numbers whose exponent alone has millions of digits: minutes,
#: then gigabytes. float64 stops at 2^1024; this leaves room for every exact comparison.
MAX_EXACT_MAGNITUDE_BITS = 1 << 22


class ExactOverflow(ArithmeticError):
    """An exact (mpmath) value beyond MAX_EXACT_MAGNITUDE_BITS: the point cannot be evaluated exactly."""
