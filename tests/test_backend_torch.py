"""The generated PyTorch module (``--format torch``): for every example, its loss and gradients
against ``torch.autograd`` of a forward pass written independently from the equations
(tests/torch_reference.py) and against the NumPy module; float32 and float64, batched and not,
CUDA when there is a GPU; ``Model`` trained with ``torch.optim.Adam``; ``DistributedDataParallel``
across two processes; and symderiv itself never importing torch."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symderiv
from symderiv.check.evaluate import random_point
from symderiv.codegen.torch import spelling
from symderiv.ops import ELEMENTWISE
from symderiv.render.emit import render

from .helpers import EXAMPLES, ROOT, import_generated

torch = pytest.importorskip("torch", reason="PyTorch is not installed (it is in the test extra)")

from .torch_reference import computes, reference_loss  # noqa: E402  (needs torch)

# One thread: the machines that run the suite are shared, and PyTorch's intra-op threads on a
# loaded machine make every small operation wait (a 6 ms training step took 1.2 s with two).
torch.set_num_threads(1)



def _unsupported(path):
    from symderiv.codegen.backends import BACKENDS

    return BACKENDS["torch"].unsupported(symderiv.derive(symderiv.load(path)))


# Every example (language version 1's vectors and version 2's matrices, functions of matrices,
# powers and dims as values): the PyTorch back end generates each, and the test's own reference
# (tests/torch_reference.py) computes each (both are asserted below, not filtered).
EXAMPLE_PATHS = sorted(EXAMPLES.glob("*.sdm"))
# and beyond them: the models of tests/models (a lag of two, a pooled context, a Poisson loss, tied
# weights, …) and tests/models_matrix (version 2's functions, a matrix datum per step, penalties)
MODEL_PATHS = [p for folder in ("models", "models_matrix") for p in sorted((ROOT / "tests" / folder).glob("*.sdm"))]
ALL_PATHS = EXAMPLE_PATHS + MODEL_PATHS


def _id(path) -> str:
    return path.stem if path.parent == EXAMPLES else f"{path.parent.name}/{path.stem}"
BATCH = 3
T_STEPS = 4


@pytest.fixture(scope="module")
def derived():
    """Every example's derivation, its PyTorch module and its NumPy module, rendered afresh."""
    return {}


def _modules(derived, path: Path, tmp_path_factory):
    if path not in derived:
        d = symderiv.derive(symderiv.load(path))
        out = tmp_path_factory.mktemp("torch_modules")
        files = {}
        for fmt, stem in (("torch", f"{d.model.name}_torch_test"), ("py", f"{d.model.name}_numpy_test")):
            files[fmt] = out / f"{stem}.py"
            files[fmt].write_text(render(d, fmt, path.name), encoding="utf-8")
        derived[path] = (d, import_generated(files["torch"], files["torch"].stem),
                         import_generated(files["py"], files["py"].stem), files["torch"])
    return derived[path]


def sizes_of(d):
    dims = {name: 2 + k for k, name in enumerate(d.model.dims)}
    return dims, (T_STEPS if d.model.has_time else None)


def point(d, batch: int | None, seed: int = 0, sizes=None):
    """Parameters (the maths' shapes) and data in the PyTorch module's layout, float64 NumPy arrays:
    random_point's draws (inside every function's domain), one draw per example of a batch
    (``sizes``: (dims, T), else ``sizes_of(d)``)."""
    model = d.model
    dims, T = sizes or sizes_of(d)
    raw, _ = random_point(model, dims, T, seed)
    params = {}
    for p in model.params:
        v = np.asarray(raw[p.name], dtype=float)
        params[p.name] = v.reshape(()) if p.is_scalar else v[:, 0] if p.is_vector else v
    draws = [random_point(model, dims, T, seed + 1 + b)[1] for b in range(batch or 1)]
    data = {}
    for q in model.data:
        per = [np.asarray(x[q.name], dtype=float) for x in draws]  # (T, n, 1) / (n, 1), a matrix (rows, cols)
        if q.kind != "matrix":
            per = [v[..., 0] for v in per]  # (T, n) / (n,)
        if q.is_scalar:
            per = [v[..., 0] for v in per]
        if batch is None or (q.is_scalar and not q.sequence):  # a scalar input is shared by the batch
            data[q.name] = per[0]
        else:
            data[q.name] = np.stack(per, axis=1 if q.sequence else 0)
    return params, data


