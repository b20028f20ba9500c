"""The JAX back end (``symderiv derive --format jax`` → NAME_jax.py) against answers it did not
compute: ``jax.grad`` of a forward pass written here from the model's equations (a small
interpreter of the equations in JAX, the steps unrolled, language version 2's matrix functions
from their definitions), and the NumPy module's gradients.  For every example in examples/:
several time loops (a bidirectional RNN, an encoder then a decoder), fixed steps (h[T]), data at
other steps (x[t-1]), matrix data and quantities, tr/det/logdet/inv/norms/diag, non-integer
powers, sizes used as values.

Compiling is the slow part (XLA on 2 cores), so each example's module and the compiled
functions are built once per module (fixtures) and shared by the tests.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)

import symderiv
from symderiv.cli import main
from symderiv.ir.batch import is_shared_input, split_loss
from symderiv.ir.expr import (
    Apply,
    At,
    AtEnd,
    AtStep,
    ColSlice,
    Concat,
    Det,
    Diag,
    Inv,
    LogDet,
    LogSoftmax,
    Norm2,
    RowSlice,
    Softmax,
    TimeSum,
    Trace,
    Window,
)
from symderiv.ops import ELEMENTWISE
from symderiv.render.emit import render

from .helpers import EXAMPLES, GENERATED, ROOT, generated_module, import_generated

jax = pytest.importorskip("jax", reason="JAX is not installed (it is in the test extra)")
jnp = pytest.importorskip("jax.numpy")


# Every example: the JAX back end generates each, and the reference below computes each (a
# test below holds both to that, so an example neither handles fails rather than drops out).
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.sdm"))
T_STEPS, BATCH = 4, 3


@pytest.fixture(scope="module", autouse=True)
def x64():
    """float64 for this module's tests (JAX's default is float32); restored afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


# --- the independent forward pass ---------------------------------------------------------------

