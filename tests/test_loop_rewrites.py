"""What the NumPy module's time loops read made once before them, and the σ state kept in tanh units
(symderiv/codegen/loops.py, symderiv/codegen/numpy/loop.py).

The seed RNN's recurrence h_t = σ(U a_t + V h_{t−1} + b) is computed in tanh units (u = 2h − 1): its
module is checked against a forward pass and a BPTT written here from the equations, unbatched and
batched, at a size where the arrays come from NumPy and at one where they come from the workspace,
float64 and float32, on first and later calls.  Where the rewrite must not apply (the state read by a
second equation of the loop, a state that does not start at zero), the module keeps σ and is checked
against symderiv's evaluator and central differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import symderiv
from symderiv.codegen.numpy.loop import tanh_units
from symderiv.render.emit import render

from .helpers import EXAMPLES, ROOT, assert_module_is_right, generated_module
from .reference.seed_rnn import one_example as _seed_reference


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    d = symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))
    return generated_module(d, tmp_path_factory.mktemp("seed"))


def test_seed_rnn_loop_is_in_tanh_units(seed):
    """The rewrite took: each step is one product and one tanh, no σ."""
    import inspect

    loop = inspect.getsource(seed._run).split("for i in range(T):")[1].split("del ")[0]
    assert "np.tanh(_s_z_h[i], out=_s_h[i + 1])" in loop
    assert "_sigmoid" not in loop
    assert "np.dot(_s_h[i], _T_V)" in loop


# (dims, T, batch): the first two small enough that NumPy allocates every array, the last with arrays of
# 64 KiB and more in float32 and float64, from the workspace's arena (its second call reuses the arena)
@pytest.mark.parametrize("n, T, batch", [(3, 5, None), (4, 6, 3), (24, 12, 64)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed_rnn_in_tanh_units_matches_the_equations(seed, n, T, batch, dtype):
    dims = dict.fromkeys(seed.DIMS, n)
    rng = np.random.default_rng(n + T)
    params = {k: v.astype(dtype) for k, v in seed.init_params(dims, seed=3).items()}
    params["V"] = params["V"] * 3.0  # a strong recurrence: h near 0 and 1, where the units matter
    x = rng.normal(size=(T, n) + ((batch,) if batch else ())).astype(dtype)
    r = rng.dirichlet(np.ones(n), size=(T,) + ((batch,) if batch else ()))
    r = (np.moveaxis(r, -1, 1) if batch else r).astype(dtype)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    examples = [(x, r)] if batch is None else [(x[..., b], r[..., b]) for b in range(batch)]
    refs = [_seed_reference(p64, xb.astype(np.float64), rb.astype(np.float64)) for xb, rb in examples]
    ref_loss = sum(ref[0] for ref in refs)
    ref_grads = {k: sum(ref[2][k] for ref in refs) for k in params}
    rtol = 1e-10 if dtype == "float64" else 2e-4
    for _ in range(3):  # the first call learns the workspace, the second lays it out, the third reuses it
        loss, grads = seed.loss_and_gradients(params, x=x, r=r)
        assert np.isclose(loss, ref_loss, rtol=rtol), (loss, ref_loss)
        for k, g in grads.items():
            scale = np.abs(ref_grads[k]).max()
            assert np.abs(g - ref_grads[k]).max() <= rtol * 10 * scale, k
    values = seed.forward(params, x=x, r=r)
    for name in ("z_h", "h"):  # the loop's state and its argument, back in their own units
        want = refs[0][1][name] if batch is None else np.stack([ref[1][name] for ref in refs], axis=-1)
        assert np.allclose(values[name], want, rtol=rtol, atol=rtol), name
    assert values["h"].min() >= 0.0 and values["h"].max() <= 1.0


SECOND_READER = """model two_readers
dim n_x, n_h, n_y
time t = 1..T
input x[t]: n_x
target y[t]: n_y
param U: (n_h, n_x)
param V: (n_h, n_h)
param G: (n_h, n_h)
param W: (n_y, n_h)
state h[0] = 0
state g[0] = 0
h[t] = sigmoid(U @ x[t] + V @ h[t-1])
g[t] = tanh(G @ h[t-1] + V @ g[t-1])
e[t] = W @ g[t]
loss L = Sum(squared_error(y[t], e[t]), (t, 1, T))
"""

NONZERO_START = """model learned_start
dim n_x, n_h, n_y
time t = 1..T
input x[t]: n_x
target y[t]: n_y
param U: (n_h, n_x)
param V: (n_h, n_h)
param h0: n_h
param W: (n_y, n_h)
state h[0] = h0
h[t] = sigmoid(U @ x[t] + V @ h[t-1])
e[t] = W @ h[t]
loss L = Sum(squared_error(y[t], e[t]), (t, 1, T))
"""

ONE_READER = NONZERO_START.replace("param h0: n_h\n", "").replace("state h[0] = h0", "state h[0] = 0")


@pytest.mark.parametrize("text, applies", [(ONE_READER, True), (SECOND_READER, False), (NONZERO_START, False)],
                         ids=["one-reader", "second-reader", "nonzero-start"])
def test_tanh_units_only_where_the_state_is_read_by_its_product_alone(text, applies, tmp_path):
    m = assert_module_is_right(text, tmp_path, T=4)
    import inspect

    loop = inspect.getsource(m._run).split("for i in range(T):")[1].split("del ")[0]
    assert ("_sigmoid" not in loop) is applies, loop


def test_tanh_units_leaves_a_loop_it_does_not_match_unchanged():
    from symderiv.codegen.schedule import Line, Phase, Scheduled

    def phase(*third):
        loop = [Scheduled("z", [Line("_s_z[i] += np.dot(_s_h[i], _T_V)"), Line("_sigmoid(_s_z[i], out=_s_h[i + 1])"),
                                *third])]
        return Phase(alloc=[Line("h = np.zeros((T + 1, B, n), dtype)")], loop=loop)

    assert tanh_units(phase()) == ("h", "z", "V")  # the pattern alone is rewritten
    for third in (Line("_s_y[i] += _s_h[i + 1] * 2"),  # h read by another line
                  Line("_s2_z[i] *= 2"),  # z through another view list
                  Line("_s_y[i] = _s_w[i]", ("y",), ("w", "h"))):  # h among a line's reads
        p = phase(third)
        assert tanh_units(p) is None, third.text
        assert [ln.text for ln in p.loop[0].lines][1] == "_sigmoid(_s_z[i], out=_s_h[i + 1])"
    split = phase()
    split.before.append(Scheduled("z", [Line("z, w = np.split(s, [n], axis=-1)")]))  # z a view of another array
    assert tanh_units(split) is None


def test_a_computed_matrix_read_transposed_by_two_loops_is_made_after_it(tmp_path):
    """A model with a time loop per recurrence (codegen/blocks.py) whose steps both read Mᵀ of M = A B, a
    matrix the forward pass computes: Mᵀ (``_T_M``) is made once, after M and before the first loop, in
    the NumPy module (which then computes what symderiv's evaluator and central differences say) and in
    the PyTorch one (tests/test_backend_torch.py runs every model of tests/models against autograd)."""
    text = (ROOT / "tests" / "models" / "tied_birnn.sdm").read_text(encoding="utf-8")
    m = assert_module_is_right(text, tmp_path, T=4)
    import inspect

    run = inspect.getsource(m._run)
    assert run.count("_T_M = ") == 1 and run.index("M = ") < run.index("_T_M = ") < run.index("for i in")
    d = symderiv.derive(symderiv.parse(text, "x.sdm"))
    torch_text = render(d, "torch", "x.sdm")
    forward = torch_text.split("def _forward(")[1].split("\ndef ")[0]
    assert forward.count("_T_M = ") == 1 and forward.index("M = ") < forward.index("_T_M = ")
