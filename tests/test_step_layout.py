"""The layout of the matrix a time step's product multiplies by (the generated NumPy module's
``_step_operand``; symderiv/codegen/loops.py names the operands, symderiv/codegen/numpy/loop.py makes them).

By rows or by columns, the product is the same: every example with a time loop is checked against its
independent reference (tests/reference/, written from the equations) with each layout forced, at sizes from
NumPy and from the workspace's arena, on first and later calls; the layouts are checked to be the ones asked
for; and the choice itself (``_columns_faster``, from threadpoolctl's report of the BLAS) is checked against a
stand-in controller for the cores it knows.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import symderiv

from .helpers import EXAMPLES, GENERATED, assert_agree, import_generated, make_data, sizes
from .reference.seed_rnn import one_example as seed_reference

# every example with a time loop and a reference (the seed RNN's, one example at a time, is below)
LOOPED = ["birnn_tagger", "causal_conv_rnn", "char_rnn", "encoder_decoder", "gru_classifier", "gru_regressor",
          "layernorm_rnn", "lstm_tagger", "output_feedback", "rnn_language_model", "second_order_rnn", "stacked_rnn",
          "warmup_regressor"]


def fresh(name: str, tag: str):
    """A new import of generated/NAME.py: the module's own globals, which a test may change."""
    return import_generated(GENERATED / f"{name}.py", f"{name}_step_layout_{tag}")


def spy_layouts(m, monkeypatch) -> list[str]:
    """Record the layout of every operand ``_step_operand`` returns: "columns" (Fortran order only), "rows"."""
    seen: list[str] = []
    real = m._step_operand

    def spy(matrix, B, ws, scale=None):
        out = real(matrix, B, ws, scale)
        seen.append("columns" if out.flags.f_contiguous and not out.flags.c_contiguous else "rows")
        return out

    monkeypatch.setattr(m, "_step_operand", spy)
    return seen


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("name", LOOPED)
def test_either_layout_gives_the_reference(name, columns, monkeypatch):
    """Small distinct sizes (a transposition slip cannot hide behind a square matrix), the size from which
    the columns are used lowered to them."""
    m = fresh(name, f"{columns}")
    monkeypatch.setattr(m, "_blas_columns", [columns])
    monkeypatch.setattr(m, "_COLUMNS_FROM", 2)
    seen = spy_layouts(m, monkeypatch)
    model = symderiv.load(EXAMPLES / f"{name}.sdm")
    ref = importlib.import_module(f"tests.reference.{name}")
    dims = sizes(m)
    params = m.init_params(dims, seed=5)
    for T, batch in ((4, 3), (1, 2), (5, None)):
        data = make_data(model, m, dims, T=T, B=batch, seed=T)
        assert_agree(*m.loss_and_gradients(params, **data), *ref.loss_and_grads(params, **data), params)
    assert seen, "no step product read a matrix laid out before its loop"
    # B = 1 (no batch axis) is always by rows; B ≥ 2 by what was asked
    assert set(seen) == ({"rows", "columns"} if columns else {"rows"})


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_seed_rnn_at_the_real_threshold_and_from_the_arena(columns, dtype, monkeypatch):
    """Every dim 128, B = 8: V is 128 KiB in float64, laid out in the workspace's
    arena from the second call on; the σ state in tanh units reads (V/4)ᵀ so laid out.  float32 is always
    by rows."""
    m = fresh("seed_rnn", f"{columns}_{dtype}")
    monkeypatch.setattr(m, "_blas_columns", [columns])
    seen = spy_layouts(m, monkeypatch)
    n, T, batch = 128, 16, 8  # T·B·n·4 bytes = 64 KiB: the arrays of the call, float32 too, from the arena
    dims = dict.fromkeys(m.DIMS, n)
    rng = np.random.default_rng(7)
    params = {k: v.astype(dtype) for k, v in m.init_params(dims, seed=3).items()}
    x = rng.normal(size=(T, n, batch)).astype(dtype)
    r = np.moveaxis(rng.dirichlet(np.ones(n), size=(T, batch)), -1, 1).astype(dtype)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    refs = [seed_reference(p64, x[..., b].astype(np.float64), r[..., b].astype(np.float64)) for b in range(batch)]
    ref_loss = sum(ref[0] for ref in refs)
    ref_grads = {k: sum(ref[2][k] for ref in refs) for k in params}
    rtol = 1e-10 if dtype == "float64" else 2e-4
    for _ in range(3):  # the first call learns the workspace, the second lays out its arena, the third reuses it
        loss, grads = m.loss_and_gradients(params, x=x, r=r)
        assert np.isclose(loss, ref_loss, rtol=rtol), (loss, ref_loss)
        for k, g in grads.items():
            assert np.abs(g - ref_grads[k]).max() <= rtol * 10 * np.abs(ref_grads[k]).max(), k
    assert set(seen) == ({"columns"} if columns and dtype == "float64" else {"rows"})
    assert m._workspace_bytes() > 0  # the calls ran in the arena


