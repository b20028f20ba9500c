"""The peers of benchmarks/peers.py compute what the generated modules compute.

benchmarks/careful.py (careful hand-written NumPy BPTT) and benchmarks/jax_peer.py (JAX ``value_and_grad``
with ``lax.scan``) are written from the equations of the example models without symderiv; here their loss and
every gradient are checked against generated/seed_rnn.py and generated/lstm_tagger.py, unbatched and batched,
at small sizes with unequal dims (so that a transposed weight cannot pass), to 1e-10 in float64. The generated
modules themselves are checked against central differences and independent references elsewhere
(tests/test_generated.py, tests/test_zoo.py), so agreement here means the baselines are right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import GENERATED, ROOT, import_generated

BENCHMARKS = ROOT / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import careful  # noqa: E402

CASES = [(5, None), (4, 3)]  # (T, batch or None)
MODELS = {"seed_rnn": careful.seed_rnn, "lstm_tagger": careful.lstm}


def _dims(module) -> dict:
    return {d: 5 + 2 * k for k, d in enumerate(module.DIMS)}  # all different


def _data(module, T: int, batch: int | None, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    dims = _dims(module)
    tail = (batch,) if batch else ()
    n_x, C = dims[module.INPUTS["x"][1]], dims[module.INPUTS["r"][1]]
    x = rng.normal(size=(T, n_x) + tail)
    r = rng.dirichlet(np.ones(C), size=(T,) + tail)  # a distribution per step and example, not only one-hot
    return {"x": x, "r": np.moveaxis(r, -1, 1)}


def _assert_same(name, ours, theirs, rtol):
    loss, grads = ours
    their_loss, their_grads = theirs
    np.testing.assert_allclose(float(their_loss), float(loss), rtol=rtol, err_msg=f"{name}: loss")
    assert set(their_grads) == set(grads)
    for k, g in grads.items():
        got = np.asarray(their_grads[k])
        assert got.shape == g.shape, k
        np.testing.assert_allclose(got, g, rtol=rtol, atol=rtol * float(np.abs(g).max()), err_msg=f"{name}: {k}")


def _module(name):
    return import_generated(GENERATED / f"{name}.py", f"baseline_{name}")


@pytest.mark.parametrize("T,batch", CASES)
@pytest.mark.parametrize("name", list(MODELS))
def test_careful_numpy_matches_generated(name, T, batch):
    m = _module(name)
    params = m.init_params(_dims(m), seed=0)
    data = _data(m, T, batch)
    _assert_same(name, m.loss_and_gradients(params, **data), MODELS[name](params, **data), 1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_careful_numpy_float32(name):
    m = _module(name)
    params = {k: v.astype(np.float32) for k, v in m.init_params(_dims(m), seed=0).items()}
    data = {k: v.astype(np.float32) for k, v in _data(m, 4, 3).items()}
    loss, grads = MODELS[name](params, **data)
    assert all(g.dtype == np.float32 for g in grads.values())
    _assert_same(name, m.loss_and_gradients(params, **data), (loss, grads), 2e-4)


_JAX_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import jax_peer as jax_models
jax_models.enable_x64()
import jax
results = []
for case in json.loads(sys.stdin.read()):
    params = {k: jax.numpy.asarray(np.array(v)) for k, v in case["params"].items()}
    x, r = (jax_models.rows(np.array(case[k])) for k in ("x", "r"))
    loss, grads = jax_models.value_and_grad_fn(case["model"])(params, x, r)
    results.append({"loss": float(loss), "grads": {k: np.asarray(g).tolist() for k, g in grads.items()}})
print(json.dumps(results))
"""
JAX_CASES = [(name, T, batch) for name in MODELS for T, batch in CASES]


def _case(name, T, batch):
    m = _module(name)
    return m, m.init_params(_dims(m), seed=0), _data(m, T, batch)