def numpy_layout(d, data: dict, batched: bool) -> dict:
    """The PyTorch layout → the NumPy module's (the batch axis last)."""
    out = {}
    for q in d.model.data:
        v = data[q.name]
        out[q.name] = np.moveaxis(v, 1 if q.sequence else 0, -1) if batched and not q.is_scalar else v
    return out


def tensors(values: dict, dtype, device="cpu", grad=False) -> dict:
    return {k: torch.tensor(v, dtype=dtype, device=device, requires_grad=grad) for k, v in values.items()}


def rel_error(a, b) -> float:
    a = np.asarray(torch.as_tensor(a).detach().cpu().double())
    b = np.asarray(torch.as_tensor(b).detach().cpu().double())
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-8)) if a.size else 0.0


def autograd_reference(d, params, data, batched, dtype=torch.float64, device="cpu"):
    """Loss and gradients by torch.autograd of the independent forward pass."""
    p = tensors(params, dtype, device, grad=True)
    x = tensors(data, dtype, device)
    loss = reference_loss(d.model, p, x, batched)
    grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
    return loss.detach(), {k: (g if g is not None else torch.zeros_like(p[k])) for k, g in zip(p, grads)}


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_float64_equals_autograd_and_the_numpy_module(derived, tmp_path_factory, path, batch):
    d, tm, nm, _ = _modules(derived, path, tmp_path_factory)
    params, data = point(d, batch)
    ref_loss, ref_grads = autograd_reference(d, params, data, batch is not None)

    p, x = tensors(params, torch.float64), tensors(data, torch.float64)
    loss, grads = tm.loss_and_gradients(p, **x)
    assert loss.dtype == torch.float64 and loss.ndim == 0
    assert rel_error(loss, ref_loss) <= 1e-10
    assert set(grads) == set(params)
    for k in params:
        assert grads[k].shape == p[k].shape and grads[k].dtype == torch.float64, k
        assert rel_error(grads[k], ref_grads[k]) <= 1e-10, k

    # loss(...).backward() through the autograd.Function fills .grad with the same numbers
    leaves = tensors(params, torch.float64, grad=True)
    out = tm.loss(leaves, **x)
    assert out.requires_grad
    out.backward()
    for k in params:
        assert rel_error(leaves[k].grad, ref_grads[k]) <= 1e-10, k
    assert rel_error(tm.gradients(p, **x)[k], grads[k]) == 0.0

    # the NumPy module, in its own layout
    n_loss, n_grads = nm.loss_and_gradients(params, **numpy_layout(d, data, batch is not None))
    assert rel_error(loss, n_loss) <= 1e-10
    for k in params:
        assert rel_error(grads[k], n_grads[k]) <= 1e-10, k

    # the arguments are not changed in place
    for k, v in params.items():
        assert np.array_equal(p[k].numpy(), v), k
    for k, v in data.items():
        assert np.array_equal(x[k].numpy(), v), k


