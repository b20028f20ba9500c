"""``symderiv verify`` on the seed homework: every claim of its derivation, one by one.

The homework (tests/data/seed_homework.txt, a copy of the seed) has real mistakes: a sign,
missing transposes, no backpropagation-through-time term; its parameter gradients are
written per step.  It also spells names its own way (``r_t`` unbold, ``\\texttt{out}``,
``\\delta\\mathbf{y}_o`` without a step, ``(\\mathbf{h}_t)_j``), defines ``σ'`` and the
pre-activations with ``\\triangleq``, and has prose inside ``cases`` rows.
"""

import hashlib

import pytest

from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify

from .helpers import ROOT

SEED = ROOT / "tests" / "data" / "seed_homework.txt"
#: SHA-256 of the seed homework as the project received it (seeds/000_e8231d0fed9d608c.txt,
#: outside the repository): the copy in tests/data must stay that file, byte for byte.
SEED_SHA256 = "377675b66623744f7b0d49ed9e90754a8ccfef9f2fcd60366fca7278563930f2"


@pytest.fixture(scope="module")
def report(seed_derivation):
    return verify(seed_derivation, read_claims(SEED, seed_derivation))


def claims_about(report, target, line=None):
    found = [v for v in report.verdicts if v.target == target and (line is None or v.line == line)]
    assert found, f"no claim about {target}" + (f" on line {line}" if line else "")
    return found


def only(report, target, line=None):
    found = claims_about(report, target, line)
    assert len(found) == 1, [v.text for v in found]
    return found[0]


def test_the_test_copy_is_the_seed():
    assert hashlib.sha256(SEED.read_bytes()).hexdigest() == SEED_SHA256


def test_every_derivation_claim_is_found(report):
    assert len(report.verdicts) == 29
    assert {v.line for v in report.verdicts} == {28, 30, 35, 44}  # the four displayed derivation blocks
    assert report.summary == {"correct": 6, "per-step": 16, "incorrect": 7, "unreadable": 0}


def test_the_output_gradient_has_the_wrong_sign(report):
    element, vector = claims_about(report, "r_hat[t][i]") + claims_about(report, "r_hat[t]")
    for v in (element, vector):
        assert (v.verdict, v.diagnosis) == ("incorrect", ["sign"])
    assert vector.text == r"\delta \hat{\mathbf{r}}_t = r_t \oslash \hat{\mathbf{r}}_t"
    assert vector.expected == r"-r_t \oslash \hat{\mathbf{r}}_t"  # r_t unbold, as the write-up spells it


def test_softmax_and_cross_entropy_give_prediction_minus_target(report):
    element = only(report, "h_out[t][i]")
    assert element.verdict == "correct"  # the last member of the element chain, after ⟺
    vectors = claims_about(report, "h_out[t]")
    assert [v.line for v in vectors] == [28, 35]  # in the derivation and in "Define" of the conclusion
    for v in vectors:
        assert v.verdict == "correct"
        assert v.text.endswith(r"= \hat{\mathbf{r}}_t - r_t")
        assert "symbolically" in v.message


def test_output_weights_need_a_transpose(report):
    v = only(report, "o[t]")
    assert v.text == r"\delta \mathbf{o}_t = \mathbf{W}^{(\text{out})} \delta \mathbf{h}_t^{(\text{out})}"
    assert (v.verdict, v.diagnosis) == ("incorrect", ["transpose"])
    assert r"\mathbf{W}^{(\text{out})}" in v.message
    assert v.expected == r"{\mathbf{W}^{(\text{out})}}^{\top} \delta \mathbf{h}^{(\text{out})}_t"


def test_hidden_state_misses_a_transpose_and_the_recurrent_term(report):
    v = only(report, "h[t]")
    assert v.text == r"\delta\mathbf{h}_{t} = \mathbf{W}\delta\mathbf{y}_{o}"
    assert (v.verdict, v.diagnosis) == ("incorrect", ["transpose", "missing-recurrent-term"])
    assert r"{\mathbf{V}}^{\top} \delta \mathbf{y}_{h,t+1}" in v.message
    assert v.expected == r"{\mathbf{W}}^{\top} \delta \mathbf{y}_{o,t} + {\mathbf{V}}^{\top} \delta \mathbf{y}_{h,t+1}"