_JNP = {  # the functions, written here in JAX; any other from its meaning through SymPy's lambdify
    "sigmoid": lambda x: 1 / (1 + jnp.exp(-x)),
    "tanh": jnp.tanh,
    "relu": lambda x: jnp.maximum(x, 0),
    "softplus": lambda x: jnp.log1p(jnp.exp(x)),
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "abs": jnp.abs,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


def _function(fname: str, params):
    if fname in _JNP and not params:
        return _JNP[fname]
    if fname == "leaky_relu":
        return lambda x: jax.nn.leaky_relu(x, float(params[0]))
    z = sp.Symbol("z", real=True)
    return sp.lambdify(z, ELEMENTWISE[fname].scalar(z, *params), modules="jax")


_NODES = (MatAdd, MatMul, HadamardProduct, HadamardPower, Transpose, Apply, LogSoftmax, Softmax, Concat, RowSlice,
          ColSlice, TimeSum, At, AtStep, AtEnd, MatrixSymbol, ZeroMatrix, OneMatrix, Identity, Trace, Det, LogDet,
          Norm2, Inv, Diag, Window)


def computes(model) -> bool:
    """Whether the reference below has a rule for every node of ``model``'s equations and states."""
    def ok(e) -> bool:
        if isinstance(e, (MatrixSymbol, ZeroMatrix, OneMatrix, Identity)):  # their args are their shapes
            return True
        if getattr(e, "is_Matrix", False):
            return isinstance(e, _NODES) and all(ok(a) for a in e.args)
        return True  # a number, a size used as a value, a step index

    exprs = [q.expr for q in model.equations if q.expr is not None]
    exprs += [v for states in (model.states, model.end_states) for by_step in states.values()
              for v in by_step.values()]
    return all(ok(e) for e in exprs)


class Reference:
    """The model's loss in JAX, straight from its equations (not the derivation, the schedule or
    the generated code).  A value is (rows, cols), a vector a column as in the maths, with a
    leading batch axis (B, rows, cols) once it reads batched data; a sequence quantity is
    computed at a step when first read there (so a recurrence backwards in time, a state
    computed from other values and a fixed step need no schedule of their own), the steps
    unrolled: T is small.  The loss of a batch is the sum over its terms, each summed over the
    batch on its own (a term reading only params and scalar inputs counts once: the batch rule)."""

    def __init__(self, model, dims: dict[str, int]):
        self.model, self.dims = model, dims
        self.subs = {model.dims[k]: v for k, v in dims.items()}

    def size(self, x) -> int:
        return int(sp.sympify(x).xreplace(self.subs))

    def number(self, c) -> float:
        """A coefficient, a size used as a value (1/sqrt(n_k), 1/T) included."""
        return float(sp.sympify(c).xreplace(self.subs))

    def loss(self, params: dict, data: dict):
        """The loss; ``params`` and ``data`` in the JAX module's layout, one example or a batch."""
        m = self.model
        self.values, self.T = {}, None
        for p in m.params:
            v = jnp.asarray(params[p.name])
            self.values[p.name] = jnp.reshape(v, (self.size(p.shape[0]), self.size(p.shape[1])))
        for q in m.data:
            self.values[q.name] = self._datum(q, jnp.asarray(data[q.name]))
        if self.T is not None:
            self.subs[m.length] = self.T
        e = m[m.loss].expr
        terms = e.args if isinstance(e, MatAdd) else (e,)
        return sum(self.ev(term, None).sum() for term in terms)

    def _datum(self, q, a):
        """A datum per step (a dict 1..T) or static, each (…, rows, cols)."""
        def one(v):  # (…, n) → (…, n, 1); (…,) → (…, 1, 1); a matrix stays
            if q.is_scalar:
                return v[..., None, None]
            return v if q.kind == "matrix" else v[..., None]
        if q.sequence:
            self.T = a.shape[0]
            return {t + 1: one(a[t]) for t in range(a.shape[0])}
        return one(a)

    def zeros(self, shape):
        return jnp.zeros((self.size(shape[0]), self.size(shape[1])))

    def lookup(self, name, step):
        m = self.model
        q = m.quantities[name]
        v = self.values.get(name)
        if q.role in ("input", "target", "param"):
            if not q.sequence:
                return v
            return v.get(step, self.zeros(q.shape))  # data outside 1..T is zero
        if not q.sequence:
            if v is None:
                v = self.values[name] = self.ev(q.expr, None)
            return v
        cache = self.values.setdefault(name, {})
        if step not in cache:
            state = m.states[name][step] if step < 1 else m.end_states[name][step - self.T] if step > self.T else None
            if state is None:
                cache[step] = self.ev(q.expr, step)
            else:
                cache[step] = self.zeros(state.shape) if isinstance(state, ZeroMatrix) else self.ev(state, None)
        return cache[step]

    def ev(self, e, t):
        ev = lambda a: self.ev(a, t)  # noqa: E731
        if isinstance(e, At):
            return self.lookup(e.base.name, t + e.offset)
        if isinstance(e, AtStep):
            return self.lookup(e.base.name, e.step)
        if isinstance(e, AtEnd):
            return self.lookup(e.base.name, self.T + e.offset)
        if isinstance(e, MatrixSymbol):
            return self.lookup(e.name, t)
        if isinstance(e, ZeroMatrix):
            return self.zeros(e.shape)
        if isinstance(e, OneMatrix):
            return jnp.ones((self.size(e.shape[0]), self.size(e.shape[1])))
        if isinstance(e, Identity):
            return jnp.eye(self.size(e.shape[0]))
        if isinstance(e, MatAdd):
            return sum((ev(a) for a in e.args[1:]), ev(e.args[0]))
        if isinstance(e, MatMul):
            c = sp.Mul(*[a for a in e.args if not a.is_Matrix])
            out = None
            for a in (a for a in e.args if a.is_Matrix):
                out = ev(a) if out is None else jnp.matmul(out, ev(a))
            return out * self.number(c) if c != 1 else out
        if isinstance(e, HadamardProduct):
            out = ev(e.args[0])
            for a in e.args[1:]:
                out = out * ev(a)
            return out
        if isinstance(e, HadamardPower):
            return ev(e.args[0]) ** self.number(e.args[1])
        if isinstance(e, Transpose):
            return jnp.swapaxes(ev(e.arg), -1, -2)
        if isinstance(e, Apply):
            return _function(e.fname, tuple(e.params))(ev(e.arg))
        if isinstance(e, LogSoftmax):  # of each column
            return jax.nn.log_softmax(ev(e.arg), axis=-2)
        if isinstance(e, Softmax):
            return jax.nn.softmax(ev(e.arg), axis=-2)
        if isinstance(e, Concat):
            parts = [ev(a) for a in e.args]
            lead = jnp.broadcast_shapes(*(p.shape[:-2] for p in parts))
            return jnp.concatenate([jnp.broadcast_to(p, lead + p.shape[-2:]) for p in parts], axis=-2)
        if isinstance(e, RowSlice):
            return ev(e.arg)[..., self.size(e.start):self.size(e.stop), :]
        if isinstance(e, ColSlice):
            return ev(e.arg)[..., :, self.size(e.start):self.size(e.stop)]
        if isinstance(e, TimeSum):
            return sum(self.ev(e.arg, s) for s in range(1, self.T + 1))
        if isinstance(e, Window):  # Sum(…, (t, first, T - last)): 1 at the steps of the range, else 0
            step = {"t": t + e.at if t is not None else None, "step": e.at, "end": self.T + e.at}[e.where]
            return jnp.ones((1, 1)) * (step is not None and e.first <= step <= self.T - e.last)
        # language version 2's functions of a matrix, from their definitions
        if isinstance(e, Trace):
            return jnp.trace(ev(e.arg), axis1=-2, axis2=-1)[..., None, None]
        if isinstance(e, Det):
            return jnp.linalg.det(ev(e.arg))[..., None, None]
        if isinstance(e, LogDet):
            return jnp.log(jnp.linalg.det(ev(e.arg)))[..., None, None]
        if isinstance(e, Inv):  # the X with A X = I
            a = ev(e.arg)
            return jnp.linalg.solve(a, jnp.broadcast_to(jnp.eye(a.shape[-1]), a.shape))
        if isinstance(e, Norm2):
            return jnp.sqrt((ev(e.arg) ** 2).sum(axis=(-2, -1)))[..., None, None]
        if isinstance(e, Diag):
            return ev(e.arg) * jnp.eye(self.size(e.shape[0]))  # row k of I scaled by v_k
        raise NotImplementedError(f"the reference has no rule for {type(e).__name__}")


# --- the modules and the points, built once ---------------------------------------------------


def _point(model, dims, batch, seed):
    """Random params (public shapes) and data in the JAX layout (time, batch, then the value),
    positive where a log or a square root reads them, near the identity where inv, det or logdet
    does; a distribution target's entries (a matrix's columns) sum to one; a scalar input is
    shared by the batch (shape ())."""
    from symderiv.check.evaluate import positive_leaves, square_leaves
    rng = np.random.default_rng(seed)
    positive, square = positive_leaves(model), square_leaves(model)

    def shape(q):
        rows, cols = (int(sp.sympify(x).xreplace({model.dims[k]: v for k, v in dims.items()})) for x in q.shape)
        return () if q.is_scalar else (rows, cols) if q.kind == "matrix" else (rows,)

    def draw(name, v):
        if name in square:
            return np.eye(v.shape[-1]) + 0.3 * v / np.sqrt(v.shape[-1])
        return np.abs(v) + 0.1 if name in positive else v

    params = {p.name: draw(p.name, rng.normal(0, 0.5, shape(p))) for p in model.params}
    data = {}
    for q in model.data:
        core = shape(q)
        each = batch is not None and not is_shared_input(q)
        full = ((T_STEPS,) if q.sequence else ()) + ((batch,) if each else ()) + core
        if q.role == "target":
            v = rng.uniform(0.1, 1.0, full)
            if q.distribution:
                v = v / v.sum(axis=-2 if q.kind == "matrix" else -1, keepdims=True)
        else:
            v = draw(q.name, rng.normal(0, 1, full))
        data[q.name] = v
    return params, data


def _numpy_layout(model, data, batch):
    """The JAX layout (batch second for a sequence, else first) → the NumPy module's (batch last)."""
    if batch is None:
        return dict(data)
    return {q.name: data[q.name] if is_shared_input(q) else np.moveaxis(data[q.name], 1 if q.sequence else 0, -1)
            for q in model.data}


def _batch_axes(model) -> dict:
    """The batch axis of each datum in the JAX layout (None: a scalar input, shared by the batch)."""
    return {q.name: None if is_shared_input(q) else 1 if q.sequence else 0 for q in model.data}


class Case:
    """One example: its derivation, its JAX and NumPy modules, the reference, a point."""

    def __init__(self, path, tmp, text=None):
        self.d = symderiv.derive(symderiv.load(path) if text is None else symderiv.parse(text, path.name))
        self.model = self.d.model
        target = tmp / f"{self.model.name}_jax_test.py"
        target.write_text(render(self.d, "jax", path.name), encoding="utf-8")
        self.jax = import_generated(target, target.stem)
        self.numpy = generated_module(self.d, tmp)
        self.dims = {k: 2 + i for i, k in enumerate(self.jax.DIMS)}
        self.reference = Reference(self.model, self.dims)
        self._ref_grad = jax.jit(jax.value_and_grad(self.reference.loss))

    def point(self, batch, seed=0):
        return _point(self.model, self.dims, batch, seed)

    def expected(self, params, data, batch=None):
        value, grads = self._ref_grad(params, data)
        return float(value), {k: np.asarray(v) for k, v in grads.items()}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_modules")
    return {p.stem: Case(p, tmp) for p in EXAMPLE_FILES}


def _close(got, expected, rtol, what):
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-8)
    err = float(np.abs(got - expected).max(initial=0.0)) / scale
    assert err <= rtol, f"{what}: relative error {err:.2e} > {rtol:.0e}"


