"""The LaTeX write-up of the seed RNN: what a reader must find in it, and that it typesets cleanly."""

import re
import shutil

import pytest

import symderiv
from symderiv.render.emit import render

from .helpers import EXAMPLES, pdflatex


@pytest.fixture(scope="module")
def tex():
    d = symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))
    return render(d, "tex", "seed_rnn.sdm")


def section(tex: str, title: str) -> str:
    start = tex.index(r"\section*{" + title + "}")
    end = tex.find(r"\section*{", start + 1)
    return tex[start:end if end > 0 else None]


def test_conclusion_has_all_nine_gradients_summed_over_time(tex):
    block = section(tex, "In conclusion")
    params = ["W_in", "b_in", "U", "V", "b_h", "W", "b_o", "W_out", "b_out"]
    model = symderiv.load(EXAMPLES / "seed_rnn.sdm")
    for p in params:
        lhs = r"\frac{\partial \mathcal{L}}{\partial " + model.latex(p) + "}"
        row = next(line for line in block.splitlines() if lhs + " &= " in line)
        assert (lhs + r" &= \sum\nolimits_{t=1}^{T}") in row, p  # the limits beside Σ: rows of one line
    assert r"\delta \mathbf{z}_{h,t} {\mathbf{h}_{t-1}}^{\top}" in block  # ∂L/∂V
    # the adjoints it uses, the BPTT term included
    bptt = r"{\mathbf{W}}^{\top} \delta \mathbf{z}_{o,t} + {\mathbf{V}}^{\top} \delta \mathbf{z}_{h,t+1}"
    assert r"\delta \mathbf{h}_t &= " + bptt in block
    assert r"\delta \mathbf{h}^{(\mathrm{out})}_t &= \hat{\mathbf{r}}_t - \mathbf{r}_t" in block
    assert r"\left(\delta \mathbf{z}_{o,t}\right)_i \left(\mathbf{h}_t\right)_j" in block  # element form of ∂L/∂W
    assert "entry by entry" in block


def test_backward_pass_shows_the_bptt_term_and_the_chain_rule_step(tex):
    block = section(tex, "Backward pass")
    assert r"{\mathbf{V}}^{\top} \delta \mathbf{z}_{h,t+1}" in block
    assert r"\left(\frac{\partial \mathbf{h}^{(\mathrm{out})}_t}{\partial \mathbf{o}_t}\right)^{\top}" in block
    assert r"\hat{\mathbf{r}}_t - \mathbf{r}_t" in block


def test_update_rules(tex):
    """One rule for every parameter, in a sentence that names each of them once."""
    block = section(tex, "Gradient descent")
    assert block.count(r"\leftarrow") == 1 and r"\eta" in block
    model = symderiv.load(EXAMPLES / "seed_rnn.sdm")
    for p in ["W_in", "b_in", "U", "V", "b_h", "W", "b_o", "W_out", "b_out"]:
        assert block.count("$" + model.latex(p) + "$") == 1, p