def test_input_layer_adjoint_needs_a_transpose(report):
    v = only(report, "a_in[t]")
    assert (v.verdict, v.diagnosis) == ("incorrect", ["transpose"])
    assert v.expected == r"{\mathbf{U}}^{\top} \delta \mathbf{y}_{h,t}"


@pytest.mark.parametrize("name", ["z_o[t]", "z_h[t]", "z_a[t]"])
def test_the_defined_pre_activation_adjoints_are_right(report, name):
    v = only(report, name)  # δy ≜ ∂L/∂(…) = σ(…) ⊙ (1 − σ(…)) ⊙ δ(activation); δy_o written without its step
    assert v.verdict == "correct"


@pytest.mark.parametrize("target", ["b_out", "W_out[i, j]", "b_o", "W[i, j]", "b_h", "U[i, j]", "V[i, j]", "b_in",
                                    "W_in[i, j]"])
def test_parameter_claims_of_the_derivation_are_per_step(report, target):
    v = only(report, target, line=28 if target in ("b_out", "W_out[i, j]") else 30)
    assert v.verdict == "per-step"
    assert v.expected.startswith(r"\sum_{t=1}^{T}")


@pytest.mark.parametrize("target", ["b_out", "W_out[i, j]", "b_o", "W[i, j]", "U[i, j]", "V[i, j]", "W_in[i, j]"])
def test_conclusion_parameter_claims_are_per_step(report, target):
    v = only(report, target, line=44)
    assert (v.verdict, v.diagnosis) == ("per-step", [])
    assert "step t" in v.message


def test_conclusion_hidden_bias_misses_a_transpose_and_the_recurrent_term(report):
    v = only(report, "b_h", line=44)
    assert v.text.endswith(r"\odot \mathbf{W}\delta \mathbf{b}_{o}")
    assert (v.verdict, v.diagnosis) == ("incorrect", ["transpose", "missing-recurrent-term"])
    assert r"\delta \mathbf{h}_t" in v.message  # the recurrent term is named where it belongs
    # The correct form is written out, since the claim does not use δy_h.
    assert v.expected == (r"\sum_{t=1}^{T} \delta \mathbf{h}_t \odot \mathbf{h}_t"
                          r" \odot \left(\mathbf{1} - \mathbf{h}_t\right)")


def test_conclusion_input_bias_misses_a_transpose(report):
    v = only(report, "b_in", line=44)
    assert v.text.endswith(r"\odot \mathbf{U}\delta \mathbf{b}_{h}")
    assert (v.verdict, v.diagnosis) == ("incorrect", ["transpose"])
    assert r"{\mathbf{U}}^{\top} \delta \mathbf{y}_{h,t}" in v.expected


def test_element_claims_are_read_as_outer_products(report):
    v = only(report, "W[i, j]", line=44)  # δW_{i,j} = (h_t)_j · (δb_o)_i, with δb_o the step-t term δy_{o,t}
    assert v.verdict == "per-step"
    assert v.expected == r"\sum_{t=1}^{T} \delta \mathbf{y}_{o,t,i} \mathbf{h}_{t,j}"


def test_an_unreadable_derivation_row_is_reported_and_the_rest_judged(seed_derivation, tmp_path):
    """The element-sum row, as the last member of its chain, cannot be read: it says where and why."""
    text = SEED.read_text()
    cut = text.replace(r"\quad -\frac{r_{t,i}}{\hat{\mathbf{r}}_{t,i}} \hat{\mathbf{r}}_{t,i} \left(1 - "
                       r"\hat{\mathbf{r}}_{t,i} \right) \\ &= -r_{t,i} + \hat{\mathbf{r}}_{t,i} \sum_{j=1}^C "
                       r"r_{t,j} = \hat{\mathbf{r}}_{t,i} - r_{t,i} \quad \Longleftrightarrow \quad", r"\\")
    assert cut != text
    path = tmp_path / "homework.md"
    path.write_text(cut)
    report = verify(seed_derivation, read_claims(path, seed_derivation))
    v = only(report, "h_out[t][i]")
    assert v.verdict == "unreadable"
    assert v.message.startswith("line 28, column ")
    assert r"a sum over 'j \neq i' is not supported" in v.message
    assert v.expected  # the true value is still shown
    assert len(report.verdicts) == 29
    assert only(report, "h[t]").diagnosis == ["transpose", "missing-recurrent-term"]
