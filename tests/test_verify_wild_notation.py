"""Issue 14: the notations real write-ups use, read and judged.

Each category of the issue has a test built on a short quotation from a real public
write-up (cited above it: repository and path, or address), judged against a model written
from that write-up's own equations; the verdicts expected were decided by hand from those
equations.  Then the regressions (a merged row, a fixed step, ``\\cdot`` declared
elementwise, the half-derivative slips), the false-pass guard, the inputs (.ipynb, .html,
standard input) and a whole class judged at once.
"""

import csv
import io
import json
import shutil
from functools import cache

import pytest

import symderiv
from symderiv.claims import grading
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify
from symderiv.cli import main

from .helpers import EXAMPLES, ROOT

DATA = ROOT / "tests" / "data" / "issue14"
MODELS = ROOT / "tests" / "models"


@cache
def derivation(path):
    return symderiv.derive(symderiv.load(path))


def report(tmp_path, text: str, model, suffix: str = ".md", name: str = "writeup"):
    path = tmp_path / f"{name}{suffix}"
    path.write_text(text, encoding="utf-8")
    d = derivation(model)
    return verify(d, read_claims(path, d))


def judged(tmp_path, text: str, model, suffix: str = ".md"):
    return [(v.target, v.verdict, v.diagnosis) for v in report(tmp_path, text, model, suffix).verdicts]


def cli(capsys, *args):
    status = main(["verify", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------------------------------
# 1. A per-step loss in the numerator (and 8: a notebook's Markdown cells, b_{y_i}).

# KJO144/recurrent_neural_net, notes.ipynb (Markdown cells), "With respect to V and $b_y$".
KJO_CELL = r"""Putting these pieces together gives us
$$
\frac{\partial E_t}{\partial V_{ij}} = ({\hat{y}_t}_i - {y_t}_i) {h_t}_j.
$$

In a very similar way we find
$$
\frac{\partial E_t}{\partial b_{y_i}} = {\hat{y}_t}_i - {y_t}_i.
$$
"""


def _notebook(*cells: str) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": ["import numpy as np\n", "print('never run')\n"],
         "outputs": [], "execution_count": None}] + [
        {"cell_type": "markdown", "metadata": {}, "source": cell.splitlines(keepends=True)} for cell in cells]})


def test_a_per_step_loss_in_the_numerator_from_a_notebook(tmp_path):
    r = report(tmp_path, _notebook(KJO_CELL), DATA / "kjo_rnn.sdm", ".ipynb")
    # E = Σ_t E_t: ∂E_t/∂V is the derivative of the loss of step t alone, (ŷ_t − y_t) h_tᵀ, a
    # per-step term (the gradient sums it over t)
    assert [(v.target, v.verdict) for v in r.verdicts] == [("V[i, j]", "per-step"), ("b_y[i]", "per-step")]
    for v in r.verdicts:
        assert "L = Σ_t L_t" in v.message and "step-t loss" in v.message
    assert any("does not declare (assumed)" in n for n in r.notes)


def test_a_per_step_loss_declared_sum_and_the_step_t_loss_alone(tmp_path):
    # KJO144/recurrent_neural_net, notes.ipynb: "Let's pick a time period $t$ and consider its
    # contribution to the loss ... $E_t$"; the sum is declared as E = \sum_t E_t.
    text = r"""$$E = \sum_t E_t$$
$$\frac{\partial E_t}{\partial h_t} = V^T (\hat{y}_t - y_t)$$
$$\frac{\partial E}{\partial h_t} = V^T (\hat{y}_t - y_t)$$
"""
    r = report(tmp_path, text, DATA / "kjo_rnn.sdm")
    # ∂E_t/∂h_t has no path through h_{t+1}: right for E_t, while for E the BPTT term is missing
    assert [(v.target, v.verdict, v.diagnosis) for v in r.verdicts] == [
        ("h[t]", "correct", []), ("h[t]", "incorrect", ["missing-recurrent-term"])]
    assert "the loss of step t alone" in r.verdicts[0].message
    assert any("as the write-up declares (line 1)" in n for n in r.notes)


# ---------------------------------------------------------------------------------------
# 2. Time as a superscript (and 8: \nabla, a loss at one step L^{(t)}).

# https://compphysics.github.io/MachineLearning/doc/pub/week45/html/._week45-bs062.html
# ("Back propagation in time in equations"), the final step written τ.
COMPPHYSICS = r"""\begin{align*} (\nabla_{ \mathbf{y}^{(t)}} \mathcal{L})_{i} &= \frac{\partial \mathcal{L}}{\partial L^{(t)}}\frac{\partial L^{(t)}}{\partial y_{i}^{(t)}}, \notag\\ \nabla_{\mathbf{h}^{(\tau)}} \mathcal{L} &= \mathbf{V}^\mathsf{T}\nabla_{ \mathbf{y}^{(\tau)}} \mathcal{L}. \end{align*}"""  # noqa: E501


def test_time_as_a_superscript_and_nabla(tmp_path):
    assert judged(tmp_path, COMPPHYSICS, DATA / "goodfellow_rnn.sdm") == [
        ("y[t][i]", "correct", []), ("h[tau]", "correct", [])]


@pytest.mark.parametrize("written", [r"h^t", r"h^{t}", r"h^{(t)}", r"h^{<t>}", r"\mathbf{h}^{\langle t \rangle}"])
def test_every_way_of_writing_the_step_above(tmp_path, written):
    nxt = written.replace("t", "t+1").replace("\\langle t+1 \\rangle", "\\langle t+1 \\rangle")
    text = f"$$\\delta {written} = W^T \\delta y_{{o}}^{{t}} + V^T \\delta y_h^{{t+1}}$$\n"
    assert nxt  # (the next step is written the ordinary way inside the claim)
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [("h[t]", "correct", [])]


# ---------------------------------------------------------------------------------------
# 3. A display that opens with a lead-in.

@pytest.mark.parametrize("lead", [r"\therefore", r"\implies", r"\Rightarrow", r"\large", r"\displaystyle",
                                  r"\text{so}", r"\text{Hence, }"])
def test_a_display_that_opens_with_a_lead_in(tmp_path, lead):
    # gauravreddy08/everything-from-scratch, notes/MLP.md, "Final Result for Layer L",
    # with the lead-ins of issue 14 in front of it
    text = f"$$\n{lead} \\frac{{\\partial \\mathcal{{L}}}}{{\\partial W^L}} = (\\hat{{y}} - y) \\cdot (a^{{L-1}})^T\n$$\n"  # noqa: E501
    assert judged(tmp_path, text, DATA / "mlp_sigmoid.sdm") == [("W2", "correct", [])]


# ---------------------------------------------------------------------------------------
# 4. Chain-rule products and index-summed forms on the right side.

# gauravreddy08/everything-from-scratch, notes/MLP.md, "Step 1: Apply Chain Rule".
CHAIN = r"""$$
\frac{\partial \mathcal{L}}{\partial W^L} = \frac{\partial \mathcal{L}}{\partial a^L} \cdot \frac{\partial a^L}{\partial z^L} \cdot \frac{\partial z^L}{\partial W^L}
$$
"""  # noqa: E501


def _mlp_with_a_l(tmp_path):
    model = tmp_path / "mlp_aL.sdm"  # the write-up calls the output a^L in this step
    model.write_text((DATA / "mlp_sigmoid.sdm").read_text() + 'latex y_hat "a^L"\n')
    return model


def test_a_chain_rule_product_is_judged(tmp_path):
    assert judged(tmp_path, CHAIN, _mlp_with_a_l(tmp_path)) == [("W2", "correct", [])]


