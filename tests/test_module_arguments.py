"""The generated NumPy module checks its arguments on every call (issue 16, Build item 4):
names (an unknown or missing one is a TypeError naming it), dtypes (real floating-point or
integer numbers converted; complex, object and text refused with a TypeError), and every
shape against DIMS and the other arguments (a ValueError naming the argument, its shape and
the expected one).  Before, a (1,) bias, a size-1 target and T = 1 beside T = 4 broadcast
silently, and an LSTM's x of the wrong size gave ∂L/∂W_f of the wrong shape."""

from __future__ import annotations

import re

import numpy as np
import pytest

import symderiv

from .helpers import GENERATED, generated_module, import_generated

ENTRY_POINTS = ("forward", "loss", "gradients", "loss_and_gradients")


def load(name):
    return import_generated(GENERATED / f"{name}.py", f"arguments_{name}")


def good_call(m, dims, T=4, batch=None, seed=0):
    """Params from init_params and data of the declared sizes: a call that works."""
    rng = np.random.default_rng(seed)
    data = {}
    for k, (seq, size) in m.INPUTS.items():
        shape = ((T,) if seq else ()) + (() if size == "scalar" else (dims[size],))
        shape += (batch,) if batch and size != "scalar" else ()
        data[k] = rng.random(shape) + 0.1
    return m.init_params(dims, seed=seed), data


MODULES = {
    "seed_rnn": dict(n_x=3, n_a=4, n_h=5, n_o=2, C=3),
    "lstm_tagger": dict(n_x=5, n_h=4, C=3),
    "mlp": dict(n_x=3, n_1=4, n_2=3, n_y=2),
    "gru_regressor": None,  # sizes chosen below from its DIMS
}


@pytest.fixture(params=sorted(MODULES))
def case(request):
    m = load(request.param)
    dims = MODULES[request.param] or {d: 2 + k for k, d in enumerate(m.DIMS)}
    return request.param, m, dims


def raises(exc, pattern, fn, *args, **kwargs):
    with pytest.raises(exc, match=pattern) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_a_good_call_works(case):
    _, m, dims = case
    for batch in (None, 3):
        params, data = good_call(m, dims, batch=batch)
        loss, grads = m.loss_and_gradients(params, **data)
        assert np.isfinite(loss) and all(np.shape(grads[k]) == np.shape(params[k]) for k in params)


# --- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unknown_keyword_is_a_type_error_naming_it(case, entry):
    _, m, dims = case
    params, data = good_call(m, dims)
    raises(TypeError, "unknown data 'z_typo'", getattr(m, entry), params, **data, z_typo=np.zeros(3))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_missing_keyword_is_a_type_error_naming_it(case, entry):
    _, m, dims = case
    params, data = good_call(m, dims)
    first = next(iter(data))
    del data[first]
    raises(TypeError, f"missing data '{first}'", getattr(m, entry), params, **data)


def test_an_unknown_or_missing_parameter_is_a_type_error_naming_it(case):
    _, m, dims = case
    params, data = good_call(m, dims)
    last = list(params)[-1]
    raises(TypeError, f"unknown parameter '{last}_typo'", m.loss, {**params, f"{last}_typo": params[last]}, **data)
    del params[last]
    raises(TypeError, f"missing parameter '{last}'", m.gradients, params, **data)


# --- dtypes --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [lambda a: a + 0j, lambda a: a.astype(object), lambda a: a.astype(str)])
def test_complex_object_and_text_are_refused(case, bad):
    _, m, dims = case
    params, data = good_call(m, dims)
    k = next(iter(data))
    message = raises(TypeError, f"data '{k}' has dtype", m.loss, params, **{**data, k: bad(data[k])})
    assert "real numbers" in message
    p = next(iter(params))
    raises(TypeError, f"parameter '{p}' has dtype", m.loss, {**params, p: bad(params[p])}, **data)


def test_integers_and_float32_are_converted(case):
    _, m, dims = case
    params, data = good_call(m, dims, seed=3)
    counts = {k: np.round(10 * v).astype(np.int64) for k, v in data.items()}
    as_float = {k: v.astype(np.float64) for k, v in counts.items()}
    assert m.loss(params, **counts) == m.loss(params, **as_float)
    g32 = m.gradients({k: np.asarray(v, np.float32) for k, v in params.items()},
                      **{k: v.astype(np.float32) for k, v in data.items()})
    assert all(np.asarray(g).dtype == np.float32 for g in g32.values())


# --- shapes --------------------------------------------------------------------------------

def message_of(m, params, data):
    with pytest.raises(ValueError) as info:
        m.loss_and_gradients(params, **data)
    return str(info.value)


