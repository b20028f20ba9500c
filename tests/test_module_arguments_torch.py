"""The generated PyTorch module checks its arguments on every call as the NumPy module does
(tests/test_module_arguments.py), in its own layout (time first, the batch second, like
``torch.nn.RNN``): names (an unknown or missing one is a TypeError naming it, in ``loss`` through
the ``autograd.Function`` too), dtypes (real floating-point or integer numbers converted;
complex, object and text refused with a TypeError), and every shape against DIMS and the other
arguments (a ValueError naming the argument, its shape and the expected one)."""

from __future__ import annotations

import re

import pytest

from .helpers import GENERATED, import_generated

torch = pytest.importorskip("torch", reason="PyTorch is not installed (it is in the test extra)")

ENTRY_POINTS = ("forward", "loss", "gradients", "loss_and_gradients")


def load(name):
    return import_generated(GENERATED / f"{name}_torch.py", f"torch_arguments_{name}")


def good_call(m, dims, T=4, batch=None, seed=0):
    """Params from init_params and data of the declared sizes, in the torch layout: a call that works."""
    g = torch.Generator().manual_seed(seed)
    data = {}
    for k, (seq, size) in m.INPUTS.items():
        core = () if size == "scalar" else (dims[size],) if isinstance(size, str) else (dims[size[0]], dims[size[1]])
        shape = ((T,) if seq else ()) + ((batch,) if batch and size != "scalar" else ()) + core
        data[k] = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1
    return m.init_params(dims, seed=seed), data


MODULES = {
    "seed_rnn": dict(n_x=3, n_a=4, n_h=5, n_o=2, C=3),
    "lstm_tagger": dict(n_x=5, n_h=4, C=3),
    "mlp": dict(n_x=3, n_1=4, n_2=3, n_y=2),
    "attention": dict(n_x=3, n_k=2, n_v=4, n=5),  # matrix data (n_x, n), (n_v, n)
    "linear_regression": dict(n=4, d=3),  # a matrix datum and a scalar input shared by the batch
}


@pytest.fixture(params=sorted(MODULES))
def case(request):
    return request.param, load(request.param), MODULES[request.param]


def raises(exc, pattern, fn, *args, **kwargs):
    with pytest.raises(exc, match=pattern) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_a_good_call_works(case):
    _, m, dims = case
    for batch in (None, 3):
        params, data = good_call(m, dims, batch=batch)
        loss, grads = m.loss_and_gradients(params, **data)
        assert torch.isfinite(loss) and all(grads[k].shape == params[k].shape for k in params)


# --- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unknown_keyword_is_a_type_error_naming_it(case, entry):
    _, m, dims = case
    params, data = good_call(m, dims)
    raises(TypeError, "unknown data 'z_typo'", getattr(m, entry), params, **data, z_typo=torch.zeros(3))


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


def test_model_refuses_an_unknown_keyword(case):
    _, m, dims = case
    _, data = good_call(m, dims)
    raises(TypeError, "unknown data 'z_typo'", m.Model(dims), **data, z_typo=torch.zeros(3))


# --- dtypes --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [lambda a: a.numpy() + 0j, lambda a: a.numpy().astype(object),
                                 lambda a: a.numpy().astype(str), lambda a: a.to(torch.complex128)],
                         ids=["numpy-complex", "object", "text", "torch-complex"])
def test_complex_object_and_text_are_refused(case, bad):
    _, m, dims = case
    params, data = good_call(m, dims)
    k = next(iter(data))
    message = raises(TypeError, f"data '{k}' has dtype", m.loss, params, **{**data, k: bad(data[k])})
    assert "real numbers" in message
    p = next(iter(params))
    raises(TypeError, f"parameter '{p}' has dtype", m.loss, {**params, p: bad(params[p])}, **data)


def test_integers_numpy_arrays_and_float32_are_converted(case):
    _, m, dims = case
    params, data = good_call(m, dims, seed=3)
    counts = {k: torch.round(10 * v).to(torch.int64) for k, v in data.items()}
    as_float = {k: v.to(torch.float64) for k, v in counts.items()}
    assert torch.equal(m.loss(params, **counts), m.loss(params, **as_float))
    arrays = {k: v.numpy() for k, v in data.items()}
    assert torch.equal(m.loss(params, **arrays), m.loss(params, **data))
    g32 = m.gradients({k: v.to(torch.float32) for k, v in params.items()},
                      **{k: v.to(torch.float32) for k, v in data.items()})
    assert all(g.dtype == torch.float32 for g in g32.values())


