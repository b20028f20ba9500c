"""The numeric half of ``symderiv check``: the generated NumPy module run through every
entry point, unbatched and batched, at a point inside each function's domain.

* its gradients against float64 central differences of its own loss;
* ``forward``'s values against symderiv's own evaluator at the same point (per example);
* a batch's loss and gradients against the sum of its examples' (the evaluator's), the terms
  read once per call (a penalty) counted once (``ir.batch``);
* the entry points against each other: ``loss`` and ``gradients`` against
  ``loss_and_gradients``, ``sgd_step`` against ``p - lr * g``, ``init_params``'s shapes,
  and no argument changed in place.

A non-finite number (inf, NaN) is a disagreement unless the exact value (mpmath, no
overflow) is the same non-finite number; an exception raised by the generated module is a
disagreement carrying its message, never a traceback.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import numpy as np

from ..ad.derive import Derivation, derive
from ..codegen.backends import by_name
from ..ir.batch import is_shared_input, split_loss, with_loss
from ..render.emit import render
from .evaluate import evaluate, random_point
from .frameworks import ADAPTERS

EPS = 1e-5  # central differences: truncation ~EPS², rounding ~1e-16/EPS
CONSISTENCY = 1e-12  # two entry points computing the same number in the same code
VALUES = 1e-9  # forward values against the float64 evaluator (a different summation order)
LEARNING_RATE = 0.1
BATCH = 3
_BIG = float(np.finfo(float).max)


@dataclass
class FiniteDifferenceResult:
    errors: dict[str, float]  # worst relative error per parameter, over both layouts (inf/NaN: broken)
    tolerance: float = 1e-6
    problems: list[str] = field(default_factory=list)  # every other disagreement, one sentence each

    @property
    def ok(self) -> bool:
        # ``e <= tolerance`` is False for NaN, so a NaN error is a disagreement.
        return not self.problems and all(e <= self.tolerance for e in self.errors.values())


class GeneratedImportError(Exception):
    """The rendered module failed while Python imported it (not while symderiv rendered it)."""


def load_generated(d: Derivation, backend: str = "numpy"):
    """Render the module of ``backend`` (``codegen/backends.py``) and import it (our generated
    code, never the user's text); another framework's module comes with the NumPy module's
    interface (``frameworks.py``).

    A failure of the import is a ``GeneratedImportError``; one of rendering propagates."""
    fmt = by_name(backend).format
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"_symderiv_check_{d.model.name}_{backend}.py"
        path.write_text(render(d, fmt, Path(d.model.path).name), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:  # never for a .py file: the types allow it
            raise ImportError(f"cannot import the generated module {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - whatever the generated code raises
            raise GeneratedImportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            sys.modules.pop(path.stem, None)
    return ADAPTERS[backend](module, d.model) if backend in ADAPTERS else module


def external_data(model, data: dict, batch: int | None, rng) -> dict:
    """``random_point``'s data in the generated module's layout, with a batch axis if asked."""
    out = {}
    for q in model.data:
        v = np.asarray(data[q.name], dtype=float)
        if q.kind != "matrix":  # a matrix keeps its (rows, cols)
            v = v[..., 0]  # (T, n, 1) → (T, n); (n, 1) → (n,)
        if q.is_scalar:
            v = v[..., 0]
        if batch is not None and not is_shared_input(q):  # a scalar input is shared by the batch
            # Spread around 1 by 10 %: positive values (those inside log's domain) stay positive.
            spread = rng.normal(1.0, 0.1, v.shape + (batch,))
            v = v[..., None] * spread
            if q.distribution:  # each vector, or each column of a matrix, sums to one
                v = v / v.sum(axis=-3 if q.kind == "matrix" else -2, keepdims=True)
        out[q.name] = v
    return out


def _public_shape(q, T: int | None, sizes: dict) -> tuple[int, ...]:
    """The shape of one example's value of ``q`` in the generated module's layout."""
    rows, cols = (int(x.xreplace(sizes)) if hasattr(x, "xreplace") else int(x) for x in q.shape)
    core: tuple[int, ...] = () if q.is_scalar else (rows,) if q.is_vector else (rows, cols)
    if not q.sequence:
        return core
    if T is None:
        raise ValueError(f"{q.name} is a sequence: its shape needs the number of steps T")
    return (T, *core)


class _Run:
    """One ``symderiv check`` of a generated module; disagreements collect in ``problems``."""

    def __init__(self, d: Derivation, module, dims: dict[str, int], T: int | None):
        self.d, self.model, self.module, self.dims = d, d.model, module, dims
        self.T = T if self.model.has_time else None
        self.sizes = {self.model.dims[k]: v for k, v in dims.items()}
        if self.model.length is not None and self.T is not None:
            self.sizes[self.model.length] = self.T
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def call(self, label: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, or None with a disagreement if the generated code raises."""
        try:
            with np.errstate(all="ignore"):  # overflow is judged below, not warned about
                return True, fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of generated code is a finding
            self.problem(f"{label} raised {type(exc).__name__}: {exc}")
            return False, None

    # --- comparisons --------------------------------------------------------------------

    def compare(self, label: str, got, expected, exact, tolerance: float) -> float:
        """The worst relative error of ``got`` against ``expected`` (both public layout).

        Entries where either side is not finite are judged against ``exact`` (a thunk giving
        the mpmath value, or None when there is none): the same inf or NaN there is agreement,
        anything else a disagreement (error inf)."""
        try:
            got = np.asarray(got, dtype=float)
        except (TypeError, ValueError):
            self.problem(f"{label} is not an array of numbers: {type(got).__name__}")
            return math.inf
        expected = np.asarray(expected, dtype=float)
        if got.shape != expected.shape:
            self.problem(f"{label} has shape {got.shape}, expected {expected.shape}")
            return math.inf
        bad = ~np.isfinite(got) | ~np.isfinite(expected)
        if bad.any():
            truth = exact() if exact is not None else None
            # Without an exact value (two entry points compared), the same inf or NaN on both
            # sides agrees: whether it should be there at all is judged once, elsewhere.
            truth = expected if truth is None else np.asarray(truth, dtype=float)
            same = ((got == truth) | (np.isnan(got) & np.isnan(truth))) & ~np.isfinite(truth)
            # A finite value where only the float64 reference overflowed is compared with the exact one.
            rescued = bad & np.isfinite(got) & np.isfinite(truth)
            wrong = bad & ~same & ~rescued
            if wrong.any():
                where = tuple(int(i) for i in np.argwhere(wrong)[0])
                g, t = got[where], truth[where]
                at = f"at index {where or '()'}"
                if np.isfinite(g):
                    self.problem(f"{label} is {g:.6g} {at} where the exact value is {t}")
                elif np.isfinite(t):
                    exact_text = f"{t:.6g}" if abs(t) < _BIG else "finite but beyond float64"
                    self.problem(f"{label} is {g} {at} where the exact value is {exact_text} "
                                 "(a float64 overflow or an invalid operation)")
                else:
                    self.problem(f"{label} is {g} {at} where the exact value is {t}")
                return math.inf
            expected = np.where(rescued, truth, expected)
            got, expected = got[~same], expected[~same]
        if got.size == 0:
            return 0.0
        scale = max(float(np.abs(expected).max()), float(np.abs(got).max()), 1e-8)
        err = float(np.abs(got - expected).max() / scale)
        if err > tolerance:
            self.problem(f"{label} differs from the reference by {err:.2e} (relative)")
        return err

    # --- the reference ------------------------------------------------------------------

    def reference(self, params: dict, example: dict, precision: int | None = None):
        """symderiv's own evaluation of one example (no batch axis), in the public layout."""
        try:
            with np.errstate(all="ignore"):
                v = evaluate(self.d, self.dims, self.T, params, example, precision=precision)
        except (ArithmeticError, ValueError, TypeError):  # e.g. a complex mpmath log: no reference
            return None
        to_float = (lambda a: np.asarray(a, dtype=float)) if precision is None else \
            (lambda a: np.vectorize(_mp_float, otypes=[float])(a))
        try:
            return self._public(v, to_float)
        except (TypeError, ValueError):  # a complex mpmath value has no float
            return None

    def once_per_call(self, params: dict, example: dict) -> dict | None:
        """The loss's terms read once per call (``ir.batch``) evaluated on their own, with their
        gradients: a batch of B examples counts them once, where B single examples count them B
        times.  Zero when there are none; None when they have no float64 value."""
        each, once = split_loss(self.model)
        if not once:
            return {"loss": 0.0, "gradients": {p.name: 0.0 for p in self.model.params}}
        d = derive(with_loss(self.model, once)) if each else self.d
        try:
            with np.errstate(all="ignore"):
                v = evaluate(d, self.dims, self.T, params, example)
            return {"loss": float(np.asarray(v.loss, dtype=float)),
                    "gradients": {p.name: np.asarray(v.gradients[p.name], dtype=float).reshape(
                        _public_shape(p, None, self.sizes)) for p in self.model.params}}
        except (ArithmeticError, ValueError, TypeError):
            return None

    def _public(self, v, to_float) -> dict:
        forward = {}
        for q in self.model.quantities.values():
            if q.role not in ("intermediate", "loss"):
                continue
            value = v.forward[q.name]
            if q.sequence:
                value = np.stack([to_float(value[t]) for t in range(1, (self.T or 0) + 1)])
            forward[q.name] = to_float(value).reshape(_public_shape(q, self.T, self.sizes))
        grads = {p.name: to_float(v.gradients[p.name]).reshape(_public_shape(p, None, self.sizes))
                 for p in self.model.params}
        return {"forward": forward, "gradients": grads, "loss": float(to_float(v.loss))}


def _mp_float(v) -> float:
    """An mpmath value as a float; a finite one beyond float64's range stays finite (±max), so
    that a module's inf there is a disagreement, not an agreement with a rounded reference."""
    if mpmath.isnan(v) or mpmath.isinf(v):
        return float(v)
    return float(max(min(v, _BIG), -_BIG))


def _params_public(model, params: dict, sizes: dict) -> dict:
    return {p.name: np.asarray(params[p.name], dtype=float).reshape(_public_shape(p, None, sizes))
            for p in model.params}


def _example(model, data: dict, b: int | None) -> dict:
    """Example ``b`` of a batch (its last axis), a shared scalar input as it is."""
    shared = {q.name for q in model.data if is_shared_input(q)}
    return {k: (v if b is None or k in shared else v[..., b]) for k, v in data.items()}


def finite_difference_check(d: Derivation, dims: dict[str, int], T: int | None, seed: int = 0,
                            tolerance: float = 1e-6, backend: str = "numpy") -> FiniteDifferenceResult:
    """Run every entry point of ``d``'s generated module (NumPy, or ``backend``'s), unbatched and
    batched, and compare (see the module docstring).  ``errors`` holds the worst relative error of
    each gradient against central differences; ``problems`` every other disagreement."""
    model = d.model
    errors = {p.name: 0.0 for p in model.params}
    try:
        # (called as load_generated(d) for NumPy: tests put a module of their own in its place)
        module = load_generated(d) if backend == "numpy" else load_generated(d, backend)
    except GeneratedImportError as exc:
        return FiniteDifferenceResult({k: math.nan for k in errors}, tolerance,
                                      [f"the generated module fails to import: {exc}"])
    run = _Run(d, module, dims, T)
    rng = np.random.default_rng(seed + 1)
    raw_params, data = random_point(model, dims, run.T, seed + 2)  # inside every function's domain
    params = _params_public(model, raw_params, run.sizes)
    _check_init_params(run, params, seed)
    for batch in (None, BATCH):
        layout = "batched" if batch else "unbatched"
        x = external_data(model, data, batch, rng)
        _check_layout(run, params, x, batch, layout, errors)
    return FiniteDifferenceResult(errors, tolerance, run.problems)


def _check_init_params(run: _Run, params: dict, seed: int) -> None:
    ok, init = run.call("init_params", run.module.init_params, dict(run.dims), seed=seed)
    if not ok:
        return
    if not isinstance(init, dict) or set(init) != set(params):
        run.problem(f"init_params returns keys {sorted(init) if isinstance(init, dict) else init!r}, "
                    f"expected {sorted(params)}")
        return
    for name, value in init.items():
        value = np.asarray(value)
        if value.shape != params[name].shape or value.dtype != np.float64 or not np.isfinite(value).all():
            run.problem(f"init_params: '{name}' is {value.dtype} {value.shape}, expected finite float64 "
                        f"{params[name].shape}")


def _check_layout(run: _Run, params: dict, x: dict, batch: int | None, layout: str, errors: dict) -> None:
    m = run.module
    kept = ({k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in x.items()})
    examples = [None] if batch is None else list(range(batch))
    refs = [run.reference(params, _example(run.model, x, b)) for b in examples]
    exact_cache: dict = {}

    def exact(b) -> dict:  # the mpmath values of example b, computed only when a value is not finite
        if b not in exact_cache:
            exact_cache[b] = run.reference(params, _example(run.model, x, b), precision=30) or {}
        return exact_cache[b]

    ok_l, loss = run.call(f"loss ({layout})", m.loss, params, **x)
    ok_g, grads = run.call(f"gradients ({layout})", m.gradients, params, **x)
    ok_lg, both = run.call(f"loss_and_gradients ({layout})", m.loss_and_gradients, params, **x)
    ok_f, values = run.call(f"forward ({layout})", m.forward, params, **x)

    if ok_lg and not (isinstance(both, tuple) and len(both) == 2 and isinstance(both[1], dict)):
        run.problem(f"loss_and_gradients ({layout}) does not return (loss, dict)")
        ok_lg = False
    if ok_l and ok_lg:
        run.compare(f"loss ({layout}) against loss_and_gradients", loss, both[0], None, CONSISTENCY)
    if ok_g and ok_lg:
        for name in params:
            if name not in grads or name not in both[1]:
                run.problem(f"gradients ({layout}) has no '{name}'")
                continue
            run.compare(f"gradients ({layout}) '{name}' against loss_and_gradients", grads[name], both[1][name],
                        None, CONSISTENCY)
    if batch is None and ok_l and refs[0] is not None:
        run.compare("loss (unbatched)", loss, refs[0]["loss"], lambda: exact(None).get("loss"), VALUES)
    if batch is not None and all(r is not None for r in refs):
        # The batch rule: the examples' losses summed, the terms read once per call counted once.
        # (A value that is not finite is judged against the exact one elsewhere, example by example.)
        once = run.once_per_call(params, _example(run.model, x, 0))
        if once is not None:
            with np.errstate(all="ignore"):
                want = {"loss": sum(r["loss"] for r in refs) - (batch - 1) * once["loss"]}
                want.update({name: sum(r["gradients"][name] for r in refs) - (batch - 1) * once["gradients"][name]
                             for name in params})
            if ok_l and np.isfinite(want["loss"]):
                run.compare("loss (batched) against the sum over its examples", loss, want["loss"], None, VALUES)
            for name in params if ok_g else ():
                if name in grads and np.isfinite(want[name]).all():
                    run.compare(f"gradient '{name}' (batched) against the sum over its examples", grads[name],
                                want[name], None, VALUES)

    if ok_f:
        _check_forward(run, values, refs, examples, exact, layout)

    if ok_g:
        _check_gradients(run, params, x, grads, errors, exact if batch is None else None, layout)
        ok_s, stepped = run.call(f"sgd_step ({layout})", m.sgd_step, params, grads, LEARNING_RATE)
        if ok_s:
            for name, value in params.items():
                if not isinstance(stepped, dict) or name not in stepped:
                    run.problem(f"sgd_step ({layout}) has no '{name}'")
                    break
                run.compare(f"sgd_step ({layout}) '{name}'", stepped[name],
                            value - LEARNING_RATE * np.asarray(grads[name], dtype=float), None, CONSISTENCY)
    else:
        for name in errors:
            errors[name] = math.nan
    for before, now, what in ((kept[0], params, "a parameter"), (kept[1], x, "an input")):
        for name, value in before.items():
            if not np.array_equal(value, now[name], equal_nan=True):
                run.problem(f"the module changed {what} in place: '{name}' ({layout})")


def _check_forward(run: _Run, values, refs, examples, exact, layout) -> None:
    if not isinstance(values, dict):
        run.problem(f"forward ({layout}) returns {type(values).__name__}, not a dict")
        return
    expected = [q.name for q in run.model.quantities.values() if q.role in ("intermediate", "loss")]
    missing = [n for n in expected if n not in values]
    if missing:
        run.problem(f"forward ({layout}) has no {', '.join(repr(n) for n in missing)}")
    for name in expected:
        if name not in values:
            continue
        try:
            got = np.asarray(values[name], dtype=float)
        except (TypeError, ValueError):
            run.problem(f"forward ({layout}) '{name}' is not an array of numbers")
            continue
        for i, b in enumerate(examples):
            if refs[i] is None:
                continue
            one = refs[i]["forward"][name].shape
            ref = refs[i]["forward"][name]
            if b is None or got.shape == ref.shape:  # unbatched, or shared by every example
                value = got
            elif got.shape == one + (len(examples),):
                value = got[..., b]
            else:
                run.problem(f"forward ({layout}) '{name}' has shape {got.shape}, expected {one} "
                            f"or {one + (len(examples),)}")
                break
            label = f"forward ({layout}) '{name}'" + (f" of example {b}" if b is not None else "")
            run.compare(label, value, ref, lambda b=b, n=name: exact(b).get("forward", {}).get(n), VALUES)


def _central_differences(run: _Run, params: dict, x: dict, name: str, value, layout: str):
    """Central differences of the module's loss in every entry of ``params[name]`` (NaN where
    the loss raises)."""
    fd = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        plus, minus = dict(params), dict(params)
        plus[name], minus[name] = value.copy(), value.copy()
        plus[name][idx] += EPS
        minus[name][idx] -= EPS
        ok_p, lp = run.call(f"loss ({layout})", run.module.loss, plus, **x)
        ok_m, lm = run.call(f"loss ({layout})", run.module.loss, minus, **x)
        fd[idx] = (lp - lm) / (2 * EPS) if ok_p and ok_m else math.nan
    return fd


def _check_gradients(run: _Run, params, x, grads, errors, exact, layout) -> None:
    for name, value in params.items():
        if name not in grads:
            run.problem(f"gradients ({layout}) has no '{name}'")
            errors[name] = math.nan
            continue
        g = np.asarray(grads[name], dtype=float)
        if g.shape != value.shape:
            run.problem(f"gradients ({layout}) '{name}' has shape {g.shape}, expected {value.shape}")
            errors[name] = math.inf
            continue
        if not np.isfinite(g).all():
            # Judged against the exact gradient: the same inf or NaN there is agreement.
            if exact is None:  # no exact batched gradient to excuse it
                where = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
                run.problem(f"gradient '{name}' ({layout}) is {g[where]} at index {where or '()'}: not finite")
                errors[name] = math.inf
                continue
            err = run.compare(f"gradient '{name}' ({layout})", g, g,
                              lambda n=name: exact(None).get("gradients", {}).get(n), math.inf)
            errors[name] = max(errors[name], err)
            if err == math.inf:
                continue
        with np.errstate(all="ignore"):
            fd = _central_differences(run, params, x, name, value, layout)
        finite = np.isfinite(g)
        if not np.isfinite(fd[finite]).all():
            run.problem(f"loss ({layout}) is not finite near the point, so neither are central differences "
                        f"of '{name}'")
            errors[name] = math.nan
            continue
        if finite.any():
            gf, ff = g[finite], fd[finite]
            scale = max(float(np.abs(ff).max()), float(np.abs(gf).max()), 1e-8)
            errors[name] = max(errors[name], float(np.abs(gf - ff).max() / scale))