@pytest.mark.parametrize("name", ["seed_rnn", "lstm_tagger"])
def test_buffers_kept_between_calls_never_overwrite_what_is_still_held(derived, tmp_path_factory, name):
    """At a size where the module keeps its large arrays between calls (``_scratch``, from 256 KiB):
    every call equals autograd of the independent forward pass, with new data and parameters each time;
    gradients and forward values held across later calls stay as they were; and two forward passes
    before one backward pass (accumulated gradients) give the sum of both."""
    d, tm, _, _ = _modules(derived, EXAMPLES / f"{name}.sdm", tmp_path_factory)
    sizes = (dict.fromkeys(d.model.dims, 64), 20)  # (T, B, 64) float64 arrays: 320 KiB each
    draws = [point(d, 32, seed, sizes) for seed in (0, 40, 80)]
    f64 = torch.float64
    held = []
    for params, data in draws:
        ref_loss, ref_grads = autograd_reference(d, params, data, True)
        loss, grads = tm.loss_and_gradients(tensors(params, f64), **tensors(data, f64))
        assert rel_error(loss, ref_loss) <= 1e-10
        for k in params:
            assert rel_error(grads[k], ref_grads[k]) <= 1e-10, k
        held.append((grads, {k: g.clone() for k, g in grads.items()}))
    assert tm._SCRATCH.buffers  # the buffers are in use at this size (else this test would test nothing)
    for grads, copy in held:
        assert all(torch.equal(grads[k], copy[k]) for k in grads)

    (p0, x0), (p1, x1) = draws[0], draws[1]
    values = tm.forward(tensors(p0, f64), **tensors(x0, f64))
    copies = {k: v.clone() for k, v in values.items()}
    tm.loss_and_gradients(tensors(p1, f64), **tensors(x1, f64))
    leaves = tensors(p1, f64, grad=True)
    tm.loss(leaves, **tensors(x1, f64)).backward()
    assert all(torch.equal(values[k], copies[k]) for k in values)

    # sequences of many lengths (every one new shapes): only the shapes used last are kept
    for steps in range(21, 31):
        params, data = point(d, 32, steps, (sizes[0], steps))
        ref_loss, _ = autograd_reference(d, params, data, True)
        assert rel_error(tm.loss_and_gradients(tensors(params, f64), **tensors(data, f64))[0], ref_loss) <= 1e-10
    assert 0 < len(tm._SCRATCH.buffers) <= tm._SCRATCH_SHAPES

    # two forward passes before one backward pass: the second may not reuse what the first saved
    leaves = tensors(p0, f64, grad=True)
    total = tm.loss(leaves, **tensors(x0, f64)) + tm.loss(leaves, **tensors(x1, f64))
    total.backward()
    (l0, g0), (l1, g1) = autograd_reference(d, p0, x0, True), autograd_reference(d, p0, x1, True)
    assert rel_error(total, l0 + l1) <= 1e-10
    for k in p0:
        assert rel_error(leaves[k].grad, g0[k] + g1[k]) <= 1e-10, k


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_float32_within_1e4_of_float64_autograd(derived, tmp_path_factory, path, batch):
    d, tm, _, _ = _modules(derived, path, tmp_path_factory)
    params, data = point(d, batch, seed=7)
    ref_loss, ref_grads = autograd_reference(d, params, data, batch is not None)
    leaves = tensors(params, torch.float32, grad=True)
    loss = tm.loss(leaves, **tensors(data, torch.float32))
    loss.backward()
    assert loss.dtype == torch.float32
    assert rel_error(loss, ref_loss) <= 1e-4
    for k in params:
        assert leaves[k].grad.dtype == torch.float32, k
        assert rel_error(leaves[k].grad, ref_grads[k]) <= 1e-4, k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (torch.cuda.is_available() "
                                                          "is False): the CUDA run needs a GPU")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_cuda_equals_autograd_on_the_device(derived, tmp_path_factory, path, dtype):
    d, tm, _, _ = _modules(derived, path, tmp_path_factory)
    params, data = point(d, BATCH, seed=3)
    ref_loss, ref_grads = autograd_reference(d, params, data, True, torch.float64, "cuda")
    leaves = tensors(params, dtype, "cuda", grad=True)
    loss = tm.loss(leaves, **tensors(data, dtype, "cuda"))
    loss.backward()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert loss.device.type == "cuda" and loss.dtype == dtype
    assert rel_error(loss, ref_loss) <= tol
    for k in params:
        assert leaves[k].grad.device.type == "cuda" and leaves[k].grad.dtype == dtype, k
        assert rel_error(leaves[k].grad, ref_grads[k]) <= tol, k


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_forward_values_are_the_numpy_modules(derived, tmp_path_factory, path, batch):
    """Every forward value, in the torch layout (a matrix (B, rows, cols), a sequence (T, B, n)),
    is the NumPy module's in its layout (the batch last)."""
    d, tm, nm, _ = _modules(derived, path, tmp_path_factory)
    params, data = point(d, batch)
    values = tm.forward(tensors(params, torch.float64), **tensors(data, torch.float64))
    expected = nm.forward(params, **numpy_layout(d, data, batch is not None))
    assert set(values) == set(expected)
    for name, v in expected.items():
        q = d.model[name]
        got = values[name].numpy()
        rank = 0 if q.is_scalar else 1 if q.is_vector else 2
        if got.ndim == int(q.sequence) + rank + 1 and rank:  # a batch axis: after the time axis in torch
            got = np.moveaxis(got, int(q.sequence), -1)
        assert rel_error(got, v) <= 1e-12, name


