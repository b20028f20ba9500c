"""The networks of version 2's time forms (fixed steps, data at other steps, recurrences
backwards in time, initial states from expressions): each derives, certifies at tiny sizes,
`symderiv check` agrees, and its generated module equals an independent NumPy reference
(tests/reference/, written from the equations) at T = 1, 2, 7, batched and not."""

import functools
import importlib
import json

import pytest

import symderiv
from symderiv.check.certify import certify
from symderiv.cli import main as cli_main

from .helpers import EXAMPLES, GENERATED, ROOT, assert_agree, import_generated, make_data, sizes

DATA = ROOT / "tests" / "data"
TIME_ZOO = ["gru_classifier", "causal_conv_rnn", "birnn_tagger", "encoder_decoder"]


@functools.cache
def entry(name):
    """(name, model, generated module, reference module) for one network."""
    model = symderiv.load(EXAMPLES / f"{name}.sdm")
    reference = importlib.import_module(f"tests.reference.{name}")
    return name, model, import_generated(GENERATED / f"{name}.py", f"{name}_time_zoo_generated"), reference


@pytest.fixture(params=TIME_ZOO)
def zoo(request):
    return entry(request.param)


def test_derives_every_gradient(zoo):
    _, model, _, _ = zoo
    d = symderiv.derive(model)
    assert set(d.gradients) == {p.name for p in model.params}


def test_certified_against_sympy(zoo):
    _, model, _, _ = zoo
    for T in (1, 2, 3):
        result = certify(model, T=T)
        assert result.ok, (T, result.param_errors, result.adjoint_errors)


def test_check_agrees(zoo, capsys):
    name = zoo[0]
    assert cli_main(["check", str(EXAMPLES / f"{name}.sdm")]) == 0
    assert "all agree" in capsys.readouterr().out


@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("batch", [None, 3])
def test_matches_reference(zoo, T, batch):
    _, model, m, ref = zoo
    dims = sizes(m)
    params = m.init_params(dims, seed=T)
    data = make_data(model, m, dims, T=T, B=batch, seed=10 + T)
    assert_agree(*m.loss_and_gradients(params, **data), *ref.loss_and_grads(params, **data), params)


def test_sequence_to_one_reads_the_last_state(capsys):
    assert cli_main(["show", str(EXAMPLES / "gru_classifier.sdm")]) == 0
    text = "\n".join(line.strip() for line in capsys.readouterr().out.splitlines())
    assert "∂L/∂W_p = δa_p h_Tᵀ" in text


@pytest.mark.parametrize("suffix", ["tex", "md"])
def test_verify_reads_its_own_writeup(zoo, suffix, capsys):
    name = zoo[0]
    cli_main(["verify", str(EXAMPLES / f"{name}.sdm"), str(GENERATED / f"{name}.{suffix}"), "--json"])
    verdicts = json.loads(capsys.readouterr().out)["claims"]
    assert verdicts and all(v["verdict"] == "correct" for v in verdicts), [
        (v["text"], v["message"]) for v in verdicts if v["verdict"] != "correct"]


def test_verify_diagnoses_wrong_claims_at_fixed_and_state_steps(capsys):
    cli_main(["verify", str(EXAMPLES / "encoder_decoder.sdm"), str(DATA / "encoder_decoder_wrong.md"), "--json"])
    verdicts = json.loads(capsys.readouterr().out)["claims"]
    # δs_0 = V_d δa_{s,1} lacks a transpose; δe_T = δc is right; ∂L/∂W_0 = δc cᵀ has the wrong shape
    assert [v["verdict"] for v in verdicts] == ["incorrect", "correct", "incorrect"]
    assert "transpose" in verdicts[0]["message"]


def test_encoder_decoder_reads_like_a_textbook(capsys):
    assert cli_main(["show", str(EXAMPLES / "encoder_decoder.sdm")]) == 0
    text = "\n".join(line.strip() for line in capsys.readouterr().out.splitlines())
    assert "s_0 = tanh(W_0 c + b_0)" in text
    assert "δs_0 = V_dᵀ δz_{s,1}" in text
    assert "δe_T = δc" in text


def test_bidirectional_adjoints_run_both_ways(capsys):
    assert cli_main(["show", str(EXAMPLES / "birnn_tagger.sdm")]) == 0
    text = "\n".join(line.strip() for line in capsys.readouterr().out.splitlines())
    assert "δh_t = U_hᵀ δz_{p,t} + V_hᵀ δz_{h,t+1}" in text  # from T down to 1
    assert "δg_t = V_gᵀ δz_{g,t−1} + U_gᵀ δz_{p,t}" in text  # from 1 up to T


def test_a_recurrence_the_loss_does_not_read_generates_a_valid_module(capsys):
    """Found merging the batch rule (the sweep skips equations the loss does not read) with the
    time blocks: the unread recurrence's adjoint loop had an empty body."""
    from symderiv.cli import main

    assert main(["check", str(ROOT / "tests" / "models" / "unread_backward_recurrence.sdm")]) == 0
    assert "all agree" in capsys.readouterr().out