# --- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
@pytest.mark.parametrize("name", [p.stem for p in EXAMPLE_FILES])
def test_float64_equals_jax_grad_of_an_independent_forward_and_the_numpy_module(cases, name, batch):
    case = cases[name]
    params, data = case.point(batch)
    loss, grads = case.jax.loss_and_gradients(params, **data)
    assert loss.dtype == jnp.float64 and all(g.dtype == jnp.float64 for g in grads.values())
    ref_loss, ref_grads = case.expected(params, data, batch)
    np_loss, np_grads = case.numpy.loss_and_gradients(params, **_numpy_layout(case.model, data, batch))
    assert set(grads) == set(params)
    _close(loss, ref_loss, 1e-10, "loss against the reference")
    _close(loss, np_loss, 1e-10, "loss against the NumPy module")
    for k in params:
        assert np.shape(grads[k]) == np.shape(params[k]), k
        _close(grads[k], ref_grads[k], 1e-10, f"∂L/∂{k} against jax.grad of the reference")
        _close(grads[k], np_grads[k], 1e-10, f"∂L/∂{k} against the NumPy module")
    # The public loss is the custom_vjp: jax.grad of it is the closed form too.
    value, by_grad = jax.value_and_grad(case.jax.loss)(params, **data)
    _close(value, ref_loss, 1e-10, "value_and_grad(loss): the loss")
    for k in params:
        _close(by_grad[k], ref_grads[k], 1e-10, f"jax.grad(loss) ∂L/∂{k}")


