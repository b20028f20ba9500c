"""Reading claims out of write-ups: the LaTeX subset, the spellings of names, what is a claim
and what is not.  Each case is judged, so a misread claim shows as a wrong verdict."""

import warnings
from functools import cache

import pytest

import symderiv
from symderiv.claims.latex import displayed_spans
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify

from .helpers import EXAMPLES, ROOT


@cache
def derivation(model: str):
    path = EXAMPLES / f"{model}.sdm" if model == "seed_rnn" else ROOT / "tests" / "models" / f"{model}.sdm"
    return symderiv.derive(symderiv.load(path))


def judged(tmp_path, text: str, model: str = "seed_rnn", suffix: str = ".md"):
    path = tmp_path / f"writeup{suffix}"
    path.write_text(text)
    d = derivation(model)
    return [(v.target, v.verdict, v.diagnosis) for v in verify(d, read_claims(path, d)).verdicts]


RIGHT = [
    # left sides
    r"\frac{\partial \mathcal{L}}{\partial \mathbf{V}} = \sum_{t=1}^{T} \delta \mathbf{y}_{h,t} \mathbf{h}_{t-1}^\top",
    r"\frac{\partial \mathcal{L}}{\partial \mathbf{V}_{ij}} = \sum_{t} (\delta \mathbf{y}_{h,t})_i"
    r" (\mathbf{h}_{t-1})_j",
    r"(\delta \mathbf{b}_h)_i = \sum_{t=1}^{T} \delta \mathbf{y}_{h,t,i}",
    r"\delta \mathbf{a}^{(\mathrm{in})}_{t,k} = \sum_{j} \mathbf{U}_{j,k} \delta \mathbf{y}_{h,t,j}",
    # fonts and spellings of one name
    r"\delta \boldsymbol{h}^{(\mathrm{out})}_t = \hat{\bm{r}}_t - \mathbf{r}_t",
    r"\delta \mathbf{h}_{\text{out},t} = \mathbf{\hat{r}}_t - r_t",
    r"\delta \mathbf{o}_t = {\mathbf{W}^{(\texttt{out})}}^{\top} \delta \mathbf{h}^{(out)}_t",
    r"\delta \mathbf{o}_t = \left(\mathbf{W}^{(\mathrm{out})}\right)^{T} \delta \mathbf{h}^{(\text{out})}_t",
    # operations
    r"\delta \mathbf{y}_{o,t} = \sigma'(\mathbf{y}_{o,t}) \odot {\mathbf{W}^{(\mathrm{out})}}^\top"
    r" \delta \mathbf{h}^{(\mathrm{out})}_t",
    r"\delta \mathbf{y}_{h,t} = \delta \mathbf{h}_t \circ \mathbf{h}_t \circ (1 - \mathbf{h}_t)",
    r"\delta \hat{\mathbf{r}}_t = -\frac{\mathbf{r}_t}{\hat{\mathbf{r}}_t}",
    r"\delta \hat{\mathbf{r}}_t = -\mathbf{r}_t \oslash \hat{\mathbf{r}}_t \quad \text{(elementwise)}",
    r"\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t \mathbf{1}^\top \mathbf{r}_t - \mathbf{r}_t",
    r"\delta \mathbf{h}^{(\mathrm{out})}_{t,i} = \hat{\mathbf{r}}_{t,i} \sum_{j=1}^{C} r_{t,j} - r_{t,i}",
    # steps
    r"\delta \mathbf{h}_{t-1} = \mathbf{W}^\top \delta \mathbf{y}_{o,t-1} + \mathbf{V}^\top \delta \mathbf{y}_{h,t}",
    r"\delta \mathbf{h}_T = \mathbf{W}^\top \delta \mathbf{y}_{o,T}",
    r"\delta \mathbf{h}_2 = \mathbf{W}^\top \delta \mathbf{y}_{o,2} + \mathbf{V}^\top \delta \mathbf{y}_{h,3}",
]