def test_python_numbers_are_doubles_and_take_the_tensors_dtype():
    """A Python float is a double (not torch's default float32: 0.1 would be 0.10000000149), and it
    takes the dtype of the tensors beside it, as in torch's own arithmetic (lam=0.1 keeps float32)."""
    m = load("linear_regression")
    params, data = good_call(m, MODULES["linear_regression"], batch=3)
    exact = m.loss(params, **{**data, "lam": torch.tensor(0.1, dtype=torch.float64)})
    assert torch.equal(m.loss(params, **{**data, "lam": 0.1}), exact)
    listed = m.loss({k: v.tolist() for k, v in params.items()}, **{k: v.tolist() for k, v in data.items()})
    assert listed.dtype == torch.float64 and torch.equal(listed, m.loss(params, **data))
    p32 = {k: v.to(torch.float32) for k, v in params.items()}
    x32 = {k: v.to(torch.float32) for k, v in data.items()}
    loss, grads = m.loss_and_gradients(p32, **{**x32, "lam": 0.1})
    assert loss.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads.values())


# --- shapes --------------------------------------------------------------------------------

def message_of(m, params, data):
    with pytest.raises(ValueError) as info:
        m.loss_and_gradients(params, **data)
    return str(info.value)


def test_a_bias_of_size_one_is_refused():
    m = load("mlp")
    params, data = good_call(m, MODULES["mlp"])
    params["b1"] = torch.zeros(1, dtype=torch.float64)
    assert message_of(m, params, data) == "parameter 'b1' has shape (1,), expected (n_1,) = (4,); n_1 = 4 from " \
                                          "parameter 'W1'"


def test_a_target_of_size_one_is_refused():
    m = load("mlp")
    params, data = good_call(m, MODULES["mlp"], batch=3)
    data["y"] = torch.zeros(3, 1, dtype=torch.float64)
    assert message_of(m, params, data) == "data 'y' has shape (3, 1), expected (B, n_y) = (3, 2); n_y = 2 from " \
                                          "parameter 'W3'"


def test_sequences_of_different_lengths_are_refused():
    m = load("seed_rnn")
    params, data = good_call(m, MODULES["seed_rnn"], T=4)
    data["r"] = data["r"][:1]
    assert message_of(m, params, data) == "data 'r' has shape (1, 3), expected (T, C) with T = 4 from 'x': 1 steps"


def test_an_lstm_input_of_the_wrong_size_is_refused():
    """n_x is solved from W_f's n_h + n_x columns, so the wrong one is x, batched or not."""
    m = load("lstm_tagger")
    params, data = good_call(m, MODULES["lstm_tagger"], T=4)
    data["x"] = torch.zeros(4, 7, dtype=torch.float64)
    assert message_of(m, params, data) == "data 'x' has shape (4, 7), expected (T, n_x) = (4, 5); n_x = 5 from " \
                                          "parameter 'W_f'"
    params, data = good_call(m, MODULES["lstm_tagger"], T=4, batch=2)
    data["x"] = torch.zeros(4, 2, 7, dtype=torch.float64)
    assert message_of(m, params, data) == "data 'x' has shape (4, 2, 7), expected (T, B, n_x) = (4, 2, 5); " \
                                          "n_x = 5 from parameter 'W_f'"


def test_a_matrix_datum_of_the_wrong_shape_is_refused():
    m = load("attention")
    params, data = good_call(m, MODULES["attention"], batch=2)
    data["Y"] = torch.zeros(2, 4, 6, dtype=torch.float64)  # n = 5 columns, from X
    assert message_of(m, params, data) == "data 'Y' has shape (2, 4, 6), expected (B, n_v, n) = (2, 4, 5); " \
                                          "n = 5 from data 'X', n_v = 4 from parameter 'W_V'"


def test_a_shared_scalar_input_takes_no_batch_axis():
    m = load("linear_regression")
    params, data = good_call(m, MODULES["linear_regression"], batch=3)
    assert data["lam"].shape == ()
    assert message_of(m, params, {**data, "lam": torch.full((3,), 0.1)}) == "data 'lam' has shape (3,), expected ()"
    message = message_of(m, {**params, "w": torch.zeros(3, 1)}, data)
    assert message == "parameter 'w' has shape (3, 1), expected (d,)"


def test_a_parameter_of_the_wrong_shape_is_refused(case):
    _, m, dims = case
    params, data = good_call(m, dims)
    for k, axes in m.PARAMS.items():
        if len(axes) == 2:
            rows, cols = params[k].shape
            bad = torch.zeros((cols, rows) if rows != cols else (rows + 1, cols), dtype=torch.float64)
            message = message_of(m, {**params, k: bad}, data)  # the first matrix: its dims are read off it
            assert re.fullmatch(rf"(parameter|data) '\w+' has shape \([\d, ]*\), expected \(.*\) = \([\d, ]*\); .*"
                                rf"from parameter '{k}'.*|\w+ = -?\d+, read off '{k}' .*", message), message
            break
    p = next(iter(params))
    message = message_of(m, {**params, p: params[p][..., None]}, data)
    assert message.startswith(f"parameter '{p}' has shape {tuple(params[p].shape) + (1,)}, expected (")


