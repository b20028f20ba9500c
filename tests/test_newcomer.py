"""The newcomer's model (docs/examples/mlp_l2.sdm, written from the docs alone): a two-layer
tanh MLP with an L2 penalty. Derived, checked against a reference written here from its
equations, and its hand derivation verified as the tutorial shows."""

from __future__ import annotations

import numpy as np
import pytest

import symderiv

from .helpers import ROOT, import_generated

MODEL = ROOT / "docs" / "examples" / "mlp_l2.sdm"
WRITEUP = ROOT / "docs" / "examples" / "mlp_l2.tex"
LAMBDA = 0.01


@pytest.fixture(scope="module")
def derivation():
    return symderiv.derive(symderiv.load(MODEL))


@pytest.fixture(scope="module")
def module(derivation, tmp_path_factory):
    [path] = symderiv.write(derivation, tmp_path_factory.mktemp("mlp_l2"), formats="py")
    return import_generated(path, "mlp_l2_newcomer")


def reference(p, x, y):
    """The loss and its gradients, from the equations (not from symderiv)."""
    z = p["W1"] @ x + p["b1"]
    h = np.tanh(z)
    y_hat = p["W2"] @ h + p["b2"]
    loss = 0.5 * np.sum((y_hat - y) ** 2) + LAMBDA / 2 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
    d_y = y_hat - y
    d_z = (1 - h ** 2) * (p["W2"].T @ d_y)
    grads = {"W2": np.outer(d_y, h) + LAMBDA * p["W2"], "b2": d_y,
             "W1": np.outer(d_z, x) + LAMBDA * p["W1"], "b1": d_z}
    return loss, grads


def test_the_penalty_adds_lambda_w_to_each_weight_gradient(derivation):
    assert repr(derivation.gradient("W1")) == "∂L/∂W1 = 1/100 W1 + δz_h xᵀ"
    assert repr(derivation.gradient("b1")) == "∂L/∂b1 = δz_h"
    assert repr(derivation.gradient("W2")) == "∂L/∂W2 = 1/100 W2 + δy\u0302 hᵀ"  # ŷ: y and a combining hat


def test_the_generated_module_agrees_with_the_reference(module):
    rng = np.random.default_rng(3)
    p = module.init_params({"n_x": 4, "n_h": 5, "n_y": 3}, seed=2)
    x, y = rng.normal(size=4), rng.normal(size=3)
    want_loss, want = reference(p, x, y)
    assert np.isclose(float(module.loss(p, x=x, y=y)), want_loss, rtol=1e-12)
    got = module.gradients(p, x=x, y=y)
    for name in want:
        assert np.allclose(got[name], want[name], rtol=1e-10, atol=1e-12), name
    eps, (i, j) = 1e-6, (1, 2)  # and the reference against central differences
    plus = {k: v.copy() for k, v in p.items()}
    plus["W1"][i, j] += eps
    minus = {k: v.copy() for k, v in p.items()}
    minus["W1"][i, j] -= eps
    fd = (reference(plus, x, y)[0] - reference(minus, x, y)[0]) / (2 * eps)
    assert abs(fd - want["W1"][i, j]) < 1e-7


def test_the_closed_forms_are_certified(derivation):
    report = symderiv.check(derivation)
    assert max(report.exact.values()) < 1e-30


def test_the_generated_module_agrees_with_central_differences_with_a_batch_axis(derivation):
    """The penalty counts once per call, batched or not (ir/batch.py), in the loss and in the gradients."""
    report = symderiv.check(derivation)
    assert report.ok and max(report.numeric.values()) < 1e-6, report.text()


def test_the_hand_derivation_gets_the_verdicts_the_tutorial_explains(derivation):
    report = symderiv.verify(derivation, WRITEUP)
    verdicts = {v.target: v.verdict for v in report.verdicts}
    assert verdicts == {"y_hat": "correct", "h": "correct", "z_h": "correct", "W2": "correct", "b2": "correct",
                        "W1": "incorrect", "b1": "correct"}
    w1 = next(v for v in report.verdicts if v.target == "W1")
    assert r"\frac{1}{100} \mathbf{W}_1" in w1.expected  # the penalty the write-up left out


def test_a_definition_in_a_sentence_is_read_like_one_in_a_display(derivation, tmp_path):
    """The same definition inline, outside the display: read all the same (inline math is read
    like a display), so every claim gets the verdict it gets with the definition displayed."""
    text = WRITEUP.read_text()
    definition = next(line for line in text.splitlines() if r"\triangleq" in line)
    inline = "$" + definition.replace("&", "").rstrip(" \\") + "$\n"
    moved = text.replace(definition + "\n", "").replace(r"With $\lambda = 0.01$:", inline)
    path = tmp_path / "inline.tex"
    path.write_text(moved)
    report = symderiv.verify(derivation, path)
    displayed = symderiv.verify(derivation, WRITEUP)
    assert [(v.target, v.verdict) for v in report.verdicts] == [(v.target, v.verdict) for v in displayed.verdicts]
    assert not any(v.verdict == "unreadable" for v in report.verdicts)
