"""The architecture zoo in examples/: each network derives, certifies, and its generated
module agrees with an independent hand-written NumPy reference (tests/reference/) and with
central differences.  The LSTM and the GRU write-ups read like a textbook."""

import functools
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import symderiv
from symderiv.check.certify import certify
from symderiv.cli import main as cli_main

from .helpers import (
    EXAMPLES,
    GENERATED,
    ROOT,
    assert_agree,
    central_differences,
    import_generated,
    make_data,
    rel_err,
    sizes,
)

ZOO = ["char_rnn", "lstm_tagger", "gru_regressor", "stacked_rnn", "mlp", "output_feedback", "second_order_rnn"]


def load_generated(name):
    return import_generated(GENERATED / f"{name}.py", f"{name}_zoo_generated")


@functools.cache
def entry(name):
    """(name, model, generated module, reference module) for one zoo network."""
    model = symderiv.load(EXAMPLES / f"{name}.sdm")
    reference = importlib.import_module(f"tests.reference.{name}")
    return name, model, load_generated(name), reference


@pytest.fixture(params=ZOO)
def zoo(request):
    return entry(request.param)


UNBATCHED = [(name, T) for name in ZOO for T in (1, 2, 5)]


def test_generated_module_is_the_model(zoo):
    name, model, m, _ = zoo
    assert model.name == name
    assert list(m.PARAMS) == [p.name for p in model.params]


# ---------------------------------------------------------------------------------------


def test_derives_every_gradient(zoo):
    _, model, _, _ = zoo
    d = symderiv.derive(model)
    assert set(d.gradients) == {p.name for p in model.params}
    for name in d.gradients:
        assert d.gradient(name).shape == model[name].shape


def test_certified_against_sympy(zoo):
    _, model, _, _ = zoo
    result = certify(model)
    assert result.ok, (result.param_errors, result.adjoint_errors)


@pytest.mark.parametrize(("name", "T"), UNBATCHED)
def test_matches_reference_unbatched(name, T):
    """Also at T = 1 and 2, where a lag reaches past the sequence and δ beyond T is zero."""
    _, model, m, ref = entry(name)
    dims = sizes(m)
    params = m.init_params(dims, seed=3)
    data = make_data(model, m, dims, T=T, seed=T)
    assert_agree(*m.loss_and_gradients(params, **data), *ref.loss_and_grads(params, **data), params)


def test_matches_reference_batched(zoo):
    _, model, m, ref = zoo
    dims = sizes(m)
    params = m.init_params(dims, seed=4)
    B = 3
    data = make_data(model, m, dims, T=4, B=B, seed=7)
    assert_agree(*m.loss_and_gradients(params, **data), *ref.loss_and_grads(params, **data), params)
    # The reference itself: a batch is the sum of its examples.
    singles = [ref.loss_and_grads(params, **{k: v[..., b] for k, v in data.items()}) for b in range(B)]
    batched_loss, batched_grads = ref.loss_and_grads(params, **data)
    assert np.isclose(batched_loss, sum(s[0] for s in singles), rtol=1e-12)
    for k in params:
        assert np.allclose(batched_grads[k], sum(s[1][k] for s in singles), rtol=1e-12, atol=1e-14)


def test_matches_central_differences(zoo):
    _, model, m, _ = zoo
    dims = sizes(m)
    params = m.init_params(dims, seed=5)
    data = make_data(model, m, dims, T=3, seed=11)
    grads = m.gradients(params, **data)
    for name in params:
        # ε = 1e-5: truncation ~ε², rounding ~1e-16/ε
        fd = central_differences(lambda p: m.loss(p, **data), params, name, eps=1e-5)
        assert rel_err(grads[name], fd) <= 1e-7, (name, rel_err(grads[name], fd))


# ---------------------------------------------------------------------------------------
# Textbook forms.


def show(name, capsys) -> str:
    assert cli_main(["show", str(EXAMPLES / f"{name}.sdm")]) == 0
    return capsys.readouterr().out


