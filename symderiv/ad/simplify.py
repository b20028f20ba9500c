"""Small rewrite passes over derived expressions; never a global ``sympy.simplify``.

- ``tidy``: rebuild bottom-up through the builders of ``expr`` (coefficients in front, zeros
  dropped, x ⊙ x^{∘-1} cancelled) and apply the identities that fuse softmax with
  cross-entropy: uᵀ(v ⊘ u) = 1ᵀv, and 1ᵀr = 1 for a target declared a distribution (at a
  step or static); 1 1ᵀ is the matrix of ones, so a penalty's W ⊙ 1 1ᵀ is W.
- ``collect``: gather what the terms of a sum share (a Hadamard factor, a left or right
  matrix factor, a row slice), so results read collected rather than expanded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..ir.expr import (
    At,
    AtStep,
    RowSlice,
    add,
    coeff_and_rest,
    hadamard,
    is_zero,
    matmul,
    scale,
    transpose,
)
from ..ops import node_record


def tidy(e: MatrixExpr, distributions: frozenset[str] = frozenset()) -> MatrixExpr:
    """Rebuild ``e`` in normal form; ``distributions`` names targets whose vectors sum to one."""
    return _Tidy(distributions).run(e)


def tidier(distributions: frozenset[str] = frozenset()) -> Callable[[MatrixExpr], MatrixExpr]:
    """``tidy`` for many expressions that share subtrees (the terms of one derivation share what flows
    into them): each distinct subtree is tidied once."""
    return _Tidy(distributions).run


class _Tidy:
    def __init__(self, distributions: frozenset[str]) -> None:
        self.distributions = distributions
        self.done: dict[sp.Basic, sp.Basic] = {}

    def run(self, e: sp.Basic) -> sp.Basic:
        # Shared subtrees (softmax's rule reads its output twice) are tidied once.
        done = self.done.get(e)
        if done is None:
            done = self.done[e] = self._run(e)
        return done

    def _run(self, e: sp.Basic) -> sp.Basic:
        if not getattr(e, "is_Matrix", False) or not e.args:
            return e
        rule = node_record(e).tidy  # an unknown node is an internal error, never passed through
        if rule == "keep":
            return e
        if rule == "rebuild":
            args = [self.run(a) if getattr(a, "is_Matrix", False) else a for a in e.args]
            # unchanged arguments: the node as it is (most function nodes hold a model's own subtree)
            return e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)
        if isinstance(rule, str):
            raise TypeError(f"internal error: unknown tidy rule {rule!r} for {type(e).__name__}")
        return rule(self, e)

    def product(self, factors: Sequence[MatrixExpr]) -> MatrixExpr:
        """A tidied matrix product, with the identities of ``_pair`` applied."""
        coeff, rest = coeff_and_rest(matmul(*factors))
        mats = rest.args if isinstance(rest, MatMul) else (rest,)
        return scale(coeff, self._matmul(mats))

    def sum(self, terms: Sequence[MatrixExpr]) -> MatrixExpr:
        """A tidied sum; Hadamard products over sums are distributed when that makes it shorter:
        p ⊙ (1 − y) − (1 − p) ⊙ y is p − y (binary cross-entropy through σ)."""
        total = add(*terms)
        if not isinstance(total, MatAdd) or not any(
                isinstance(f, MatAdd) for t in total.args for f in _hadamard_factors(t)[1]):
            return total
        before = _size(total)
        if before > _SMALL:  # only short sums (a big one is not read, and counting it would be slow)
            return total
        expanded = add(*[u for t in total.args for u in _distribute(t)])
        return expanded if _size(expanded) < before else total

    def hadamard_product(self, factors: Sequence[MatrixExpr]) -> MatrixExpr:
        """A tidied Hadamard product (``_hadamard``)."""
        return self._hadamard(factors)

    def _hadamard(self, factors: Sequence[MatrixExpr]) -> MatrixExpr:
        """x ⊙ (a ⊘ x + b) = a + x ⊙ b: distribute over a sum when that cancels a division.

        This is what turns the adjoint of binary cross-entropy through a sigmoid,
        (−y ⊘ p + (1 − y) ⊘ (1 − p)) ⊙ p ⊙ (1 − p), into p − y.
        A transposed quotient beside its divisor's transpose is opened first: Pᵀ ⊙ (Y ⊘ P)ᵀ is
        Yᵀ (a row softmax written softmax(Z)ᵀ)."""
        factors = list(factors)
        for i, f in enumerate(factors):
            c, rest = coeff_and_rest(f)
            if isinstance(rest, Transpose) and isinstance(rest.arg, HadamardProduct):
                others = [*factors[:i], *factors[i + 1:]]
                if any(isinstance(a, HadamardPower) and a.args[1] == -1 and transpose(a.args[0]) in others
                       for a in rest.arg.args):
                    return self.run(scale(c, hadamard(*others, *[
                        HadamardPower(transpose(a.args[0]), a.args[1]) if isinstance(a, HadamardPower) else transpose(a)
                        for a in rest.arg.args])))
        for i, f in enumerate(factors):
            if not isinstance(f, MatAdd):
                continue
            others = [*factors[:i], *factors[i + 1:]]
            if any(_divides_by(term, others) for term in f.args):
                return self.sum([self.run(hadamard(*others, term)) for term in f.args])
        return hadamard(*factors)

    def _matmul(self, mats: Sequence[MatrixExpr]) -> MatrixExpr:
        mats = list(mats)
        changed = True
        while changed:
            changed = False
            # right to left: 1 (1ᵀ Y) is 1 1ᵀ for a distribution Y, before 1 1ᵀ becomes a matrix of ones
            for i in reversed(range(len(mats) - 1)):
                new = self._pair(mats[i], mats[i + 1])
                if new is not None:
                    # a product among the new factors is spread out (1ᵀ (r w), w a window: 1ᵀ r w)
                    mats[i:i + 2] = [f for m in new if m is not None
                                     for f in (m.args if isinstance(m, MatMul) and all(a.is_Matrix for a in m.args)
                                               else (m,))]
                    changed = True
                    break
        if not mats:
            return OneMatrix(1, 1)
        return matmul(*mats)

    def _pair(self, a: MatrixExpr, b: MatrixExpr) -> list[MatrixExpr] | None:
        """Identities on two adjacent factors; None when nothing applies."""
        # uᵀ (v ⊙ u^{∘-1}) = 1ᵀ v
        if isinstance(a, Transpose) and isinstance(b, HadamardProduct):
            inv = HadamardPower(a.arg, -1)
            if inv in b.args:
                rest = [f for f in b.args if f != inv]
                return [OneMatrix(1, a.arg.shape[0]), rest[0] if len(rest) == 1 else HadamardProduct(*rest)]
        # 1ᵀ r = 1 for a distribution target; 1ᵀ R = 1ᵀ for a matrix one
        if isinstance(a, OneMatrix) and a.shape[0] == 1 and self._is_distribution(b):
            return [OneMatrix(1, b.shape[1])]
        # 1 1ᵀ is the matrix of ones (a penalty's W ⊙ 1 1ᵀ is then W)
        if isinstance(a, OneMatrix) and isinstance(b, OneMatrix) and a.shape[1] == 1:
            return [OneMatrix(a.shape[0], b.shape[1])]
        return None

    def _is_distribution(self, e: MatrixExpr) -> bool:
        """A target declared a distribution: at a step (``r_t``) or static (``y``; a matrix one: each
        column sums to one)."""
        if isinstance(e, MatrixSymbol):
            return e.name in self.distributions
        return isinstance(e, (At, AtStep)) and getattr(e.base, "name", None) in self.distributions


def _distribute(term: MatrixExpr) -> list[MatrixExpr]:
    """The terms of a Hadamard product with its sums multiplied out."""
    c, factors = _hadamard_factors(term)
    out = [scale(c, OneMatrix(*term.shape))]
    for f in factors:
        parts = list(f.args) if isinstance(f, MatAdd) else [f]
        out = [hadamard(o, p) for o in out for p in parts]
    return out


_SMALL = 200  # nodes: the size up to which a sum is multiplied out to see if it gets shorter


def _size(e: sp.Basic, limit: int = _SMALL) -> int:
    """The number of nodes of ``e`` written out, counted up to ``limit`` + 1 (a shared subtree
    counts each time: a tree written out can be exponentially larger than its graph)."""
    n = 0
    for _ in sp.preorder_traversal(e):
        n += 1
        if n > limit:
            break
    return n


def _divides_by(term: MatrixExpr, factors: Sequence[MatrixExpr]) -> bool:
    """Whether ``term`` has a factor x^{∘-1} with x among ``factors``."""
    _, rest = coeff_and_rest(term)
    parts = rest.args if isinstance(rest, HadamardProduct) else (rest,)
    return any(isinstance(p, HadamardPower) and p.args[1] == -1 and p.args[0] in factors for p in parts)


# ---------------------------------------------------------------------------------------


def collect(terms: Sequence[MatrixExpr]) -> MatrixExpr | None:
    """Sum the terms, gathering a factor that all of them share."""
    terms = [t for t in terms if not is_zero(t)]
    if not terms:
        return None
    combined = add(*terms)  # like terms first: ½d + ½d is d
    terms = list(combined.args) if isinstance(combined, MatAdd) else [combined]
    if len(terms) == 1:
        return terms[0]
    # A common row slice: (a)[i:j] + (b)[i:j] = (a + b)[i:j]
    if all(isinstance(t, RowSlice) for t in terms) and len({(t.start, t.stop) for t in terms}) == 1:
        return RowSlice(collect([t.arg for t in terms]), terms[0].start, terms[0].stop)
    # A common Hadamard factor: x ⊙ a + x ⊙ b = x ⊙ (a + b)
    factor_lists = [_hadamard_factors(t) for t in terms]
    common = [f for f in factor_lists[0][1] if all(f in fl[1] for fl in factor_lists[1:])]
    if common and all(len(fl[1]) > len(common) for fl in factor_lists):
        rests = []
        for coeff, factors in factor_lists:
            left = list(factors)
            for f in common:
                left.remove(f)
            rests.append(scale(coeff, hadamard(*left) if left else OneMatrix(*terms[0].shape)))
        return hadamard(*common, collect(rests))
    # A common left or right matrix factor: A x + A y = A (x + y)
    for side in (0, -1):
        facs = [_matmul_factors(t) for t in terms]
        if all(len(f[1]) > 1 for f in facs) and len({f[1][side] for f in facs}) == 1:
            shared = facs[0][1][side]
            rests = [scale(c, matmul(*(m[1:] if side == 0 else m[:-1]))) for c, m in facs]
            inner = collect(rests)
            return matmul(shared, inner) if side == 0 else matmul(inner, shared)
    return add(*terms)


def _hadamard_factors(e: MatrixExpr) -> tuple[sp.Expr, list[MatrixExpr]]:
    c, rest = coeff_and_rest(e)
    if isinstance(rest, HadamardProduct):
        return c, list(rest.args)
    return c, [rest]


def _matmul_factors(e: MatrixExpr) -> tuple[sp.Expr, list[MatrixExpr]]:
    c, rest = coeff_and_rest(e)
    if isinstance(rest, MatMul):
        return c, list(rest.args)
    return c, [rest]
