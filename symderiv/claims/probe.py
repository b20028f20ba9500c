"""Numbers for judging claims: the derivation evaluated at a few random sizes and points.

A claim is judged at several sizes where every dim differs from every other, so a claim
that holds only when, say, n_h = n_o cannot pass.  Besides the true values, a probe can
evaluate the model with every path through a later step cut (δ_{t+1} terms dropped): a
claim that is right there but not in truth is missing a recurrent term.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

import numpy as np

from ..ad.derive import Derivation
from ..check.evaluate import Evaluator, random_point

STEPS = 4  # sequence length of the first probe: long enough for a t+1 and a t-1 term at once; the
# others are one and two steps longer, so a claim about a fixed step (δh_3) cannot pass by being
# the last step of one probe
PROBES = 3


class ClaimEvaluator(Evaluator):
    """An ``Evaluator`` for expressions that come from claims.

    After ``run`` it remembers every value it computes: a diagnosis evaluates hundreds of
    candidate repairs that share most of their sub-expressions.  A sequence value outside
    1..T reads as zero, so a claim may name f_{t+1} at t = T (where δ_{T+1} = 0 anyway).
    """

    _memo: dict | None = None

    def run(self):
        values = super().run()
        self._memo = {}
        return values

    def lookup(self, base, step):
        try:
            return super().lookup(base, step)
        except KeyError:
            if step is None:
                raise
            return self._zeros(base.shape)

    def ev(self, e, t):
        if self._memo is None:
            return super().ev(e, t)
        key = (e, t)
        if key not in self._memo:
            self._memo[key] = super().ev(e, t)
        return self._memo[key]

    def value(self, e, t):
        """``ev`` as a float array, or None if ``e`` cannot be evaluated (a bad shape, log of 0, ...)."""
        length = self.model.length
        if length is not None and self.T and length in getattr(e, "free_symbols", ()):
            e = e.xreplace({length: self.T})  # a claim may name T, the number of steps, as a number
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(self.ev(e, t), dtype=float)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
            return None
        return out if np.all(np.isfinite(out)) else None


class LocalLossEvaluator(ClaimEvaluator):
    """The values with the loss of one step only (``only``): the terms an adjoint takes from
    the loss itself (no δ in them) count at that step alone, so the adjoints and gradients
    are those of L_k, the loss of step k."""

    only: int = 0

    def _counts(self, adj, term, t) -> bool:
        # a term taken from the loss itself (no δ in it) counts at the loss's step alone
        return t == self.only or _has_delta(term.expr)


def _has_delta(e) -> bool:
    from ..ir.expr import Delta
    return any(isinstance(n, Delta) for n in getattr(e, "atoms", lambda *a: ())(Delta)) or isinstance(e, Delta)


class Probe:
    """One evaluation point: concrete sizes, a random point, the values in both worlds."""

    def __init__(self, derivation: Derivation, dims: dict[str, int], seed: int, steps: int = STEPS):
        self.d = derivation
        self.dims = dims
        self.T = steps if derivation.model.has_time else None
        self.params, self.data = random_point(derivation.model, dims, self.T, seed=seed)

    @property
    def steps(self) -> list[int]:
        return list(range(1, (self.T or 0) + 1))

    @cached_property
    def exact(self) -> ClaimEvaluator:
        return self._run(self.d)

    def local(self, step: int) -> ClaimEvaluator:
        """The values of L_step, the loss of one step alone (the adjoints of ∂L_t/∂X)."""
        cache = self.__dict__.setdefault("_local", {})
        if step not in cache:
            ev = LocalLossEvaluator(self.d, self.dims, self.T, self.params, self.data)
            ev.only = step
            ev.run()
            cache[step] = ev
        return cache[step]

    @cached_property
    def truncated(self) -> ClaimEvaluator:
        """The values with backpropagation through time cut after one step."""
        return self._run(without_recurrence(self.d))

    def _run(self, d: Derivation) -> ClaimEvaluator:
        ev = ClaimEvaluator(d, self.dims, self.T, self.params, self.data)
        ev.run()
        return ev


def without_recurrence(d: Derivation) -> Derivation:
    """The derivation with every adjoint term through a later step (offset > 0) dropped."""
    adjoints = {name: replace(a, closed_terms=[t for t in a.closed_terms if t.offset == 0])
                for name, a in d.adjoints.items()}
    gradients = {name: replace(g, initial=[]) for name, g in d.gradients.items()}
    return Derivation(d.model, adjoints, gradients, d.preactivations, d.seconds)


def probes(d: Derivation, count: int = PROBES) -> list[Probe]:
    """``count`` probes; in each every dim has its own size, and the sizes change between probes."""
    names = list(d.model.dims)
    n = len(names)
    orders = [list(range(n)), list(reversed(range(n))), [(i + 1) % n for i in range(n)] if n else []]
    out = []
    for k in range(count):
        order = orders[k % len(orders)]
        dims = {name: 2 + k + order[i] for i, name in enumerate(names)}
        out.append(Probe(d, dims, seed=k, steps=STEPS + k))
    return out
