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
from sympy import MatrixSymbol

from ..ad.derive import Derivation, state_adjoint
from ..ir.blocks import time_blocks
from ..ir.expr import Apply, At, AtEnd, AtStep, Concat, Delta, Det, Inv, LogDet, TimeSum
from ..ir.model import Model
from ..ops import ELEMENTWISE, node_record


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
            self.subs[self.model.length] = time_steps(self.model, T)
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

    def _forward(self):
        """Block by block (``ir.blocks``): a recurrence over its steps in its direction, a
        static quantity once; each block's states first (a state may be computed from static values)."""
        f = self.values.forward
        T = self.T or 0
        for block in time_blocks(self.model):
            for n in block.names:
                for k, value in self.model.states.get(n, {}).items():
                    f.setdefault(n, {})[k] = self.ev(value, None)
                for k, value in self.model.end_states.get(n, {}).items():
                    f.setdefault(n, {})[T + k] = self.ev(value, None)
            if not block.sequence:
                for n in block.names:
                    f[n] = self.ev(self.model[n].expr, None)
                continue
            for t in range(1, T + 1) if block.direction >= 0 else range(T, 0, -1):
                for n in block.names:
                    f.setdefault(n, {})[t] = self.ev(self.model[n].expr, t)
        self.values.loss = f[self.model.loss][0, 0]

    def _backward(self):
        """The blocks in reverse; a recurrence's adjoints against its direction (a recurrence
        backwards in time has its adjoint recurrence forward in time)."""
        a = self.values.adjoints
        T = self.T or 0
        for block in reversed(time_blocks(self.model)):
            names = [n for n in reversed(block.names) if n in self.d.adjoints]
            if not block.sequence:
                for n in names:
                    a[n] = self._static_adjoint(self.d.adjoints[n])
                continue
            for t in range(T, 0, -1) if block.direction >= 0 else range(1, T + 1):
                for n in names:
                    adj = self.d.adjoints[n]
                    value = self._zeros(adj.quantity.shape)
                    for term in adj.closed_terms:
                        if 1 <= t + term.offset <= T and self._counts(adj, term, t):
                            value = value + self.ev(term.expr, t)
                    for key, e in adj.closed_fixed.items():  # what a static equation reading q at step t gives
                        at = adj.fixed_step(key)
                        if (T + at[1] if isinstance(at, tuple) else at) == t:
                            value = value + self.ev(e, None)
                    a.setdefault(n, {})[t] = value
        for name, g in self.d.gradients.items():
            self.values.gradients[name] = self._total(g.param.shape, g.per_step, [g.static] + [
                e for _, _, e in g.initial])

    def _counts(self, adj, term, t) -> bool:
        """Whether the term ``term`` of ``adj`` counts at step t (every term does; a subclass may
        leave some out, as the claim reader's loss of one step does)."""
        return True

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
                state = self._state_adjoint(base, step)
                return self._zeros(base.shape) if state is None else state  # δ beyond the sequence is zero
        else:
            store, name = self.values.forward, base.name
            q = self.model.quantities.get(name)
            if step is not None and q is not None and q.role in ("input", "target") and not (
                    1 <= step <= (self.T or 0)):
                return self._zeros(base.shape)  # data before step 1 or after T is zero
        value = store[name]
        return value[step] if isinstance(value, dict) else value

    def _state_adjoint(self, base, step):
        """δq at a computed state's step (δh_0 for state h[0] = tanh(W_0 @ c)), else None."""
        T = self.T or 0
        model, name = self.model, base.name
        if step < 1 and step in model.states.get(name, {}):
            key = AtStep(base, step)
        elif step > T and step - T in model.end_states.get(name, {}):
            key = AtEnd(base, step - T)
        else:
            return None
        cache = self.values.adjoints.setdefault(("state", name), {})
        if step not in cache:
            cache[step] = self.ev(state_adjoint(self.d.adjoints[name], key), None)
        return cache[step]

    def ev(self, e, t):
        """Evaluate a matrix expression at step ``t`` (None outside the time loop)."""
        # The node's record says how; an unknown node is a TypeError ("cannot evaluate").
        try:
            record = node_record(e)
        except TypeError:
            raise TypeError(f"cannot evaluate {type(e).__name__}") from None
        return record.evaluate(self, e, t)

    # What a record's ``evaluate`` rule may use.

    def zeros(self, shape):
        return self._zeros(shape)

    def ones(self, shape):
        return self._ones(shape)

    def number(self, c):
        return self._number(c)

    def exp(self, x):
        return self._exp(x)

    def log(self, x):
        return self._log(x)

    def _number(self, c):
        if not self.mp:
            return float(sp.sympify(c, strict=True).xreplace(self.subs))
        c = sp.sympify(c, strict=True).xreplace(self.subs)  # a size used as a value: its number
        return mpmath.mpf(c.p) / c.q if c.is_Rational else mpmath.mpf(str(sp.N(c, self.precision + 10)))

    def _exp(self, x):
        return np.vectorize(mpmath.exp, otypes=[object])(x) if self.mp else np.exp(x)

    def _log(self, x):
        return mpmath.log(x) if self.mp else np.log(x)


