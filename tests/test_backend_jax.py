"""The JAX back end (``symderiv derive --format jax`` → NAME_jax.py) against answers it did not
compute: ``jax.grad`` of a forward pass written here from the model's equations (a small
interpreter of the equations in JAX, the time loop a ``lax.scan``, one example at a time and
``jax.vmap`` over a batch), and the NumPy module's gradients.  For every example in examples/.

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
from symderiv.ir.expr import Apply, At, AtStep, ColSlice, Concat, LogSoftmax, RowSlice, Softmax, TimeSum
from symderiv.ops import ELEMENTWISE
from symderiv.render.emit import render

from .helpers import EXAMPLES, GENERATED, ROOT, generated_module, import_generated, reference_computes

jax = pytest.importorskip("jax", reason="JAX is not installed (it is in the test extra)")
jnp = pytest.importorskip("jax.numpy")


def _unsupported(path):
    from symderiv.codegen.jax.emitter import unsupported

    return unsupported(symderiv.derive(symderiv.load(path)))


# The examples the JAX back end generates; the others (several time loops, fixed steps, data at
# other steps: language version 2's time) are refused with a reason, tested below.
_ALL = sorted(EXAMPLES.glob("*.sdm"))
_REASONS = {p.stem: _unsupported(p) for p in _ALL}
# and, of those, the ones the reference below computes (not yet version 2's matrix functions)
EXAMPLE_FILES = [p for p in _ALL if _REASONS[p.stem] is None
                 and reference_computes(symderiv.load(p), set(ELEMENTWISE))]
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
}


def _function(fname: str, params):
    if fname in _JNP and not params:
        return _JNP[fname]
    z = sp.Symbol("z", real=True)
    return sp.lambdify(z, ELEMENTWISE[fname].scalar(z, *params), modules="jax")


class Reference:
    """The model's loss for one example, in JAX, straight from its equations (column vectors
    (n, 1); the sequence quantities computed step by step in a ``lax.scan`` whose carry holds
    each one's last values, as far back as the equations read)."""

    def __init__(self, model, dims: dict[str, int]):
        self.model, self.dims = model, dims
        self.subs = {model.dims[k]: v for k, v in dims.items()}
        seq = [n for n in model.order if model[n].sequence]
        self.before, self.seq, self.after = [], seq, []
        later = set(seq)
        for n in model.order:
            q = model[n]
            if q.sequence or q.expr is None:
                continue
            names = {s.name for s in q.expr.atoms(MatrixSymbol)}
            if q.expr.has(TimeSum) or names & later:
                self.after.append(n)
                later.add(n)
            else:
                self.before.append(n)
        self.lags: dict[str, int] = {}
        for q in model.equations:
            for node in sp.preorder_traversal(q.expr):
                if isinstance(node, At) and int(node.args[1]) < 0 and model[node.base.name].sequence:
                    name = node.base.name
                    self.lags[name] = max(self.lags.get(name, 0), -int(node.args[1]))
        self.sums = [node for n in self.after for node in sp.preorder_traversal(self.model[n].expr)
                     if isinstance(node, TimeSum)]

    def size(self, x) -> int:
        return int(sp.sympify(x).xreplace(self.subs))

    def column(self, value, q):
        return jnp.reshape(value, (self.size(q.shape[0]), self.size(q.shape[1])))

    def loss(self, params: dict, data: dict):
        """The loss of one example; ``params`` and ``data`` in the JAX module's layout."""
        m = self.model
        env = {p.name: self.column(params[p.name], p) for p in m.params}
        steps = {}
        for q in m.data:
            if q.sequence:
                steps[q.name] = jnp.reshape(data[q.name], (-1, self.size(q.shape[0]), self.size(q.shape[1])))
            else:
                env[q.name] = self.column(data[q.name], q)
        for n in self.before:
            env[n] = self.ev(m[n].expr, lambda name, k: env[name])
        sums = {}
        if self.seq:
            T = next(iter(steps.values())).shape[0]
            window = {}
            for name, lag in self.lags.items():  # the values at t - 1, t - 2, … before the first step
                states = m.states.get(name, {})
                window[name] = tuple(
                    jnp.zeros(self.size_of(m[name])) if isinstance(states.get(1 - k), (ZeroMatrix, type(None)))
                    else env[states[1 - k].name] for k in range(1, lag + 1))

            def step(carry, t):
                now = {}

                def look(name, k):
                    if name in steps:
                        return steps[name][t - 1 + k]
                    if name in now and k == 0:
                        return now[name]
                    if k < 0:
                        return carry[name][-k - 1]
                    return env[name]

                for n in self.seq:
                    now[n] = self.ev(m[n].expr, look)
                out = [self.ev(s.args[0], look) for s in self.sums]
                return {n: (now[n],) + carry[n][:-1] for n in carry}, out

            _, per_step = jax.lax.scan(step, window, jnp.arange(1, T + 1))
            sums = {s: v.sum(axis=0) for s, v in zip(self.sums, per_step)}
        for n in self.after:
            env[n] = self.ev(m[n].expr, lambda name, k: env[name], sums)
        return env[m.loss][0, 0]

    def size_of(self, q):
        return (self.size(q.shape[0]), self.size(q.shape[1]))

    def ev(self, e, look, sums=None):
        ev = lambda a: self.ev(a, look, sums)  # noqa: E731
        if isinstance(e, TimeSum):
            return sums[e]
        if isinstance(e, At):
            return look(e.base.name, int(e.args[1]))
        if isinstance(e, AtStep):
            raise NotImplementedError("a value at a fixed step")
        if isinstance(e, MatrixSymbol):
            return look(e.name, 0)
        if isinstance(e, ZeroMatrix):
            return jnp.zeros(self.size_of(e))
        if isinstance(e, OneMatrix):
            return jnp.ones(self.size_of(e))
        if isinstance(e, Identity):
            return jnp.eye(self.size(e.shape[0]))
        if isinstance(e, MatAdd):
            return sum((ev(a) for a in e.args[1:]), ev(e.args[0]))
        if isinstance(e, MatMul):
            c = sp.Mul(*[a for a in e.args if not a.is_Matrix])
            out = None
            for a in (a for a in e.args if a.is_Matrix):
                out = ev(a) if out is None else out @ ev(a)
            return out * float(c) if c != 1 else out
        if isinstance(e, HadamardProduct):
            out = ev(e.args[0])
            for a in e.args[1:]:
                out = out * ev(a)
            return out
        if isinstance(e, HadamardPower):
            return ev(e.args[0]) ** float(e.args[1])
        if isinstance(e, Transpose):
            return ev(e.arg).T
        if isinstance(e, Apply):
            return _function(e.fname, tuple(e.params))(ev(e.arg))
        if isinstance(e, LogSoftmax):
            return jax.nn.log_softmax(ev(e.args[0]), axis=0)
        if isinstance(e, Softmax):
            return jax.nn.softmax(ev(e.args[0]), axis=0)
        if isinstance(e, Concat):
            return jnp.concatenate([ev(a) for a in e.args], axis=0)
        if isinstance(e, RowSlice):
            return ev(e.arg)[self.size(e.start):self.size(e.stop)]
        if isinstance(e, ColSlice):
            return ev(e.arg)[:, self.size(e.start):self.size(e.stop)]
        raise NotImplementedError(f"the reference has no rule for {type(e).__name__}")

    def batched_loss(self, params: dict, data: dict):
        """Σ over the batch axis (the second of a sequence, the first of a static value)."""
        axes = {q.name: 1 if q.sequence else 0 for q in self.model.data}
        return jax.vmap(self.loss, in_axes=(None, axes))(params, data).sum()


