"""certify: the closed forms against SymPy's differentiation of the unrolled scalar network."""

import ast
import dataclasses
import itertools
from pathlib import Path

import pytest

import symderiv
import symderiv.check.certify
from symderiv.check.certify import certify, default_dims
from symderiv.ir.expr import neg, transpose

from .helpers import EXAMPLES

MODELS = sorted((Path(__file__).parent / "models").glob("*.sdm"))


@pytest.fixture(scope="module")
def seed_model():
    return symderiv.load(EXAMPLES / "seed_rnn.sdm")


def flagged(errors: dict, tolerance: float) -> set:
    return {name for name, e in errors.items() if e > tolerance}


@pytest.mark.parametrize("path", [EXAMPLES / "seed_rnn.sdm", *MODELS], ids=lambda p: p.stem)
def test_closed_forms_agree_with_the_scalar_chain_rule(path):
    model = symderiv.load(path)
    result = certify(model)
    assert result.ok, result
    # Agreement to the working precision (40 digits), not merely within the tolerance.
    assert max(result.param_errors.values()) < 1e-30
    assert set(result.param_errors) == {p.name for p in model.params}
    assert set(result.adjoint_errors) == {q.name for q in model.by_role("intermediate")}


def test_other_sizes_lengths_and_points(seed_model):
    lag2 = symderiv.load(Path(__file__).parent / "models" / "lag2.sdm")
    assert certify(lag2, dims={"n_x": 2, "n_h": 3, "C": 2}, T=2, seed=7).ok
    result = certify(seed_model, T=1, seed=3)
    assert result.ok and result.T == 1


def test_default_sizes_are_small_and_neighbours_differ(seed_model):
    dims = default_dims(seed_model)
    assert set(dims.values()) <= {2, 3}
    assert all(a != b for a, b in itertools.pairwise(dims.values()))


def test_a_static_model_has_no_time_axis():
    result = certify(symderiv.load(Path(__file__).parent / "models" / "tied_autoencoder.sdm"))
    assert result.ok and result.T is None


# ---------------------------------------------------------------------------------------
# Wrong closed forms are caught, and the right parameter is named.


@pytest.mark.parametrize("slip", [neg, transpose], ids=["sign", "transpose"])
def test_a_wrong_gradient_is_caught_and_named(seed_model, slip):
    d = symderiv.derive(seed_model)
    g = d.gradients["V"]
    d.gradients["V"] = dataclasses.replace(g, per_step=slip(g.per_step))
    result = certify(seed_model, d)
    assert not result.ok
    assert flagged(result.param_errors, result.tolerance) == {"V"}
    assert result.param_errors["V"] > 1e-3
    assert not flagged(result.adjoint_errors, result.tolerance)


def test_a_missing_recurrent_term_is_caught_upstream(seed_model):
    d = symderiv.derive(seed_model)
    h = d.adjoints["h"]
    h.closed_terms = [t for t in h.closed_terms if t.offset == 0]  # drop δh_t's BPTT term
    result = certify(seed_model, d)
    assert flagged(result.param_errors, result.tolerance) == {"W_in", "b_in", "U", "V", "b_h"}
    assert flagged(result.adjoint_errors, result.tolerance) == {"a_in", "h"}


def test_certify_uses_none_of_the_rules_it_checks():
    # It shares only the operations' meanings (the registry's records, ops.base), never a
    # vector-Jacobian rule, a derivative or the simplifier.
    tree = ast.parse(Path(symderiv.check.certify.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"ops", "ops.derivatives", "ops.structural", "simplify", "ad.simplify"}
    assert "ops.base" in imported


def test_certify_runs_with_every_rule_and_derivative_broken(seed_model, monkeypatch):
    import symderiv.ops.base as base
    import symderiv.ops.derivatives as derivatives

    d = symderiv.derive(seed_model)

    def broken(*args, **kwargs):
        raise AssertionError("certify used a rule it checks")

    for cls, record in list(base.NODES.items()):
        if record.vjp is not None:
            monkeypatch.setitem(base.NODES, cls, dataclasses.replace(record, vjp=broken, tidy=broken))
    monkeypatch.setattr(derivatives, "_derive", broken)
    monkeypatch.setattr(derivatives, "_derivatives", {})
    assert certify(seed_model, d).ok