def test_a_bias_of_size_one_is_refused():
    m = load("mlp")
    params, data = good_call(m, MODULES["mlp"])
    params["b1"] = np.zeros(1)
    assert message_of(m, params, data) == "parameter 'b1' has shape (1,), expected (n_1,) = (4,); n_1 = 4 from " \
                                          "parameter 'W1'"


def test_a_target_of_size_one_is_refused():
    m = load("mlp")
    params, data = good_call(m, MODULES["mlp"], batch=3)
    data["y"] = np.zeros((1, 3))
    assert message_of(m, params, data) == "data 'y' has shape (1, 3), expected (n_y, B) = (2, 3); n_y = 2 from " \
                                          "parameter 'W3'"


def test_sequences_of_different_lengths_are_refused():
    m = load("seed_rnn")
    params, data = good_call(m, MODULES["seed_rnn"], T=4)
    data["r"] = data["r"][:1]
    assert message_of(m, params, data) == "data 'r' has shape (1, 3), expected (T, C) with T = 4 from 'x': 1 steps"


def test_an_lstm_input_of_the_wrong_size_is_refused():
    """n_x is solved from W_f's n_h + n_x columns, so the wrong one is x (it gave ∂L/∂W_f of shape (4, 5))."""
    m = load("lstm_tagger")
    params, data = good_call(m, MODULES["lstm_tagger"], T=4)
    data["x"] = np.zeros((4, 7))
    assert message_of(m, params, data) == "data 'x' has shape (4, 7), expected (T, n_x) = (4, 5); n_x = 5 from " \
                                          "parameter 'W_f'"


def test_a_parameter_of_the_wrong_shape_is_refused(case):
    _, m, dims = case
    params, data = good_call(m, dims)
    for k, axes in m.PARAMS.items():
        if len(axes) == 2:
            bad = np.zeros(np.shape(params[k])[::-1] if np.shape(params[k])[0] != np.shape(params[k])[1]
                           else (np.shape(params[k])[0] + 1, np.shape(params[k])[1]))
            message = message_of(m, {**params, k: bad}, data)  # the first matrix: its dims are read off it
            assert re.fullmatch(rf"(parameter|data) '\w+' has shape \([\d, ]*\), expected \(.*\) = \([\d, ]*\); .*"
                                rf"from parameter '{k}'.*|\w+ = -?\d+, read off '{k}' .*", message), message
            break
    p = next(iter(params))
    message = message_of(m, {**params, p: np.zeros(np.shape(params[p]) + (1,))}, data)
    assert message.startswith(f"parameter '{p}' has shape {np.shape(params[p]) + (1,)}, expected (")


def test_a_datum_with_too_many_axes_or_batches_that_differ_is_refused(case):
    _, m, dims = case
    params, data = good_call(m, dims, batch=3)
    k = next(iter(data))
    message = message_of(m, params, {**data, k: data[k][..., None]})
    assert message.startswith(f"data '{k}' has shape {data[k].shape + (1,)}, expected (")
    assert "with a batch axis" in message
    if len(data) > 1:
        last = list(data)[-1]
        message = message_of(m, params, {**data, last: data[last][..., :2]})
        assert f"data '{last}' has shape" in message and "B = 3 from" in message and "a batch of 2" in message


WEIGHTED = """model weighted
dim n_y, n_x
input x: n_x
input lam: scalar
target y: n_y
param W: (n_y, n_x)
param s: scalar
loss L = squared_error(y, s * (W @ x)) + 0.5 * lam * sum(W * W)
"""


def test_a_scalar_input_is_shared_and_a_scalar_param_is_a_scalar(tmp_path):
    m = generated_module(symderiv.derive(symderiv.parse(WEIGHTED, "weighted.sdm")), tmp_path)
    params = {"W": np.ones((2, 3)), "s": 0.5}
    data = {"x": np.ones((3, 4)), "y": np.zeros((2, 4))}
    assert np.isclose(m.loss(params, **data, lam=0.1), 4 * 0.5 * 2 * (0.5 * 3) ** 2 + 0.5 * 0.1 * 6)
    message = message_of(m, params, {**data, "lam": np.full(4, 0.1)})
    assert message == "data 'lam' has shape (4,), expected ()"
    message = message_of(m, {**params, "s": np.array([0.5])}, {**data, "lam": 0.1})
    assert message == "parameter 's' has shape (1,), expected ()"
    raises(TypeError, "missing data 'lam'", m.forward, params, **data)


def test_a_size_zero_is_refused():
    m = load("seed_rnn")
    params, data = good_call(m, MODULES["seed_rnn"], T=4)
    assert "every size must be positive" in message_of(m, params, {k: v[:0] for k, v in data.items()})