# --- the modules and the points, built once ---------------------------------------------------


def _point(model, dims, batch, seed):
    """Random params (public shapes) and data in the JAX layout (time, batch, vector), positive
    where a log reads them; a distribution target sums to one."""
    from symderiv.check.evaluate import positive_leaves
    rng = np.random.default_rng(seed)
    positive = positive_leaves(model)

    def shape(q):
        rows, cols = (int(sp.sympify(x).xreplace({model.dims[k]: v for k, v in dims.items()})) for x in q.shape)
        return () if q.is_scalar else (rows,) if q.is_vector else (rows, cols)

    params = {p.name: rng.normal(0, 0.5, shape(p)) for p in model.params}
    params = {k: np.abs(v) + 0.1 if k in positive else v for k, v in params.items()}
    data = {}
    for q in model.data:
        core = shape(q)
        full = ((T_STEPS,) if q.sequence else ()) + (() if batch is None else (batch,)) + core
        v = rng.uniform(0.1, 1.0, full) if q.role == "target" or q.name in positive else rng.normal(0, 1, full)
        if q.distribution:
            v = v / v.sum(axis=-1, keepdims=True)
        data[q.name] = v
    return params, data


def _numpy_layout(model, data):
    """The JAX layout (batch second) → the NumPy module's (batch last)."""
    out = {}
    for q in model.data:
        v = data[q.name]
        batch_axis = 1 if q.sequence else 0
        out[q.name] = np.moveaxis(v, batch_axis, -1) if not q.is_scalar else np.moveaxis(v, batch_axis, -1)
    return out