def test_a_chain_rule_missing_a_path_is_diagnosed(tmp_path):
    text = r"""$$\frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial o_t} \frac{\partial o_t}{\partial h_t}$$
$$\frac{\partial L}{\partial h_t} = \frac{\partial o_t}{\partial h_t}^T \frac{\partial L}{\partial o_t}
  + \frac{\partial L}{\partial h_{t+1}} \frac{\partial h_{t+1}}{\partial h_t}$$
$$\frac{\partial L}{\partial V} = \sum_t \frac{\partial L}{\partial h_t} \frac{\partial h_t}{\partial V}$$
"""
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [
        ("h[t]", "incorrect", ["missing-recurrent-term"]), ("h[t]", "correct", []), ("V", "correct", [])]


def test_an_index_summed_right_side(tmp_path):
    # the form of issue 14, \sum_k \frac{\partial L}{\partial z_k} W_{kj}, in the seed RNN's names
    text = r"""$$\delta \mathbf{a}^{(\mathrm{in})}_{t,j} = \sum_k \frac{\partial L}{\partial y_{h,t,k}} U_{kj}$$
$$\delta \mathbf{a}^{(\mathrm{in})}_{t,j} = \sum_k \frac{\partial L}{\partial y_{h,t,k}} U_{jk}$$
"""
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [
        ("a_in[t][j]", "correct", []), ("a_in[t][j]", "incorrect", ["shape"])]


# ---------------------------------------------------------------------------------------
# 5. Sub- and superscripts inside \mathbf{}.

def test_scripts_inside_mathbf_match_and_so_does_a_latex_spelled_so(tmp_path):
    # dummy-ilh/MINE, NN/RNN&Others/ss.md: "$h_t = \tanh(W_{hh}h_{t-1} + W_{xh}x_t)$",
    # "$y_t = W_{hy}h_t$", in bold with the scripts inside the font as issue 14 found them
    text = r"""$$\frac{\partial \mathbf{J_t}}{\partial \mathbf{W^{hy}}} = (\mathbf{\hat{y}_t} - \mathbf{y_t}) \mathbf{h_t}^T$$
$$\delta \mathbf{h_t} = \mathbf{W^{hy}}^T (\mathbf{\hat{y}_t} - \mathbf{y_t}) + \mathbf{W^{hh}}^T ((1 - \mathbf{h_{t+1}}^2) \odot \delta \mathbf{h_{t+1}})$$
$$\delta \mathbf{h}_t = {\mathbf{W}^{hy}}^T (\hat{\mathbf{y}}_t - \mathbf{y}_t) + {\mathbf{W}^{hh}}^T ((1 - \mathbf{h}_{t+1}^2) \odot \delta \mathbf{h}_{t+1})$$
"""  # noqa: E501
    r = report(tmp_path, text, DATA / "bold_rnn.sdm")
    assert [(v.target, v.verdict) for v in r.verdicts] == [("W_hy", "per-step"), ("h[t]", "correct"),
                                                          ("h[t]", "correct")]
    assert r.notes == ["∂L_t/∂X is read with L = Σ_t L_t, which the write-up does not declare (assumed)"]


def test_a_latex_spelling_that_cannot_be_read_is_said(tmp_path):
    model = tmp_path / "m.sdm"
    model.write_text((DATA / "bold_rnn.sdm").read_text().replace(r'"\mathbf{W^{hy}}"', r'"\mathbf{W} \mathbf{y}"'))
    r = report(tmp_path, r"$$\delta \mathbf{h_t} = 0$$", model)
    assert any("W_hy" in n and "cannot be read" in n for n in r.notes)


# ---------------------------------------------------------------------------------------
# 6. Two equations in one display row (and 8: dW).

# jmcheon/multilayer_perceptron, notation.md, the column-wise "update" cell.
JMCHEON = (r"$$\frac {\partial {J}} {\partial {W}} = \frac {1} {m} (A - y) \cdot X^T, \quad "
           r"dW^{[l]} = \frac {1} {m} dZ^{[l]}  \cdot  A^{[l - 1]^T} $$")


def test_two_equations_in_one_row_are_two_claims(tmp_path):
    r = report(tmp_path, JMCHEON + "\n", DATA / "jmcheon_logreg.sdm")
    assert [(v.target, v.verdict) for v in r.verdicts] == [("W", "correct"), ("", "unreadable")]
    # the second is about layer l in general, which this one-layer model does not name
    assert "W^{[l]}" in r.verdicts[1].message


@pytest.mark.parametrize("between", [r"\; \text{and} \;", r",\quad", r", \qquad", r"\quad\text{and}\quad"])
def test_merged_rows_regression(tmp_path, between):
    # issue 14: the second equation vanished and the first left side was paired with the last
    # right side, turning two right claims into "incorrect (wrong-factor)"
    text = (r"$$\delta \mathbf{o}_t = {\mathbf{W}^{(\mathrm{out})}}^{\top} \delta \mathbf{h}^{(\mathrm{out})}_t "
            + between + r" \delta \mathbf{b}^{(\mathrm{out})} = \sum_{t=1}^{T} \delta \mathbf{h}^{(\mathrm{out})}_t$$")
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [("o[t]", "correct", []), ("b_out", "correct", [])]


def test_a_second_align_column_pair_is_its_own_claim(tmp_path):
    text = r"""\begin{align}
\delta \mathbf{o}_t &= {\mathbf{W}^{(\mathrm{out})}}^{\top} \delta \mathbf{h}^{(\mathrm{out})}_t &
\delta \mathbf{b}^{(\mathrm{out})} &= \sum_{t=1}^{T} \delta \mathbf{h}^{(\mathrm{out})}_t \\
\delta \mathbf{b}_o &= \sum_{t=1}^{T} \delta \mathbf{y}_{o,t}
\end{align}
"""
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm", ".tex") == [
        ("o[t]", "correct", []), ("b_out", "correct", []), ("b_o", "correct", [])]


# ---------------------------------------------------------------------------------------
# 7. Claims only in inline math.

# http://neuroticnetworks.blogspot.com/2016_12_01_archive.html: every equation inline, e.g.
# "$\dfrac{\partial E}{\partial w_{jk}} =(L_k - T)\cdot{L_k(1-L_k)}\cdot{L_j}$", in the
# vector form of the seed RNN's output layer here.
def test_claims_only_in_inline_math(tmp_path):
    text = (r"hence: $\dfrac{\partial L}{\partial \mathbf{o}_t} = {\mathbf{W}^{(\mathrm{out})}}^{\top}"
            r"(\hat{\mathbf{r}}_t - \mathbf{r}_t)$ and $\dfrac{\partial L}{\partial \mathbf{o}_t} ="
            r" (\hat{\mathbf{r}}_t - \mathbf{r}_t)$, where $\delta X = \partial L / \partial X$." + "\n")
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [
        ("o[t]", "correct", []), ("o[t]", "incorrect", ["shape"])]


# ---------------------------------------------------------------------------------------
# 8. The smaller ones.

# ezalos/NotYetSelfAware, maths.md: "\delta^L = \nabla_a C \odot \sigma'(z^L)" (δ^L an error
# signal, ∇_a C, σ'(z^L)) and "\frac{\partial C}{\partial b^l_j} =  \delta^l_j".
def test_error_signals_nabla_and_sigma_prime(tmp_path):
    model = tmp_path / "ezalos.sdm"
    model.write_text("""model ezalos
dim n_x, n_y
input x: n_x
target y: n_y
param w: (n_y, n_x)
param b: n_y
z = w @ x + b
a = sigmoid(z)
loss C = sum((y - a) * (y - a)) / 2
latex z "z^L"
latex a "a^L"
latex b "b^L"
latex w "w^L"
""")
    text = r"""$$
\delta^L = \frac{\partial C}{\partial z^L}
$$
$$
\delta^L = \nabla_a C \odot \sigma'(z^L)
$$
$$
\frac{\partial C}{\partial b^L_j} =  \delta^L_j
$$
$$
\delta^L = \nabla_a C \odot \sigma(z^L)
$$
"""
    assert judged(tmp_path, text, model) == [("z", "correct", []), ("b[j]", "correct", []),
                                              ("z", "incorrect", ["missing-activation-derivative"])]