MODEL_FILES = [p for p in sorted((ROOT / "tests" / "models").glob("*.sdm")) if computes(symderiv.load(p))]


@pytest.fixture(scope="module")
def model_cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_test_models")
    return {p.stem: Case(p, tmp) for p in MODEL_FILES}


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.stem for p in MODEL_FILES])
def test_the_test_models_too(model_cases, name):
    """The models of tests/models (a second-order lag, a pooled context, a Poisson loss, tied
    weights, ...), batched: against the reference and the NumPy module."""
    case = model_cases[name]
    params, data = case.point(BATCH, seed=4)
    loss, grads = case.jax.loss_and_gradients(params, **data)
    ref_loss, ref_grads = case.expected(params, data, BATCH)
    np_loss, np_grads = case.numpy.loss_and_gradients(params, **_numpy_layout(case.model, data, BATCH))
    _close(loss, ref_loss, 1e-10, "loss against the reference")
    _close(loss, np_loss, 1e-10, "loss against the NumPy module")
    for k in params:
        _close(grads[k], ref_grads[k], 1e-10, f"∂L/∂{k} against jax.grad of the reference")
        _close(grads[k], np_grads[k], 1e-10, f"∂L/∂{k} against the NumPy module")


# Shapes the examples do not hold: a value the same for every example spread to every row (δh of
# Σ_t sum(h_t)), a penalty beside a recurrence with a scalar input shared by the batch, a state
# computed from a static input with a recurrence backwards in time reading the data a step ahead,
# fixed steps from both ends and T as a value, a matrix datum at every step, a coupled-gate cell,
# data named ``params``.
MORE_MODELS = {
    "sum_of_states": """\
model sum_of_states
dim n_x, n_h
time t = 1..T
input x[t]: n_x
param W: (n_h, n_x)
param V: (n_h, n_h)
state h[0] = 0
h[t] = tanh(W @ x[t] + V @ h[t-1])
loss L = Sum(sum(h[t]), (t, 1, T))
""",
    "penalised_rnn": """\
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
""",
    "time_shapes": """\
# A state computed from a static input, a backward recurrence reading a lead of the data, fixed
# steps from both ends, T as a value, a non-integer power.
model time_shapes
dim n_x, n_c, n_h
time t = 1..T
input x[t]: n_x
input c: n_c
target y: n_h
param W_0: (n_h, n_c)
param W: (n_h, n_x)
param V: (n_h, n_h)
param G: (n_h, n_x)
param Q: (n_h, n_h)
state h[0] = tanh(W_0 @ c)
state g[T+1] = 0
h[t] = tanh(W @ x[t] + V @ h[t-1])
g[t] = tanh(G @ x[t+1] + Q @ g[t+1] + h[t])
m = Sum(g[t], (t, 1, T)) / T
o = h[T] + g[1] + m
loss L = squared_error(y, o) + sum((o * o + 1) ** 0.75)
""",
    "matrix_steps": """\
# A matrix datum at every step, in a bilinear form, a product and a trace; a Frobenius-norm penalty.
model matrix_steps
dim n
time t = 1..T
input M[t]: (n, n)
input v[t]: n
param w: n
param A: (n, n)
s[t] = w.T @ M[t] @ v[t] + sum(A @ v[t]) + tr(A @ M[t])
loss L = Sum(s[t] * s[t], (t, 1, T)) / 2 + norm2(A) ** 2
""",
    "coupled_gates": """\
# A coupled-gate cell (c = f ⊙ c + (1 − f) ⊙ g, h = tanh(c)): f's line in the loop is printed before
# the stack of z_f and z_g is split, and must still read z_f from the stack.
model coupled_gates
dim n_x, n_h, C
time t = 1..T
input x[t]: n_x
target r[t]: C, distribution
param W_f: (n_h, n_h + n_x)
param b_f: n_h
param W_g: (n_h, n_h + n_x)
param b_g: n_h
param W_y: (C, n_h)
state h[0] = 0
state c[0] = 0
v[t] = concat(h[t-1], x[t])
f[t] = sigmoid(W_f @ v[t] + b_f)
g[t] = tanh(W_g @ v[t] + b_g)
c[t] = f[t] * c[t-1] + (1 - f[t]) * g[t]
h[t] = tanh(c[t])
p[t] = softmax(W_y @ h[t])
loss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))
""",
    "awkward_names": """\
# Data called as the entry points' own arguments: the jitted functions take them as one dict.
model awkward_names
dim n
input params: n
input data: n
param W: (n, n)
loss grads = sum(tanh(W @ params) * data)
""",
}