def test_output_is_deterministic(tex):
    d = symderiv.derive(symderiv.load(EXAMPLES / "seed_rnn.sdm"))
    assert render(d, "tex", "seed_rnn.sdm") == tex


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_seed_writeup_has_no_errors_and_no_overfull_lines(tex, tmp_path):
    (tmp_path / "seed_rnn.tex").write_text(tex)
    out = pdflatex("seed_rnn.tex", tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    log = (tmp_path / "seed_rnn.log").read_text(errors="replace")
    assert not re.search(r"^! ", log, re.M)
    assert "Overfull \\hbox" not in log


def _typeset(name: str, tmp_path) -> str:
    d = symderiv.derive(symderiv.load(EXAMPLES / f"{name}.sdm"))
    (tmp_path / f"{name}.tex").write_text(render(d, "tex", f"{name}.sdm"))
    out = pdflatex(f"{name}.tex", tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    return (tmp_path / f"{name}.log").read_text(errors="replace")


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("name, pages", [("seed_rnn", 3), ("lstm_tagger", 3), ("gru_regressor", 3), ("mlp", 2)])
def test_a_writeup_fits_its_pages_without_overfull_lines(name, pages, tmp_path):
    """The seed RNN and the LSTM in at most three pages, every line inside the margins."""
    log = _typeset(name, tmp_path)
    m = re.search(r"Output written on \S+ \((\d+) pages?", log)
    assert m is not None and int(m.group(1)) <= pages, m and m.group(0)
    assert "Overfull \\hbox" not in log


def test_the_notation_says_how_preactivations_are_named(tex):
    notation = section(tex, "Notation")
    assert r"is written $\mathbf{z}$ with the name of" in notation
    assert r"$\mathbf{z}_h$ gives $\mathbf{h}$" in notation
    assert r"$\mathbf{z}_a$ gives $\mathbf{a}^{(\mathrm{in})}$" in notation
    assert r"\sigma'(z)" in notation  # the seed RNN's activations are sigmoids


def _writeup(name: str) -> str:
    return render(symderiv.derive(symderiv.load(EXAMPLES / f"{name}.sdm")), "tex", f"{name}.sdm")


def test_entry_by_entry_only_where_entry_forms_follow():
    mlp = _writeup("mlp")  # no sum over time: no entry forms
    assert "entry by entry, for a weight" not in mlp and r"_{ij}" not in mlp
    assert r"\sigma'(z)" not in mlp  # no sigmoid in the network (softplus' derivative is σ, but not written σ')


def test_the_lstm_block_of_the_stacked_adjoint_is_defined_where_it_is_used():
    tex = _writeup("lstm_tagger")
    backward = section(tex, "Backward pass")
    use = backward.index(r"\left[\delta \mathbf{v}_{t+1}\right]_{1:n_{h}}")
    where = backward.index(r"\intertext{where $\left[\delta \mathbf{v}_{t+1}\right]_{1:n_{h}}$")
    assert use < where < backward.index(r"\delta \mathbf{c}_t &")  # right after the adjoint that uses it
    definition = backward[where:backward.index("\n", where)]
    assert r"the entries $1$ to $n_{h}$ of $\delta \mathbf{v}_{t+1}$" in definition
    assert r"belongs to $\mathbf{h}_t$" in definition
    assert r"\begin{bmatrix} \mathbf{h}_t \\ \mathbf{x}_{t+1} \end{bmatrix}" in definition
    assert r"[\mathbf{u}\right]_{i:j}$ is the block of entries" in section(tex, "Notation")


def test_a_layer_number_is_a_subscript():
    text = "dim n, m\ninput x: n\ntarget y: m\nparam W1: (m, n)\nparam b1: m\nh1 = tanh(W1 @ x + b1)\n" \
           "loss L = squared_error(y, h1)\n"
    tex = render(symderiv.derive(symderiv.parse(text, "layers.sdm")), "tex", "layers.sdm")
    assert r"\mathbf{z}_{h,1} &= \mathbf{W}_1 \mathbf{x} + \mathbf{b}_1" in tex
    assert r"\mathbf{W1}" not in tex and r"\mathrm{h1}" not in tex


def test_a_divisor_that_is_a_product_is_in_parentheses():
    """exp(W1 x) ⊘ (1 + W1 x): its derivative divides by (1 + W1 x)², which must not print as
    a ⊘ b ⊙ b (that reads (a ⊘ b) ⊙ b)."""
    from sympy import HadamardPower, HadamardProduct, MatAdd, MatrixSymbol, OneMatrix

    from symderiv.render.printing import LatexPrinter, UnicodePrinter

    model = symderiv.parse("dim n\ninput x: n\nparam w: n\nloss L = sum(w * x)\n", "div.sdm")
    a, b = MatrixSymbol("x", 3, 1), MatrixSymbol("w", 3, 1)
    e = HadamardProduct(a, HadamardPower(MatAdd(OneMatrix(3, 1), b), -2))
    assert UnicodePrinter(model).doprint(e) == "x ⊘ ((1 + w) ⊙ (1 + w))"
    assert UnicodePrinter(model).doprint(HadamardProduct(a, HadamardPower(b, -2))) == "x ⊘ (w ⊙ w)"
    assert LatexPrinter(model).doprint(HadamardProduct(a, HadamardPower(b, -1))) == r"\mathbf{x} \oslash \mathbf{w}"


def test_a_preactivation_follows_the_spelling_of_its_activation():
    """mlp.sdm spells h1 as h^{[1]}: its pre-activation is z^{[1]}, and the notation says so."""
    tex = _writeup("mlp")
    assert r"\mathbf{z}^{[1]} &= \mathbf{W}^{[1]} \mathbf{x} + \mathbf{b}^{[1]}" in tex
    assert r"\mathbf{h}^{[1]} &= \operatorname{relu}\left(\mathbf{z}^{[1]}\right)" in tex
    assert r"is named: $\mathbf{z}^{[1]}$ gives $\mathbf{h}^{[1]}$" in section(tex, "Notation")
