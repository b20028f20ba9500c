"""The faster forms the PyTorch and JAX emitters write (issue 13's speed targets), checked two ways: the rewrite
computes what the lines it replaced computed (both run here on random tensors, the originals being the plain
products the plan printed), and the generated modules of examples/ keep the forms (so that a change losing one
fails here, not only in a benchmark).  The modules' values themselves are checked against autograd in
tests/test_backend_torch.py and tests/test_backend_jax.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from symderiv.codegen.jax.emitter import merge_step_writes
from symderiv.codegen.schedule import AssignStep, Line
from symderiv.codegen.torch.emitter import fuse_derivatives, step_views

from .helpers import GENERATED, import_generated


def _texts(lines):
    return [ln.text for ln in lines]


def _lines(*texts):
    return [Line(t, ("y",), ("y",)) for t in texts]


# ---- PyTorch: σ and tanh derivatives in one pass -------------------------------------------

FUSIONS = [
    # (the plan's lines, the lines fuse_derivatives writes)
    (["y = _matvec(W.T, d)", "y *= o", "y *= 1 - o"], ["y = _matvec(W.T, d)", "_sigmoid_grad(y, o, out=y)"]),
    (["y = 1 - o", "y *= t", "y *= o"], ["y = _sigmoid_grad(t, o)"]),
    (["y = 1 - f", "y *= c[:-1]", "y *= f"], ["y = _sigmoid_grad(c[:-1], f)"]),
    (["y = 1 - h[1:]", "y *= h[1:]"], ["y = torch.addcmul(h[1:], h[1:], h[1:], value=-1)"]),
    (["y = 1 - (g ** 2)", "y *= u"], ["y = _tanh_grad(u, g)"]),
    (["y = _matvec(W.T, d)", "y *= 1 - (g ** 2)", "y *= u"], ["y = _matvec(W.T, d)", "_tanh_grad(y, g, out=y)",
                                                             "y *= u"]),
    (["y = -h[:-1] + n", "y *= z", "y *= 1 - z"], ["y = -h[:-1] + n", "_sigmoid_grad(y, z, out=y)"]),
]


@pytest.mark.parametrize(("before", "after"), FUSIONS)
def test_fuse_derivatives_writes_one_pass(before, after):
    assert _texts(fuse_derivatives(_lines(*before))) == after


@pytest.mark.parametrize("lines", [
    ["y = 1 - o", "y *= t"],  # 1 − o without o: nothing to fuse
    ["y = 1 - (g ** 2)"],  # alone: it stays as it is
    ["y = o * t", "z *= 1 - o"],  # another array's update
    ["y = _matvec(W.T, d)", "y *= 1 - o + a", "y *= o"],  # 1 − o + a is not 1 − (o + a)
])
def test_fuse_derivatives_leaves_other_products(lines):
    assert _texts(fuse_derivatives(_lines(*lines))) == lines


@pytest.mark.parametrize(("before", "after"), FUSIONS)
def test_fused_lines_compute_the_same(before, after):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (it is in the test extra)")
    gen = torch.Generator().manual_seed(0)
    T, B, n = 5, 3, 4

    def env():
        g = torch.Generator().manual_seed(1)
        rand = {k: torch.rand((T, B, n), generator=g, dtype=torch.float64) for k in ("o", "t", "f", "g", "u", "z",
                                                                                       "n", "d")}
        rand.update(c=torch.rand((T + 1, B, n), generator=g, dtype=torch.float64),
                    h=torch.rand((T + 1, B, n), generator=g, dtype=torch.float64),
                    W=torch.randn((n, n), generator=gen, dtype=torch.float64))
        module = _torch_module()
        return {**rand, "torch": torch, "_matvec": module._matvec, "_sigmoid_grad": module._sigmoid_grad,
                "_tanh_grad": module._tanh_grad}

    plain, fused = env(), env()
    plain["W"] = fused["W"]
    exec("\n".join(before), plain)  # the plan's own lines: the independent answer
    exec("\n".join(after), fused)
    torch.testing.assert_close(fused["y"], plain["y"], rtol=1e-14, atol=1e-15)


def _torch_module():
    return import_generated(GENERATED / "seed_rnn_torch.py", "speed_forms_seed_rnn_torch")


# ---- PyTorch: the loop's steps as views made once -------------------------------------------

def test_step_views_rewrite_reads_and_keep_assigned_slots():
    loop = [AssignStep("z", [Line("z[i].addmm_(h[i], _T_V)", ("z",), ("z", "h")),
                             Line("torch.sigmoid(s[i, :, :3 * n_h], out=o[i + 1])", ("o",), ("s",)),
                             Line("q[i] += h[i - 1] * w[i]", ("q",), ("q", "h", "w"))])]
    views = step_views(loop)
    assert _texts(loop[0].lines) == ["_s_z[i].addmm_(_s_h[i], _T_V)",
                                     "torch.sigmoid(_s2_s[i], out=_s_o[i + 1])",
                                     "q[i] += _s_h[i - 1] * _s_w[i]"]
    assert views == [("_s_z", "z"), ("_s_h", "h"), ("_s2_s", "s[:, :, :3 * n_h]"), ("_s_o", "o"), ("_s_w", "w")]
    assert loop[0].lines[0].writes == ("z",) and loop[0].lines[0].reads == ("z", "h")  # liveness unchanged


@pytest.mark.parametrize("name", ["seed_rnn", "lstm_tagger", "gru_regressor"])
def test_generated_torch_loops_index_no_tensor(name):
    text = (GENERATED / f"{name}_torch.py").read_text(encoding="utf-8")
    for loop in re.findall(r"\n    for i in .*?:\n((?:        .*\n)+)", text):
        body = "\n".join(ln for ln in loop.splitlines() if not ln.strip().startswith("#"))
        indexed = set(re.findall(r"(?<![\w.\]])(\w+)\[i\b", body))
        assert indexed and all(n.startswith("_s") for n in indexed), (name, indexed)
    assert "_T_" not in text or ".T.contiguous()" in text


def test_generated_torch_backward_fuses_the_derivatives():
    text = (GENERATED / "lstm_tagger_torch.py").read_text(encoding="utf-8")
    assert "1 - o\n" not in text and "** 2)\n" not in text.split("def _backward")[1]
    assert text.count("_sigmoid_grad(") >= 4 and text.count("_tanh_grad(") >= 3


# ---- JAX: one write per slot and step --------------------------------------------------------

def test_merge_step_writes():
    lines = [Line("        c = _put(c, i + 1, f[i] * c[i])", ("c",), ("f", "c")),
             Line("        c = _put(c, i + 1, c[i + 1] + (u[i] * g[i]))", ("c",), ("c", "u", "g")),
             Line("        h = _put(h, i + 1, jnp.tanh(c[i + 1]))", ("h",), ("c",)),
             Line("        # the terms below read δ at t + 1, which is zero beyond step T"),
             Line("        h = _put(h, i + 1, h[i + 1] * jnp.where(i + 1 < T, o[i], 0))", ("h",), ("h", "o")),
             Line("        h = _put(h, i, h[i] * 2)", ("h",), ("h",))]  # another slot: kept apart
    assert _texts(merge_step_writes(lines)) == [
        "        c = _put(c, i + 1, (f[i] * c[i]) + (u[i] * g[i]))",
        "        # the terms below read δ at t + 1, which is zero beyond step T",
        "        h = _put(h, i + 1, (jnp.tanh(c[i + 1])) * jnp.where(i + 1 < T, o[i], 0))",
        "        h = _put(h, i, h[i] * 2)"]


def test_generated_lstm_scan_copies_no_carried_array():
    """XLA copied the whole (T + 1, B, n) h and c at every step when a step wrote their slot twice."""
    jax = pytest.importorskip("jax", reason="JAX is not installed (it is in the test extra)")
    m = import_generated(GENERATED / "lstm_tagger_jax.py", "speed_forms_lstm_tagger_jax")
    dims = dict.fromkeys(m.DIMS, 8)
    rng = np.random.default_rng(0)
    params = {k: np.asarray(v, np.float32) for k, v in m.init_params(dims, seed=0).items()}
    data = {"x": rng.normal(size=(6, 3, 8)).astype(np.float32),
            "r": np.eye(8, dtype=np.float32)[rng.integers(0, 8, (6, 3))]}
    hlo = m._loss_and_gradients.lower(params, data).compile().as_text()  # loss_and_gradients' jitted body
    bodies = re.findall(r"\n(%[\w.]*region[\w.]* .*?\n})", hlo, flags=re.S)
    assert any("dynamic-update-slice" in b for b in bodies), "no scan body found in the compiled module"
    carried = re.compile(r"= f32\[7,3,8\]\{[^}]*\} copy\(")  # (T + 1, B, n): h or c
    assert not [b for b in bodies if carried.search(b)]
    assert jax is not None