@pytest.fixture(scope="module")
def more_cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_more_models")
    return {name: Case(tmp / f"{name}.sdm", tmp, text) for name, text in MORE_MODELS.items()}


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
@pytest.mark.parametrize("name", sorted(MORE_MODELS))
def test_more_time_and_matrix_shapes(more_cases, name, batch):
    case = more_cases[name]
    assert computes(case.model)
    params, data = case.point(batch, seed=5)
    loss, grads = case.jax.loss_and_gradients(params, **data)
    ref_loss, ref_grads = case.expected(params, data)
    np_loss, np_grads = case.numpy.loss_and_gradients(params, **_numpy_layout(case.model, data, batch))
    _close(loss, ref_loss, 1e-10, "loss against the reference")
    _close(loss, np_loss, 1e-10, "loss against the NumPy module")
    # (jax.jit of a function given a keyword called as its first argument is JAX's own limit: the data as a dict)
    by_grad = jax.jit(lambda p, x: jax.grad(case.jax.loss)(p, **x))(params, data)
    for k in params:
        _close(grads[k], ref_grads[k], 1e-10, f"∂L/∂{k} against jax.grad of the reference")
        _close(grads[k], np_grads[k], 1e-10, f"∂L/∂{k} against the NumPy module")
        _close(by_grad[k], ref_grads[k], 1e-10, f"jit(grad(loss)) ∂L/∂{k}")


