"""The generated NumPy module's workspace (issue 17): arrays reused from call to call, never wrong.

Each module keeps, per thread and per call key (shapes, dtype, entry point), an arena of the arrays a
call takes, laid out after the first call and reused by the next ones (templates/module.py.j2:
``_Workspace``).  These tests hold it to what it must not change: every result equal to a fresh
process's, whatever was called before with whatever shapes; nothing handed back shared with the
workspace or with another call's results; the arguments never written; two threads at once computing
what each computes alone.  The fresh process computes without the workspace
(tests/workspace_worker.py), so a wrong reuse cannot agree with itself there.  And to what it is for:
after the first calls, a call allocates little (tracemalloc), and the arena stays the same.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import symderiv
from symderiv.check.evaluate import random_point

from .helpers import EXAMPLES, GENERATED, ROOT, generated_modules, import_generated, public_data

MODULES = generated_modules("numpy")


def load(path):
    return import_generated(path, path.stem + "_workspace")


def point(path, module, base: int, T: int, B: int | None, seed: int) -> tuple[dict, dict]:
    """Parameters and data of the model of ``path``: dims base, base + 1, …; T steps (if it has time);
    B examples on the trailing batch axis (None: unbatched), each drawn by symderiv's evaluator."""
    model = symderiv.load(EXAMPLES / (path.stem + ".sdm"))
    dims = {d: base + k for k, d in enumerate(module.DIMS)}
    steps = T if model.has_time else None
    shapes = {k: np.shape(v) for k, v in module.init_params(dims).items()}
    points = [random_point(model, dims, steps, seed=seed + k) for k in range(B or 1)]
    params = {k: np.asarray(v, dtype=float).reshape(shapes[k]) for k, v in points[0][0].items()}
    examples = [public_data(model, data) for _, data in points]
    data = {}
    for name, first in examples[0].items():
        shared = module._DATA_AXES[name][2]
        data[name] = first if B is None or shared else np.stack([e[name] for e in examples], axis=-1)
    return params, data


# Each configuration: (base dim, T, B for a model with time, B for one without).  The first and the
# last are the same shapes (the workspace of the first is reused by the last, after the others);
# the middle ones change every shape, and the small one is below the size the workspace starts at.
CONFIGS = [(16, 24, 24, 600), (3, 4, None, None), (12, 30, 30, 500), (16, 24, 24, 600)]


def _in_fresh_process(arguments: dict, tmp_path, tag: str) -> dict:
    source, target = tmp_path / f"in_{tag}.npz", tmp_path / f"out_{tag}.npz"
    np.savez(source, **{f"{path}|{kind}|{name}": v for path, (params, data) in arguments.items()
                        for kind, values in (("param", params), ("data", data)) for name, v in values.items()})
    subprocess.run([sys.executable, "-m", "tests.workspace_worker", str(source), str(target)], cwd=ROOT,
                   check=True, timeout=600)
    got = np.load(target)
    return {key: got[key] for key in got.files}


def _same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    assert np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True), what


def test_every_module_called_with_changing_shapes_gives_a_fresh_processs_results(tmp_path):
    modules = {path: load(path) for path in MODULES}
    for k, (base, T, B_time, B_static) in enumerate(CONFIGS):
        arguments, results = {}, {}
        for path, m in modules.items():
            model = symderiv.load(EXAMPLES / (path.stem + ".sdm"))
            params, data = point(path, m, base, T, B_time if model.has_time else B_static, seed=10 * k)
            arguments[str(path)] = (params, data)
            # this process: every module called before with the other configurations' shapes
            loss, grads = m.loss_and_gradients(params, **data)
            results[str(path)] = (loss, {n: g.copy() for n, g in grads.items()}, m.forward(params, **data))
        fresh = _in_fresh_process(arguments, tmp_path, str(k))
        for path, (loss, grads, values) in results.items():
            _same(loss, fresh[f"{path}|loss|"], (path, k, "loss"))
            for n, g in grads.items():
                _same(g, fresh[f"{path}|grad|{n}"], (path, k, n))
            for n, v in values.items():
                _same(v, fresh[f"{path}|value|{n}"], (path, k, n))


@pytest.fixture(scope="module")
def seed_and_lstm():
    return [load(GENERATED / f"{name}.py") for name in ("seed_rnn", "lstm_tagger")]


def _large(m, seed, base=32, T=20, B=16):
    path = GENERATED / f"{m.__name__.removesuffix('_workspace')}.py"
    return point(path, m, base, T, B, seed)