class Case:
    """One example: its derivation, its JAX and NumPy modules, the reference, a point."""

    def __init__(self, path, tmp):
        self.d = symderiv.derive(symderiv.load(path))
        self.model = self.d.model
        target = tmp / f"{self.model.name}_jax_test.py"
        target.write_text(render(self.d, "jax", path.name), encoding="utf-8")
        self.jax = import_generated(target, target.stem)
        self.numpy = generated_module(self.d, tmp)
        self.dims = {k: 2 + i for i, k in enumerate(self.jax.DIMS)}
        self.reference = Reference(self.model, self.dims)
        self._ref_grad = jax.jit(jax.value_and_grad(self.reference.loss))
        self._ref_grad_batched = jax.jit(jax.value_and_grad(self.reference.batched_loss))

    def point(self, batch, seed=0):
        return _point(self.model, self.dims, batch, seed)

    def expected(self, params, data, batch):
        fn = self._ref_grad if batch is None else self._ref_grad_batched
        value, grads = fn(params, data)
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
    np_loss, np_grads = case.numpy.loss_and_gradients(params, **_numpy_layout(case.model, data))
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


MODEL_FILES = [p for p in sorted((ROOT / "tests" / "models").glob("*.sdm")) if _unsupported(p) is None]


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
    np_loss, np_grads = case.numpy.loss_and_gradients(params, **_numpy_layout(case.model, data))
    _close(loss, ref_loss, 1e-10, "loss against the reference")
    _close(loss, np_loss, 1e-10, "loss against the NumPy module")
    for k in params:
        _close(grads[k], ref_grads[k], 1e-10, f"∂L/∂{k} against jax.grad of the reference")
        _close(grads[k], np_grads[k], 1e-10, f"∂L/∂{k} against the NumPy module")


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


@pytest.mark.parametrize("name", ["seed_rnn", "lstm_tagger"])
def test_jit_of_grad_and_vmap_over_the_batch(cases, name):
    case = cases[name]
    m = case.jax
    params, data = case.point(BATCH, seed=2)
    _, grads = m.loss_and_gradients(params, **data)
    jitted = jax.jit(jax.grad(m.loss))(params, **data)
    for k in params:
        _close(jitted[k], grads[k], 1e-12, f"jit(grad(loss)) ∂L/∂{k}")
    axes = {q.name: 1 if q.sequence else 0 for q in case.model.data}
    names = list(axes)

    def one(params, *xs):
        return m.loss(params, **dict(zip(names, xs)))

    xs = [data[k] for k in names]
    in_axes = (None, *[axes[k] for k in names])
    per_example = jax.vmap(one, in_axes=in_axes)(params, *xs)
    assert per_example.shape == (BATCH,)
    for b in range(BATCH):
        single = {k: np.take(data[k], b, axis=axes[k]) for k in names}
        _close(per_example[b], m.loss(params, **single), 1e-12, f"vmap: the loss of example {b}")
    _close(per_example.sum(), m.loss(params, **data), 1e-12, "vmap: the batch's loss")
    # Per-example gradients: vmap of grad (the custom_vjp's rule, batched), summed = the batch's.
    per_grads = jax.jit(jax.vmap(jax.grad(one), in_axes=in_axes))(params, *xs)
    for k in params:
        assert per_grads[k].shape == (BATCH,) + np.shape(params[k])
        _close(per_grads[k].sum(axis=0), grads[k], 1e-10, f"vmap(grad) ∂L/∂{k}")


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


def test_every_example_has_its_jax_module():
    for example in EXAMPLE_FILES:
        assert (GENERATED / f"{symderiv.load(example).name}_jax.py").exists()


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
    has_loop = "for i in" in (GENERATED / f"{path.stem[:-4]}.py").read_text(encoding="utf-8")
    assert (text.count("jax.lax.scan(") == 2) == has_loop
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


@pytest.mark.parametrize("name", sorted(n for n, r in _REASONS.items() if r is not None))
def test_a_model_the_jax_back_end_cannot_generate_yet_is_refused_with_the_reason(name, tmp_path, capsys):
    from symderiv.cli import main

    path = EXAMPLES / f"{name}.sdm"
    assert main(["derive", str(path), "-o", str(tmp_path / "one"), "--format", "jax"]) == 2
    assert "the JAX back end does not yet generate" in capsys.readouterr().err
    assert main(["derive", str(path), "-o", str(tmp_path / "all"), "--format", "all"]) == 0
    out = capsys.readouterr().out
    assert f"{name}_jax.py not written: the JAX back end does not yet generate" in out
    assert (tmp_path / "all" / f"{name}.py").exists() and not (tmp_path / "all" / f"{name}_jax.py").exists()
