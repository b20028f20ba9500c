"""Exercises from public course material, written as the sheet states them (tests/models/courses/),
derived, and held to a reference written here from the sheet's own equations and backward pass,
not from symderiv.

- cs231n_two_layer: CS231n assignment 1's two-layer net (neural_net.py), rows are examples:
  relu(X W1 + b1) W2 + b2, the mean softmax loss, and reg (‖W1‖² + ‖W2‖²).
- attention_head: TorchedUp's "Backprop: Attention head" (problem 210), rows are tokens:
  L = sum(softmax(Q Kᵀ / √d_k) V), the softmax along each row, with the problem's own chain.
- lstm_classifier: a many-to-one LSTM (gates on [h_{t−1}; x_t], as Colah's post writes them),
  softmax cross-entropy of the last hidden state, against PyTorch autograd of the same equations.
- attn_block: a post-norm Transformer sublayer, LayerNorm(X + Attention(X)) (d2l.ai's AddNorm),
  columns are tokens, the layer norm over each column written with mean(·, axis=0) and ones(d) @ μᵀ.
"""

from __future__ import annotations

import numpy as np
import pytest

import symderiv
from symderiv.render.emit import render

from .helpers import ROOT, import_generated

COURSES = ROOT / "tests" / "models" / "courses"


def _module(d, tmp_path, fmt: str, name: str):
    from symderiv.render.emit import write_outputs
    [path] = write_outputs(d, tmp_path, [fmt])
    return import_generated(path, name)


@pytest.fixture(scope="module")
def cs231n():
    return symderiv.derive(symderiv.load(COURSES / "cs231n_two_layer.sdm"))


def cs231n_reference(p, X, y, reg):
    """The loss and gradients as CS231n's solution computes them (dscores = P − 1[y], / N, ...)."""
    n = X.shape[0]
    h = np.maximum(0, X @ p["W1"] + p["b1"])
    s = h @ p["W2"] + p["b2"]
    s = s - s.max(axis=1, keepdims=True)
    log_prob = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    prob = np.exp(log_prob)
    loss = -log_prob[np.arange(n), y].mean() + reg * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
    ds = prob.copy()
    ds[np.arange(n), y] -= 1
    ds /= n
    dh = ds @ p["W2"].T
    dh[h <= 0] = 0
    return loss, {"W1": X.T @ dh + 2 * reg * p["W1"], "b1": dh.sum(axis=0),
                  "W2": h.T @ ds + 2 * reg * p["W2"], "b2": ds.sum(axis=0)}


def _cs231n_point(seed=0, n=5, d=4, h=6, c=3):
    rng = np.random.default_rng(seed)
    p = {"W1": rng.normal(size=(d, h)), "b1": rng.normal(size=h), "W2": rng.normal(size=(h, c)),
         "b2": rng.normal(size=c)}
    X, y = rng.normal(size=(n, d)), rng.integers(0, c, size=n)
    return p, X, y, np.eye(c)[y]


def test_cs231n_numpy_module_equals_the_course_backward_pass(cs231n, tmp_path):
    m = _module(cs231n, tmp_path, "py", "cs231n_np")
    p, X, y, Y = _cs231n_point()
    want_loss, want = cs231n_reference(p, X, y, 0.05)
    loss, got = m.loss_and_gradients(p, X=X, Y=Y, reg=0.05)
    assert abs(loss - want_loss) < 1e-10
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    # a batch of design matrices: the data terms summed, the penalty once
    rng = np.random.default_rng(1)
    Xb = rng.normal(size=(5, 4, 3))
    yb = rng.integers(0, 3, size=(5, 3))
    Yb = np.eye(3)[yb].transpose(0, 2, 1)
    loss_b, got_b = m.loss_and_gradients(p, X=Xb, Y=Yb, reg=0.05)
    parts = [cs231n_reference(p, Xb[..., b], yb[:, b], 0.0) for b in range(3)]
    penalty = 0.05 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
    assert abs(loss_b - (sum(q[0] for q in parts) + penalty)) < 1e-10
    for k in want:
        extra = 2 * 0.05 * p[k] if k.startswith("W") else 0
        np.testing.assert_allclose(got_b[k], sum(q[1][k] for q in parts) + extra, rtol=1e-10, atol=1e-12)