def call(m, arguments):
    params, data = arguments
    return m.loss_and_gradients(params, **data)


def _spaces(m):
    return getattr(m._local, "spaces", {})


def test_the_workspace_is_reused(seed_and_lstm):
    for m in seed_and_lstm:
        params, data = _large(m, 1)
        m.loss_and_gradients(params, **data)  # learns where each array goes
        (ws,) = _spaces(m).values()
        assert ws.arena is None and len(ws.sizes) > 3  # the call's intermediate arrays, in order
        m.loss_and_gradients(params, **data)  # lays them out in one arena
        arena = ws.arena
        assert arena is not None and ws.plan is not None
        # the arena is no larger than the arrays alive at once in the first call (plus alignment)
        end = [len(ws.sizes) if e is None else e for e in ws.ends]
        alive = max(sum(n for j, n in enumerate(ws.sizes) if j <= k < end[j]) for k in range(len(ws.sizes)))
        assert arena.nbytes <= 1.1 * alive + ws.ALIGN * len(ws.sizes)
        m.loss_and_gradients(params, **_large(m, 2)[1])  # other data, the same shapes
        assert list(_spaces(m).values()) == [ws] and ws.arena is arena and not ws.off_plan
        assert all(a is not None for a in ws.taken)  # every array from the arena
        # and a call allocates a fraction of what the first call did
        tracemalloc.start()
        try:
            _spaces(m).clear()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            m.loss_and_gradients(params, **data)
            cold = tracemalloc.get_traced_memory()[1] - base
            m.loss_and_gradients(params, **data)
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            m.loss_and_gradients(params, **data)
            warm = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert warm < 0.25 * cold, (m.__name__, warm, cold)
        # other shapes: a workspace of their own beside it; after four others, the oldest is let go
        for k in range(4):
            call(m, _large(m, 3, base=28 + k, T=9, B=40))
        assert len(_spaces(m)) == 4 and all(w.key != ws.key for w in _spaces(m).values())


def test_results_are_the_callers_and_arguments_are_never_written(seed_and_lstm):
    for m in seed_and_lstm:
        params, data = _large(m, 4)
        kept = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in data.items()}
        m.loss_and_gradients(params, **data)  # the first call learns; the next ones use the arena
        loss, grads = m.loss_and_gradients(params, **data)
        values = m.forward(params, **data)
        copies = {k: g.copy() for k, g in grads.items()}, {k: v.copy() for k, v in values.items()}
        other = _large(m, 5)
        loss2, grads2 = call(m, other)
        assert loss2 != loss
        for k in grads:  # the first call's results are untouched by the second, and share nothing with it
            assert np.array_equal(grads[k], copies[0][k]), k
            assert not any(np.shares_memory(grads[k], g) for g in grads2.values()), k
        for k in values:
            assert np.array_equal(values[k], copies[1][k]), k
        for given, before in zip((params, data), kept):
            for k in given:
                assert np.array_equal(given[k], before[k]), k
        # and no result is an array of the workspace
        arenas = [ws.arena for ws in _spaces(m).values() if ws.arena is not None]
        assert arenas
        for g in (*grads2.values(), *grads.values()):
            assert type(g) is np.ndarray and not any(np.shares_memory(g, a) for a in arenas)


def _concurrently(m, work, alone, jobs_of_each) -> list:
    """Two threads started together, each calling ``m`` on its jobs of ``work`` six times; what differed
    from ``alone`` (or was raised)."""
    failures: list = []
    start = threading.Barrier(len(jobs_of_each))

    def run(jobs):
        try:
            start.wait()
            for _ in range(6):
                for j in jobs:
                    loss, grads = call(m, work[j])
                    if loss != alone[j][0] or any(not np.array_equal(g, alone[j][1][k]) for k, g in grads.items()):
                        failures.append((m.__name__, j))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            failures.append(e)

    threads = [threading.Thread(target=run, args=(jobs,)) for jobs in jobs_of_each]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_two_threads_at_once_compute_what_each_computes_alone(seed_and_lstm):
    for m in seed_and_lstm:
        # different data, and different shapes for the second thread half of the time
        work = [_large(m, 6), _large(m, 7), _large(m, 8, base=28, T=15, B=24)]
        alone = []
        for arguments in work:
            loss, grads = call(m, arguments)
            alone.append((loss, {k: g.copy() for k, g in grads.items()}))
        assert _concurrently(m, work, alone, ([0], [1, 2])) == []