def test_init_params_and_model(derived, tmp_path_factory):
    d, tm, _, _ = _modules(derived, EXAMPLES / "seed_rnn.sdm", tmp_path_factory)
    dims, _ = sizes_of(d)
    init = tm.init_params(dims, seed=5)
    assert set(init) == {p.name for p in d.model.params}
    for p in d.model.params:
        assert init[p.name].dtype == torch.float64 and init[p.name].ndim == (0 if p.is_scalar else
                                                                             1 if p.is_vector else 2)
    assert all(torch.equal(init[k], v) for k, v in tm.init_params(dims, seed=5).items())  # seeded
    model = tm.Model(dims, seed=5)
    assert {k: v for k, v in model.named_parameters()}.keys() == {f"params.{k}" for k in init}
    assert all(torch.equal(model.params[k].detach(), init[k]) for k in init)
    _, data = point(d, BATCH)
    loss = model(**tensors(data, torch.float64))
    loss.backward()
    expected = tm.gradients(init, **tensors(data, torch.float64))
    for k in init:
        assert rel_error(model.params[k].grad, expected[k]) == 0.0, k


def test_a_second_backward_is_refused_clearly(derived, tmp_path_factory):
    d, tm, _, _ = _modules(derived, EXAMPLES / "seed_rnn.sdm", tmp_path_factory)
    params, data = point(d, None)
    loss = tm.loss(tensors(params, torch.float64, grad=True), **tensors(data, torch.float64))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once per forward pass"):
        loss.backward()


def test_missing_and_misshapen_data_are_clear_errors(derived, tmp_path_factory):
    d, tm, _, _ = _modules(derived, EXAMPLES / "seed_rnn.sdm", tmp_path_factory)
    params, data = point(d, None)
    p = tensors(params, torch.float64)
    with pytest.raises(TypeError, match="missing data 'r'"):
        tm.loss(p, x=torch.tensor(data["x"]))
    with pytest.raises(ValueError, match=re.escape("data 'x' has shape (2, 3, 4, 5), expected (T, n_x) or "
                                                   "(T, B, n_x) with a batch axis")):
        tm.loss_and_gradients(p, x=torch.zeros(2, 3, 4, 5, dtype=torch.float64), r=torch.tensor(data["r"]))
    # (every other argument check: tests/test_module_arguments_torch.py)