def test_lstm_reads_like_a_textbook(capsys):
    lines = show("lstm_tagger", capsys).splitlines()
    text = "\n".join(line.strip() for line in lines)
    # The cell adjoint collected: the direct path through h_t, then the carry through f_{t+1}.
    assert "δc_t = δh_t ⊙ o_t ⊙ (1 − tanh²(c_t)) + δc_{t+1} ⊙ f_{t+1}" in text
    assert "δh_t = W_yᵀ δz_{p,t} + [δv_{t+1}]_{1:n_h}" in text
    assert "δz_{p,t} = p_t − r_t" in text
    assert "δv_t = W_gᵀ δz_{g,t} + W_oᵀ δz_{o,t} + W_iᵀ δz_{i,t} + W_fᵀ δz_{f,t}" in text
    assert "δz_{f,t} = δc_t ⊙ c_{t−1} ⊙ f_t ⊙ (1 − f_t)" in text
    assert "∂L/∂W_f = Σ_t δz_{f,t} v_tᵀ" in text
    # Collected, not expanded: every backward line is short.
    backward = text.split("Backward")[1].split("Gradients")[0].splitlines()
    assert all(line.count(" + ") <= 3 for line in backward), backward


def test_gru_reads_like_a_textbook(capsys):
    text = "\n".join(line.strip() for line in show("gru_regressor", capsys).splitlines())
    text = text.replace("y\u0302", "\u0177")  # ŷ: the printer writes y + combining circumflex
    assert "δŷ_t = ŷ_t − y_t" in text
    assert ("δh_t = W_yᵀ δŷ_t + δh_{t+1} ⊙ (1 − z_{t+1}) + r_{t+1} ⊙ U_nᵀ δa_{n,t+1} + U_rᵀ δa_{r,t+1}"
            " + U_zᵀ δa_{z,t+1}") in text
    assert "δz_t = δh_t ⊙ (n_t − h_{t−1})" in text
    assert "δa_{n,t} = δh_t ⊙ z_t ⊙ (1 − n_t ⊙ n_t)" in text
    assert "∂L/∂U_n = Σ_t δa_{n,t} (r_t ⊙ h_{t−1})ᵀ" in text


def test_layers_and_outputs_get_distinct_preactivation_names(capsys):
    # Two activations sharing a body (h_1, h_2) are told apart in full; a model whose
    # output is y gets z_h for its pre-activation (never y_h beside y_t).
    stacked = show("stacked_rnn", capsys)
    assert "δz_{h,1,t} = δh_{1,t} ⊙ (1 − h_{1,t} ⊙ h_{1,t})" in stacked
    assert "δz_{h,2,t} = δh_{2,t} ⊙ (1 − h_{2,t} ⊙ h_{2,t})" in stacked
    feedback = show("output_feedback", capsys)
    assert "δy_t = y_t − y^(ref)_t + W_fᵀ δz_{h,t+1}" in feedback
    assert "∂L/∂y0 = W_fᵀ δz_{h,1}" in feedback


def test_second_order_initial_states(capsys):
    text = show("second_order_rnn", capsys)
    assert "δh_t = W_yᵀ δz_{p,t} + A_1ᵀ δz_{h,t+1} + A_2ᵀ δz_{h,t+2}" in text
    assert "∂L/∂h^(init) = A_1ᵀ δz_{h,1} + A_2ᵀ δz_{h,2}" in text
    assert "∂L/∂h^(prev) = A_2ᵀ δz_{h,1}" in text


@pytest.mark.slow
def test_lstm_derives_without_a_hang():
    """The first derivation in a fresh process, after import: a guard against a hang or a blow-up
    (a quiet machine takes about 0.15 s). The speed itself is a benchmark's to measure
    (benchmarks/derive_time.py, benchmarks/compare_versions.py), not a timed test's."""
    path = str(EXAMPLES / "lstm_tagger.sdm")
    code = (f"import time, symderiv; m = symderiv.load({path!r}); s = time.perf_counter(); symderiv.derive(m); "
            "print(time.perf_counter() - s)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 20.0