@pytest.mark.parametrize("batch", [None, BATCH], ids=["unbatched", "batched"])
@pytest.mark.parametrize("name", [p.stem for p in EXAMPLE_FILES])
def test_float32_within_1e_4_of_the_float64_reference(cases, name, batch):
    case = cases[name]
    params, data = case.point(batch, seed=1)
    params32 = {k: np.asarray(v, np.float32) for k, v in params.items()}
    data32 = {k: np.asarray(v, np.float32) for k, v in data.items()}
    loss, grads = case.jax.loss_and_gradients(params32, **data32)
    assert loss.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in grads.values())
    # The reference at the float32 point, in float64.
    ref_loss, ref_grads = case.expected({k: v.astype(float) for k, v in params32.items()},
                                        {k: v.astype(float) for k, v in data32.items()}, batch)
    _close(loss, ref_loss, 1e-4, "float32 loss")
    for k in params:
        _close(grads[k], ref_grads[k], 1e-4, f"float32 ∂L/∂{k}")


# --- composition: jit, grad, vmap --------------------------------------------------------------


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLE_FILES])
def test_jit_of_grad_and_vmap_over_the_batch(cases, name):
    case = cases[name]
    m = case.jax
    params, data = case.point(BATCH, seed=2)
    _, grads = m.loss_and_gradients(params, **data)
    jitted = jax.jit(jax.grad(m.loss))(params, **data)
    for k in params:
        _close(jitted[k], grads[k], 1e-12, f"jit(grad(loss)) ∂L/∂{k}")
    axes = _batch_axes(case.model)
    names = list(axes)
    if all(a is None for a in axes.values()):  # no datum has a batch axis (a model of params only)
        assert not case.model.data or all(is_shared_input(q) for q in case.model.data)
        return

    def one(params, *xs):
        return m.loss(params, **dict(zip(names, xs)))

    xs = [data[k] for k in names]
    in_axes = (None, *[axes[k] for k in names])
    per_example = jax.jit(jax.vmap(one, in_axes=in_axes))(params, *xs)
    assert per_example.shape == (BATCH,)
    singles = [{k: data[k] if axes[k] is None else np.take(data[k], b, axis=axes[k]) for k in names}
               for b in range(BATCH)]
    for b in range(BATCH):
        _close(per_example[b], m.loss(params, **singles[b]), 1e-12, f"vmap: the loss of example {b}")
    # Per-example gradients: vmap of grad (the custom_vjp's rule, batched), each example's own.
    per_grads = jax.jit(jax.vmap(jax.grad(one), in_axes=in_axes))(params, *xs)
    for k in params:
        assert per_grads[k].shape == (BATCH,) + np.shape(params[k])
        for b in (0, BATCH - 1):
            _close(per_grads[k][b], m.gradients(params, **singles[b])[k], 1e-10, f"vmap(grad) ∂L/∂{k}, example {b}")
    each, once = split_loss(case.model)
    if not (each and once):  # no penalty counted once per call: the examples' sum is the batch's
        _close(per_example.sum(), m.loss(params, **data), 1e-12, "vmap: the batch's loss")
        for k in params:
            _close(per_grads[k].sum(axis=0), grads[k], 1e-10, f"vmap(grad) summed ∂L/∂{k}")


@pytest.mark.parametrize("name", ["birnn_tagger", "encoder_decoder", "causal_conv_rnn", "gru_classifier", "attention",
                                  "linear_regression"])
def test_forward_values_are_the_numpy_modules(cases, name):
    """Every forward value, batched, in the JAX layout (batch second in a sequence, first otherwise;
    a value that reads no data without a batch axis) against the NumPy module's (batch last)."""
    from symderiv.ir.batch import per_example_names

    case = cases[name]
    params, data = case.point(BATCH, seed=6)
    got = case.jax.forward(params, **data)
    want = case.numpy.forward(params, **_numpy_layout(case.model, data, BATCH))
    assert set(got) == set(want)
    each = per_example_names(case.model)
    for k, v in got.items():
        q = case.model[k]
        v = np.asarray(v)
        if k in each and not q.is_scalar:
            v = np.moveaxis(v, 1 if q.sequence else 0, -1)
        _close(v, want[k], 1e-12, f"forward {k}")