def evaluate(derivation: Derivation, dims: dict[str, int], T: int | None, params: dict, data: dict,
             precision: int | None = None) -> Values:
    """Forward values, adjoints and gradients of ``derivation`` at one point."""
    return Evaluator(derivation, dims, T, params, data, precision).run()


def time_steps(model: Model, T: int | None) -> int:
    """The number of steps of a point: ``T`` for a model with time (which needs it), else 0."""
    if not model.has_time:
        return 0
    if T is None:
        raise ValueError(f"the model {model.name} has a time axis: give the number of steps T")
    return T


def random_point(model: Model, dims: dict[str, int], T: int | None, seed: int = 0,
                 scale: float = 0.5) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random parameters and data for a model at concrete sizes (targets positive; a
    distribution target sums to one).

    Values inside each function's domain: a parameter or input that the argument of ``log``
    or ``sqrt`` is built from by sums and products (``sqrt(W @ x)``) is drawn positive, as
    |N| + 0.1, from the same random stream, so every other value is what it always was."""
    rng = np.random.default_rng(seed)
    subs = {model.dims[k]: v for k, v in dims.items()}
    if model.has_time:
        subs[model.length] = time_steps(model, T)
    positive = positive_leaves(model)
    square = square_leaves(model)

    def shape(q):
        return tuple(int(sp.sympify(x, strict=True).xreplace(subs)) for x in q.shape)

    def draw(name, v):
        if name in square:  # near the identity: well-conditioned, with a positive determinant
            return np.eye(v.shape[-1]) + 0.3 * v / np.sqrt(v.shape[-1])
        return np.abs(v) + 0.1 if name in positive else v

    params = {p.name: draw(p.name, rng.normal(0, scale, shape(p))) for p in model.params}
    data: dict[str, np.ndarray] = {}
    for q in model.data:
        n = (time_steps(model, T) if q.sequence else 1,)
        if q.role == "target":
            v = rng.uniform(0.1, 1.0, n + shape(q))
            if q.distribution:
                v = v / v.sum(axis=-2, keepdims=True)
        else:
            v = draw(q.name, rng.normal(0, 1.0, n + shape(q)))
        data[q.name] = v if q.sequence else v[0]
    return params, data


def positive_leaves(model) -> set[str]:
    """Params and inputs that, drawn positive, keep every argument of a function whose
    record's domain is positive (``log``, ``sqrt``) positive: those it is built from through
    sums, positively scaled products, Hadamard products, transposes and stacks.  An argument
    reached through anything else (a difference, ``tanh``) is left alone; one through a
    positive function (``exp``, ``softmax``) is positive already."""
    found: set[str] = set()
    seen: set[str] = set()

    def walk(e):
        if isinstance(e, (At, MatrixSymbol)):
            name = e.base.name if isinstance(e, At) else e.name
            q = model.quantities.get(name)
            if q is None or name in seen:
                return
            seen.add(name)
            if q.role in ("param", "input"):
                found.add(name)
            elif q.expr is not None and q.role == "intermediate":
                walk(q.expr)
            return
        if isinstance(e, Apply):
            return  # a positive function needs nothing; another one cannot be helped
        if isinstance(e, sp.MatMul):
            coeff = sp.Mul(*[a for a in e.args if not a.is_Matrix])
            if not (coeff.is_number and coeff > 0):
                return
        if isinstance(e, (sp.MatAdd, sp.MatMul, sp.HadamardProduct, sp.HadamardPower, sp.Transpose, TimeSum,
                          Concat)):
            for a in e.args:
                if getattr(a, "is_Matrix", False):
                    walk(a)

    for q in model.quantities.values():
        if q.expr is None:
            continue
        for node in sp.preorder_traversal(q.expr):
            if isinstance(node, Apply) and ELEMENTWISE[node.fname].domain == "positive":
                walk(node.arg)
            elif isinstance(node, sp.HadamardPower) and not node.args[1].is_integer:  # v ** -0.5
                walk(node.args[0])
    return found


def square_leaves(model) -> set[str]:
    """Square params and inputs that are the argument of ``inv``, ``det`` or ``logdet`` (or a
    transpose of one): drawn near the identity, so the inverse is well-conditioned and the
    determinant positive (``logdet``, ``log(det(...))``)."""
    found: set[str] = set()
    for q in model.quantities.values():
        if q.expr is None:
            continue
        for node in sp.preorder_traversal(q.expr):
            if isinstance(node, (Inv, Det, LogDet)):
                arg = node.arg.arg if isinstance(node.arg, sp.Transpose) else node.arg
                name = arg.base.name if isinstance(arg, At) else getattr(arg, "name", None)
                p = model.quantities.get(name) if isinstance(name, str) else None
                if p is not None and p.role in ("param", "input") and p.shape[0] == p.shape[1]:
                    found.add(p.name)
    return found
