"""Outer products in real BPTT write-ups: the weights on the wrong side, and a power off by one.

sriram7797/ML_techniques, "Basics of Neural Network/Backpropagation through time.ipynb"
(tests/data/wild/sriram_bptt, cells 3, 10, 12, 13 and 17) writes every matrix gradient as two
column vectors side by side, ``(\\hat{y_4} - y_4).s_4`` for ∂E_4/∂V, and, for ∂E_4/∂W, puts the
powers of W on the earlier states, ``δs_4 (s_3 + W s_2 + W W s_1 + W W W s_0)``, where the
chain rule carries the error back through Wᵀ: Σ_k (Wᵀ)^{4−k} δs_4 s_{k−1}ᵀ.

The verdicts below were decided by hand from the model's equations (s_t = W s_{t−1} + U x_t,
z_t = V s_t, ŷ_t = softmax(z_t), E = Σ_t E_t) and are checked numerically, without symderiv,
by tests/data/wild/sriram_bptt/check.py.  The side-by-side vectors are never read as an
outer product: the claim as written is not defined, a ``transpose`` repairs it; the repair
that moves the weights is tried only on a claim already found wrong, so it never passes one.
"""

from functools import cache

import symderiv
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify

from .helpers import ROOT

MODEL = ROOT / "tests" / "data" / "wild" / "sriram_bptt" / "model.sdm"
DECLARED = "Let $E = \\sum_t E_t$.\n\n"


@cache
def derivation():
    return symderiv.derive(symderiv.load(MODEL))


def judged(tmp_path, *claims: str):
    path = tmp_path / "writeup.md"
    path.write_text(DECLARED + "\n\n".join(f"$${c}$$" for c in claims) + "\n", encoding="utf-8")
    d = derivation()
    return verify(d, read_claims(path, d)).verdicts


DW = r"\frac{\partial E_4}{\partial W}= "
DU = r"\frac{\partial E_4}{\partial U}= "
D4 = r"\frac{\partial E_4}{\partial s_4}"

# cell 10, as published
CELL_10 = DW + r"\frac{\partial E_4}{\partial s_4}(s_3 + W.s_2 + W.W.s_1 + W.W.W.s_0)"
# cell 12, as published: ∂E_4/∂s_4 written (ŷ_4 − y_4).V, a row (cell 11's claim, a transpose)
CELL_12 = DW + r"(\hat{y_4} - y_4).V.(s_3 + W.s_2 + W.W.s_1 + W.W.W.s_0)"
# cell 13, as published: and the power of W one too small (W^{-1} at j = 4)
CELL_13 = DW + r"(\hat{y_4} - y_4).V.\sum_{j=1}^4 W^{4-j-1}.s_{j-1}"
# cell 17, as published: W x_3 cannot be multiplied at all (W is n_s × n_s, x_3 has n_x entries)
CELL_17 = DU + r"\frac{\partial E_4}{\partial s_4}(x_4 + W.x_3 + W.W.x_2 + W.W.W.x_1)"
# cell 3, as published: two columns side by side
CELL_3 = r"\frac{\partial E_4}{\partial V} = (\hat{y_4} - y_4).s_4"


def test_the_weights_on_the_wrong_side_of_an_outer_product(tmp_path):
    v, = judged(tmp_path, CELL_10)
    assert (v.target, v.verdict, v.diagnosis) == ("W", "incorrect", ["transpose", "wrong-factor"])
    assert "needs a transpose (an outer product)" in v.message
    assert "belongs on the error signal, transposed" in v.message


def test_the_repairs_the_diagnosis_names_are_right(tmp_path):
    # the transpose alone (the outer product): still wrong, the weights act on the states
    outer = DW + D4 + r"(s_3 + W s_2 + W W s_1 + W W W s_0)^T"
    # the weights moved onto the error signal, transposed: the term of step 4
    moved = DW + (D4 + r" s_3^T + W^T " + D4 + r" s_2^T + W^T W^T " + D4 + r" s_1^T + W^T W^T W^T " + D4
                  + r" s_0^T")
    got = [(v.verdict, v.diagnosis) for v in judged(tmp_path, outer, moved)]
    assert got == [("incorrect", ["wrong-factor"]), ("per-step", [])]


def test_an_error_signal_written_as_a_row_and_a_power_off_by_one(tmp_path):
    got = [(v.verdict, v.diagnosis) for v in judged(tmp_path, CELL_12, CELL_13)]
    assert got == [("incorrect", ["transpose", "wrong-factor"])] * 2
    assert "every power of $W$ in the sum is one too small" in judged(tmp_path, CELL_13)[0].message
    # the power alone off by one, the rest right
    power = DW + r"\sum_{j=1}^4 (W^{\top})^{4-j-1} " + D4 + r" s_{j-1}^{\top}"
    right = power.replace("4-j-1", "4-j")
    got = [(v.verdict, v.diagnosis) for v in judged(tmp_path, power, right)]
    assert got == [("incorrect", ["wrong-factor"]), ("per-step", [])]


def test_weights_that_cannot_multiply_the_vector_at_all_are_a_shape_error(tmp_path):
    v, = judged(tmp_path, CELL_17)
    assert (v.target, v.verdict, v.diagnosis) == ("U", "incorrect", ["wrong-factor", "shape"])
    assert "cannot multiply $W$" in v.message


def test_two_columns_side_by_side_are_never_read_as_an_outer_product(tmp_path):
    """The outer reading must not be taken: (ŷ_4 − y_4) s_4 is not defined as written, and
    is a missing transpose, not a pass; with no weights to move, no wrong factor either."""
    got = [(v.verdict, v.diagnosis) for v in judged(tmp_path, CELL_3, CELL_3.replace(".s_4", "s_4^T"))]
    assert got == [("incorrect", ["transpose"]), ("per-step", [])]
    # δs_4 s_3, the direct term of W only, side by side: wrong (the paths through s_3, s_2, s_1
    # are missing), and no weights to move
    v, = judged(tmp_path, DW + D4 + " s_3")
    assert (v.verdict, v.diagnosis) == ("incorrect", ["shape"])
    assert "belongs on the error signal" not in v.message


def test_weights_on_the_right_side_written_in_the_other_order_are_not_moved(tmp_path):
    """A right claim whose weights already act on the error signal passes, and a sign slip in
    it is a sign slip (the cheapest repair), not weights on the wrong side."""
    right = (DW + D4 + r" s_3^T + W^T " + D4 + r" s_2^T + W^T W^T " + D4 + r" s_1^T + W^T W^T W^T " + D4
             + r" s_0^T")
    signed = right.replace(r" + W^T ", r" - W^T ", 1)
    got = [(v.verdict, v.diagnosis) for v in judged(tmp_path, right, signed)]
    assert got == [("per-step", []), ("incorrect", ["sign"])]
