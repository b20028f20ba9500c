"""The numbers behind the hand verdicts of the wild corpus, independent of symderiv.

Each source's ``check.py`` writes the network of its write-up in torch (float64), takes
the true gradients from torch's autograd, implements every gradient claim of the write-up
as the author wrote it, and classifies the claim with the helpers below.  Nothing here
imports symderiv: these numbers are the independent answer the verdicts are checked by.

Verdicts (the convention of ``README.md``):

- ``correct``: the claimed value equals the true one (for a quantity at step t, at every t);
- ``per-step``: the claim about a parameter depends on t and equals, at every t, the term
  of step t of a decomposition of the gradient that the write-up declares (the use of the
  parameter at step t, or the gradient of the loss term L_t of ``L = sum_t L_t``); the
  terms sum to the gradient;
- ``incorrect``: anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

DTYPE = torch.float64


class Rand:
    """Seeded random tensors, float64."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, *shape: int, scale: float = 0.7) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=self.gen, dtype=DTYPE)

    def param(self, *shape: int, scale: float = 0.7) -> torch.Tensor:
        return self(*shape, scale=scale).requires_grad_(True)

    def positive(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, dtype=DTYPE) + 0.2

    def distribution(self, *shape: int) -> torch.Tensor:
        """Columns that sum to one (soft labels): shape (n,) or (n, m)."""
        p = torch.rand(*shape, generator=self.gen, dtype=DTYPE) + 0.1
        return p / p.sum(dim=0, keepdim=True)

    def one_hot(self, n: int) -> torch.Tensor:
        k = int(torch.randint(n, (1,), generator=self.gen))
        v = torch.zeros(n, dtype=DTYPE)
        v[k] = 1.0
        return v

    def bits(self, *shape: int) -> torch.Tensor:
        return torch.randint(2, shape, generator=self.gen).to(DTYPE)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a = torch.as_tensor(a, dtype=DTYPE).detach()
    b = torch.as_tensor(b, dtype=DTYPE).detach()
    if a.shape != b.shape:
        if a.numel() != b.numel() or a.numel() != 1:
            return False
        a, b = a.reshape(()), b.reshape(())
    return bool(torch.allclose(a, b, rtol=1e-8, atol=1e-10))


def grad(f: torch.Tensor, wrt: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d f / d wrt, every entry (zero where f does not depend on it)."""
    out = torch.autograd.grad(f, list(wrt), retain_graph=True, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, out)]


def static(claimed: torch.Tensor, true: torch.Tensor) -> str:
    """A claim that does not depend on the step."""
    return "correct" if close(claimed, true) else "incorrect"


def steps(claimed: Sequence[torch.Tensor], true: Sequence[torch.Tensor]) -> str:
    """A claim about a quantity at step t, for every t."""
    ok = len(claimed) == len(true) and all(close(c, r) for c, r in zip(claimed, true))
    return "correct" if ok else "incorrect"


def per_step(claimed: Sequence[torch.Tensor], terms: Sequence[torch.Tensor],
             total: torch.Tensor) -> str:
    """A claim about a parameter that depends on t: per-step when it is the term of step t
    for every t (the terms must sum to the gradient: asserted, it is the check's own
    consistency); correct when it is the whole gradient at every t."""
    assert close(sum(terms), total), "the per-step terms do not sum to the gradient"
    if all(close(c, r) for c, r in zip(claimed, terms)) and len(claimed) == len(terms):
        return "per-step"
    if all(close(c, total) for c in claimed):
        return "correct"
    return "incorrect"


def step_copies(p: torch.Tensor, T: int) -> list[torch.Tensor]:
    """T copies of a parameter, one used at each step, so that d loss / d copy_t is the
    term of step t of the gradient (the dummy-variable trick)."""
    return [p.detach().clone().requires_grad_(True) for _ in range(T)]


def run_seeds(one: Callable[[int], dict[str, str]], seeds: Sequence[int] = (0, 1, 2)) -> dict[str, str]:
    """The verdicts of ``one(seed)``, which must be the same for every seed."""
    results = [one(s) for s in seeds]
    for r in results[1:]:
        assert r == results[0], (results[0], r)
    return results[0]


def sigmoid(z: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(z)


def softmax(z: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, dim=0)


def cross_entropy(r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return -(r * torch.log(p)).sum()


def fixed_step(claimed: torch.Tensor, terms: Sequence[torch.Tensor], k: int, total: torch.Tensor) -> str:
    """A claim about the term of one fixed step k (0-based index into ``terms``), such as
    dE_4/dV: per-step when it equals that term."""
    assert close(sum(terms), total), "the per-step terms do not sum to the gradient"
    if claimed is not None and close(claimed, terms[k]):
        return "per-step"
    if claimed is not None and close(claimed, total):
        return "correct"
    return "incorrect"


def matmul_or_none(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """The matrix product a b of column vectors / matrices as written, or None when the
    sizes do not fit (a claim whose product is not defined is not the gradient)."""
    a2 = a.reshape(-1, 1) if a.dim() == 1 else a
    b2 = b.reshape(-1, 1) if b.dim() == 1 else b
    if a2.shape[1] != b2.shape[0]:
        return None
    return a2 @ b2