@pytest.mark.parametrize("fname", sorted(ELEMENTWISE))
def test_every_elementwise_spelling_computes_its_meaning(derived, tmp_path_factory, fname):
    """The PyTorch spelling of each function of the registry (a table entry, or printed from its
    SymPy meaning) against that meaning, evaluated by SymPy, at points on both sides of 0."""
    record = ELEMENTWISE[fname]
    params = (sp.Rational(1, 5),) if fname == "leaky_relu" else ()
    points = [0.3, 1.7, 2.5] if record.domain == "positive" else [-2.5, -0.7, 0.3, 1.7]
    z = sp.Symbol("z", real=True)
    expected = [float(record.scalar(z, *params).subs(z, sp.Float(v, 30)).evalf(20)) for v in points]
    x = torch.tensor(points, dtype=torch.float64)
    _, tm, _, _ = _modules(derived, EXAMPLES / "seed_rnn.sdm", tmp_path_factory)  # its runtime helpers
    namespace = {"torch": torch, "x": x, "dtype": torch.float64, "device": x.device, "_softplus": tm._softplus}
    got = eval(compile(spelling.call(fname, "x", params), "<spelling>", "eval"), namespace)  # our own printed code
    # in the argument's dtype (not the default float32 of torch.where(c, 0.0, 1.0)), to the last digits
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64, (fname, got)
    assert np.allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12), fname
    if spelling.has_out(fname, params):
        out = torch.empty_like(x)
        namespace["out"] = out
        eval(compile(spelling.call_out(fname, "x", "out", params), "<spelling>", "eval"), namespace)
        assert np.allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12), fname


PENALTY_MODEL = """
model penalised_rnn
dim n_x, n_h, C
time t = 1..T
input x[t]: n_x
input lam: scalar
target r[t]: C, distribution
param W: (n_h, n_x)
param V: (n_h, n_h)
param U: (C, n_h)
param b: n_h
state h[0] = 0
h[t] = tanh(W @ x[t] + V @ h[t-1] + b)
p[t] = softmax(U @ h[t])
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T)) + lam / 2 * sum(V * V)
"""


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
def test_a_penalty_counts_once_per_call(tmp_path, batch):
    """The batch rule: a term reading only params and a scalar input (shared by the batch) counts once."""
    d = symderiv.derive(symderiv.parse(PENALTY_MODEL, "penalised_rnn.sdm"))
    path = tmp_path / "penalised_rnn_torch.py"
    path.write_text(render(d, "torch", "penalised_rnn.sdm"), encoding="utf-8")
    tm = import_generated(path, "penalised_rnn_torch_test")
    params, data = point(d, batch)
    data["lam"] = np.array(0.7)
    ref_loss, ref_grads = autograd_reference(d, params, data, batch is not None)
    loss, grads = tm.loss_and_gradients(tensors(params, torch.float64), **tensors(data, torch.float64))
    assert rel_error(loss, ref_loss) <= 1e-10
    for k in params:
        assert rel_error(grads[k], ref_grads[k]) <= 1e-10, k


OPERANDS_MODEL = """
model operands
dim n
input x: n
param w: n
loss L = sum(gelu(w * x) ** 2) + 1 / sum(gelu(w) + 2) + sum(leaky_relu(w, 0.1) * x) / sum(gelu(x) * gelu(x) + 1)
"""


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
def test_a_function_printed_from_its_meaning_is_one_operand(tmp_path, batch):
    """gelu is printed from its meaning, without spaces ((0.5)*z*(torch.erf(…) + 1)); as the base of
    a power, a divisor or the object of .sum() it must still be one operand."""
    d = symderiv.derive(symderiv.parse(OPERANDS_MODEL, "operands.sdm"))
    path = tmp_path / "operands_torch.py"
    path.write_text(render(d, "torch", "operands.sdm"), encoding="utf-8")
    tm = import_generated(path, "operands_torch_test")
    params, data = point(d, batch)
    ref_loss, ref_grads = autograd_reference(d, params, data, batch is not None)
    loss, grads = tm.loss_and_gradients(tensors(params, torch.float64), **tensors(data, torch.float64))
    assert rel_error(loss, ref_loss) <= 1e-10
    for k in params:
        assert rel_error(grads[k], ref_grads[k]) <= 1e-10, k