def test_the_step_products_read_the_laid_out_matrices():
    """The seed RNN's forward step reads (V/4)ᵀ and its backward step V, each made once before its loop; the
    LSTM's backward step reads its stacked gate matrix so; the PyTorch and JAX modules have none of it."""
    seed = fresh("seed_rnn", "source")
    run = inspect.getsource(seed._run)
    assert "_T_V = _step_operand(V.T, B, _ws, 0.25)" in run
    assert "_M_V = _step_operand(V, B, _ws)" in run
    backward = run.split("for i in reversed(range(T)):")[1]
    assert "np.dot(_s_d_z_h[i + 1], _M_V)" in backward
    assert "del _s_d_h" in backward and "_M_V" in backward.split("del _s_d_h")[1].splitlines()[0]
    lstm = inspect.getsource(fresh("lstm_tagger", "source")._run)
    assert "np.dot(_s__d_stack0[i + 1], _M__stack0_W)" in lstm
    for backend in ("torch", "jax"):
        text = (GENERATED / f"seed_rnn_{backend}.py").read_text()
        assert "_step_operand" not in text and "_M_" not in text, backend


def test_a_model_without_time_has_no_step_layouts():
    text = (GENERATED / "mlp.py").read_text()
    assert "def _step_operand" not in text and "def _columns_faster" not in text


NUMPY_LIB = str(Path(np.__file__).parent) + ".libs/libscipy_openblas64_.so"  # where NumPy's wheel ships its BLAS


class _Controller:
    """threadpoolctl's ThreadpoolController as the module reads it: each library's API, core and file."""

    libs: list = []

    def __init__(self):
        self.lib_controllers = [SimpleNamespace(user_api=user, internal_api=api, architecture=arch, filepath=path)
                                for user, api, arch, path in self.libs]


@pytest.mark.parametrize("libs, faster", [
    ([("blas", "openblas", "Haswell", NUMPY_LIB)], True),
    ([("blas", "openblas", "Zen", NUMPY_LIB)], True),
    ([("blas", "openblas", "SkylakeX", NUMPY_LIB)], False),
    # NumPy's own OpenBLAS decides, not another one loaded beside it (SciPy's)
    ([("blas", "openblas", "Haswell", NUMPY_LIB), ("blas", "openblas", "SkylakeX", "/x/scipy.libs/b.so")], True),
    ([("blas", "openblas", "SkylakeX", NUMPY_LIB), ("blas", "openblas", "Haswell", "/x/scipy.libs/b.so")], False),
    # a NumPy linked to a system BLAS: every BLAS loaded must be such an OpenBLAS
    ([("blas", "openblas", "Haswell", "/usr/lib/libopenblas.so")], True),
    ([("blas", "mkl", None, "/usr/lib/libmkl_rt.so"), ("blas", "openblas", "Haswell", "/x/scipy.libs/b.so")], False),
    ([("openmp", "openmp", None, "/usr/lib/libgomp.so")], False),  # no BLAS at all
    ([], False),
])
def test_columns_are_chosen_by_numpys_blas_core(libs, faster, monkeypatch):
    m = fresh("seed_rnn", "core")
    monkeypatch.setattr(_Controller, "libs", libs)
    monkeypatch.setattr(m, "_ThreadpoolController", _Controller)
    monkeypatch.setattr(m, "_controller", [])
    monkeypatch.setattr(m, "_blas_columns", [])
    assert m._columns_faster() is faster
    monkeypatch.setattr(_Controller, "libs", [])  # asked once: the answer is kept
    assert m._columns_faster() is faster


