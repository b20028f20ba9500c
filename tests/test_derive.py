"""The closed forms of the derivation engine, checked for their meaning and their numbers."""

import numpy as np
import pytest
from sympy import HadamardProduct, OneMatrix, Transpose

import symderiv
import symderiv.render.printing
from symderiv.check.evaluate import evaluate, random_point
from symderiv.ir.expr import At, Delta, TimeSum, matmul, sub, transpose

from .helpers import EXAMPLES

SEED_DIMS = dict(n_x=3, n_a=4, n_h=5, n_o=2, C=3)


@pytest.fixture(scope="module")
def seed():
    return symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))


def sym(d, name):
    return d.model[name].symbol


def at(d, name, k=0):
    return At(sym(d, name), k)


def delta(d, name, k=0):
    return At(Delta(sym(d, name)), k)


def test_softmax_cross_entropy_fuses_to_prediction_minus_target(seed):
    assert seed.adjoint("h_out") == sub(at(seed, "r_hat"), at(seed, "r"))


def test_hidden_adjoint_has_the_bptt_term(seed):
    adj = seed.adjoints["h"]
    terms = {t.offset: t.expr for t in adj.closed_terms}
    assert terms == {
        0: matmul(transpose(sym(seed, "W")), delta(seed, "z_o")),
        1: matmul(transpose(sym(seed, "V")), delta(seed, "z_h", 1)),
    }


def test_activation_derivative_is_written_through_the_output(seed):
    o = at(seed, "o")
    adj = seed.adjoint("z_o").expr
    assert isinstance(adj, HadamardProduct)  # factors in any order: ⊙ commutes
    assert set(adj.args) == {o, sub(OneMatrix(*o.shape), o),
                             matmul(transpose(sym(seed, "W_out")), delta(seed, "h_out"))}


def test_recurrent_weight_gradient_sums_over_time(seed):
    assert seed.gradient("V") == TimeSum(matmul(delta(seed, "z_h"), Transpose(at(seed, "h", -1))))


def test_the_inlined_adjoints_are_the_single_chain_rule_steps(seed):
    assert not seed.adjoints["o"].named and not seed.adjoints["r_hat"].named
    assert seed.adjoint("o") == matmul(transpose(sym(seed, "W_out")), delta(seed, "h_out"))
    assert symderiv.render.printing.unicode(seed.model, seed.adjoint("r_hat")) == "−r_t ⊘ r̂_t"


CE_TEMPLATE = """
dim n, C
time t = 1..T
input x[t]: n
target r[t]: C{dist}
param W: (C, n)
z[t] = W @ x[t]
{rest}
"""


@pytest.mark.parametrize("dist, rest, expected", [
    (", distribution", "p[t] = softmax(z[t])\nloss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))", "p_t − r_t"),
    (", distribution", "loss L = -Sum(r[t].T @ log(softmax(z[t])), (t, 1, T))", "softmax(z_t) − r_t"),
    ("", "p[t] = softmax(z[t])\nloss L = Sum(cross_entropy(r[t], p[t]), (t, 1, T))", "p_t 1ᵀ r_t − r_t"),
    ("", "loss L = Sum(-(r[t].T @ log_softmax(z[t])), (t, 1, T))", "softmax(z_t) 1ᵀ r_t − r_t"),
])
def test_fused_cross_entropy(dist, rest, expected):
    d = symderiv.derive(symderiv.parse(CE_TEMPLATE.format(dist=dist, rest=rest), "ce.sdm"))
    assert symderiv.render.printing.unicode(d.model, d.adjoint("z")) == expected


def _central_differences(d, dims, T, params, data, eps=1e-6):
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            g[idx] = (evaluate(d, dims, T, plus, data).loss - evaluate(d, dims, T, minus, data).loss) / (2 * eps)
        grads[name] = g
    return grads


def test_seed_gradients_match_central_differences(seed):
    params, data = random_point(seed.model, SEED_DIMS, 4, seed=3)
    exact = evaluate(seed, SEED_DIMS, 4, params, data).gradients
    fd = _central_differences(seed, SEED_DIMS, 4, params, data)
    for name in params:
        err = np.abs(exact[name] - fd[name]).max() / max(np.abs(fd[name]).max(), 1e-12)
        assert err < 1e-6, name


def test_derivation_renders_in_jupyter(seed):
    text = seed._repr_latex_()
    assert text.startswith("$$") and r"\sum_{t=1}^{T}" in text and r"\delta \mathbf{z}_{h,t}" in text


def test_derivation_is_fast(seed):
    # A smoke bound only; the benchmark in benchmarks/ measures it properly.
    assert seed.seconds < 5