@pytest.mark.parametrize("claim", RIGHT)
def test_right_claims_in_many_spellings_are_correct(tmp_path, claim):
    (result,) = judged(tmp_path, f"$$ {claim} $$\n")
    assert result[1] == "correct", result


def test_unicode_math_is_read(tmp_path):
    assert judged(tmp_path, "$$δ\\mathbf{y}_{h,t} = δ\\mathbf{h}_t ⊙ \\mathbf{h}_t ⊙ (1 − \\mathbf{h}_t)$$") == [
        ("z_h[t]", "correct", [])]


def test_environments_rows_and_continuations(tmp_path):
    text = r"""
\begin{align}
  \mathbf{h}_t &= \sigma(\mathbf{U} \mathbf{a}^{(\mathrm{in})}_t + \mathbf{V} \mathbf{h}_{t-1} + \mathbf{b}_h) \\
  \delta \mathbf{h}_t &= \left(\frac{\partial \mathbf{y}_{o,t}}{\partial \mathbf{h}_t}\right)^{\top}
     \delta \mathbf{y}_{o,t} + \ldots \nonumber \\
  &= \mathbf{W}^\top \delta \mathbf{y}_{o,t} + \mathbf{V}^\top \delta \mathbf{y}_{h,t+1} \label{eq:h} \\[4pt]
  \delta \mathbf{a}^{(\mathrm{in})}_t &= \mathbf{U}^\top \delta \mathbf{y}_{h,t} \quad \Longleftrightarrow \quad
  \delta \mathbf{a}^{(\mathrm{in})}_{t,k} = \sum_{j} \mathbf{U}_{j,k} \delta \mathbf{y}_{h,t,j}
\end{align}
\[ \begin{cases} \delta \mathbf{b}_o = \sum_t \delta \mathbf{y}_{o,t} & \text{for the bias, } = \text{prose} \\
   \delta \mathbf{W} = \delta \mathbf{y}_{o,t} \mathbf{h}_t^\top & (\text{per step}) \end{cases} \]
% \[ \delta \mathbf{W} = 0 \] is a comment
"""
    assert judged(tmp_path, text, suffix=".tex") == [
        ("h[t]", "correct", []),  # the last member of the chain that continues on the next row
        ("a_in[t]", "correct", []),
        ("a_in[t][k]", "correct", []),
        ("b_o", "correct", []),
        ("W", "per-step", []),
    ]


def test_inline_math_is_read_too(tmp_path):
    # (issue 14: write-ups with their claims only in inline math read as "0 claims")
    text = r"""
Inline math: $\delta \mathbf{h}_t = 0$ and, on another line,
\(\delta \mathbf{o}_t = {\mathbf{W}^{(\mathrm{out})}}^{\top} \delta \mathbf{h}^{(\mathrm{out})}_t\);
prose $x$ and $\delta h_t$.
"""
    assert judged(tmp_path, text) == [("h[t]", "incorrect", []), ("o[t]", "correct", [])]


def test_what_is_not_a_claim(tmp_path):
    text = r"""
$$\mathcal{L} = -\sum_{t=1}^{T} \mathbf{r}_t^\top \log \hat{\mathbf{r}}_t$$
$$\mathbf{b}_o \leftarrow \mathbf{b}_o - \eta \, \delta \mathbf{b}_o$$
$$\sigma'(z) \triangleq \sigma(z) (1 - \sigma(z))$$
```
$$\delta \mathbf{h}_t = 0$$
```
"""
    assert judged(tmp_path, text) == []