def test_the_time_loops_run_their_small_products_on_one_blas_thread(seed_and_lstm):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    m = seed_and_lstm[0]
    params, _ = _large(m, 9)
    step = 64 * sum(np.size(v) for v in params.values())  # B = 64 rows by every weight
    # a step multiplies B rows by the weights: small → one thread; large → as BLAS decides
    assert isinstance(m._loop_threads(step), m._OneBlasThread)
    assert m._loop_threads(step) is not m._loop_threads(step)  # one per call: threads share none
    assert m._loop_threads(step // 64) is m._ANY_THREADS  # too small for BLAS to thread at all
    assert m._loop_threads(step * 10**4) is m._ANY_THREADS
    # and a call of that size takes it
    _, _, known = m._checked(params, _large(m, 9, B=64)[1])
    assert known[4] == step
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
        with m._loop_threads(step):
            inside = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
        after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert inside and set(inside) == {1}
    assert after == before


def test_a_sum_along_an_axis_is_the_ufuncs_reduction_and_computes_what_it_did():
    """``np.sum(a, axis=…)`` outside the loops is written ``np.add.reduce(a, axis=…)`` (the same reduction
    without NumPy's Python wrapper): checked against sums written out entry by entry."""
    from symderiv.codegen.numpy.workspace import pooled

    line = pooled("L = np.sum(r * s, axis=-1, keepdims=True)")
    assert "np.add.reduce(" in line and "np.sum" not in line, line
    assert "np.sum(" in pooled("L = np.sum(r * s)") and "np.sum(" in pooled("L = np.sum(r, 0)")  # left as NumPy's
    m = load(GENERATED / "seed_rnn.py")
    rng = np.random.default_rng(3)
    for r, s in ((rng.normal(size=(5, 2, 7)), rng.normal(size=(5, 2, 7))),
                 (rng.integers(-9, 9, (4, 3)), rng.integers(-9, 9, (4, 3)))):
        env = {"r": r, "s": s}
        exec(line, {"np": np, "_ws": m._FRESH}, env)  # noqa: S102 - our own rewritten line
        want = [[[sum(float(a) * float(b) for a, b in zip(r[t, k], s[t, k]))] for k in range(r.shape[1])]
                for t in range(r.shape[0])] if r.ndim == 3 else [[sum(int(a) * int(b) for a, b in zip(row, srow))]
                                                                  for row, srow in zip(r, s)]
        assert env["L"].dtype == (r * s).dtype
        assert np.allclose(env["L"], np.array(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["seed_rnn", "lstm_tagger"])
def test_arguments_of_every_form_compute_what_float64_arrays_do(name):
    """The argument checks and the internal layout run once per shapes and dtypes (``_VALID``), and an
    array already of the dtype is used as it is: lists, float32 or integer parameters, non-contiguous and
    read-only arrays must still give what float64 arrays of the same values give, on every call (the
    first and the cached ones), and the caller's arrays stay as they were (values and flags)."""
    path = GENERATED / f"{name}.py"
    m = load(path)
    for B in (None, 3):
        params, data = point(path, m, 5, 6, B, seed=11)
        ints = {k: np.rint(3 * v).astype(np.int64) for k, v in params.items()}
        f32 = {k: v.astype(np.float32) for k, v in params.items()}
        fortran = {k: np.asfortranarray(v) for k, v in data.items()}
        frozen = {k: v.copy() for k, v in data.items()}
        for v in frozen.values():
            v.flags.writeable = False
        cases = [  # (params, data, the float64 parameters and data they stand for)
            ({k: v.tolist() for k, v in params.items()}, {k: v.tolist() for k, v in data.items()}, params, data),
            (ints, data, {k: v.astype(np.float64) for k, v in ints.items()}, data),
            (f32, fortran, {k: v.astype(np.float64) for k, v in f32.items()}, data),
            (params, frozen, params, data),
        ]
        for given, given_data, p64, d64 in cases:
            flags = {k: v.flags.writeable for k, v in given_data.items() if isinstance(v, np.ndarray)}
            loss, grads = m.loss_and_gradients({k: v.copy() for k, v in p64.items()}, **d64)
            for _ in range(2):  # the first call checks; the second takes the checks' cached answer
                got_loss, got_grads = m.loss_and_gradients(given, **given_data)
                assert np.isclose(got_loss, loss, rtol=1e-12), (name, B)
                for k, g in grads.items():
                    assert got_grads[k].dtype == np.float64 and np.allclose(got_grads[k], g, rtol=1e-12), (name, B, k)
            assert {k: v.flags.writeable for k, v in given_data.items() if isinstance(v, np.ndarray)} == flags