def test_data_are_constants_and_other_dtypes_are_accepted(cases):
    case = cases["seed_rnn"]
    m = case.jax
    params, data = case.point(None, seed=3)
    g_data = jax.grad(lambda x: m.loss(params, x=x, r=data["r"]))(jnp.asarray(data["x"]))
    assert not np.asarray(g_data).any()  # the closed form gives ∂L/∂param only: data are constants
    as_lists = m.gradients({k: v.tolist() for k, v in params.items()}, **data)
    for k, v in m.gradients(params, **data).items():
        _close(as_lists[k], v, 1e-15, k)


def test_init_params_are_jax_arrays_of_the_declared_shapes(cases):
    for case in cases.values():
        params = case.jax.init_params(case.dims, seed=0)
        numpy_params = case.numpy.init_params(case.dims, seed=0)
        assert set(params) == set(numpy_params)
        for k, v in params.items():
            assert isinstance(v, jax.Array) and v.dtype == jnp.float64, k
            assert v.shape == np.shape(numpy_params[k]) and np.isfinite(v).all(), k
    m, dims = cases["seed_rnn"].jax, cases["seed_rnn"].dims
    again, other = m.init_params(dims, seed=0), m.init_params(dims, seed=1)
    params = m.init_params(dims, seed=0)
    assert all(np.array_equal(v, again[k]) for k, v in params.items())
    assert all(not np.array_equal(v, other[k]) for k, v in params.items())
    # The scale: 1/sqrt(fan-in) for a matrix (W_in is n_a × n_x), 0.1 for a vector.
    big = m.init_params({k: 60 for k in dims}, seed=0)
    assert abs(float(jnp.std(big["V"])) - 60 ** -0.5) < 0.02 and abs(float(jnp.std(big["b_h"])) - 0.1) < 0.03


def test_bad_input_is_a_clear_error(cases):
    case = cases["seed_rnn"]
    params, data = case.point(None)
    with pytest.raises(KeyError, match="missing: r"):
        case.jax.loss(params, x=data["x"])
    with pytest.raises(ValueError, match="expected 2 or 3 axes"):
        case.jax.gradients(params, x=data["x"][0], r=data["r"])


# --- training -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["seed_rnn", "lstm_tagger"])
def test_sgd_fits_synthetic_data(cases, name):
    """A plain JAX SGD loop (no optax) on the generated gradients: the loss falls by half."""
    case = cases[name]
    m = case.jax
    dims = dict(case.dims)
    rng = np.random.default_rng(5)
    n_x = dims["n_x"]
    C = dims["C"]
    T, B = 6, 16
    x = rng.normal(0, 1, (T, B, n_x))
    teacher = rng.normal(0, 2, (C, n_x))
    labels = np.argmax(np.einsum("cn,tbn->tbc", teacher, x), axis=-1)  # the class depends on x_t
    r = np.eye(C)[labels]
    params = m.init_params(dims, seed=0)

    @jax.jit
    def step(params):
        loss, grads = m.loss_and_gradients(params, x=x, r=r)
        return m.sgd_step(params, grads, 0.5 / (T * B)), loss

    first = float(m.loss(params, x=x, r=r))
    for _ in range(300):
        params, _ = step(params)
    last = float(m.loss(params, x=x, r=r))
    assert last < first / 2, (first, last)


# --- the files ------------------------------------------------------------------------------------


def test_every_example_has_its_jax_module_and_the_reference_computes_it():
    from symderiv.codegen.backends import BACKENDS

    for example in EXAMPLE_FILES:
        model = symderiv.load(example)
        assert (GENERATED / f"{model.name}_jax.py").exists(), example.name
        assert BACKENDS["jax"].unsupported(symderiv.derive(model)) is None, example.name
        assert computes(model), example.name


def _jax_modules():
    return sorted(GENERATED.glob("*_jax.py"))


