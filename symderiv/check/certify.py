"""An independent check of every closed form: the model unrolled to scalars, differentiated
by SymPy, back-propagated entry by entry.

At tiny concrete sizes every entry of every value (per step for a sequence) becomes a
scalar symbol, and each entry of a defined quantity is one scalar equation over the entry
symbols its own equation reads.  SymPy differentiates these small equations; the scalar
chain rule, run numerically in high precision along a topological order, gives ∂L/∂ of
every entry.  Those numbers are compared with the closed forms evaluated at the same point.

Nothing of the matrix rules (the records' vector-Jacobian rules), ``derive``'s sweep or
``simplify`` is used: only the records' scalar meanings, which SymPy differentiates here,
so a slip in a rule cannot hide itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from graphlib import TopologicalSorter

import mpmath
import numpy as np
import sympy as sp
from sympy import ZeroMatrix

from ..ad.derive import Derivation, derive
from ..ir.model import Model
from ..ops.base import node_record  # the meanings only: no rule, no derivative
from .evaluate import evaluate, random_point, time_steps

DEFAULT_T = 3  # long enough that a lag of 2 reaches both a state and a computed step


@dataclass
class CertifyResult:
    """The worst disagreement between the closed forms and the scalar chain rule."""

    param_errors: dict[str, float]  # worst relative error per parameter gradient
    adjoint_errors: dict[str, float]  # worst per intermediate quantity's adjoint (all steps)
    dims: dict[str, int]
    T: int | None
    tolerance: float = 1e-20

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in (*self.param_errors.values(), *self.adjoint_errors.values()))


def certify(model: Model, derivation: Derivation | None = None, *, dims: dict[str, int] | None = None,
            T: int | None = None, seed: int = 0, precision: int = 40, tolerance: float = 1e-20) -> CertifyResult:
    """Compare ``derivation`` (by default ``derive(model)``) with the unrolled scalar network.

    ``model`` is the model as written (not ``derivation.model``, which has pre-activations
    added): the check starts from the user's equations.  Sizes default to ``default_dims``
    and T to 3, the point to ``random_point(..., seed)``; ``precision`` is in decimal digits.
    """
    derivation = derivation or derive(model)
    dims = dims or default_dims(model)
    T = (T or DEFAULT_T) if model.has_time else None
    size = unrolled_values(model, dims, T)
    if size > MAX_UNROLLED_VALUES:
        raise TooLargeToCertify(f"the network unrolled at {', '.join(f'{k}={v}' for k, v in dims.items())}"
                                f"{f', T={T}' if T else ''} has {size:,} scalar values, more than the "
                                f"{MAX_UNROLLED_VALUES:,} exact arithmetic can check in reasonable time "
                                "(a literal size in the model?)")
    params, data = random_point(model, dims, T, seed)
    data = _exact_distributions(model, data, precision)
    closed = evaluate(derivation, dims, T, params, data, precision=precision)
    network = UnrolledNetwork(model, dims, T)
    with mpmath.workdps(precision):
        adjoints = network.backpropagate(params, data)
    # Entries below this magnitude are compared absolutely: a mathematically zero entry is
    # rounding noise on both sides, and noise over noise is not a relative error.  Any real
    # slip still shows: it is off by far more than 10^(-precision/4) times the tolerance.
    floor = mpmath.mpf(10) ** (-(precision // 4))

    def worst(name, step, expected):
        return _worst_error(network.adjoint(adjoints, name, step), expected, floor)

    param_errors = {p.name: worst(p.name, None, closed.gradients[p.name]) for p in model.params}
    adjoint_errors = {}
    for q in model.by_role("intermediate"):
        value = closed.adjoints[q.name]
        if q.sequence:
            adjoint_errors[q.name] = max(worst(q.name, t, value[t]) for t in range(1, network.steps + 1))
        else:
            adjoint_errors[q.name] = worst(q.name, None, value)
    return CertifyResult(param_errors, adjoint_errors, dict(dims), T, tolerance)


#: The scalar values of the unrolled network certification computes with (the examples have
#: 38–136 at the default sizes; a model with a literal size of 300 has a thousand, and its
#: exact Jacobian products take minutes).
MAX_UNROLLED_VALUES = 600


class TooLargeToCertify(ValueError):
    """The unrolled network is larger than MAX_UNROLLED_VALUES scalars."""


def unrolled_values(model: Model, dims: dict[str, int], T: int | None) -> int:
    """How many scalar values the unrolled network has at ``dims`` and ``T``."""
    subs: dict = {model.dims[k]: v for k, v in dims.items() if k in model.dims}
    if model.length is not None and T is not None:
        subs[model.length] = T
    total = 0
    for q in model.quantities.values():
        entries = sp.Mul(*q.symbol.shape).subs(subs)
        total += int(entries) * (T or 1 if q.sequence else 1) if entries.is_Integer else 0
    return total


def default_dims(model: Model) -> dict[str, int]:
    """Sizes 3 and 2 alternately, so neighbouring dims (often a matrix's rows and columns)
    differ and a transposition slip shows as wrong numbers, not only a wrong shape."""
    return {name: 3 - i % 2 for i, name in enumerate(model.dims)}


def _exact_distributions(model: Model, data: dict, precision: int) -> dict:
    """Distribution targets renormalised in mpmath: the closed forms may use Σ r = 1, which
    float64 data meets only to 1e-16, far short of the precision compared."""
    data = dict(data)
    with mpmath.workdps(precision):
        for q in model.data:
            if q.distribution:
                r = np.vectorize(mpmath.mpf, otypes=[object])(data[q.name])
                data[q.name] = r / r.sum(axis=-2, keepdims=True)
    return data


def _worst_error(ours, expected, floor) -> float:
    """max |a − b| / max(|a|, |b|, floor) over the entries."""
    worst = mpmath.mpf(0)
    for a, b in zip(np.asarray(ours).flat, np.asarray(expected).flat):
        worst = max(worst, abs(a - b) / max(abs(a), abs(b), floor))
    return float(worst)


@dataclass
class _Equation:
    """The entries of one quantity at one step (``step`` None: static), as scalar functions."""

    key: tuple[str, int | None]
    outputs: list[sp.Symbol]  # the entry symbols it defines, row-major
    args: list[sp.Symbol]  # every symbol it reads, data included
    partials: list[tuple[int, sp.Symbol]]  # (output index, input) of each nonzero partial
    function: Callable[..., list[mpmath.mpf]]  # args → the outputs' values, then the partials' values


class UnrolledNetwork:
    """A model at concrete sizes as scalar equations, one per entry of each value."""

    def __init__(self, model: Model, dims: dict[str, int], T: int | None):
        self.model = model
        self.T = T
        self.steps = time_steps(model, T)  # 0 without time
        self.subs = {model.dims[k]: v for k, v in dims.items()}
        if model.has_time:
            self.subs[model.length] = self.steps
        self.symbols: dict[tuple[str, int | None], sp.Matrix] = {}
        count = itertools.count()
        for q in model.quantities.values():
            rows, cols = (self.size(x) for x in q.shape)
            for step in self._steps(q):
                # Numbered, so no two entries collide whatever the model's names; plain
                # identifiers (not Dummies), which lambdify takes without rewriting; real, so
                # that SymPy differentiates |z| as sign(z).
                label = q.name if step is None else f"{q.name}_{step}"
                self.symbols[(q.name, step)] = sp.Matrix(rows, cols, [
                    sp.Symbol(f"{label}_{i}{j}_{next(count)}", real=True) for i in range(rows) for j in range(cols)])
        self.differentiable = {s for (name, _), m in self.symbols.items()
                               if model[name].role not in ("input", "target") for s in m}
        self.equations = self._ordered([self._equation(name, step) for name in model.order
                                        for step in self._steps(model[name])])

    def _steps(self, q) -> list[int | None]:
        return list(range(1, self.steps + 1)) if q.sequence else [None]

    def size(self, x) -> int:
        return int(sp.sympify(x, strict=True).xreplace(self.subs))

    # --- building -----------------------------------------------------------------------

    def _equation(self, name: str, step: int | None) -> _Equation:
        outputs = list(self.symbols[(name, step)])
        values = [v.xreplace(self.subs) for v in self.entries(self.model[name].expr, step)]  # sizes as numbers
        args = sorted(set().union(*(v.free_symbols for v in values)), key=str)
        partials, derivatives = [], []
        for k, v in enumerate(values):
            for u in sorted(v.free_symbols & self.differentiable, key=str):
                d = sp.diff(v, u)
                if d != 0:
                    partials.append((k, u))
                    derivatives.append(d)
        function = sp.lambdify(args, values + derivatives, modules="mpmath", cse=True)
        return _Equation((name, step), outputs, args, partials, function)

    def _ordered(self, equations: list[_Equation]) -> list[_Equation]:
        """Dependencies first: an equation reads entries that other equations define."""
        defined_by = {s: eq.key for eq in equations for s in eq.outputs}
        by_key = {eq.key: eq for eq in equations}
        graph = {eq.key: {defined_by[s] for s in eq.args if s in defined_by} for eq in equations}
        return [by_key[key] for key in TopologicalSorter(graph).static_order()]

    def value(self, name: str, step: int | None) -> sp.Matrix:
        """The entries of a quantity at an absolute step; before step 1, its state line."""
        if step is not None and self.model[name].role in ("input", "target") and not 1 <= step <= self.steps:
            return sp.zeros(*(self.size(x) for x in self.model[name].shape))  # data outside 1..T is zero
        if step is not None and (step < 1 or step > self.steps):
            # a state line: zero, a param, or an expression of static values, entry by entry
            initial = self.model.states[name][step] if step < 1 else self.model.end_states[name][step - self.steps]
            if isinstance(initial, ZeroMatrix):
                return sp.zeros(*(self.size(x) for x in initial.shape))
            return self.entries(initial, None)
        return self.symbols[(name, step)]

    def entries(self, e, step: int | None) -> sp.Matrix:
        """A matrix expression of the model at ``step``, entry by entry (the node's scalar
        meaning from its record: ``sigmoid`` is 1/(1 + e^{−z}), softmax e^{z_i}/Σ_j e^{z_j})."""
        try:
            record = node_record(e)
        except TypeError:
            raise TypeError(f"certify cannot unroll {type(e).__name__}") from None
        if record.unroll is None:
            raise TypeError(f"certify cannot unroll {type(e).__name__}")
        return record.unroll(self, e, step)

    # --- numbers ------------------------------------------------------------------------

    def backpropagate(self, params: dict, data: dict) -> dict[sp.Symbol, mpmath.mpf]:
        """∂L/∂ of every entry symbol at one point (at the current mpmath precision)."""
        values = {}
        for (name, step), symbols in self.symbols.items():
            q = self.model[name]
            if q.role == "param":
                given = params[name]
            elif q.role in ("input", "target"):
                given = data[name][step - 1] if step is not None else data[name]  # a step: a sequence
            else:
                continue
            for s, v in zip(symbols, np.asarray(given).reshape(symbols.shape).flat):
                values[s] = mpmath.mpf(v)
        partial_values = []
        for eq in self.equations:
            out = eq.function(*[values[a] for a in eq.args])
            values.update(zip(eq.outputs, out[:len(eq.outputs)]))
            partial_values.append(out[len(eq.outputs):])
        (loss,) = self.symbols[(self.model.loss, None)]
        adjoints = {loss: mpmath.mpf(1)}
        for eq, dvs in zip(reversed(self.equations), reversed(partial_values)):
            for (k, u), dv in zip(eq.partials, dvs):
                g = adjoints.get(eq.outputs[k])
                if g is not None:
                    adjoints[u] = adjoints.get(u, 0) + g * dv
        return adjoints

    def adjoint(self, adjoints: dict, name: str, step: int | None) -> np.ndarray:
        """The adjoints of a quantity's entries, shaped like the quantity."""
        symbols = self.symbols[(name, step)]
        return np.array([[adjoints.get(s, mpmath.mpf(0)) for s in symbols.row(i)] for i in range(symbols.rows)],
                        dtype=object)