def test_the_smaller_notations(tmp_path):
    # the list of issue 14, in the seed RNN's names
    text = r"""$$\delta \mathbf{o}_t = {\mathbf{W}^{(\mathrm{out})}}^{\top} \delta \mathbf{h}^{(\mathrm{out})}_t \in \mathbb{R}^{n_o}$$
$$\delta \mathbf{y}_{h,t} = f'(\mathbf{y}_{h,t}) \odot \delta \mathbf{h}_t$$
$$\delta \mathbf{y}_{h,t} = \phi'(\mathbf{y}_{h,t}) \odot \delta \mathbf{h}_t$$
$$\frac{\partial \ell(\hat{\mathbf{r}}_t, \mathbf{r}_t)}{\partial \mathbf{h}^{(\mathrm{out})}_t} = \hat{\mathbf{r}}_t - \mathbf{r}_t$$
$$\nabla_{\mathbf{W}} L = \sum_{t=1}^{T} \delta \mathbf{y}_{o,t} \mathbf{h}_t^\top$$
$$d\mathbf{W} = \delta \mathbf{y}_{o,t} \mathbf{h}_t^\top$$
$$\delta \mathbf{h}_t = \mathbf{W}^\top \text{diag}(\mathbf{o}_t \odot (1 - \mathbf{o}_t)) \delta \mathbf{o}_t + \mathbf{V}^\top \delta \mathbf{y}_{h,t+1}$$
$$\delta \mathbf{V} = \sum_{t=2}^{T} \delta \mathbf{y}_{h,t} \mathbf{h}_{t-1}^\top$$
$$\delta \mathbf{V} \mathrel{+}= \delta \mathbf{y}_{h,t} \mathbf{h}_{t-1}^\top$$
$$\delta_t = \frac{\partial L}{\partial \mathbf{y}_{h,t}}$$
$$\delta_t = \mathbf{h}_t \odot (1 - \mathbf{h}_t) \odot (\mathbf{W}^\top \delta \mathbf{y}_{o,t} + \mathbf{V}^\top \delta_{t+1})$$
$$\frac{\partial L}{\partial \mathbf{b}_h} = \sum_{t=1}^{T} \delta_t$$
"""  # noqa: E501
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [
        ("o[t]", "correct", []), ("z_h[t]", "correct", []), ("z_h[t]", "correct", []), ("h_out[t]", "correct", []),
        ("W", "correct", []), ("W", "per-step", []), ("h[t]", "correct", []), ("V", "correct", []),
        ("V", "per-step", []), ("z_h[t]", "correct", []), ("b_h", "correct", [])]


def test_an_undefined_error_signal_says_so(tmp_path):
    r = report(tmp_path, r"$$\delta_t = \mathbf{W}^\top \delta_{t+1}$$", EXAMPLES / "seed_rnn.sdm")
    assert [v.verdict for v in r.verdicts] == ["unreadable"]
    assert "names no quantity" in r.verdicts[0].message


# ---------------------------------------------------------------------------------------
# Regressions: a fixed step, \cdot declared elementwise, the half-derivative slips.

def test_a_fixed_step_is_not_judged_as_the_last_step(tmp_path):
    # δh_3 = Wᵀ δy_{o,3} holds when T = 3 (the old probes' length), not for a symbolic T
    text = r"""$$\delta \mathbf{h}_3 = \mathbf{W}^\top \delta \mathbf{y}_{o,3}$$
$$\delta \mathbf{h}_3 = \mathbf{W}^\top \delta \mathbf{y}_{o,3} + \mathbf{V}^\top \delta \mathbf{y}_{h,4}$$
$$\delta \mathbf{h}_T = \mathbf{W}^\top \delta \mathbf{y}_{o,T}$$
"""
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [
        ("h[3]", "incorrect", ["missing-recurrent-term"]), ("h[3]", "correct", []), ("h[T]", "correct", [])]
    # a write-up's step 4 (∂E_4/∂s_4) is inside every probe's sequence, and not its last step
    four = text.replace("_3", "_4").replace("{o,3}", "{o,4}").replace("{h,4}", "{h,5}")
    assert judged(tmp_path, four, EXAMPLES / "seed_rnn.sdm") == [
        ("h[4]", "incorrect", ["missing-recurrent-term"]), ("h[4]", "correct", []), ("h[T]", "correct", [])]


def test_cdot_declared_elementwise_is_a_hadamard_product(tmp_path):
    # core.trac.wordpress.org/ticket/20312 declares it so: "For convention, \(\cdot\)
    # correspond to point wise multiplication, while \(*\) correspond to matrix multiplication."
    claim = r"$$\delta \mathbf{y}_{h,t} = \delta \mathbf{h}_t \cdot \mathbf{h}_t \cdot (1 - \mathbf{h}_t)$$"
    declared = "For convention, \\(\\cdot\\) correspond to point wise multiplication.\n\n" + claim + "\n"
    r = report(tmp_path, declared, EXAMPLES / "seed_rnn.sdm")
    assert [(v.target, v.verdict) for v in r.verdicts] == [("z_h[t]", "correct")]
    assert "· read as the elementwise product" in r.verdicts[0].message
    # undeclared, · is a matrix product, and two vectors do not multiply
    assert judged(tmp_path, claim + "\n", EXAMPLES / "seed_rnn.sdm") == [("z_h[t]", "incorrect", ["shape"])]


def test_the_gru_and_half_sigmoid_derivative_slips_are_diagnosed(tmp_path):
    text = r"""$$\delta \mathbf{n}_t = \delta \mathbf{h}_t \odot \mathbf{z}_t$$
$$\delta \mathbf{a}_t \triangleq \frac{\partial L}{\partial (\mathbf{W}_n \mathbf{x}_t + \mathbf{U}_n (\mathbf{r}_t \odot \mathbf{h}_{t-1}) + \mathbf{b}_n)}$$
$$\delta \mathbf{a}_t = \delta \mathbf{n}_t \odot (1 - \mathbf{n}_t)^2$$
$$\delta \mathbf{a}_t = \delta \mathbf{n}_t \odot (1 - \mathbf{n}_t^2)$$
"""  # noqa: E501
    assert judged(tmp_path, text, MODELS / "gru.sdm") == [
        ("n[t]", "correct", []), ("a_n[t]", "incorrect", ["wrong-factor"]), ("a_n[t]", "correct", [])]
    half = r"$$\delta \mathbf{y}_{o,t} = \mathbf{o}_t \odot {\mathbf{W}^{(\mathrm{out})}}^{\top} \delta \mathbf{h}^{(\mathrm{out})}_t$$"  # noqa: E501
    r = report(tmp_path, half + "\n", EXAMPLES / "seed_rnn.sdm")
    assert [(v.target, v.verdict, v.diagnosis) for v in r.verdicts] == [
        ("z_o[t]", "incorrect", ["missing-activation-derivative"])]
    assert "only part of the derivative of sigmoid" in r.verdicts[0].message


# ---------------------------------------------------------------------------------------
# No false pass.

THREE_WRONG = r"""# README

$$\frac{\partial}{\partial W} L = \sum_{t} \sum_{k=1}^{t} \prod_{j=k+1}^{t} \frac{\partial h_j}{\partial h_{j-1}}$$
$$\frac{\partial L}{\partial U} = \sum_{k=1}^{t} \frac{\partial L_t}{\partial h_k} x_k^T$$
$$\frac{\partial h_t}{\partial h_{t-1}} = \text{diag}(1 - h_t^2) W$$
$$\frac{\partial h_{t-1}}{\partial h_{t-2}} = \text{diag}(1 - h_{t-1}^2) W$$
and inline $\nabla_{W} L = \sum_t \Xi_t$.
"""