def test_definitions_name_expressions_for_later_claims(tmp_path):
    text = r"""
$$\delta \mathbf{z}_t \triangleq \frac{\partial \mathcal{L}}
  {\partial (\mathbf{V} \mathbf{h}_{t-1} + \mathbf{U} \mathbf{a}^{(\mathrm{in})}_t + \mathbf{b}_h)}$$
$$\delta \mathbf{q}_t \overset{\text{def}}{=}
  \frac{\partial \mathcal{L}}{\partial \left(\mathbf{W} \mathbf{h}_t + \mathbf{b}_o\right)}$$
$$\mathbf{s}_t := \mathbf{W}^{(\mathrm{in})} \mathbf{x}_t + \mathbf{b}^{(\mathrm{in})}$$
$$\delta \mathbf{h}_t = \mathbf{W}^\top \delta \mathbf{q}_t + \mathbf{V}^\top \delta \mathbf{z}_{t+1}$$
$$\delta \mathbf{s}_t = \sigma(\mathbf{s}_t) \odot (1 - \sigma(\mathbf{s}_t))
  \odot \mathbf{U}^\top \delta \mathbf{z}_t$$
$$\delta \mathbf{w}_t \triangleq \frac{\partial \mathcal{L}}{\partial (\mathbf{W} \mathbf{h}_t)} = \mathbf{W}^\top$$
"""
    assert judged(tmp_path, text) == [
        ("h[t]", "correct", []),
        ("z_a[t]", "correct", []),
        ("", "unreadable", []),  # W h_t alone is no quantity of the model
    ]


def test_row_slices_and_named_functions(tmp_path):
    text = r"""
$$\delta \mathbf{h}_t = \mathbf{W}_y^\top (\operatorname{softmax}(\mathbf{W}_y \mathbf{h}_t + \mathbf{b}_y)
  - \mathbf{r}_t) + \left[\delta \mathbf{z}_{t+1}\right]_{1:n_h}$$
$$\delta \mathbf{x}_t = \left[\delta \mathbf{z}_{t}\right]_{n_h + 1:n_h + n_x}$$
$$\delta \mathbf{c}_t = \delta \mathbf{h}_t \odot \mathbf{o}_t \odot (1 - \tanh^2(\mathbf{c}_t))
  + \delta \mathbf{c}_{t+1} \odot \mathbf{f}_{t+1}$$
"""
    assert judged(tmp_path, text, model="lstm") == [
        ("h[t]", "correct", []),
        ("", "unreadable", []),  # x is data: it has no gradient
        ("c[t]", "correct", []),
    ]


def test_layer_numbers_and_relu(tmp_path):
    text = r"""
$$\delta \mathbf{b}_1 = \mathbb{1}[\mathbf{W}_1 \mathbf{x} + \mathbf{b}_1 > 0]
  \odot \mathbf{W}_2^\top (\hat{\mathbf{y}} - \mathbf{y})$$
$$\delta \mathbf{b}^{(1)} = \mathbb{1}[\mathbf{W}^{[1]} \mathbf{x} + \mathbf{b}^{[1]} > 0]
  \odot {\mathbf{W}^{(2)}}^\top (\hat{\mathbf{y}} - \mathbf{y})$$
"""
    assert judged(tmp_path, text, model="mlp_relu") == [("b1", "correct", []), ("b1", "correct", [])]


def test_an_initial_state_gradient_reads_fixed_steps(tmp_path):
    text = (r"$$\frac{\partial \mathcal{L}}{\partial \mathbf{h0}} = \delta \mathbf{h}_1 \odot (1 - \mathbf{z}_1)"
            r" + \mathbf{r}_1 \odot \mathbf{U}_n^\top \delta \mathbf{a}_{n,1}"
            r" + \mathbf{U}_r^\top \delta \mathbf{a}_{r,1} + \mathbf{U}_z^\top \delta \mathbf{a}_{z,1}$$")
    assert judged(tmp_path, text, model="gru") == [("h0", "correct", [])]


def test_displayed_equations_are_found_in_every_delimiter():
    text = "a $x$ b $$one$$ \\[two\\] \\begin{equation*}three\\end{equation*} \\(no\\) \\begin{align}four\\end{align}"
    found = [text[a:b] for a, b, _ in displayed_spans(text, markdown=False)]
    assert found == ["one", "two", "three", "four"]


