"""Numbers from a derivation: the forward pass, every adjoint and every gradient, evaluated
straight from the closed forms at concrete sizes.

This is symderiv's own exact evaluation (with ``precision`` digits, through mpmath) used by
``certify``, by ``verify`` to judge claims numerically, and by the tests of the generated
module.  Values are 2-D arrays: a vector of size n is ``(n, 1)``, a scalar ``(1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix

from ..ad.derive import Derivation
from ..ir.expr import Apply, At, AtStep, ColSlice, Concat, Delta, LogSoftmax, RowSlice, Softmax, TimeSum


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


_FUNCTIONS = {
    # name: (float64 version, mpmath version)
    "sigmoid": (lambda x: 0.5 * (1 + np.tanh(0.5 * x)), _mp_sigmoid),
    "tanh": (np.tanh, mpmath.tanh),
    "relu": (lambda x: np.maximum(x, 0), lambda x: x if x > 0 else mpmath.mpf(0)),
    "softplus": (lambda x: np.logaddexp(0, x), lambda x: mpmath.log(1 + mpmath.exp(x))),
    "exp": (np.exp, mpmath.exp),
    "log": (np.log, mpmath.log),
    "step": (lambda x: (x > 0).astype(x.dtype), lambda x: mpmath.mpf(1) if x > 0 else mpmath.mpf(0)),
}


@dataclass
class Values:
    """Every value of one evaluation, by quantity name."""

    forward: dict[str, dict[int, np.ndarray] | np.ndarray] = field(default_factory=dict)
    adjoints: dict[str, dict[int, np.ndarray] | np.ndarray] = field(default_factory=dict)
    gradients: dict[str, np.ndarray] = field(default_factory=dict)
    loss: object = None


class Evaluator:
    """Evaluates a derivation at concrete dims, sequence length, parameters and data.

    ``params`` and ``data`` map names to arrays: a sequence quantity to a list of its T
    per-step values (or an array whose first axis is time), anything else to one value.
    With ``precision`` (decimal digits) the arithmetic is mpmath's; else float64.
    """

    def __init__(self, derivation: Derivation, dims: dict[str, int], T: int | None, params: dict, data: dict,
                 precision: int | None = None):
        self.d = derivation
        self.model = derivation.model
        self.T = T if self.model.has_time else None
        self.subs = {self.model.dims[k]: v for k, v in dims.items()}
        if self.model.has_time:
            self.subs[self.model.length] = T
        self.mp = precision is not None
        self.precision = precision
        self.values = Values()
        for name, value in params.items():
            self.values.forward[name] = self._array(value, self.model[name].shape)
        for q in self.model.data:
            if q.name not in data:
                raise KeyError(f"missing data '{q.name}'")
            value = data[q.name]
            if q.sequence:
                self.values.forward[q.name] = {t + 1: self._array(v, q.shape) for t, v in enumerate(value)}
            else:
                self.values.forward[q.name] = self._array(value, q.shape)

    # --- conversion ---------------------------------------------------------------------

    def size(self, x) -> int:
        return int(sp.sympify(x, strict=True).xreplace(self.subs))

    def _array(self, value, shape):
        rows, cols = self.size(shape[0]), self.size(shape[1])
        arr = np.asarray(value, dtype=object if self.mp else float).reshape(rows, cols)
        if self.mp:
            arr = np.vectorize(lambda v: mpmath.mpf(v) if not isinstance(v, mpmath.mpf) else v, otypes=[object])(arr)
        return arr

    def _zeros(self, shape):
        z = np.zeros((self.size(shape[0]), self.size(shape[1])), dtype=object if self.mp else float)
        if self.mp:
            z[...] = mpmath.mpf(0)
        return z

    def _ones(self, shape):
        return self._zeros(shape) + 1

    # --- the passes ---------------------------------------------------------------------

    def run(self) -> Values:
        with mpmath.workdps(self.precision or 15):
            self._forward()
            self._backward()
        return self.values

    def _phases(self, names):
        """Static quantities before the sequence, the sequence block, statics that sum over it."""
        seq = [n for n in names if self.model[n].sequence]
        uses_seq = set(seq)
        before, after = [], []
        for n in names:
            q = self.model[n]
            if q.sequence:
                continue
            refs = {s.name for s in q.expr.atoms(MatrixSymbol)} if q.expr is not None else set()
            if q.expr is not None and (q.expr.has(TimeSum) or refs & uses_seq):
                after.append(n)
                uses_seq.add(n)
            else:
                before.append(n)
        return before, seq, after

    def _forward(self):
        f = self.values.forward
        for qname, steps in self.model.states.items():
            f.setdefault(qname, {})
            for k, value in steps.items():
                f[qname][k] = self._zeros(value.shape) if isinstance(value, ZeroMatrix) else f[value.name]
        before, seq, after = self._phases(self.model.order)
        for n in before:
            f[n] = self.ev(self.model[n].expr, None)
        for t in range(1, (self.T or 0) + 1):
            for n in seq:
                f.setdefault(n, {})[t] = self.ev(self.model[n].expr, t)
        for n in after:
            f[n] = self.ev(self.model[n].expr, None)
        self.values.loss = f[self.model.loss][0, 0]

    def _backward(self):
        a = self.values.adjoints
        order = [adj.name for adj in self.d.backward_order]
        before, seq, after = self._phases(list(reversed(order)))
        for n in reversed(after):
            a[n] = self._static_adjoint(self.d.adjoints[n])
        for t in range(self.T or 0, 0, -1):
            for n in reversed(seq):
                adj = self.d.adjoints[n]
                value = self._zeros(adj.quantity.shape)
                for term in adj.closed_terms:
                    if 1 <= t + term.offset <= self.T:
                        value = value + self.ev(term.expr, t)
                a.setdefault(n, {})[t] = value
        for n in reversed(before):
            a[n] = self._static_adjoint(self.d.adjoints[n])
        for name, g in self.d.gradients.items():
            self.values.gradients[name] = self._total(g.param.shape, g.per_step, [g.static] + [
                e for _, _, e in g.initial])

    def _static_adjoint(self, adj):
        return self._total(adj.quantity.shape, adj.closed_per_step, [adj.closed_static])

    def _total(self, shape, per_step, static):
        """Σ_t per_step + the static parts (None where there is none)."""
        value = self._zeros(shape)
        if per_step is not None:
            for t in range(1, (self.T or 0) + 1):
                value = value + self.ev(per_step, t)
        for e in static:
            if e is not None:
                value = value + self.ev(e, None)
        return value

    # --- expressions --------------------------------------------------------------------

    def lookup(self, base, step):
        """The value of a symbol (or adjoint symbol) at an absolute step (None: static)."""
        if isinstance(base, Delta):
            store, name = self.values.adjoints, base.name
            if step is not None and not (1 <= step <= (self.T or 0)):
                return self._zeros(base.shape)  # δ beyond the sequence is zero
        else:
            store, name = self.values.forward, base.name
        value = store[name]
        return value[step] if isinstance(value, dict) else value

    def ev(self, e, t):
        """Evaluate a matrix expression at step ``t`` (None outside the time loop)."""
        if isinstance(e, At):
            return self.lookup(e.base, t + e.offset)
        if isinstance(e, AtStep):
            return self.lookup(e.base, e.step)
        if isinstance(e, (MatrixSymbol, Delta)):
            return self.lookup(e, None)
        if isinstance(e, ZeroMatrix):
            return self._zeros(e.shape)
        if isinstance(e, OneMatrix):
            return self._ones(e.shape)
        if isinstance(e, MatAdd):
            out = self.ev(e.args[0], t)
            for a in e.args[1:]:
                out = out + self.ev(a, t)
            return out
        if isinstance(e, MatMul):
            coeff = sp.Mul(*[a for a in e.args if not a.is_Matrix])
            mats = [self.ev(a, t) for a in e.args if a.is_Matrix]
            out = mats[0]
            for m in mats[1:]:
                out = out.dot(m)
            return out * self._number(coeff) if coeff != 1 else out
        if isinstance(e, HadamardProduct):
            out = self.ev(e.args[0], t)
            for a in e.args[1:]:
                out = out * self.ev(a, t)
            return out
        if isinstance(e, HadamardPower):
            base = self.ev(e.args[0], t)
            k = int(e.args[1])
            return base ** k if k > 0 else 1 / base ** (-k)
        if isinstance(e, Transpose):
            return self.ev(e.arg, t).T
        if isinstance(e, Apply):
            fn = _FUNCTIONS[e.fname][1 if self.mp else 0]
            x = self.ev(e.arg, t)
            return np.vectorize(fn, otypes=[object])(x) if self.mp else fn(x)
        if isinstance(e, LogSoftmax):
            z = self.ev(e.arg, t)
            z = z - z.max()
            return z - self._log(self._exp(z).sum())
        if isinstance(e, Softmax):
            z = self.ev(e.arg, t)
            ez = self._exp(z - z.max())
            return ez / ez.sum()
        if isinstance(e, Concat):
            return np.vstack([self.ev(a, t) for a in e.args])
        if isinstance(e, ColSlice):
            return self.ev(e.arg, t)[:, self.size(e.start):self.size(e.stop)]
        if isinstance(e, RowSlice):
            return self.ev(e.arg, t)[self.size(e.start):self.size(e.stop)]
        if isinstance(e, TimeSum):
            out = self._zeros(e.shape)
            for step in range(1, (self.T or 0) + 1):
                out = out + self.ev(e.arg, step)
            return out
        raise TypeError(f"cannot evaluate {type(e).__name__}")

    def _number(self, c):
        if not self.mp:
            return float(c)
        c = sp.sympify(c, strict=True)
        return mpmath.mpf(c.p) / c.q if c.is_Rational else mpmath.mpf(str(sp.N(c, self.precision + 10)))

    def _exp(self, x):
        return np.vectorize(mpmath.exp, otypes=[object])(x) if self.mp else np.exp(x)

    def _log(self, x):
        return mpmath.log(x) if self.mp else np.log(x)


def evaluate(derivation: Derivation, dims: dict[str, int], T: int | None, params: dict, data: dict,
             precision: int | None = None) -> Values:
    """Forward values, adjoints and gradients of ``derivation`` at one point."""
    return Evaluator(derivation, dims, T, params, data, precision).run()


def random_point(model, dims: dict[str, int], T: int | None, seed: int = 0, scale: float = 0.5):
    """Random parameters and data for a model at concrete sizes (targets positive; a
    distribution target sums to one)."""
    rng = np.random.default_rng(seed)
    subs = {model.dims[k]: v for k, v in dims.items()}
    if model.has_time:
        subs[model.length] = T

    def shape(q):
        return tuple(int(sp.sympify(x, strict=True).xreplace(subs)) for x in q.shape)

    params = {p.name: rng.normal(0, scale, shape(p)) for p in model.params}
    data = {}
    for q in model.data:
        n = (T if q.sequence else 1,)
        if q.role == "target":
            v = rng.uniform(0.1, 1.0, n + shape(q))
            if q.distribution:
                v = v / v.sum(axis=-2, keepdims=True)
        else:
            v = rng.normal(0, 1.0, n + shape(q))
        data[q.name] = v if q.sequence else v[0]
    return params, data
