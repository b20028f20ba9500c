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
        row = next(line for line in block.splitlines() if line.startswith(lhs))
        assert r"\sum_{t=1}^{T}" in row, p
    assert r"\delta \mathbf{y}_{h,t} {\mathbf{h}_{t-1}}^{\top}" in block  # ∂L/∂V
    # the adjoints it uses, the BPTT term included
    bptt = r"{\mathbf{W}}^{\top} \delta \mathbf{y}_{o,t} + {\mathbf{V}}^{\top} \delta \mathbf{y}_{h,t+1}"
    assert r"\delta \mathbf{h}_t &= " + bptt in block
    assert r"\delta \mathbf{h}^{(\mathrm{out})}_t &= \hat{\mathbf{r}}_t - \mathbf{r}_t" in block
    assert r"\left(\delta \mathbf{y}_{o,t}\right)_i \left(\mathbf{h}_t\right)_j" in block  # element form of ∂L/∂W


def test_backward_pass_shows_the_bptt_term_and_the_chain_rule_step(tex):
    block = section(tex, "Backward pass")
    assert r"{\mathbf{V}}^{\top} \delta \mathbf{y}_{h,t+1}" in block
    assert r"\left(\frac{\partial \mathbf{h}^{(\mathrm{out})}_t}{\partial \mathbf{o}_t}\right)^{\top}" in block
    assert r"\hat{\mathbf{r}}_t - \mathbf{r}_t" in block


def test_update_rules(tex):
    block = section(tex, "Gradient descent")
    assert block.count(r"\leftarrow") == 9 and r"\eta" in block


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
