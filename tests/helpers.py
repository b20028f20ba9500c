"""Helpers shared by the test files: where things are, how a generated module is imported,
and the check that a generated module is right.  Test files import from here, never from
each other or from ``conftest`` (which holds the fixtures)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

import symderiv
from symderiv.check.evaluate import evaluate, random_point
from symderiv.render.emit import render

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GENERATED = ROOT / "generated"

_counter = itertools.count()


def import_generated(path: Path, name: str) -> ModuleType:
    """The Python file at ``path`` imported as a module called ``name``, outside
    ``sys.modules`` (so modules of one name from different files never mix)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated_module(d, tmp_path: Path) -> ModuleType:
    """The NumPy module symderiv writes for the derivation ``d``, written under ``tmp_path``
    and imported."""
    path = tmp_path / f"names_{next(_counter)}.py"
    path.write_text(render(d, "py", "x.sdm"), encoding="utf-8")
    module = import_generated(path, path.stem)
    sys.modules.pop(path.stem, None)
    return module


def public_data(model, data) -> dict:
    """The evaluator's (n, 1) layout → the generated module's (n,) / (T, n)."""
    out = {}
    for q in model.data:
        v = np.asarray(data[q.name], dtype=float)
        if q.kind != "matrix":  # a matrix keeps its (rows, cols)
            v = v[..., 0]
        out[q.name] = v[..., 0] if q.is_scalar else v
    return out


def assert_module_is_right(text: str, tmp_path: Path, T: int = 3, seed: int = 0) -> ModuleType:
    """The generated module of the model ``text`` gives the loss and gradients of symderiv's
    own evaluator, and its gradients agree with central differences of its own loss."""
    d = symderiv.derive(symderiv.parse(text, "x.sdm"))
    m = generated_module(d, tmp_path)
    dims = {name: 2 + k for k, name in enumerate(m.DIMS)}
    T = T if d.model.has_time else None
    params = m.init_params(dims, seed=seed)
    _, data = random_point(d.model, dims, T, seed=seed + 1)
    x = public_data(d.model, data)
    loss, grads = m.loss_and_gradients(params, **x)
    assert set(grads) == set(params) == {p.name for p in d.model.params}
    # symderiv's own evaluation of the closed forms
    exact = evaluate(d, dims, T, params, data)
    assert np.isclose(loss, float(exact.loss), rtol=1e-10, atol=1e-12), (loss, exact.loss)
    for name, g in grads.items():
        assert np.shape(g) == np.shape(params[name]), name
        ref = np.asarray(exact.gradients[name], dtype=float).reshape(np.shape(g))
        assert np.allclose(g, ref, rtol=1e-8, atol=1e-10), (name, g, ref)
    # central differences of the module's own loss
    eps = 1e-6
    for name, value in params.items():
        value = np.asarray(value, dtype=float)
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = dict(params), dict(params)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd[idx] = (m.loss(plus, **x) - m.loss(minus, **x)) / (2 * eps)
        scale = max(np.abs(fd).max(), 1e-6)
        assert np.abs(np.asarray(grads[name]) - fd).max() <= 1e-5 * scale, name
    return m
