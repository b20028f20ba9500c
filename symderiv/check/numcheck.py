"""The finite-difference half of ``symderiv check``: the generated NumPy module's gradients
against float64 central differences of its own loss, unbatched and batched."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ad.derive import Derivation
from ..render.emit import render
from .evaluate import random_point

EPS = 1e-5  # central differences: truncation ~EPS², rounding ~1e-16/EPS


@dataclass
class FiniteDifferenceResult:
    errors: dict[str, float]  # worst relative error per parameter, over both layouts
    tolerance: float = 1e-6

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in self.errors.values())


def load_generated(d: Derivation):
    """Render the NumPy module and import it (our generated code, never the user's text)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"_symderiv_check_{d.model.name}.py"
        path.write_text(render(d, "py", Path(d.model.path).name), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:  # never for a .py file: the types allow it
            raise ImportError(f"cannot import the generated module {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    sys.modules.pop(path.stem, None)
    return module


def external_data(model, data: dict, batch: int | None, rng) -> dict:
    """``random_point``'s data in the generated module's layout, with a batch axis if asked."""
    out = {}
    for q in model.data:
        v = np.asarray(data[q.name], dtype=float)
        v = v[..., 0]  # (T, n, 1) → (T, n); (n, 1) → (n,)
        if q.is_scalar:
            v = v[..., 0]
        if batch is not None:
            spread = rng.normal(1.0, 0.1, v.shape + (batch,))
            v = v[..., None] * spread
            if q.distribution:
                v = v / v.sum(axis=-2, keepdims=True)
        out[q.name] = v
    return out


def finite_difference_check(d: Derivation, dims: dict[str, int], T: int | None, seed: int = 0,
                            tolerance: float = 1e-6) -> FiniteDifferenceResult:
    module = load_generated(d)
    params = module.init_params(dims, seed=seed)
    rng = np.random.default_rng(seed + 1)
    _, data = random_point(d.model, dims, T, seed + 2)
    errors = {name: 0.0 for name in params}
    for batch in (None, 3):
        x = external_data(d.model, data, batch, rng)
        grads = module.gradients(params, **x)
        for name, value in params.items():
            value = np.asarray(value, dtype=float)
            fd = np.zeros_like(value)
            for idx in np.ndindex(value.shape):
                plus = dict(params)
                minus = dict(params)
                plus[name] = value.copy()
                minus[name] = value.copy()
                plus[name][idx] += EPS
                minus[name][idx] -= EPS
                fd[idx] = (module.loss(plus, **x) - module.loss(minus, **x)) / (2 * EPS)
            scale = max(np.abs(fd).max(), np.abs(grads[name]).max(), 1e-8)
            errors[name] = max(errors[name], float(np.abs(np.asarray(grads[name]) - fd).max() / scale))
    return FiniteDifferenceResult(errors, tolerance)