def test_a_string_with_an_invalid_escape_is_unreadable_without_a_python_warning(tmp_path):
    # A claims file goes through Python's parser too, which warned on stderr about "\m".
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert judged(tmp_path, 'd(V) = V + "\\m"\n', suffix=".claims") == [("V", "unreadable", [])]
    assert not [w for w in caught if issubclass(w.category, (SyntaxWarning, DeprecationWarning))]


@pytest.mark.parametrize("spelling", [r"\boldsymbol{\Lambda}", "Λ", r"\mathbf{Λ}"])
def test_a_greek_character_reads_as_its_command(tmp_path, spelling):
    """Λ in the text is \\Lambda (its Unicode name says LAMDA, so it was once read as no letter)."""
    model = tmp_path / "greek.sdm"
    model.write_text("dim n\nparam Lambda: (n, n)\ninput x: n\ntarget y: n\nz = Lambda @ x\n"
                     "loss L = squared_error(y, z)\n")
    d = symderiv.derive(symderiv.load(model))
    right = tmp_path / "right.md"
    right.write_text(f"$$ \\frac{{\\partial L}}{{\\partial {spelling}}} = (\\mathbf{{z}} - \\mathbf{{y}})"
                     " \\mathbf{x}^\\top $$\n")
    wrong = tmp_path / "wrong.md"
    wrong.write_text(f"$$ \\frac{{\\partial L}}{{\\partial {spelling}}} = \\mathbf{{z}} \\mathbf{{x}}^\\top $$\n")
    verdicts = [verify(d, read_claims(path, d)).verdicts for path in (right, wrong)]
    assert [[(v.target, v.verdict) for v in vs] for vs in verdicts] == [[("Lambda", "correct")],
                                                                         [("Lambda", "incorrect")]]


@pytest.mark.parametrize("digit", ["²", "³", "①"])
def test_a_digit_that_is_not_a_decimal_digit_is_unreadable_not_a_crash(tmp_path, digit):
    """str.isdigit() holds for ² but the number pattern \\d does not match it: the tokenizer
    once took the missing match's group and stopped with an AttributeError (found by mypy)."""
    claim = f"$$ \\delta \\mathbf{{h}}_T = \\mathbf{{W}}^\\top \\delta \\mathbf{{y}}_{{o,T}}{digit} $$\n"
    assert judged(tmp_path, claim) == [("h[T]", "unreadable", [])]
    # the same claim without the stray character is read, and right
    assert judged(tmp_path, claim.replace(digit, "")) == [("h[T]", "correct", [])]


def test_a_slip_of_a_name_in_a_write_up_gets_the_model_languages_hint(tmp_path):
    model = ROOT / "tests" / "data" / "matrices" / "mean_ridge.sdm"
    d = symderiv.derive(symderiv.load(model))
    path = tmp_path / "mine.md"
    path.write_text("$$\\delta \\mathbf{w} = \\mathbf{X}^\\top \\delta \\mathbf{rr} + 2 \\lambda \\mathbf{w}$$\n")
    (v,) = verify(d, read_claims(path, d)).verdicts
    assert v.verdict == "unreadable"
    assert v.message == ("line 1, column 46: unknown name \\mathbf{rr}: not a quantity of the model; "
                         "did you mean \\mathbf{r} (r)?")


def test_a_name_whose_body_is_several_quantities_gets_the_pre_activations_not_one_guess(tmp_path):
    """The seed RNN's z_a, z_h and z_o are all \\mathbf{z}: a write-up's bare \\delta \\mathbf{z}_t is told
    every pre-activation and how to define its own name, not "did you mean" whichever came first."""
    d = symderiv.derive(symderiv.load(ROOT / "examples" / "seed_rnn.sdm"))
    path = tmp_path / "mine.md"
    path.write_text("$$\\delta \\mathbf{z}_t = \\mathbf{W}^\\top \\delta \\mathbf{h}_t$$\n")
    (v,) = verify(d, read_claims(path, d)).verdicts
    assert v.verdict == "unreadable"
    assert "did you mean" not in v.message
    assert "the model calls them" in v.message and all(n in v.message for n in ("z_a", "z_h", "z_o"))
