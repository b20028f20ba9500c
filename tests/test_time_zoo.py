"""The networks of version 2's time forms (fixed steps, data at other steps, recurrences
backwards in time, initial states from expressions): each derives, certifies at tiny sizes,
`symderiv check` agrees, and its generated module equals an independent NumPy reference
(tests/reference/, written from the equations) at T = 1, 2, 7, batched and not."""

import pytest

import symderiv
from symderiv.check.certify import certify
from symderiv.cli import main as cli_main

from .helpers import EXAMPLES
from .test_zoo import assert_agree, entry, make_data, sizes

TIME_ZOO = ["gru_classifier", "causal_conv_rnn", "birnn_tagger"]


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