def test_cs231n_torch_and_jax_modules_equal_the_course_backward_pass(cs231n, tmp_path):
    torch = pytest.importorskip("torch")
    p, X, y, Y = _cs231n_point(seed=2)
    want_loss, want = cs231n_reference(p, X, y, 0.05)
    tm = _module(cs231n, tmp_path, "torch", "cs231n_torch")
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    loss = tm.loss(tp, X=torch.tensor(X), Y=torch.tensor(Y), reg=torch.tensor(0.05, dtype=torch.float64))
    loss.backward()
    assert abs(float(loss.detach()) - want_loss) < 1e-10
    for k in want:
        np.testing.assert_allclose(tp[k].grad.numpy(), want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jm = _module(cs231n, tmp_path, "jax", "cs231n_jax")
    jp = {k: jax.numpy.asarray(v) for k, v in p.items()}
    got = jax.grad(lambda q: jm.loss(q, X=jax.numpy.asarray(X), Y=jax.numpy.asarray(Y), reg=0.05))(jp)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_a_matrix_of_ones_in_a_product_is_written_one_one_transposed(cs231n):
    """The softmax's adjoint holds 𝟏𝟏ᵀ Yᵀ (C×C ones times Yᵀ): written 𝟏 Yᵀ it read as a vector of
    ones times a C×N matrix, which does not fit (the write-up says 𝟏 is a vector of ones)."""
    assert repr(cs231n.adjoint("z_P")) == "δz_P = -1/N Yᵀ + 1/N P ⊙ 1 1ᵀ Yᵀ"
    tex = render(cs231n, "tex", "cs231n_two_layer.sdm")
    assert r"\mathbf{P} \odot \mathbf{1} {\mathbf{1}}^{\top} {\mathbf{Y}}^{\top}" in tex
    assert r"\mathbf{P} \odot \mathbf{1} {\mathbf{Y}}^{\top}" not in tex


@pytest.mark.parametrize("fmt", ["tex", "md"])
def test_the_gradient_descent_sentence_does_not_reuse_a_name_of_the_model(cs231n, fmt):
    """P ← P − η ∂L/∂P named the model's softmax output P, not a generic parameter."""
    text = render(cs231n, fmt, "cs231n_two_layer.sdm")
    sentence = text[text.index("Gradient descent"):]
    assert r"\boldsymbol{\theta} \leftarrow \boldsymbol{\theta}" in sentence
    assert r"\mathbf{P} \leftarrow" not in sentence


def test_the_gradient_descent_letter_steps_aside_for_a_theta_in_the_model(tmp_path):
    src = tmp_path / "theta.sdm"
    src.write_text("dim n\ninput x: n\nparam theta: n\nloss L = sum(theta * x) + sum(theta * theta)\n",
                   encoding="utf-8")
    d = symderiv.derive(symderiv.load(src))
    tex = render(d, "tex", "theta.sdm")
    sentence = tex[tex.index("Gradient descent"):]
    assert r"\boldsymbol{\vartheta} \leftarrow" in sentence


ROW_LAYOUT = "dim N, D, H\ninput X: (N, D)\nparam W1: (D, H)\nparam b1: H\n"


@pytest.mark.parametrize("loss, column, hint", [
    ("sum(relu(X @ W1 + b1))", 26, "; for b1 in every row, write ones(N) @ b1.T"),
    ("sum(X @ W1 + b1.T)", 21, "; for the row b1.T in every row, write ones(N) @ b1.T"),
    ("sum(b1 - X @ W1)", 17, "; for b1 in every row, write ones(N) @ b1.T"),
])
def test_a_bias_added_to_every_row_says_how_to_write_it(tmp_path, capsys, loss, column, hint):
    """CS231n writes X W1 + b1 (rows are examples); the language adds a column to every column only,
    so the mismatch says what to write instead, at the operator, with exit status 2."""
    from symderiv.cli import main
    src = tmp_path / "rows.sdm"
    src.write_text(ROW_LAYOUT + f"loss L = {loss}\n", encoding="utf-8")
    assert main(["show", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{src}:5:{column}: error: shape mismatch in ")
    assert err.splitlines()[0].endswith(hint)
    assert "Traceback" not in err


def test_the_row_hint_is_not_given_where_no_row_vector_fits(tmp_path, capsys):
    from symderiv.cli import main
    src = tmp_path / "rows.sdm"
    src.write_text(ROW_LAYOUT + "loss L = sum(X @ W1 + ones(H) @ b1.T)\n", encoding="utf-8")
    assert main(["show", str(src)]) == 2
    assert capsys.readouterr().err.splitlines()[0].endswith("but ones(H) @ b1.T is (H, H)")


def attention_reference(Q, K, V):
    """The problem's chain: dP = 1 Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = dS K / √d_k."""
    d_k = Q.shape[1]
    S = Q @ K.T / np.sqrt(d_k)
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dP = np.ones((Q.shape[0], V.shape[1])) @ V.T
    dS = P * (dP - (P * dP).sum(axis=1, keepdims=True))
    return (P @ V).sum(), {"Q": dS @ K / np.sqrt(d_k), "K": dS.T @ Q / np.sqrt(d_k),
                           "V": P.T @ np.ones((Q.shape[0], V.shape[1]))}


@pytest.fixture(scope="module")
def attention_head():
    return symderiv.derive(symderiv.load(COURSES / "attention_head.sdm"))


def test_attention_head_equals_the_problems_chain(attention_head, tmp_path):
    rng = np.random.default_rng(4)
    p = {"Q": rng.normal(size=(3, 5)), "K": rng.normal(size=(4, 5)), "V": rng.normal(size=(4, 2))}
    want_loss, want = attention_reference(**p)
    loss, got = _module(attention_head, tmp_path, "py", "attention_head_np").loss_and_gradients(p)
    assert abs(loss - want_loss) < 1e-10
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_a_softmax_under_a_transpose_is_written_with_the_name_of_its_value(attention_head):
    """P = softmax(Sᵀ)ᵀ: the softmax's value is Pᵀ, and its adjoint says so, instead of writing
    softmax(Sᵀ) out three times."""
    closed = repr(attention_head.adjoint("S"))
    # the problem's P ⊙ (dP − rowsum(P ⊙ dP)) with dP = δy Vᵀ: δP is inlined into the adjoint of the
    # softmax's argument, as the column form inlines it (examples/attention.sdm: δS = A ⊙ (Vᵀ δO − …))
    assert closed == "δS = P ⊙ (δy Vᵀ − (P ⊙ δy Vᵀ) 1 1ᵀ)"
    assert "softmax" not in closed


def test_the_transpose_of_a_hadamard_product_of_transposes_takes_them_off(tmp_path):
    """(λ 1ᵀ ⊙ wᵀ)ᵀ is λ w: a ridge penalty written lam * w.T @ w has the gradient 2 λ w; and
    (r ⊙ h)ᵀ, whose factors have no transpose to take off, is kept as it is."""
    src = tmp_path / "ridge.sdm"
    src.write_text("dim n, d\ninput X: (n, d)\ntarget y: n\ninput lam: scalar\nparam w: d\nparam b: scalar\n"
                   "r = X @ w + b - y\nloss L = r.T @ r / n + lam * w.T @ w\n", encoding="utf-8")
    d = symderiv.derive(symderiv.load(src))
    assert repr(d.gradient("w")) == "∂L/∂w = 2 lam w + Xᵀ δr"
    from .helpers import EXAMPLES
    gru = symderiv.derive(symderiv.load(EXAMPLES / "gru_classifier.sdm"))
    assert repr(gru.gradient("U_n")) == "∂L/∂U_n = Σ_t δa_{n,t} (r_t ⊙ h_{t−1})ᵀ"
    m = _module(d, tmp_path, "py", "ridge_courses")
    rng = np.random.default_rng(8)
    X, y, w, b = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=3), np.float64(0.4)
    r = X @ w + b - y
    _, got = m.loss_and_gradients({"w": w, "b": b}, X=X, y=y, lam=0.3)
    np.testing.assert_allclose(got["w"], 2 * X.T @ r / 5 + 2 * 0.3 * w, rtol=1e-12)
    np.testing.assert_allclose(got["b"], 2 * r.sum() / 5, rtol=1e-12)


def test_lstm_classifier_equals_torch_autograd_of_its_equations(tmp_path):
    torch = pytest.importorskip("torch")
    d = symderiv.derive(symderiv.load(COURSES / "lstm_classifier.sdm"))
    m = _module(d, tmp_path, "py", "lstm_classifier_np")
    n_x, n_h, k = 3, 4, 3

    def reference(p, x, y):
        h, c = torch.zeros(n_h, dtype=torch.float64), torch.zeros(n_h, dtype=torch.float64)
        for t in range(x.shape[0]):
            v = torch.cat([h, x[t]])
            f = torch.sigmoid(p["W_f"] @ v + p["b_f"])
            i = torch.sigmoid(p["W_i"] @ v + p["b_i"])
            g = torch.tanh(p["W_c"] @ v + p["b_c"])
            o = torch.sigmoid(p["W_o"] @ v + p["b_o"])
            c = f * c + i * g
            h = o * torch.tanh(c)
        return -(y * torch.log_softmax(p["W_y"] @ h + p["b_y"], 0)).sum()

    rng = np.random.default_rng(5)
    for T in (1, 2, 7):
        p = {name: value + 0.3 * rng.normal(size=value.shape)
             for name, value in m.init_params({"n_x": n_x, "n_h": n_h, "K": k}, seed=T).items()}
        x, ys = rng.normal(size=(T, n_x, 2)), np.eye(k)[rng.integers(0, k, size=2)].T  # a batch of 2
        loss, got = m.loss_and_gradients(p, x=x, y=ys)
        want_loss, want = 0.0, {name: 0.0 for name in p}
        for b in range(2):
            tp = {name: torch.tensor(v, requires_grad=True) for name, v in p.items()}
            one = reference(tp, torch.tensor(x[..., b]), torch.tensor(ys[:, b]))
            one.backward()
            want_loss += float(one.detach())
            want = {name: want[name] + tp[name].grad.numpy() for name in p}
        assert abs(loss - want_loss) < 1e-10, T
        for name in p:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=f"{name}, T={T}")


def attn_block_reference(p, X, Y):
    """The loss of LayerNorm(X + W_V X A), A = softmax((W_K X)ᵀ W_Q X / √d_k) by column, in NumPy."""
    d_k = p["W_Q"].shape[0]
    S = (p["W_K"] @ X).T @ (p["W_Q"] @ X) / np.sqrt(d_k)
    A = np.exp(S - S.max(axis=0))
    A /= A.sum(axis=0)
    Z = X + p["W_V"] @ X @ A
    E = Z - Z.mean(axis=0)
    N = E / np.sqrt((E ** 2).mean(axis=0) + 1e-5)
    H = p["g"][:, None] * N + p["c"][:, None]
    return 0.5 * np.sum((H - Y) ** 2)


@pytest.mark.parametrize("backend", ["py", "torch", "jax"])
def test_attn_block_with_a_batch_equals_central_differences_of_its_equations(tmp_path, backend):
    """The outer products 1 μᵀ of a layer norm over columns are each example's own: they were summed
    over the batch (and the forward pass raised unbatched), in every back end."""
    from .helpers import central_differences
    d = symderiv.derive(symderiv.load(COURSES / "attn_block.sdm"))
    m = _module(d, tmp_path, backend, f"attn_block_{backend}")
    rng = np.random.default_rng(6)
    B = 3
    p = {"W_Q": rng.normal(size=(2, 4)), "W_K": rng.normal(size=(2, 4)), "W_V": rng.normal(size=(4, 4)),
         "g": rng.normal(size=4), "c": rng.normal(size=4)}
    X, Y = rng.normal(size=(4, 3, B)), rng.normal(size=(4, 3, B))

    def ref(q):
        return sum(attn_block_reference(q, X[..., b], Y[..., b]) for b in range(B))

    for data in ({"X": X[..., 0], "Y": Y[..., 0]}, {"X": X, "Y": Y}):
        batched = data["X"].ndim == 3
        want_loss = ref(p) if batched else attn_block_reference(p, data["X"], data["Y"])
        if backend == "torch":
            torch = pytest.importorskip("torch")
            loss, got = m.loss_and_gradients({k: torch.tensor(v) for k, v in p.items()},  # batch first
                                             **{k: torch.tensor(np.moveaxis(v, -1, 0) if batched else v)
                                                for k, v in data.items()})
            loss, got = float(loss), {k: v.numpy() for k, v in got.items()}
        elif backend == "jax":
            jax = pytest.importorskip("jax")
            jax.config.update("jax_enable_x64", True)
            loss, got = m.loss_and_gradients({k: jax.numpy.asarray(v) for k, v in p.items()},
                                             **{k: np.moveaxis(v, -1, 0) if batched else v for k, v in data.items()})
            loss, got = float(loss), {k: np.asarray(v) for k, v in got.items()}
        else:
            loss, got = m.loss_and_gradients(p, **data)
        assert abs(loss - want_loss) < 1e-9 * max(1.0, abs(want_loss)), batched
        one = ref if batched else (lambda q, x=data: attn_block_reference(q, x["X"], x["Y"]))
        for k in p:
            np.testing.assert_allclose(got[k], central_differences(one, p, k), rtol=1e-6, atol=1e-7,
                                       err_msg=f"{k}, batched={batched}")


PER_STEP_OUTER = {
    # a layer norm's centring of a matrix at every step: 1 μ_tᵀ in the forward pass and 1 δμ_tᵀ in δZ_t
    "centred": ("dim d, n\ntime t = 1..T\ninput X[t]: (d, n)\nparam W: (d, d)\nZ[t] = W @ X[t]\n"
                "mu[t] = mean(Z[t], axis=0)\nE[t] = Z[t] - ones(d) @ mu[t].T\n"
                "loss L = Sum(sum(E[t] * E[t]), (t, 1, T))\n",
                lambda p, X: sum(np.sum((p["W"] @ x - (p["W"] @ x).mean(axis=0)) ** 2) for x in X)),
    # a datum's row spread over the rows of a param at every step
    "spread": ("dim d, n\ntime t = 1..T\ninput X[t]: n\nparam W: (d, n)\n"
               "E[t] = W - ones(d) @ X[t].T\nloss L = Sum(sum(E[t] * E[t]), (t, 1, T))\n",
               lambda p, X: sum(np.sum((p["W"] - x[None, :]) ** 2) for x in X)),
}


@pytest.mark.parametrize("case", sorted(PER_STEP_OUTER))
def test_an_outer_product_at_every_step_is_that_steps_own(tmp_path, case):
    """1 μ_tᵀ was printed as Σ_t Σ_b (the form of a weight gradient's δ_t x_tᵀ): the forward pass
    raised, and δZ_t was the sum over the batch spread to every step."""
    from .helpers import central_differences
    source, reference = PER_STEP_OUTER[case]
    path = tmp_path / f"{case}.sdm"
    path.write_text(source, encoding="utf-8")
    m = _module(symderiv.derive(symderiv.load(path)), tmp_path, "py", f"outer_{case}")
    rng = np.random.default_rng(7)
    d, n = 3, 2
    p = {"W": rng.normal(size=(d, d) if case == "centred" else (d, n))}
    for T in (1, 2, 7):
        shape = (T, d, n) if case == "centred" else (T, n)
        X = rng.normal(size=shape + (3,))  # a batch of 3
        for data in (X[..., 0], X):
            per = [data] if data.ndim == len(shape) else [data[..., b] for b in range(3)]
            want = sum(reference(p, x) for x in per)
            loss, got = m.loss_and_gradients(p, X=data)
            assert abs(loss - want) < 1e-10 * max(1.0, abs(want)), (T, data.ndim)
            fd = central_differences(lambda q, examples=per: sum(reference(q, x) for x in examples), p, "W")
            np.testing.assert_allclose(got["W"], fd, rtol=1e-6, atol=1e-7, err_msg=f"T={T}, {data.ndim}")


def test_a_negative_fraction_in_front_is_a_minus_and_a_fraction():
    """δs_t of the layer-norm RNN begins −½ (…): it was typeset \\frac{-1}{2}, and -1/2 with a hyphen."""
    from .helpers import EXAMPLES
    d = symderiv.derive(symderiv.load(EXAMPLES / "layernorm_rnn.sdm"))
    assert repr(d.adjoint("s")).startswith("δs_t = −1/2 (")
    tex = render(d, "tex", "layernorm_rnn.sdm")
    assert r"\delta s_t &= -\frac{1}{2} \left(" in tex and r"\frac{-1}{2}" not in tex


@pytest.mark.parametrize("backend", ["py", "torch", "jax"])
def test_the_log_of_a_row_softmax_is_computed_from_its_logits(tmp_path, backend):
    """The CS231n net with its row softmax written P = softmax(S.T).T and cross_entropy(Y, P): log P
    was the log of the probabilities, −inf, and a loss of inf, once a score is 1000 below its row's
    largest; it is log_softmax(Sᵀ)ᵀ, finite and right."""
    d = symderiv.derive(symderiv.load(COURSES / "two_layer_net.sdm"))
    p, X, y, Y = _cs231n_point(seed=9)
    p["W2"] = p["W2"] * 1e3
    want, _ = cs231n_reference(p, X, y, 0.05)
    m = _module(d, tmp_path, backend, f"two_layer_log_{backend}")
    if backend == "torch":
        torch = pytest.importorskip("torch")
        got = float(m.loss({k: torch.tensor(v) for k, v in p.items()}, X=torch.tensor(X), Y=torch.tensor(Y),
                           reg=0.05))
    elif backend == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        got = float(m.loss({k: jax.numpy.asarray(v) for k, v in p.items()}, X=X, Y=Y, reg=0.05))
    else:
        with np.errstate(divide="raise", invalid="raise"):
            got = float(m.loss(p, X=X, Y=Y, reg=0.05))
    assert np.isfinite(want) and want > 100  # a score far below its row's largest
    assert np.isfinite(got) and abs(got - want) <= 1e-10 * abs(want)


def _course_gradients(d, tmp_path, backend, name, p, X, Y, reg):
    """The loss and the gradients from the module of ``backend``, as NumPy arrays (PyTorch's and
    JAX's autograd run the derived backward pass that the module registers)."""
    m = _module(d, tmp_path, backend, name)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
        loss = m.loss(tp, X=torch.tensor(X), Y=torch.tensor(Y), reg=torch.tensor(reg, dtype=torch.float64))
        loss.backward()
        return float(loss.detach()), {k: tp[k].grad.numpy() for k in p}
    if backend == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        jp = {k: jax.numpy.asarray(v) for k, v in p.items()}
        loss, grads = jax.value_and_grad(lambda q: m.loss(q, X=jax.numpy.asarray(X), Y=jax.numpy.asarray(Y),
                                                          reg=reg))(jp)
        return float(loss), {k: np.asarray(v) for k, v in grads.items()}
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        loss, got = m.loss_and_gradients(p, X=X, Y=Y, reg=reg)
    return float(loss), got


TWO_LAYER_NET_VARIANTS = {
    # the scores inside the softmax: P = softmax((H1 @ W2 + ones(N) @ b2.T).T).T
    "unnamed": {"S  = H1 @ W2 + ones(N) @ b2.T\n": "",
                "P  = softmax(S.T).T\n": "P  = softmax((H1 @ W2 + ones(N) @ b2.T).T).T\n"},
    # the transposed scores named: Z = S.T, P = softmax(Z).T
    "z": {"P  = softmax(S.T).T\n": "Z  = S.T\nP  = softmax(Z).T\n"},
}


def _two_layer_net_variant(tmp_path, variant):
    """two_layer_net with its row softmax written another way (TWO_LAYER_NET_VARIANTS)."""
    text = (COURSES / "two_layer_net.sdm").read_text()
    for old, new in TWO_LAYER_NET_VARIANTS[variant].items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"two_layer_net_{variant}.sdm"
    path.write_text(text)
    return path


def _two_layer_net_unnamed_scores(tmp_path):
    return _two_layer_net_variant(tmp_path, "unnamed")


@pytest.mark.parametrize("backend", ["py", "torch", "jax"])
@pytest.mark.parametrize("model", ["two_layer_net", "two_layer_net_unnamed", "two_layer_net_z", "cs231n_two_layer"])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_the_course_gradients_with_a_row_softmax_equal_the_course_backward_pass(tmp_path, backend, model, scale):
    """Rows are examples, the softmax of each row written softmax(S.T).T (two_layer_net; the scores
    inside it in two_layer_net_unnamed) or softmax(S.T) with cross_entropy(Y.T, P) (cs231n_two_layer):
    the gradients equal CS231n's backward pass (dscores = (P − 1[y]) / N, from scores shifted by
    their row's largest), also with W2 scaled by 1000, where scores a thousand apart make some
    probabilities 0 in float64. The row form went through δP = −Y ⊘ P there: inf and nan."""
    variant = model.removeprefix("two_layer_net_")
    path = _two_layer_net_variant(tmp_path, variant) if variant in TWO_LAYER_NET_VARIANTS else COURSES / f"{model}.sdm"
    d = symderiv.derive(symderiv.load(path))
    p, X, y, Y = _cs231n_point(seed=4)
    p["W2"] = p["W2"] * scale
    want_loss, want = cs231n_reference(p, X, y, 0.05)
    if scale > 1:
        s = np.maximum(0, X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        assert np.ptp(s, axis=1).min() > 700 and (np.exp(s - s.max(axis=1, keepdims=True)) == 0).any()
    loss, got = _course_gradients(d, tmp_path, backend, f"{model}_{backend}_{int(scale)}", p, X, Y, 0.05)
    assert np.isfinite(loss) and abs(loss - want_loss) <= 1e-10 * max(1.0, abs(want_loss))
    for k in want:
        assert np.isfinite(got[k]).all(), k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-9 * scale, err_msg=k)


def test_the_row_softmax_fuses_with_cross_entropy_in_the_write_up(tmp_path):
    """δS of the row form is the fused (P ⊙ Y 1 1ᵀ − Y) / N (the textbook's (P − Y) / N for rows of Y
    that sum to one), as the column form's δz_P is: the write-up shows δP = −Y ⊘ P as the step
    it comes from, as the column form does, and its summary and the back ends hold no division by P."""
    d = symderiv.derive(symderiv.load(COURSES / "two_layer_net.sdm"))
    assert repr(d.adjoint("S")) == "δS = -1/N Y + 1/N P ⊙ Y 1 1ᵀ"
    assert [a.name for a in d.named][:1] == ["S"]  # δP is inlined, not a step of the backward pass
    # the scores inside the softmax: they are named as its pre-activation, row-shaped, and fuse alike
    unnamed = symderiv.derive(symderiv.load(_two_layer_net_unnamed_scores(tmp_path)))
    assert unnamed.preactivations == {"P": "z_P", "H1": "z_H_1"}
    assert repr(unnamed.adjoint("z_P")) == "δz_P = -1/N Y + 1/N P ⊙ Y 1 1ᵀ"
    assert tuple(map(str, unnamed.adjoint("z_P").shape)) == ("N", "C")
    # softmax(Z)ᵀ of column scores Z = Sᵀ: Pᵀ ⊙ (−Y ⊘ P)ᵀ cancels as Pᵀ ⊙ (−Yᵀ ⊘ Pᵀ) does
    z = symderiv.derive(symderiv.load(_two_layer_net_variant(tmp_path, "z")))
    assert repr(z.adjoint("Z")) == "δZ = -1/N Yᵀ + 1/N Pᵀ ⊙ 1 1ᵀ Yᵀ"
    fused = (r"\delta \mathbf{S} &= - \frac{1}{N} \mathbf{Y} + \frac{1}{N} \mathbf{P} \odot \mathbf{Y} \mathbf{1} "
             r"{\mathbf{1}}^{\top}")
    tex = render(d, "tex", "two_layer_net.sdm")
    assert fused + r" \notag" in tex
    summary = tex[tex.index(fused + r" \notag"):]
    assert "oslash" not in summary
    md = render(d, "md", "two_layer_net.sdm")
    assert md[md.index(fused):].count("oslash") == 0
    for backend in ("py", "torch", "jax"):
        from symderiv.render.emit import write_outputs
        [path] = write_outputs(d, tmp_path / backend, [backend])
        code = path.read_text()
        # δP = −Y ⊘ P is not computed (it was: d_P = −1/N Y / P, then the softmax adjoint from it)
        assert "d_P" not in code and "d_S =" in code, backend
