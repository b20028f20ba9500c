"""The committed outputs in generated/: fresh, compiling, and numerically right."""

import shutil
import subprocess

import numpy as np
import pytest

import symderiv
from symderiv.check.evaluate import evaluate
from symderiv.regenerate import stale_files
from symderiv.render.emit import formats, output_name

from .helpers import EXAMPLES, GENERATED, generated_modules, import_generated, pdflatex

MODULES = generated_modules("numpy")


def load_module(path):
    return import_generated(path, path.stem + "_generated")


def test_generated_files_are_fresh():
    assert stale_files(EXAMPLES, GENERATED) == [], "run: python -m symderiv.regenerate"


def test_every_example_has_its_outputs():
    from symderiv.render.emit import formats_for

    for example in EXAMPLES.glob("*.sdm"):
        d = symderiv.derive(symderiv.load(example))
        able, refused = formats_for(d)
        for fmt in able:  # the write-ups and every code back end's module that generates this model
            assert (GENERATED / output_name(d.model.name, fmt)).exists()
        for fmt in set(formats()) - set(able):  # and none for a back end that refuses it
            assert not (GENERATED / output_name(d.model.name, fmt)).exists()


@pytest.fixture(scope="module")
def seed_module():
    return load_module(GENERATED / "seed_rnn.py")


SEED_DIMS = dict(n_x=3, n_a=4, n_h=5, n_o=2, C=3)


def seed_data(T=4, B=None, seed=1):
    rng = np.random.default_rng(seed)
    shape = (T, 3) if B is None else (T, 3, B)
    x = rng.normal(size=shape)
    labels = rng.integers(0, 3, (T,) if B is None else (T, B))
    r = np.eye(3)[labels]
    if B is not None:
        r = r.transpose(0, 2, 1)
    return {"x": x, "r": r}


def test_seed_module_matches_central_differences(seed_module):
    m = seed_module
    params = m.init_params(SEED_DIMS, seed=2)
    data = seed_data()
    grads = m.gradients(params, **data)
    eps = 1e-5  # central differences: truncation ~eps², rounding ~1e-16/eps
    for name, value in params.items():
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: np.array(v, copy=True) for k, v in params.items()}
            minus = {k: np.array(v, copy=True) for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd[idx] = (m.loss(plus, **data) - m.loss(minus, **data)) / (2 * eps)
        assert grads[name].shape == np.shape(value)
        rel = np.abs(grads[name] - fd).max() / max(np.abs(fd).max(), 1e-8)
        assert rel <= 1e-7, (name, rel)


def test_seed_module_matches_exact_evaluation(seed_module):
    m = seed_module
    d = symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))
    params = m.init_params(SEED_DIMS, seed=4)
    data = seed_data(T=3, seed=5)
    exact = evaluate(d, SEED_DIMS, 3, params, data, precision=30)
    loss, grads = m.loss_and_gradients(params, **data)
    assert abs(loss - float(exact.loss)) < 1e-12 * max(1, abs(loss))
    for name, g in grads.items():
        ref = np.asarray(exact.gradients[name], dtype=float).reshape(g.shape)
        assert np.allclose(g, ref, rtol=1e-10, atol=1e-13), name


def test_batch_axis_sums_independent_examples(seed_module):
    m = seed_module
    params = m.init_params(SEED_DIMS)
    data = seed_data(B=4)
    loss, grads = m.loss_and_gradients(params, **data)
    singles = [m.loss_and_gradients(params, x=data["x"][..., b], r=data["r"][..., b]) for b in range(4)]
    assert np.isclose(loss, sum(s[0] for s in singles))
    for name in params:
        assert np.allclose(grads[name], sum(s[1][name] for s in singles))


def test_float32_in_float32_out_and_arguments_untouched(seed_module):
    m = seed_module
    params = {k: v.astype(np.float32) for k, v in m.init_params(SEED_DIMS).items()}
    data = {k: v.astype(np.float32) for k, v in seed_data().items()}
    before = {k: v.copy() for k, v in {**params, **data}.items()}
    loss, grads = m.loss_and_gradients(params, **data)
    assert isinstance(loss, np.float32)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(np.array_equal(v, before[k]) for k, v in {**params, **data}.items())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_sgd_lowers_the_loss(path):
    m = load_module(path)
    model = symderiv.load(next(p for p in EXAMPLES.glob("*.sdm") if symderiv.load(p).name == path.stem))
    from symderiv.check.evaluate import random_point
    dims = {name: 3 for name in m.DIMS}
    params = m.init_params(dims, seed=0)
    _, data = random_point(model, dims, 5, seed=1)
    data = {k: np.asarray(v).reshape(np.asarray(v).shape[:-1]) if np.asarray(v).shape[-1] == 1 else v
            for k, v in data.items()}
    data = {k: np.asarray(v).reshape(()) if model[k].is_scalar and not model[k].sequence else v
            for k, v in data.items()}  # a scalar input (a penalty weight) is one value, shape ()
    first = m.loss(params, **data)
    for _ in range(20):
        params = m.sgd_step(params, m.gradients(params, **data), lr=0.05)
    assert m.loss(params, **data) < first


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("tex", sorted(GENERATED.glob("*.tex")), ids=lambda p: p.stem)
def test_writeup_compiles(tex, tmp_path):
    shutil.copy(tex, tmp_path)
    out = pdflatex(tex.name, tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / tex.with_suffix(".pdf").name).exists()


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (it is in the test extras)")
def test_generated_modules_pass_ruff():
    every = sorted(GENERATED.glob("*.py"))  # every back end's modules
    out = subprocess.run(["ruff", "check", "--isolated", *map(str, every)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout


def test_forward_returns_every_quantity_in_the_public_layout(seed_module):
    m = seed_module
    params = m.init_params(SEED_DIMS)
    values = m.forward(params, **seed_data(T=4))
    assert set(values) >= {"a_in", "h", "o", "h_out", "r_hat", "L"}
    assert values["h"].shape == (4, 5) and values["r_hat"].shape == (4, 3) and np.shape(values["L"]) == ()
    assert np.allclose(values["r_hat"].sum(axis=1), 1)
    assert np.isclose(float(values["L"]), m.loss(params, **seed_data(T=4)))
    batched = m.forward(params, **seed_data(T=4, B=2))
    assert batched["h"].shape == (4, 5, 2) and batched["L"].shape == (2,)


def test_an_input_without_the_batch_axis_is_shared_by_every_example(seed_module):
    # The code updates arrays in place (y = W x; y += b), so an unbatched input must behave as
    # the same input given to every example, whichever operand it ends up in.
    m = seed_module
    params = m.init_params(SEED_DIMS, seed=6)
    data = seed_data(B=3, seed=7)
    x = data["x"][..., 0]
    shared = m.loss_and_gradients(params, x=x, r=data["r"])
    tiled = m.loss_and_gradients(params, x=np.repeat(x[..., None], 3, axis=-1), r=data["r"])
    assert np.isclose(shared[0], tiled[0], rtol=1e-13)
    for name in params:
        assert np.allclose(shared[1][name], tiled[1][name], rtol=1e-12, atol=1e-15), name
    values = m.forward(params, x=x, r=data["r"])
    assert values["h"].shape == (4, SEED_DIMS["n_h"], 3)


def test_different_batch_sizes_are_refused(seed_module):
    m = seed_module
    data = seed_data(B=3)
    with pytest.raises(ValueError, match=r"data 'r' has shape \(4, 3, 3\), expected \(T, C, B\) with B = 2 from 'x'"):
        m.loss(m.init_params(SEED_DIMS), x=data["x"][..., :2], r=data["r"])
