"""Helpers shared by the test files: where things are, how a generated module is imported,
and the check that a generated module is right.  Test files import from here, never from
each other or from ``conftest`` (which holds the fixtures)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
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


def generated_modules(backend: str = "numpy") -> list[Path]:
    """The committed modules of one code back end in generated/ (``NAME.py`` for NumPy,
    ``NAME_torch.py`` for PyTorch, …: the suffixes of ``codegen/backends.py``)."""
    from symderiv.codegen.backends import BACKENDS, by_name

    suffix = by_name(backend).suffix
    longer = [b.suffix for b in BACKENDS.values() if b.suffix != suffix and b.suffix.endswith(suffix)]
    return sorted(p for p in GENERATED.glob("*" + suffix) if not p.name.endswith(tuple(longer)))

_counter = itertools.count()


# How every test compiles a write-up, and how the README says to: no shell escape, and TeX may
# read and write only files in and below the directory it runs in (kpathsea's "paranoid" mode).
PDFLATEX = ("pdflatex", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error")
PDFLATEX_ENV = {"openin_any": "p", "openout_any": "p"}


def pdflatex(tex: str, cwd: Path, *options: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """pdflatex on the file ``tex`` in ``cwd``, the safe way (PDFLATEX, PDFLATEX_ENV)."""
    return subprocess.run([*PDFLATEX, *options, tex], cwd=cwd, env={**os.environ, **PDFLATEX_ENV},
                          capture_output=True, text=True, timeout=timeout, check=False)


def central_differences(loss, params: dict, name: str, eps: float = 1e-6) -> np.ndarray:
    """(loss(params + ε e_i) − loss(params − ε e_i)) / 2ε for every entry i of ``params[name]``:
    the reference gradient the tests hold generated code to, sharing nothing with symderiv."""
    value = np.asarray(params[name], dtype=float)
    fd = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        plus, minus = dict(params), dict(params)
        plus[name], minus[name] = value.copy(), value.copy()
        plus[name][idx] += eps
        minus[name][idx] -= eps
        fd[idx] = (loss(plus) - loss(minus)) / (2 * eps)
    return fd


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
    for name in params:
        fd = central_differences(lambda p: m.loss(p, **x), params, name, eps=1e-6)
        scale = max(np.abs(fd).max(), 1e-6)
        assert np.abs(np.asarray(grads[name]) - fd).max() <= 1e-5 * scale, name
    return m


def reference_computes(model, functions) -> bool:
    """Whether the tests' own framework references (tests/torch_reference.py, the JAX one in
    tests/test_backend_jax.py) compute every equation of ``model``: the nodes they know, the
    elementwise ``functions`` they spell, numbers as coefficients (not yet language version 2's
    functions of matrices, powers and dims as values)."""
    import sympy as sp
    from sympy import (
        HadamardPower,
        HadamardProduct,
        Identity,
        MatAdd,
        MatMul,
        MatrixSymbol,
        OneMatrix,
        Transpose,
        ZeroMatrix,
    )

    from symderiv.ir.expr import Apply, At, AtEnd, AtStep, ColSlice, Concat, LogSoftmax, RowSlice, Softmax, TimeSum
    known = (MatAdd, MatMul, HadamardProduct, HadamardPower, Transpose, Apply, LogSoftmax, Softmax, Concat,
             RowSlice, ColSlice, TimeSum, At, AtStep, AtEnd, MatrixSymbol, ZeroMatrix, OneMatrix, Identity)

    def ok(e) -> bool:
        if isinstance(e, (MatrixSymbol, ZeroMatrix, OneMatrix, Identity)):  # their args are their shapes
            return True
        if isinstance(e, Apply) and e.fname not in functions:
            return False
        if isinstance(e, HadamardPower) and not e.args[1].is_Integer:
            return False
        if getattr(e, "is_Matrix", False):
            return isinstance(e, known) and all(ok(a) for a in e.args)
        return bool(getattr(e, "is_Number", False)) or isinstance(e, (int, float)) or (
            isinstance(e, sp.Basic) and not e.free_symbols)

    exprs = [q.expr for q in model.quantities.values() if q.expr is not None]
    exprs += [v for steps in list(model.states.values()) + list(model.end_states.values()) for v in steps.values()]
    return all(ok(e) for e in exprs)


# --- the examples against their references (tests/reference/): sizes, data, agreement ----------


def sizes(m) -> dict:
    """Distinct small sizes (3, 4, 5, ...) for a generated module's dims, so that a transposition
    slip cannot hide behind a square matrix."""
    return {d: 3 + i for i, d in enumerate(m.DIMS)}


def make_data(model, m, dims, T=4, B=None, seed=0) -> dict:
    """Random data for every input of the generated module ``m`` (its layout: the class axis
    before the batch axis); a target declared a distribution is one-hot."""
    rng = np.random.default_rng(seed)
    distributions = {q.name for q in model.data if q.distribution}
    data = {}
    for name, (sequence, size) in m.INPUTS.items():
        n = dims[size]
        lead = (T,) if sequence else ()
        batch = (B,) if B is not None else ()
        if name in distributions:
            labels = rng.integers(0, n, lead + batch)
            data[name] = np.moveaxis(np.eye(n)[labels], -1, len(lead))  # class axis before the batch axis
        else:
            data[name] = rng.normal(size=lead + (n,) + batch)
    return data


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def assert_agree(loss, grads, ref_loss, ref_grads, params, tol=1e-10) -> None:
    """The loss and every gradient (with the parameter's shape) within ``tol`` of the reference's."""
    assert rel_err(loss, ref_loss) <= tol, (loss, ref_loss)
    assert set(grads) == set(params) == set(ref_grads)
    for k in params:
        assert np.shape(grads[k]) == np.shape(params[k]) == np.shape(ref_grads[k]), k
        assert rel_err(grads[k], ref_grads[k]) <= tol, (k, rel_err(grads[k], ref_grads[k]))