def test_a_datum_with_too_many_axes_or_batches_that_differ_is_refused(case):
    _, m, dims = case
    params, data = good_call(m, dims, batch=3)
    k = next(k for k, (_, size) in m.INPUTS.items() if size != "scalar")
    message = message_of(m, params, {**data, k: data[k][..., None]})
    assert message.startswith(f"data '{k}' has shape {tuple(data[k].shape) + (1,)}, expected (")
    assert "with a batch axis" in message
    others = [j for j, (_, size) in m.INPUTS.items() if size != "scalar" and j != k]
    if others:
        last = others[-1]
        seq = m.INPUTS[last][0]
        message = message_of(m, params, {**data, last: data[last].narrow(int(seq), 0, 2)})
        assert f"data '{last}' has shape" in message and "B = 3 from" in message and "a batch of 2" in message


def test_a_size_zero_is_refused():
    m = load("seed_rnn")
    params, data = good_call(m, MODULES["seed_rnn"], T=4)
    assert "every size must be positive" in message_of(m, params, {k: v[:0] for k, v in data.items()})


def test_an_input_without_the_batch_axis_is_shared_by_every_example():
    """As in the NumPy module: a datum without the batch axis beside batched ones is the same for every example."""
    m = load("attention")
    params, data = good_call(m, MODULES["attention"], batch=3)
    shared_x = data["X"][0]
    per_example = m.loss(params, X=shared_x.expand(3, *shared_x.shape), Y=data["Y"])
    assert torch.allclose(m.loss(params, X=shared_x, Y=data["Y"]), per_example, rtol=1e-13, atol=0)


def test_a_zero_dim_float32_scalar_beside_float64_is_computed_in_float64_as_numpy_does():
    """INTERFACES.md: float32 in gives float32 out, float64 otherwise; a 0-d float32 tensor (lam=torch.tensor(0.05))
    beside float64 parameters and data is read as the float32 number it is, widened, and the call computes in
    float64, as the NumPy module does for np.float32(0.05): the loss and gradient written out by hand, in float64."""
    import numpy as np

    m = load("linear_regression")
    numpy_module = import_generated(GENERATED / "linear_regression.py", "numpy_arguments_linear_regression")
    params, data = good_call(m, MODULES["linear_regression"], batch=3)
    lam32 = torch.tensor(0.05)
    assert lam32.dtype == torch.float32
    lam = float(np.float32(0.05))  # 0.05000000074505806: the float32 number, not 0.05
    w, X, y = params["w"], data["X"], data["y"]  # X (B, n, d), y (B, n)
    r = torch.einsum("bij,j->bi", X, w) - y
    want_loss = 0.5 * (r * r).sum() + lam / 2 * (w * w).sum()
    want_grad = torch.einsum("bij,bi->j", X, r) + lam * w
    as_numpy = {"X": np.moveaxis(X.numpy(), 0, -1), "y": np.moveaxis(y.numpy(), 0, -1), "lam": np.float32(0.05)}
    numpy_loss, numpy_grads = numpy_module.loss_and_gradients({"w": w.numpy()}, **as_numpy)
    assert np.asarray(numpy_loss).dtype == np.float64
    np.testing.assert_allclose(numpy_loss, want_loss.item(), rtol=1e-13)
    for entry in ("loss", "loss_and_gradients", "backward", "Model"):
        if entry == "loss":
            loss = m.loss(params, **{**data, "lam": lam32})
        elif entry == "loss_and_gradients":
            loss, grads = m.loss_and_gradients(params, **{**data, "lam": lam32})
            grad = grads["w"]
        elif entry == "backward":
            leaf = w.clone().requires_grad_()
            loss = m.loss({"w": leaf}, **{**data, "lam": lam32})
            loss.backward()
            grad = leaf.grad
        else:
            model = m.Model(MODULES["linear_regression"])
            with torch.no_grad():
                model.params["w"].copy_(w)
            loss = model(**{**data, "lam": lam32})
            loss.backward()
            grad = model.params["w"].grad
        assert loss.dtype == torch.float64, entry
        assert abs(loss.item() - want_loss.item()) <= 1e-13 * abs(want_loss.item()), entry
        assert abs(loss.item() - float(numpy_loss)) <= 1e-13 * abs(float(numpy_loss)), entry
        if entry != "loss":
            assert grad.dtype == torch.float64, entry
            assert torch.allclose(grad, want_grad, rtol=1e-13, atol=0), entry
            np.testing.assert_allclose(grad.numpy(), numpy_grads["w"], rtol=1e-13)
    # the other way round: float32 parameters and data beside a 0-d float64 scalar compute in float64, as NumPy does
    p32 = {k: v.to(torch.float32) for k, v in params.items()}
    x32 = {k: v.to(torch.float32) for k, v in data.items()}
    loss = m.loss(p32, **{**x32, "lam": torch.tensor(0.05, dtype=torch.float64)})
    numpy_loss = numpy_module.loss({"w": p32["w"].numpy()}, X=np.moveaxis(x32["X"].numpy(), 0, -1),
                                   y=np.moveaxis(x32["y"].numpy(), 0, -1), lam=np.float64(0.05))
    assert loss.dtype == torch.float64 and np.asarray(numpy_loss).dtype == np.float64
    assert abs(loss.item() - float(numpy_loss)) <= 1e-13 * abs(float(numpy_loss))
