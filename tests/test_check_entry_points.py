"""`symderiv check` runs every entry point of the generated module, batched and not, and a
non-finite value, a wrong answer or a crash of any of them is a disagreement (exit 1)."""

from __future__ import annotations

import types

import numpy as np
import pytest

import symderiv
from symderiv.check import numcheck
from symderiv.check.numcheck import finite_difference_check
from symderiv.cli import main

from .helpers import EXAMPLES

OVERFLOW = """model overflow
dim n
param W: (n, n)
param b: n
loss L = sum(exp(100000 * (W @ b)))
"""

# A static scalar quantity read by data terms: forward() of the generated module raised
# IndexError on it, unbatched, while every gradient was right.
STATIC_SCALAR = """model static_scalar
dim n
input x: n
target y: n
param W: (n, n)
param rho: scalar
s = exp(rho)
h = s * (W @ x)
loss L = squared_error(y, h)
"""

# log and sqrt: only right inside their domain, which the check's point must respect.
DOMAIN = """model domain
dim n, m
input x: n
target y: m
param W: (m, n)
param c: m
h = sqrt(W @ x) + log(c * c + W @ x)
loss L = squared_error(y, h)
"""


def write(tmp_path, text):
    path = tmp_path / (text.split()[1] + ".sdm")
    path.write_text(text)
    return path


def test_overflow_to_inf_and_nan_is_a_disagreement(tmp_path, capsys):
    assert main(["check", str(write(tmp_path, OVERFLOW))]) == 1
    out = capsys.readouterr().out
    assert "all agree" not in out and "DISAGREEMENT" in out
    assert "inf" in out and "beyond float64" in out


def test_points_are_drawn_inside_every_functions_domain(tmp_path, capsys):
    d = symderiv.derive(symderiv.load(write(tmp_path, DOMAIN)))
    result = finite_difference_check(d, {"n": 3, "m": 2}, None)
    assert result.ok, result.problems
    assert all(np.isfinite(e) and e < 1e-6 for e in result.errors.values())


def test_a_static_scalar_quantity_passes_check(tmp_path, capsys):
    assert main(["check", str(write(tmp_path, STATIC_SCALAR))]) == 0


def test_a_crash_in_forward_is_reported_not_raised(tmp_path, capsys):
    """Whatever the code generator's state, a module whose forward() raises is one line of
    the report, with the exception's message, and exit status 1."""
    d = symderiv.derive(symderiv.load(EXAMPLES / "mlp.sdm"))
    real = numcheck.load_generated(d)

    def forward(params, /, **data):
        raise IndexError("too many indices for array")

    fake = broken(real, forward=forward)
    result = run_with(d, fake)
    assert not result.ok
    assert any("forward (unbatched) raised IndexError: too many indices" in p for p in result.problems)
    assert any("forward (batched)" in p for p in result.problems)


def broken(real, **replace):
    module = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
    for name, fn in replace.items():
        setattr(module, name, fn)
    return module


def run_with(d, module, monkeypatch=None):
    mp = pytest.MonkeyPatch()
    mp.setattr(numcheck, "load_generated", lambda _d: module)
    try:
        return finite_difference_check(d, {"n_x": 3, "n_1": 2, "n_2": 3, "n_y": 2}, None)
    finally:
        mp.undo()


def _faults(real):
    """One entry point wrong at a time, each in a way only a comparison between entry points
    (or with the evaluator) can see; the gradients themselves stay right."""
    def loss_and_gradients_off(params, /, **data):
        loss, grads = real.loss_and_gradients(params, **data)
        return loss + 1e-3, grads

    def grads_of_lg_off(params, /, **data):
        loss, grads = real.loss_and_gradients(params, **data)
        return loss, {k: v * 1.01 for k, v in grads.items()}

    def sgd_wrong_sign(params, grads, lr):
        return {k: np.asarray(v) + lr * np.asarray(grads[k]) for k, v in params.items()}

    def forward_off(params, /, **data):
        values = real.forward(params, **data)
        return {k: v * 1.001 if k == "h1" else v for k, v in values.items()}

    def forward_missing(params, /, **data):
        values = real.forward(params, **data)
        values.pop("h2")
        return values

    def gradients_in_place(params, /, **data):
        grads = real.gradients(params, **data)
        params["b1"] += 1.0
        return grads

    def gradients_nan(params, /, **data):
        grads = real.gradients(params, **data)
        grads["b2"] = grads["b2"] * np.nan
        return grads

    def init_wrong_shape(dims, seed=0):
        p = real.init_params(dims, seed)
        p["W1"] = p["W1"].T
        return p

    def loss_only_batched_off(params, /, **data):
        value = real.loss(params, **data)
        return value * 1.001 if np.ndim(data["x"]) == 2 else value

    return {
        "loss_and_gradients-loss": ({"loss_and_gradients": loss_and_gradients_off}, "loss_and_gradients"),
        "loss_and_gradients-grads": ({"loss_and_gradients": grads_of_lg_off}, "loss_and_gradients"),
        "sgd_step": ({"sgd_step": sgd_wrong_sign}, "sgd_step"),
        "forward-value": ({"forward": forward_off}, "'h1'"),
        "forward-missing": ({"forward": forward_missing}, "'h2'"),
        "in-place": ({"gradients": gradients_in_place}, "in place"),
        "nan-gradient": ({"gradients": gradients_nan}, "nan"),
        "init_params": ({"init_params": init_wrong_shape}, "init_params"),
        "loss-batched": ({"loss": loss_only_batched_off}, "loss (batched)"),
    }


@pytest.mark.parametrize("fault", ["loss_and_gradients-loss", "loss_and_gradients-grads", "sgd_step",
                                   "forward-value", "forward-missing", "in-place", "nan-gradient", "init_params",
                                   "loss-batched"])
def test_every_entry_point_is_compared(fault):
    d = symderiv.derive(symderiv.load(EXAMPLES / "mlp.sdm"))
    real = numcheck.load_generated(d)
    assert run_with(d, real).ok  # the real module agrees everywhere
    replace, word = _faults(real)[fault]
    result = run_with(d, broken(real, **replace))
    assert not result.ok
    assert any(word in p for p in result.problems), result.problems


def test_a_module_that_fails_to_import_is_a_disagreement(monkeypatch, capsys):
    monkeypatch.setattr(numcheck, "render", lambda d, fmt, name: "import numpy as np\nPARAMS = np.zeros(2)[5]\n")
    assert main(["check", str(EXAMPLES / "mlp.sdm")]) == 1
    out = capsys.readouterr().out
    assert "fails to import: IndexError" in out and "all agree" not in out