def test_without_threadpoolctl_the_steps_read_rows(monkeypatch):
    m = fresh("seed_rnn", "no_threadpoolctl")
    monkeypatch.setattr(m, "_ThreadpoolController", None)
    monkeypatch.setattr(m, "_blas_columns", [])
    assert m._columns_faster() is False


def test_step_operand_lays_out_copies_only_what_it_must(monkeypatch):
    m = fresh("seed_rnn", "unit")
    rng = np.random.default_rng(0)
    W = rng.normal(size=(100, 160))
    monkeypatch.setattr(m, "_blas_columns", [True])
    out = m._step_operand(W, 4, m._FRESH)
    assert out.flags.f_contiguous and not out.flags.c_contiguous and np.array_equal(out, W)
    assert m._step_operand(W.T, 4, m._FRESH).base is W  # W.T is by columns already: itself
    scaled = m._step_operand(W.T, 4, m._FRESH, 0.25)
    assert scaled.flags.f_contiguous and np.array_equal(scaled, W.T * 0.25) and not np.shares_memory(scaled, W)
    for args in ((W, 1), (W.astype(np.float32), 4), (W[:99, :].copy(), 4)):  # B = 1, float32, a side < 100
        assert m._step_operand(*args, m._FRESH) is args[0]  # by rows, as they are
    monkeypatch.setattr(m, "_blas_columns", [False])
    assert m._step_operand(W, 4, m._FRESH) is W
    rows = m._step_operand(W.T, 4, m._FRESH)
    assert rows.flags.c_contiguous and np.array_equal(rows, W.T)
    assert np.array_equal(m._step_operand(W.T, 4, m._FRESH, 0.25), W.T * 0.25)


def test_a_pass_whose_loops_are_statements_lays_out_and_frees_its_matrices(tmp_path):
    """In a module whose loops are statements of their own (``codegen/blocks.py``), each step matrix is made
    after the matrix it lays out is computed, before the first loop that reads it, and deleted after the last
    (tied_birnn: M = A B, read by both loops of each pass); the module agrees with symderiv's evaluator and
    central differences."""
    from .helpers import ROOT, assert_module_is_right

    m = assert_module_is_right((ROOT / "tests" / "models" / "tied_birnn.sdm").read_text(), tmp_path)
    lines = [line.strip() for line in inspect.getsource(m._run).splitlines()]
    computed = lines.index("M = _ws.mm(A, B2)")
    for name, made_as in (("_T_M", "_step_operand(M.T, B, _ws)"), ("_M_M", "_step_operand(M, B, _ws)")):
        made = [k for k, line in enumerate(lines) if line.startswith(f"{name} = ")]
        reads = [k for k, line in enumerate(lines) if name in line and not line.startswith((f"{name} = ", "del "))]
        freed = [k for k, line in enumerate(lines) if line.startswith("del ") and name in line.split("#")[0]]
        assert len(made) == 1 and lines[made[0]].startswith(f"{name} = {made_as}"), name
        assert len(reads) == 2 and len(freed) == 1, (name, reads, freed)  # one read in each of the pass's loops
        assert computed < made[0] < reads[0] < reads[1] < freed[0], name