def test_a_writeup_whose_every_claim_is_unreadable_fails_and_says_why(tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text(THREE_WRONG)
    status, out, _ = cli(capsys, EXAMPLES / "seed_rnn.sdm", path)
    assert status == 1
    assert "3 claims" in out and "0 correct, 0 per-step, 0 incorrect, 3 unreadable" in out
    assert out.count("unreadable:") == 3
    assert all(line.split("unreadable:", 1)[1].strip() for line in out.splitlines() if "unreadable:" in line)
    # the two Jacobian equations are said once, not as a page of "unreadable"
    assert out.count("skipped 2 Jacobian equations") == 1


def test_strict_fails_on_what_was_skipped_or_empty(tmp_path, capsys):
    right = tmp_path / "right.md"
    right.write_text(r"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + "\n"
                     r"$$\frac{\partial \mathbf{h}_t}{\partial \mathbf{h}_{t-1}} = \mathbf{V}$$" + "\n")
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", right)[0] == 0
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", right, "--strict")[0] == 1
    empty = tmp_path / "empty.md"
    empty.write_text("No equations.\n")
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", empty)[0] == 0
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", empty, "--strict")[0] == 1


# ---------------------------------------------------------------------------------------
# Inputs: .html (MathJax, KaTeX, codecogs), standard input.

PAGE = r"""<html><head><script>alert("never run")</script>
<script type="text/x-mathjax-config">MathJax.Hub.Config({});</script></head><body>
<p>MathJax source: \(\delta \mathbf{o}_t = {\mathbf{W}^{(\mathrm{out})}}^{\top} \delta \mathbf{h}^{(\mathrm{out})}_t\)</p>
<script type="math/tex; mode=display">\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t</script>
<span class="katex-display"><span class="katex"><span class="katex-mathml"><math><semantics><mrow></mrow>
<annotation encoding="application/x-tex">\delta \mathbf{b}^{(\mathrm{out})} = \sum_{t=1}^{T} \delta \mathbf{h}^{(\mathrm{out})}_t</annotation>
</semantics></math></span><span class="katex-html" aria-hidden="true">δb = Σ δh garbage = 1</span></span></span>
<img src="https://latex.codecogs.com/svg.latex?\delta&space;\mathbf{b}_o&space;=&space;\sum_{t=1}^{T}&space;\delta&space;\mathbf{y}_{o,t}" alt="db_o">
<img src="https://latex.codecogs.com/png.latex?%5Cdelta%20%5Cmathbf%7Bb%7D_h%20%3D%200"/>
<p>Prose &amp; more prose.</p></body></html>
"""  # noqa: E501


def test_an_html_page_mathjax_katex_and_codecogs(tmp_path):
    assert judged(tmp_path, PAGE, EXAMPLES / "seed_rnn.sdm", ".html") == [
        ("o[t]", "correct", []), ("h_out[t]", "correct", []), ("b_out", "correct", []), ("b_o", "correct", []),
        ("b_h", "incorrect", [])]


def test_a_markdown_readme_with_codecogs_images(tmp_path):
    # README files show formulas as codecogs images, as in the GitHub README this issue found
    text = ("The output layer: ![eq](https://latex.codecogs.com/svg.latex?%5Cdelta%20%5Cmathbf%7Bo%7D_t%20%3D%20"
            "%7B%5Cmathbf%7BW%7D%5E%7B(%5Cmathrm%7Bout%7D)%7D%7D%5E%7B%5Ctop%7D%20%5Cdelta%20%5Cmathbf%7Bh%7D%5E%7B("
            "%5Cmathrm%7Bout%7D)%7D_t)\n")
    assert judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm") == [("o[t]", "correct", [])]


def test_standard_input(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        rb"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + b"\n")))
    status, out, _ = cli(capsys, EXAMPLES / "seed_rnn.sdm", "-")
    assert status == 0 and "<stdin>" in out and "1 correct" in out


def test_a_notebook_that_is_not_json_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.ipynb"
    bad.write_text("{not json")
    status, _, err = cli(capsys, EXAMPLES / "seed_rnn.sdm", bad)
    assert status == 2 and "not a Jupyter notebook" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------
# A whole class at once.

PLANTED = ROOT / "tests" / "data" / "planted"


def _class(tmp_path, copies: int = 3):
    """Copies of the planted GRU write-ups, some with one more planted error each."""
    root = tmp_path / "class"
    root.mkdir()
    sources = [PLANTED / "gru.md", PLANTED / "gru.tex", PLANTED / "gru.claims"]
    files = []
    for k in range(copies):
        for src in sources:
            text = src.read_text()
            if k % 2 == 1:  # a sign slip planted in the output layer's claim
                text = text.replace(r"\delta \mathbf{p}_t = ", r"\delta \mathbf{p}_t = -", 1)
            path = root / f"student{k:02d}_{src.stem}{src.suffix}"
            path.write_text(text)
            files.append(path)
    return root, files


def test_a_class_report_counts_equal_single_file_runs(tmp_path, capsys):
    root, files = _class(tmp_path)
    out_csv = tmp_path / "grades.csv"
    status, _, err = cli(capsys, MODELS / "gru.sdm", root, "--report", out_csv, "--jobs", "2")
    assert status == 1 and "judged" in err  # a progress bar for more than a few files
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["submission"] for r in rows] == sorted(str(f) for f in files)
    d = derivation(MODELS / "gru.sdm")
    for row in rows:
        single = verify(d, read_claims(row["submission"], d))
        assert int(row["claims"]) == len(single.verdicts)
        for verdict in ("correct", "per-step", "incorrect", "unreadable"):
            assert int(row[verdict]) == single.summary[verdict], (row, verdict)
        codes = sorted(c for v in single.verdicts for c in v.diagnosis)
        listed = sorted(c.split(":")[0] for c in row["diagnoses"].split() for _ in range(
            int(c.split(":")[1]) if ":" in c else 1))
        assert listed == codes


def test_gradescope_results(tmp_path, capsys):
    root, files = _class(tmp_path, copies=1)
    out = tmp_path / "gs"
    cli(capsys, MODELS / "gru.sdm", *files, "--report", out, "--report-format", "gradescope", "--jobs", "1")
    written = sorted(out.rglob("results.json"))
    assert len(written) == len(files)
    d = derivation(MODELS / "gru.sdm")
    for path in written:
        results = json.loads(path.read_text())
        source = next(f for f in files if path.parent.name in (f.stem, f.name))
        single = verify(d, read_claims(source, d))
        assert len(results["tests"]) == len(single.verdicts)
        for test, v in zip(results["tests"], single.verdicts):
            assert set(test) >= {"name", "score", "max_score", "output", "status"}
            assert test["status"] == ("passed" if v.verdict in ("correct", "per-step") else "failed")
            assert v.message in test["output"]
        assert results["score"] == sum(t["score"] for t in results["tests"])
    one = tmp_path / "results.json"
    cli(capsys, MODELS / "gru.sdm", files[0], "--report", one, "--report-format", "gradescope")
    assert json.loads(one.read_text())["tests"]


def test_a_submission_that_cannot_be_read_is_a_row_not_a_crash(tmp_path, capsys):
    root, _ = _class(tmp_path, copies=1)
    (root / "broken.ipynb").write_text("{not json")
    out_csv = tmp_path / "g.csv"
    status, _, _ = cli(capsys, MODELS / "gru.sdm", root, "--report", out_csv, "--jobs", "1")
    rows = {r["submission"]: r for r in csv.DictReader(out_csv.open())}
    assert status == 2 and "not a Jupyter notebook" in rows[str(root / "broken.ipynb")]["error"]


def test_grading_never_writes_into_the_submissions(tmp_path):
    root, files = _class(tmp_path, copies=1)
    before = {f: f.read_bytes() for f in files}
    grading.grade(str(MODELS / "gru.sdm"), [str(root)], jobs=1)
    assert {f: f.read_bytes() for f in files} == before and sorted(root.iterdir()) == sorted(files)
    assert shutil.which  # (nothing else to clean up)


def test_codecogs_img_tags_inside_markdown(tmp_path):
    # niuers/AlwaysLearning, reviews/rnn_backpropagation.md: formulas as codecogs <img> tags
    # in Markdown, the step as a superscript \left \langle t-1 \right \rangle
    from symderiv.claims.sources import markdown_images
    tag = ('<a href="https://www.codecogs.com/eqnedit.php?latex=\\inline&space;a^{\\left&space;\\langle&space;t-1'
           '&space;\\right&space;\\rangle}" target="_blank"><img src="https://latex.codecogs.com/gif.latex?\\inline'
           '&space;a^{\\left&space;\\langle&space;t-1&space;\\right&space;\\rangle}" title="a^{\\left \\langle t-1 '
           '\\right \\rangle}" /></a>')
    assert "$a^{\\left \\langle t-1 \\right \\rangle}$" in markdown_images(tag)
    claim = tag.replace("a^{", "\\delta&space;h^{").replace("t-1", "t") + " "
    claim = claim.replace('" title', "&space;=&space;W^T&space;\\delta&space;y_{o,t}&space;+&space;V^T&space;"
                                     '\\delta&space;y_{h,t+1}" title', 1)
    assert judged(tmp_path, "Hidden state: " + claim + "\n", EXAMPLES / "seed_rnn.sdm") == [("h[t]", "correct", [])]


# d2l-ai/d2l-en, chapter_multilayer-perceptrons/backprop.md (CC BY-SA 4.0), section
# "Backpropagation": two equations in one row with \; \textrm{and} \;, prod(·, ·) chain
# rules, a trailing \in \mathbb{R}^q, \phi', and ∂s/∂W equations about the penalty alone.
D2L = r"""$$\frac{\partial J}{\partial L} = 1 \; \textrm{and} \; \frac{\partial J}{\partial s} = 1.$$

$$
\frac{\partial J}{\partial \mathbf{o}}
= \textrm{prod}\left(\frac{\partial J}{\partial L}, \frac{\partial L}{\partial \mathbf{o}}\right)
= \frac{\partial L}{\partial \mathbf{o}}
\in \mathbb{R}^q.
$$

$$\frac{\partial s}{\partial \mathbf{W}^{(1)}} = \lambda \mathbf{W}^{(1)}
\; \textrm{and} \;
\frac{\partial s}{\partial \mathbf{W}^{(2)}} = \lambda \mathbf{W}^{(2)}.$$

$$\frac{\partial J}{\partial \mathbf{W}^{(2)}}= \textrm{prod}\left(\frac{\partial J}{\partial \mathbf{o}}, \frac{\partial \mathbf{o}}{\partial \mathbf{W}^{(2)}}\right) + \textrm{prod}\left(\frac{\partial J}{\partial s}, \frac{\partial s}{\partial \mathbf{W}^{(2)}}\right)= \frac{\partial J}{\partial \mathbf{o}} \mathbf{h}^\top + \lambda \mathbf{W}^{(2)}.$$

$$
\frac{\partial J}{\partial \mathbf{z}}
= \textrm{prod}\left(\frac{\partial J}{\partial \mathbf{h}}, \frac{\partial \mathbf{h}}{\partial \mathbf{z}}\right)
= \frac{\partial J}{\partial \mathbf{h}} \odot \phi'\left(\mathbf{z}\right).
$$
"""  # noqa: E501


def test_dive_into_deep_learning_backprop(tmp_path):
    r = report(tmp_path, D2L, DATA / "d2l_mlp.sdm")
    assert [(v.target, v.verdict) for v in r.verdicts] == [
        ("L", "correct"), ("s", "correct"), ("o", "correct"), ("W2", "correct"), ("z", "correct")]
    assert r.skipped == 2 and r.notes == ["skipped 2 Jacobian equations ∂a/∂b that are no claim about the loss "
                                          "(lines 10, 12)"]


def test_prod_missing_a_term_is_incorrect(tmp_path):
    text = (r"$$\frac{\partial J}{\partial \mathbf{W}^{(2)}}= \textrm{prod}\left(\frac{\partial J}{\partial "
            r"\mathbf{o}}, \frac{\partial \mathbf{o}}{\partial \mathbf{W}^{(2)}}\right)$$" + "\n")
    # the penalty's term λ W2 is missing: the chain through o alone is not the gradient
    assert judged(tmp_path, text, DATA / "d2l_mlp.sdm") == [("W2", "incorrect", [])]


# sriram7797/ML_techniques, "Basics of Neural Network/Backpropagation through time.ipynb":
# a display wrapped in \large{...}, the loss of step 4, products written with a dot, and the
# result on its own inline line that starts with "=".
SRIRAM_CELL = r"""- Let's derive, $\large{\frac{\partial E_4}{\partial V}} $

 $\large{\frac{\partial E_4}{\partial V} = \frac{\partial E_4}{\partial \hat{y_4}}.
 \frac{\partial \hat{y_4}}{\partial z_4}.\frac{\partial z_4}{\partial V}}$

 $= (\hat{y_4} - y_4).s_4$
"""
SRIRAM_MODEL = """model sriram_rnn
dim n_x, n_s, n_y
time t = 1..T
input x[t]: n_x
target y[t]: n_y, distribution
param U: (n_s, n_x)
param W: (n_s, n_s)
param V: (n_y, n_s)
state s[0] = 0
s[t] = W @ s[t-1] + U @ x[t]
z[t] = V @ s[t]
y_hat[t] = softmax(z[t])
loss E = Sum(cross_entropy(y[t], y_hat[t]), (t, 1, T))
"""


def test_a_large_wrapped_display_a_fixed_step_loss_and_a_continued_line(tmp_path):
    model = tmp_path / "sriram.sdm"
    model.write_text(SRIRAM_MODEL)
    r = report(tmp_path, _notebook(SRIRAM_CELL), model, ".ipynb")
    # two claims: the chain rule (step 4's term: per-step), and the line that goes on with "=",
    # ∂E_4/∂V = (ŷ_4 − y_4) s_4, which needs s_4ᵀ
    assert [(v.target, v.verdict, v.diagnosis) for v in r.verdicts] == [
        ("V", "per-step", []), ("V", "incorrect", ["transpose"])]
    assert r.verdicts[1].text.endswith("(\\hat{y_4} - y_4).s_4")
    fixed = SRIRAM_CELL.replace("y_4).s_4$", "y_4).s_4^T$")
    assert judged(tmp_path, _notebook(fixed), model, ".ipynb") == [("V", "per-step", [])] * 2
    wrong_step = SRIRAM_CELL.replace("y_4).s_4$", "y_4).s_3^T$")
    assert judged(tmp_path, _notebook(wrong_step), model, ".ipynb") == [
        ("V", "per-step", []), ("V", "incorrect", ["wrong-factor"])]


# cavaunpeu/willwolf.io-source, content/machine-learning/recurrent-neural-network-gradients-
# and-lessons-learned-therein.md ("Algebraic Derivatives"): \mathbf{J_3}, \mathbf{W^{hy}},
# chain rules at fixed steps, an align whose rows go on with "&+".
WOLF_HY = r"""$$
\frac{\partial \mathbf{J_3}}{\partial \mathbf{W^{hy}}} =
\frac{\partial \mathbf{J_3}}{\partial \mathbf{p_3}}
\frac{\partial \mathbf{p_3}}{\partial \mathbf{y_3}}
\frac{\partial \mathbf{y_3}}{\partial \mathbf{W^{hy}}}\\
\frac{\partial \mathbf{J_2}}{\partial \mathbf{W^{hy}}} =
\frac{\partial \mathbf{J_2}}{\partial \mathbf{p_2}}
\frac{\partial \mathbf{p_2}}{\partial \mathbf{y_2}}
\frac{\partial \mathbf{y_2}}{\partial \mathbf{W^{hy}}}\\
\frac{\partial \mathbf{J_1}}{\partial \mathbf{W^{hy}}} =
\frac{\partial \mathbf{J_1}}{\partial \mathbf{p_1}}
\frac{\partial \mathbf{p_1}}{\partial \mathbf{y_1}}
\frac{\partial \mathbf{y_1}}{\partial \mathbf{W^{hy}}}\\
$$
"""
WOLF_HH = r"""$$
\begin{align*}
\frac{\partial \mathbf{J_3}}{\partial \mathbf{W^{hh}}} &=
\frac{\partial \mathbf{J_3}}{\partial \mathbf{p_3}}
\frac{\partial \mathbf{p_3}}{\partial \mathbf{y_3}}
\frac{\partial \mathbf{y_3}}{\partial \mathbf{h_3}}
\frac{\partial \mathbf{h_3}}{\partial \mathbf{z_3}}
\frac{\partial \mathbf{z_3}}{\partial \mathbf{W^{hh}}}\\ &+
\frac{\partial \mathbf{J_3}}{\partial \mathbf{p_3}}
\frac{\partial \mathbf{p_3}}{\partial \mathbf{y_3}}
\frac{\partial \mathbf{y_3}}{\partial \mathbf{h_3}}
\frac{\partial \mathbf{h_3}}{\partial \mathbf{z_3}}
\frac{\partial \mathbf{z_3}}{\partial \mathbf{h_2}}
\frac{\partial \mathbf{h_2}}{\partial \mathbf{z_2}}
\frac{\partial \mathbf{z_2}}{\partial \mathbf{W^{hh}}}\\ &+
\frac{\partial \mathbf{J_3}}{\partial \mathbf{p_3}}
\frac{\partial \mathbf{p_3}}{\partial \mathbf{y_3}}
\frac{\partial \mathbf{y_3}}{\partial \mathbf{h_3}}
\frac{\partial \mathbf{h_3}}{\partial \mathbf{z_3}}
\frac{\partial \mathbf{z_3}}{\partial \mathbf{h_2}}
\frac{\partial \mathbf{h_2}}{\partial \mathbf{z_2}}
\frac{\partial \mathbf{z_2}}{\partial \mathbf{h_1}}
\frac{\partial \mathbf{h_1}}{\partial \mathbf{z_1}}
\frac{\partial \mathbf{z_1}}{\partial \mathbf{W^{hh}}}\\
\end{align*}
$$

"""


def test_will_wolf_scripts_inside_mathbf_and_fixed_step_chain_rules(tmp_path):
    model = DATA / "wolf_rnn.sdm"
    assert judged(tmp_path, WOLF_HY, model) == [("W_hy", "per-step", [])] * 3
    r = report(tmp_path, WOLF_HH, model)
    # ∂J_3/∂W^hh through h_3, h_2 and h_1: the derivative of the loss of step 3 alone
    assert [(v.target, v.verdict) for v in r.verdicts] == [("W_hh", "per-step")]
    assert "the loss of step 3 alone" in r.verdicts[0].message
    cut = WOLF_HH[:WOLF_HH.index(r"\\ &+")] + "\n\\end{align*}\n$$\n"  # the path through h_3 only
    assert judged(tmp_path, cut, model) == [("W_hh", "incorrect", [])]


# sriram7797/ML_techniques, the same notebook, "Solving equation": a δ in front of a bracketed
# sum of Jacobian products, one path each.
SRIRAM_PATHS = r"""$\large{\frac{\partial E_4}{\partial W}=
 \frac{\partial E_4}{\partial s_4}
 (\frac{\partial s_4}{\partial W} +
 \frac{\partial s_4}{\partial s_3}.\frac{\partial s_3}{\partial W} +
 \frac{\partial s_4}{\partial s_3}.\frac{\partial s_3}{\partial s_2}.\frac{\partial s_2}{\partial W} +
 \frac{\partial s_4}{\partial s_3}.\frac{\partial s_3}{\partial s_2}.\frac{\partial s_2}{\partial s_1}.\frac{\partial s_1}{\partial W})
} $
"""  # noqa: E501


def test_a_delta_times_a_sum_of_paths(tmp_path):
    model = tmp_path / "sriram.sdm"
    model.write_text(SRIRAM_MODEL)
    # ∂E_4/∂W through s_4, s_3, s_2 and s_1: the derivative of the loss of step 4 alone
    assert judged(tmp_path, _notebook(SRIRAM_PATHS), model, ".ipynb") == [("W", "per-step", [])]
    # without the path through s_2 (the one through s_1 is zero: s_0 = 0)
    three = SRIRAM_PATHS.replace(r" \frac{\partial s_4}{\partial s_3}.\frac{\partial s_3}{\partial s_2}"
                                 r".\frac{\partial s_2}{\partial W} +" + "\n", "")
    assert three != SRIRAM_PATHS
    assert judged(tmp_path, _notebook(three), model, ".ipynb") == [("W", "incorrect", [])]


# ---------------------------------------------------------------------------------------
# The wild corpus's own notations (tests/data/wild/), each on a quotation of its source.

WILD = ROOT / "tests" / "data" / "wild"

# samrat-nath/samrat-nath.github.io, _posts/2019-12-09-blog-post-1.md (a GRU cell's backward
# pass): Δ_X L for ∂L/∂X, ∗ the matrix product, two left sides in one row, and '+=' that adds
# a use of the same quantity to the gradient written above it.
SAMRAT = r"""
$$ \Delta_{g_{11}}L = \Delta_{g_{12}}L = \Delta_{h_t}L $$

$$ \Delta_{z_{t}}L = -\Delta_{g_{12}}L \circ \tilde{h}_t $$

$$ \Delta_{\tilde{h}_t}L = \Delta_{g_{12}}L \circ (1-z_t) $$

$$ \Delta_{z_{t}}L += \Delta_{g_{11}}L \circ h_{t-1} $$

$$ \Delta_{h_{t-1}}L = \Delta_{g_{11}}L \circ z_t $$

$$ \Delta_{W_x}L = \Delta_{g_9}L \ast x_t^T $$

$$ \Delta_{h_{t-1}}L += \Delta_{g_7}L \circ r_t $$

$$ \Delta_{h_{t-1}}L += W_{rh}^T \ast \Delta_{g_4}L $$

$$ \Delta_{h_{t-1}}L += W_{zh}^T \ast \Delta_{g_1}L $$
"""


def test_gru_post_delta_notation_accumulation_and_two_left_sides(tmp_path):
    model = WILD / "samrat_gru" / "model.sdm"
    # the verdicts of expected.json: c1, c2, c3 (with its +=), c4, c5 (all four parts), c9
    assert judged(tmp_path, SAMRAT, model) == [
        ("g11[t]", "correct", []), ("g12[t]", "correct", []), ("z[t]", "correct", []),
        ("h_tilde[t]", "correct", []), ("h[t-1]", "correct", []), ("W_x", "per-step", [])]
    r = report(tmp_path, SAMRAT, model)
    assert r.verdicts[2].line == 4 and "+=" in r.verdicts[2].text  # kept where the first part is
    # a part left out of the accumulation: what reaches h_{t-1} through r_t is missing
    cut = SAMRAT.replace("$$ \\Delta_{h_{t-1}}L += \\Delta_{g_7}L \\circ r_t $$\n", "")
    assert cut != SAMRAT
    assert ("h[t-1]", "incorrect") in [(t, v) for t, v, _ in judged(tmp_path, cut, model)]
    # the sign of the first part flipped: the accumulated δz is wrong
    flipped = SAMRAT.replace(r"= -\Delta_{g_{12}}L", r"= \Delta_{g_{12}}L")
    assert judged(tmp_path, flipped, model)[2][:2] == ("z[t]", "incorrect")


def test_what_a_cell_passes_back_is_judged_for_the_cells_steps(tmp_path):
    # δh_{t-1} written with step t's values (the cell at t): compared for t = 1..T, and its
    # unstepped names (g_11) are at the cell's step t, as z_t is
    model = WILD / "samrat_gru" / "model.sdm"
    text = r"$$ \Delta_{h_{t-1}}L = \Delta_{g_{11}}L \circ z_t + \Delta_{g_7}L \circ r_t + W_{rh}^T \ast \Delta_{g_4}L + W_{zh}^T \ast \Delta_{g_1}L $$"  # noqa: E501
    assert judged(tmp_path, text, model) == [("h[t-1]", "correct", [])]
    wrong = text.replace(r"\circ z_t", r"\circ r_t", 1)
    assert judged(tmp_path, wrong, model)[0][:2] == ("h[t-1]", "incorrect")


# wanesta/Deep_Learning_Note, RNN_LSTM_.md: formulas as codecogs images inside Markdown, the
# LaTeX's backslashes written as the HTML entity &#x5C;.
WANESTA_IMG = ('<p align="center"><img src="https://latex.codecogs.com/gif.latex?&#x5C;frac{&#x5C;partial%20E}'
               '{&#x5C;partial%20b_{o}}=&#x5C;Sigma_{j=1}^{t}&#x5C;delta_{o,j}"/></p>\n')


def test_codecogs_images_with_html_entities_in_markdown():
    from symderiv.claims.sources import markdown_images
    out = markdown_images(WANESTA_IMG)
    assert r"$$\frac{\partial E}{\partial b_{o}}=\Sigma_{j=1}^{t}\delta_{o,j}$$" in out


# wanesta/Deep_Learning_Note, RNN_LSTM_.md, the LSTM's training (the formulas as the note's
# codecogs images hold them): net_{o,t} in plain letters, =^{def}, per-step copies W_{oh,t},
# δ_{c,t} for the δ_{\overline{c},t} it defined, and Σ_{j=1}^{t} with E the error at the last step t.
WANESTA = r"""
$$\delta_{t}=^{def} \frac{\partial E}{\partial h_{t}}$$
$$\delta_{o,t}=^{def}=\frac{\partial E}{\partial net_{o,t}}$$
$$\delta_{f,t}=^{def}\frac{\partial E}{\partial net_{f,t}}$$
$$\delta_{i,t}=^{def}\frac{\partial E}{\partial net_{i,t}}$$
$$\delta_{\overline{c},t}=^{def}\frac{\partial E}{\partial net_{\overline{c},t}}$$
$$\frac{\partial E}{\partial W_{oh,t}}=\frac{\partial E}{\partial net_{o,t}}\frac{\partial net_{o,t}}{\partial W_{oh,t}}$$
$$=\delta_{o,t}h_{t-1}^{T}$$
$$\frac{\partial E}{\partial W_{ch,t}}=\frac{\partial E}{\partial net_{c,t}}\frac{\partial net_{c,t}}{\partial W_{fh,t}}$$
$$=\delta_{c,t}h_{t-1}^{T}$$
$$\frac{\partial E}{\partial W_{oh}}=\Sigma_{j=1}^{t}\delta_{o,j}h_{j-1}^{T}$$
$$\frac{\partial E}{\partial b_{o}}=\Sigma_{j=1}^{t}\delta_{o,t}$$
"""  # noqa: E501


def test_lstm_note_gate_names_per_step_copies_and_running_sums(tmp_path):
    model = WILD / "wanesta_lstm" / "model.sdm"
    # expected.json's c10, c11, c16, c17, c18, c29
    assert judged(tmp_path, WANESTA, model) == [
        ("W_oh", "per-step", []), ("W_oh", "per-step", []),
        ("W_ch", "incorrect", ["wrong-factor"]), ("W_ch", "per-step", []),
        ("W_oh", "correct", []), ("b_o", "incorrect", ["missing-sum-over-time"])]
    r = report(tmp_path, WANESTA, model)
    assert "copy used at step t" in r.verdicts[0].message
    assert "t the last step T" in r.verdicts[4].message
    assert "∂net_c/∂W_fh where ∂net_c/∂W_ch belongs" in r.verdicts[2].message
    # the running step dropped from one factor: h_{t-1} (the last step's) in every term
    slip = WANESTA.replace(r"\delta_{o,j}h_{j-1}^{T}", r"\delta_{o,j}h_{t-1}^{T}")
    assert judged(tmp_path, slip, model)[4][:2] == ("W_oh", "incorrect")


def test_a_sum_to_t_is_the_last_step_only_where_the_loss_is_at_the_last_step(tmp_path):
    # seed_rnn sums its loss over the steps: Σ_{k=1}^{t} there is a partial sum, not read as one to T
    text = r"$$\frac{\partial L}{\partial \mathbf{W}} = \Sigma_{k=1}^{t} \delta \mathbf{y}_{o,k} \mathbf{h}_k^\top$$"
    assert [v for _, v, _ in judged(tmp_path, text, EXAMPLES / "seed_rnn.sdm")] == ["unreadable"]
    assert judged(tmp_path, text.replace("^{t}", "^{T}"), EXAMPLES / "seed_rnn.sdm") == [("W", "correct", [])]


def test_plain_letter_functions_and_names(tmp_path):
    # the note's δ_{o,t}: tanh and the gate names written without \tanh or \text
    text = WANESTA.split("$$\\frac")[0] + (
        r"$$\delta_{o,t}^{T}=\delta_{t}^{T}\circ tanh(c_{t})\circ o_{t}\circ(1-o_{t})$$" + "\n")
    out = judged(tmp_path, text, WILD / "wanesta_lstm" / "model.sdm")
    assert out == [("net_o[t]", "correct", [])]


# wildanjr19/ml-from-scratch, Linear-Regression/readme.md and LogisticRegression/readme.md: a
# dim as a value (1/n), y^{(i)} for example i.
WILDAN_LINREG = r"""$$dw = \frac{1}{n} X^\top \left(\hat{y} - y\right)$$

$$db = \frac{1}{n} \sum_{i=1}^{n} \left(\hat{y}^{(i)} - y^{(i)}\right)$$
"""


def test_a_dim_as_a_value_and_examples_as_superscripts(tmp_path):
    linreg, logreg = WILD / "wildan_linreg" / "model.sdm", WILD / "wildan_logreg" / "model.sdm"
    # the mean squared error's gradients lack its factor 2 (expected.json: wrong-factor)
    assert judged(tmp_path, WILDAN_LINREG, linreg) == [("w", "incorrect", ["wrong-factor"]),
                                                       ("b", "incorrect", ["wrong-factor"])]
    r = report(tmp_path, WILDAN_LINREG, linreg)
    assert "1/2 times" in r.verdicts[0].message
    # the mean cross-entropy's are right as written
    assert judged(tmp_path, WILDAN_LINREG, logreg) == [("w", "correct", []), ("b", "correct", [])]
    # n is a dim: with the 1/n left out, the factor is n, which no number repairs
    assert judged(tmp_path, WILDAN_LINREG.replace(r"\frac{1}{n} X", "X"), logreg)[0][:2] == ("w", "incorrect")


# x35yao/ml-from-scratch, docs/softmax_regression_math.md (codecogs images): the rows of P summed.
X35YAO_SOFTMAX = (
    '<img src="https://latex.codecogs.com/png.latex?%5Cnabla_W%20%3D%20%5Cfrac%7B1%7D%7BN%7D%20(P-Y)%5ET%20X" />\n\n'
    '<img src="https://latex.codecogs.com/png.latex?%5Cnabla_b%20%3D%20%5Cfrac%7B1%7D%7BN%7D%20%5Csum_%7Bi%3D1%7D'
    '%5EN%20(P_i%20-%20Y_i)" />\n')


def test_rows_of_a_matrix_summed_as_a_vectors_gradient(tmp_path):
    model = WILD / "x35yao_softmax" / "model.sdm"
    assert judged(tmp_path, X35YAO_SOFTMAX, model) == [("W", "correct", []), ("b", "correct", [])]
    assert "row i of a matrix" in report(tmp_path, X35YAO_SOFTMAX, model).verdicts[1].message.lower()
    wrong = X35YAO_SOFTMAX.replace("(P_i%20-%20Y_i)", "(P_i%20%2B%20Y_i)")
    assert wrong != X35YAO_SOFTMAX
    assert judged(tmp_path, wrong, model)[1][:2] == ("b", "incorrect")


def test_sums_and_products_over_fixed_numbers_are_written_out(tmp_path):
    model = tmp_path / "sriram.sdm"
    model.write_text(SRIRAM_MODEL)
    # sriram7797/ML_techniques, "Backpropagation through time.ipynb": Σ_k of ∏_j of Jacobians
    prod = (r"$\large{\frac{\partial E_4}{\partial W}= \sum_{k=1}^4 \frac{\partial E_4}{\partial s_4}."
            r"(\prod_{j=k+1}^4\frac{\partial s_j}{\partial s_{j-1}})\frac{\partial s_k}{\partial W}}$")
    assert judged(tmp_path, _notebook(prod), model, ".ipynb") == [("W", "per-step", [])]
    # without the path through s_1 (zero: s_0 = 0) right, without that through s_2 too wrong
    assert judged(tmp_path, _notebook(prod.replace("k=1", "k=2")), model, ".ipynb") == [("W", "per-step", [])]
    assert judged(tmp_path, _notebook(prod.replace("k=1", "k=3")), model, ".ipynb")[0][:2] == ("W", "incorrect")
    # W^{4-j-1} as the power of a matrix: W^{-1} at j = 4 (the notebook's slip), and W^{4-j}
    power = (r"$\frac{\partial E_4}{\partial W}= \sum_{j=1}^4 (W^{\top})^{4-j} \frac{\partial E_4}{\partial s_4}"
             r" s_{j-1}^{\top}$")
    assert judged(tmp_path, _notebook(power), model, ".ipynb") == [("W", "per-step", [])]
    assert judged(tmp_path, _notebook(power.replace("^{4-j}", "^{4-j-1}")), model, ".ipynb")[0][:2] == \
        ("W", "incorrect")


# KJO144/recurrent_neural_net, notes.ipynb: index notation, k and l summed.
KJO_CHAIN = r"""$$
\frac{\partial E_t}{\partial V_{ij}} = \frac{\partial E_t}{ \partial \hat{y}_{t_k}} \frac{\partial \hat{y}_{t_k}}{\partial q_l} \frac{\partial q_l}{\partial V_{ij}}
$$

$$
\frac{\partial q_l}{\partial V_{ij}} = \delta_{il} h_j
$$

$$
\frac{\partial E_t}{\partial W_{ij}} = \frac{\partial E_t}{ \partial \hat{y}_{t_k}} \frac{\partial \hat{y}_{t_k}}{\partial q_l} \frac{\partial q_l}{\partial h_{t_m}} \frac{\partial h_{t_m}}{\partial W_{ij}}
$$
"""  # noqa: E501


def test_index_summed_chain_rules_of_entries(tmp_path):
    model = WILD / "kjo144_rnn" / "model.sdm"
    r = report(tmp_path, _notebook(KJO_CHAIN), model, ".ipynb")
    assert [(v.target, v.verdict) for v in r.verdicts] == [("V[i, j]", "per-step"), ("W[i, j]", "unreadable")]
    # ∂h_t/∂W_{ij}: explicit or through the earlier steps? said, not guessed
    assert "explicit or the total derivative" in r.verdicts[1].message
    assert any("skipped 1 Jacobian equation" in n for n in r.notes)
    # indices that do not link up are not read as a chain rule
    broken = KJO_CHAIN.replace(r"\partial q_l} \frac{\partial q_l}{\partial V_{ij}}", r"\partial q_l} \frac{\partial q_m}{\partial V_{ij}}", 1)  # noqa: E501
    assert broken != KJO_CHAIN
    assert judged(tmp_path, _notebook(broken), model, ".ipynb")[0][1] == "unreadable"


# d2l-ai/d2l-en, chapter_recurrent-neural-networks/bptt.md: the gradient in h_t as a sum over the
# later steps, with a matrix power.
D2L_LATER = (r"$$\frac{\partial L}{\partial \mathbf{h}_t}= \sum_{i=t}^T "
             r"{\left(\mathbf{W}_\textrm{hh}^\top\right)}^{T-i} \mathbf{W}_\textrm{qh}^\top "
             r"\frac{\partial L}{\partial \mathbf{o}_{T+t-i}}.$$" + "\n")


def test_a_sum_over_the_later_steps(tmp_path):
    model = WILD / "d2l_bptt" / "model.sdm"
    assert judged(tmp_path, D2L_LATER, model) == [("h[t]", "correct", [])]
    assert "later steps" in report(tmp_path, D2L_LATER, model).verdicts[0].message
    # the power one too high, the transpose dropped, the step of o shifted: wrong
    for slip in ("^{T-i+1}", r"\left(\mathbf{W}_\textrm{hh}\right)", r"\mathbf{o}_{T+t-i+1}"):
        text = D2L_LATER.replace("^{T-i}", slip) if slip.startswith("^") else \
            D2L_LATER.replace(r"\left(\mathbf{W}_\textrm{hh}^\top\right)", slip) if "left" in slip else \
            D2L_LATER.replace(r"\mathbf{o}_{T+t-i}", slip)
        assert text != D2L_LATER
        assert judged(tmp_path, text, model)[0][:2] == ("h[t]", "incorrect"), slip
    # a term with no value of step i would not vanish for i < t: not read
    flat = (r"$$\frac{\partial L}{\partial \mathbf{h}_t}= \sum_{i=t}^T \mathbf{W}_\textrm{qh}^\top "
            r"\frac{\partial L}{\partial \mathbf{o}_{t}}$$")
    assert judged(tmp_path, flat, model)[0][1] == "unreadable"


def test_a_gradient_written_as_a_row(tmp_path):
    # the LSTM note's layout (δ_{o,t}^T = δ_t^T ∘ …) in the seed RNN's names: every factor of
    # the elementwise product transposed, f'(·)^T too
    row = r"$$\delta \mathbf{y}_{h,t}^\top = \delta \mathbf{h}_t^\top \odot f'(\mathbf{y}_{h,t})^\top$$"
    assert judged(tmp_path, row, EXAMPLES / "seed_rnn.sdm") == [("z_h[t]", "correct", [])]
    # and a row product δ^T W, transposed as a whole: W^T δ
    wanesta = WILD / "wanesta_lstm" / "model.sdm"
    text = WANESTA.split("$$\\frac")[0] + (r"$$\delta_{t-1}^{T}=\delta_{o,t}^{T}W_{oh}+\delta_{f,t}^{T}W_{fh}"
                                            r"+\delta_{i,t}^{T}W_{ih}+\delta_{\overline{c},t}^{T}W_{ch}$$" + "\n")
    assert judged(tmp_path, text, wanesta) == [("h[t-1]", "correct", [])]
    assert judged(tmp_path, text.replace("W_{ih}", "W_{fh}", 1), wanesta)[0][:2] == ("h[t-1]", "incorrect")
    # rows summed and written as a column already are not transposed again (not read: an entry's transpose)
    cols = r"$$\nabla_b = \frac{1}{N} \sum_{i=1}^N (P_i - Y_i)^T$$"
    assert [v for _, v, _ in judged(tmp_path, cols, WILD / "x35yao_softmax" / "model.sdm")] == ["unreadable"]