def test_the_numpy_module_agrees_on_a_power_of_gelu(tmp_path):
    d = symderiv.derive(symderiv.parse("model g2\ndim n\ninput x: n\nparam w: n\n"
                                       "loss L = sum(x * w) + sum(gelu(w) ** 2)\n", "g2.sdm"))
    path = tmp_path / "g2_numpy.py"
    path.write_text(render(d, "py", "g2.sdm"), encoding="utf-8")
    nm = import_generated(path, "g2_numpy_test")
    params, data = point(d, BATCH)
    ref_loss, _ = autograd_reference(d, params, data, True)
    assert rel_error(nm.loss(params, **numpy_layout(d, data, True)), ref_loss) <= 1e-10


PER_EXAMPLE_OUTER = """
model per_example_outer
dim n
input A: (n, n)
input b: n
param X: (n, n)
param w: n
M = A @ X + eye(n)
loss L = sum(tanh(M @ b) * w)
"""

# δM = C is the same for every example: spread to a (B, n, n) array, not (B, n)
PER_EXAMPLE_SPREAD = """
model per_example_spread
dim n
input A: (n, n)
param X: (n, n)
param C: (n, n)
M = A @ X
loss L = sum(M * C)
"""


@pytest.mark.parametrize("source", [PER_EXAMPLE_OUTER, PER_EXAMPLE_SPREAD], ids=["outer", "spread"])
@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
def test_a_per_example_matrix_adjoint(tmp_path, source, batch):
    """The adjoint of a per-example matrix quantity is each example's own (…, n, n) array: an outer
    product of per-example vectors in it is not summed over the examples, and a part the same for
    every example is spread to a matrix each.  Both modules, against autograd of the reference."""
    name = source.split()[1]
    d = symderiv.derive(symderiv.parse(source, f"{name}.sdm"))
    params, data = point(d, batch)
    ref_loss, ref_grads = autograd_reference(d, params, data, batch is not None)
    path = tmp_path / f"{name}_torch.py"
    path.write_text(render(d, "torch", f"{name}.sdm"), encoding="utf-8")
    tm = import_generated(path, f"{name}_torch_test")
    loss, grads = tm.loss_and_gradients(tensors(params, torch.float64), **tensors(data, torch.float64))
    assert rel_error(loss, ref_loss) <= 1e-10
    for k in params:
        assert rel_error(grads[k], ref_grads[k]) <= 1e-10, k
    path = tmp_path / f"{name}_numpy.py"
    path.write_text(render(d, "py", f"{name}.sdm"), encoding="utf-8")
    nm = import_generated(path, f"{name}_numpy_test")
    loss, grads = nm.loss_and_gradients(params, **numpy_layout(d, data, batch is not None))
    assert rel_error(loss, ref_loss) <= 1e-10
    for k in params:
        assert rel_error(grads[k], ref_grads[k]) <= 1e-10, k


# --- training ----------------------------------------------------------------------------