@pytest.mark.parametrize("path", _jax_modules(), ids=lambda p: p.stem)
def test_generated_jax_module_imports_only_jax_and_is_functional(path):
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and all(n == "jax" or n.startswith("jax.") for n in imported), imported
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_run")
    # No in-place update, no Python loop over time, no NumPy: the traced body is functional.
    assert not any(isinstance(n, (ast.AugAssign, ast.For, ast.While)) for n in ast.walk(run))
    assert "out=" not in ast.unparse(run) and "np." not in ast.unparse(run).replace("jnp.", "")
    for node in ast.walk(run):  # nothing assigns into a subscript (a[i] = …)
        if isinstance(node, ast.Assign):
            assert not any(isinstance(t, ast.Subscript) for t in node.targets), ast.unparse(node)
    # One scan for each loop over the steps of the NumPy module (two, forward and backward, or
    # one for each recurrence and its adjoint where a model needs several).
    loops = (GENERATED / f"{path.stem[:-4]}.py").read_text(encoding="utf-8").count("for i in ")
    assert text.count("jax.lax.scan(") == loops
    # Every block says which equation it computes.
    body = ast.get_source_segment(text, run)
    assert body.count("# ") >= 4


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (it is in the test extras)")
def test_generated_jax_modules_pass_ruff():
    out = subprocess.run(["ruff", "check", "--isolated", *map(str, _jax_modules())], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stdout


def test_symderiv_never_imports_jax():
    code = ("import sys, symderiv\n"
            "from symderiv.render.emit import render\n"
            "from symderiv.cli import main\n"
            "d = symderiv.derive(symderiv.load(sys.argv[1]))\n"
            "render(d, 'jax', 'x.sdm'); render(d, 'py', 'x.sdm')\n"
            "import symderiv.check.numcheck, symderiv.check.certify\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib')))\n")
    out = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "lstm_tagger.sdm")], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_derive_format_jax_and_all(tmp_path, capsys):
    seed = EXAMPLES / "seed_rnn.sdm"
    assert main(["derive", str(seed), "-o", str(tmp_path / "one"), "--format", "jax"]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["seed_rnn_jax.py"]
    assert (tmp_path / "one" / "seed_rnn_jax.py").read_text(encoding="utf-8") == \
        (GENERATED / "seed_rnn_jax.py").read_text(encoding="utf-8")
    assert main(["derive", str(seed), "-o", str(tmp_path / "all"), "--format", "all"]) == 0
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert {"seed_rnn.tex", "seed_rnn.md", "seed_rnn.py", "seed_rnn_jax.py"} <= set(names)
    assert main(["derive", str(seed), "-o", str(tmp_path / "all"), "--format", "all"]) == 0  # rewritten: ours
    capsys.readouterr()
    assert main(["derive", str(seed), "-o", str(tmp_path), "--format", "jaxx"]) == 2
    err = capsys.readouterr().err
    assert "unknown format jaxx" in err and "jax" in err and "all" in err


def test_check_backend_jax(capsys):
    assert main(["check", str(EXAMPLES / "seed_rnn.sdm"), "--backend", "jax"]) == 0
    out = capsys.readouterr().out
    assert "JAX vs central differences" in out and "all agree" in out


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in EXAMPLE_FILES if p.stem != "seed_rnn"], ids=lambda p: p.stem)
def test_check_backend_jax_on_every_example(path, capsys):
    """``symderiv check MODEL --backend jax``: central differences, both layouts, every entry point."""
    assert main(["check", str(path), "--backend", "jax"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "JAX vs central differences" in out and "all agree" in out


@pytest.mark.parametrize("fname", sorted(ELEMENTWISE))
def test_every_elementwise_spelling_computes_its_meaning(fname):
    """The JAX spelling of each function of the registry (a table entry, or printed from its SymPy
    meaning) against that meaning, evaluated by SymPy, at points on both sides of 0, and inside
    a larger expression (the argument a sum: its parentheses)."""
    from symderiv.codegen.jax import spelling

    record = ELEMENTWISE[fname]
    params = (sp.Rational(1, 5),) if fname == "leaky_relu" else ()
    points = [0.3, 1.7, 2.5] if record.domain == "positive" else [-2.5, -0.7, 0.3, 1.7]
    z = sp.Symbol("z", real=True)
    expected = [float(record.scalar(z, *params).subs(z, sp.Float(v, 30)).evalf(20)) for v in points]
    x = jnp.asarray(points, dtype=jnp.float64)
    namespace = {"jax": jax, "jnp": jnp, "x": x, "y": x - 1, "dtype": jnp.float64}
    got = eval(compile(spelling.call(fname, "x", params), "<spelling>", "eval"), namespace)  # our own printed code
    np.testing.assert_allclose(np.asarray(got, dtype=float), expected, rtol=1e-12, atol=1e-12)
    got = eval(compile(spelling.call(fname, "y + 1", params), "<spelling>", "eval"), namespace)
    np.testing.assert_allclose(np.asarray(got, dtype=float), expected, rtol=1e-12, atol=1e-12)