@pytest.fixture(scope="module")
def jax_results():
    """Every case in one child process (x64 is a process-wide JAX setting, kept out of the test process)."""
    pytest.importorskip("jax")
    payload = []
    for case in JAX_CASES:
        _, params, data = _case(*case)
        payload.append({"model": case[0], "params": {k: v.tolist() for k, v in params.items()},
                        "x": data["x"].tolist(), "r": data["r"].tolist()})
    out = subprocess.run([sys.executable, "-c", _JAX_CHILD, str(BENCHMARKS)], input=json.dumps(payload),
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(zip(JAX_CASES, json.loads(out.stdout.strip().splitlines()[-1])))


@pytest.mark.parametrize("case", JAX_CASES, ids=lambda c: f"{c[0]}-T{c[1]}-B{c[2]}")
def test_jax_jit_matches_generated(case, jax_results):
    m, params, data = _case(*case)
    theirs = jax_results[case]
    grads = {k: np.array(v) for k, v in theirs["grads"].items()}
    _assert_same(case[0], m.loss_and_gradients(params, **data), (theirs["loss"], grads), 1e-10)


def test_flop_count_of_seed_rnn_matches_matmul_rate():
    """benchmarks/peers.py counts the seed RNN's products as benchmarks/matmul_rate.py lists them (h_0 = 0 aside)."""
    import matmul_rate
    import peers

    n, T, B = 16, 6, 3
    listed = matmul_rate.seed_rnn_products(dict.fromkeys(("n_x", "n_a", "n_h", "n_o", "C"), n), T, B)
    total = sum(2 * c * mm * k * q for _, _, c, mm, k, q in listed)
    # matmul_rate counts the first forward V h_0 product (a product of zeros) and ∂V over all N rows
    assert peers.flops("seed_rnn", n, T, B) == total - 2 * B * n * n - 2 * n * B * n


EXAMPLE_NAMES = sorted(p.stem for p in (ROOT / "examples").glob("*.sdm"))


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_compare_versions_data_fit_every_example(name, batch):
    """benchmarks/compare_versions.py's data are in each example's public layout (vectors, matrices, scalars,
    sequences), so that the generated module takes them: one call of loss_and_gradients per example and batch."""
    import compare_versions

    m = _module(name)
    n, T = 3, 4
    data = compare_versions.data_for(m, n, T, batch)
    assert set(data) == set(m.INPUTS)
    params = m.init_params(dict.fromkeys(m.DIMS, n), seed=0)
    loss, grads = m.loss_and_gradients(params, **data)
    assert np.isfinite(loss)
    assert {k: np.shape(g) for k, g in grads.items()} == {k: np.shape(p) for k, p in params.items()}


def test_compare_versions_data_shapes_of_a_design_matrix():
    """The shapes written out from INTERFACES.md for linear_regression (X: (n, d), y: n, lam: scalar)."""
    import compare_versions

    m = _module("linear_regression")
    data = compare_versions.data_for(m, 3, 4, 2)
    assert {k: v.shape for k, v in data.items()} == {"X": (3, 3, 2), "y": (3, 2), "lam": ()}
    data = compare_versions.data_for(m, 3, 4, None)
    assert {k: v.shape for k, v in data.items()} == {"X": (3, 3), "y": (3,), "lam": ()}


def test_compare_versions_reads_sums_and_products_of_dims():
    """A size of INPUTS is dims and numbers, summed and multiplied (``n_x + 1``, ``2*n_h``): every dim is n."""
    import compare_versions

    assert [compare_versions._size(s, 5) for s in ("n_x", "n_x + 1", "2*n_h", "2 * n + 3", "7")] == [5, 6, 10, 13, 7]


def test_the_blas_note_says_which_kernels_run_and_why():
    """benchmarks/peers.py's header: OpenBLAS's AVX2 kernels on an AVX-512 CPU are named, with the cause (the
    variable, or no variable: OpenBLAS did not recognise the CPU); a CPU without AVX-512, or AVX-512 kernels, get
    no note."""
    import benchutil

    avx512 = ["fma", "avx2", "avx512f"]
    assert benchutil.blas_core_note(["fma", "avx2"], {"Haswell"}, {}) == ""
    assert benchutil.blas_core_note(avx512, {"SkylakeX"}, {}) == ""
    assert benchutil.blas_core_note(avx512, set(), {}) == ""
    unset = benchutil.blas_core_note(avx512, {"Haswell"}, {})
    assert "does not recognise" in unset and "OPENBLAS_CORETYPE=SkylakeX" in unset
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    chosen = benchutil.blas_core_note(avx512, {"Haswell"}, env | {"OPENBLAS_CORETYPE": "Haswell"})
    assert "because the environment sets OPENBLAS_CORETYPE=Haswell" in chosen
    assert "without it OpenBLAS picks" in chosen  # asked of a fresh process without the variable