def _teacher_data(dims, T, B, seed):
    """Inputs and one-hot targets a small network can learn: the class of step t is the arg max
    of a fixed linear map of x_t."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, dims["n_x"], generator=g, dtype=torch.float64)
    teacher = torch.randn(dims["C"], dims["n_x"], generator=g, dtype=torch.float64)
    r = torch.nn.functional.one_hot((x @ teacher.T).argmax(-1), dims["C"]).to(torch.float64)
    return {"x": x, "r": r}


@pytest.mark.parametrize("name, dims", [
    ("seed_rnn", dict(n_x=4, n_a=8, n_h=8, n_o=6, C=3)),
    ("lstm_tagger", dict(n_x=4, n_h=8, C=3)),
])
def test_model_trains_with_adam(derived, tmp_path_factory, name, dims):
    _, tm, _, _ = _modules(derived, EXAMPLES / f"{name}.sdm", tmp_path_factory)
    data = _teacher_data(dims, T=8, B=16, seed=0)
    model = tm.Model(dims, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = model(**data)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] <= losses[0] / 2, (losses[0], losses[-1])


def test_linear_regression_on_a_design_matrix_trains_with_adam(derived, tmp_path_factory):
    """A matrix datum and a penalty counted once per call, through Model and torch.optim.Adam: the
    fit reaches the least-squares-with-ridge solution, computed here in closed form."""
    _, tm, _, _ = _modules(derived, EXAMPLES / "linear_regression.sdm", tmp_path_factory)
    g = torch.Generator().manual_seed(0)
    B, n, d, lam = 4, 6, 3, 0.5
    X = torch.randn(B, n, d, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(B, n, generator=g,
                                                                                      dtype=torch.float64)
    model = tm.Model(dict(n=n, d=d), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        model(X=X, y=y, lam=lam).backward()
        opt.step()
    # Σ_b ½‖X_b w − y_b‖² + ½ lam ‖w‖²: (Σ_b X_bᵀ X_b + lam I) w = Σ_b X_bᵀ y_b
    A = torch.einsum("bij,bik->jk", X, X) + lam * torch.eye(d, dtype=torch.float64)
    w = torch.linalg.solve(A, torch.einsum("bij,bi->j", X, y))
    assert rel_error(model.params["w"].detach(), w) <= 1e-4


# --- distributed -------------------------------------------------------------------------


def _child_env() -> dict:
    """This checkout first on the path of a child Python."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name, dims", [
    ("seed_rnn", dict(n_x=3, n_a=4, n_h=5, n_o=2, C=3)),
    ("lstm_tagger", dict(n_x=3, n_h=4, C=3)),
    ("attention", dict(n_x=3, n_k=2, n_v=4, n=5)),  # matrix data (B, rows, cols): the batch axis first
])
def test_distributed_data_parallel_averages_to_the_whole_batch(derived, tmp_path_factory, tmp_path, name, dims):
    """Two processes (gloo, localhost) each run half of a batch through DistributedDataParallel(Model);
    DDP averages their gradients, so the average is the whole batch's gradient over the number of
    processes (the loss of a batch is the sum over its examples)."""
    _, tm, _, module_path = _modules(derived, EXAMPLES / f"{name}.sdm", tmp_path_factory)
    if name == "attention":
        g = torch.Generator().manual_seed(1)
        data = {"X": torch.randn(6, dims["n_x"], dims["n"], generator=g, dtype=torch.float64),
                "Y": torch.randn(6, dims["n_v"], dims["n"], generator=g, dtype=torch.float64)}
    else:
        data = _teacher_data(dims, T=5, B=6, seed=1)
    world = 2
    axis = 0 if name == "attention" else 1  # the batch axis: after the time axis of a sequence
    halves = [{k: v.narrow(axis, r * 3, 3).clone() for k, v in data.items()} for r in range(world)]
    for r, half in enumerate(halves):
        torch.save(half, tmp_path / f"data{r}.pt")
    port = _free_port()
    env = dict(_child_env(), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.torch_ddp_worker", str(module_path), repr(dims),
                               str(r), str(world), str(port), str(tmp_path)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs

    whole = tm.Model(dims, seed=0)
    whole(**data).backward()
    for r in range(world):
        got = torch.load(tmp_path / f"grads{r}.pt")
        assert set(got) == set(dict(whole.named_parameters()))
        for k, p in whole.named_parameters():
            assert rel_error(got[k], p.grad / world) <= 1e-12, (r, k)
    # and each process's own half is not the whole: the average is a real all-reduce
    alone = tm.Model(dims, seed=0)
    alone(**halves[0]).backward()
    assert any(rel_error(p.grad, q.grad / world) > 1e-6 for p, q in zip(alone.parameters(), whole.parameters()))


# --- symderiv itself ----------------------------------------------------------------------


def test_symderiv_never_imports_torch(tmp_path):
    """Importing every module of symderiv and writing every format (torch included) leaves torch unimported."""
    model, out_dir = str(EXAMPLES / "lstm_tagger.sdm"), str(tmp_path)
    code = (
        "import pkgutil, importlib, sys\n"
        "import symderiv\n"
        "for m in pkgutil.walk_packages(symderiv.__path__, 'symderiv.'):\n"
        "    if not m.name.endswith('__main__'):  # which would run the command line\n"
        "        importlib.import_module(m.name)\n"
        "from symderiv.cli import main\n"
        f"assert main(['derive', {model!r}, '--format', 'all', '-o', {out_dir!r}]) == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
                         env=_child_env())
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lstm_tagger_torch.py").exists()


def test_derive_format_torch_writes_only_the_torch_module(tmp_path):
    from symderiv.cli import main

    assert main(["derive", str(EXAMPLES / "seed_rnn.sdm"), "--format", "torch", "-o", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["seed_rnn_torch.py"]
    text = (tmp_path / "seed_rnn_torch.py").read_text(encoding="utf-8")
    imports = [ln for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    assert [ln for ln in imports if ln != "import threading"] == ["import torch"]  # and the standard library's


def test_check_backend_torch_runs_the_checks(capsys):
    from symderiv.cli import main

    assert main(["check", str(EXAMPLES / "lstm_tagger.sdm"), "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch vs central differences" in out and "all agree" in out


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_the_checks_of_check_backend_torch_pass_on_every_model(path):
    """The numerical half of ``symderiv check MODEL --backend torch`` (every entry point, unbatched
    and batched, against central differences and each other, through check/frameworks.py's layout
    conversion: a matrix datum's batch axis too) on every model; the certification half does not
    depend on the back end."""
    from symderiv.check import numcheck

    d = symderiv.derive(symderiv.load(path))
    dims, T = sizes_of(d)
    result = numcheck.finite_difference_check(d, dims, T, backend="torch")
    assert result.ok, (result.errors, result.problems)


def test_check_backend_torch_without_torch_is_a_clear_error(monkeypatch, capsys):
    import importlib.util

    from symderiv.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert main(["check", str(EXAMPLES / "seed_rnn.sdm"), "--backend", "torch"]) == 2
    assert "pip install 'symderiv[torch]'" in capsys.readouterr().err


def test_check_backend_torch_finds_a_wrong_gradient(monkeypatch):
    """The same checks catch a planted error in the PyTorch module's backward pass."""
    from symderiv.check import numcheck

    d = symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))
    real = numcheck.render

    def planted(d_, fmt, source):
        text = real(d_, fmt, source)
        return text.replace("g_b_o = _sum_examples(", "g_b_o = 1.01 * _sum_examples(") if fmt == "torch" else text

    monkeypatch.setattr(numcheck, "render", planted)
    assert "g_b_o = 1.01 * _sum_examples(" in planted(d, "torch", "seed_rnn.sdm")
    result = numcheck.finite_difference_check(d, dict(n_x=2, n_a=3, n_h=2, n_o=2, C=3), 3, backend="torch")
    assert not result.ok and result.errors["b_o"] > 1e-3


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_every_example_is_generated_and_the_reference_computes_it(path):
    """No example is refused by the PyTorch back end, and none is left out of the comparisons above
    because the independent reference cannot compute it."""
    assert _unsupported(path) is None
    assert computes(symderiv.load(path)), f"tests/torch_reference.py does not compute every node of {path.name}"


def test_the_reference_refuses_what_it_does_not_know(monkeypatch):
    """``computes`` is false for a function or a node the reference has no PyTorch operation for (so
    a new function or node cannot pass the comparisons above by being skipped)."""
    from . import torch_reference

    lstm, trace = symderiv.load(EXAMPLES / "lstm_tagger.sdm"), symderiv.load(EXAMPLES / "mc_trace.sdm")
    assert computes(lstm) and computes(trace)
    monkeypatch.delitem(torch_reference.FUNCTIONS, "tanh")
    assert not computes(lstm)
    monkeypatch.setattr(torch_reference, "NODES", tuple(n for n in torch_reference.NODES if n.__name__ != "Trace"))
    assert not computes(trace)
