"""The stages of the two readers, each on its own: a model file's logical lines, statements
and definition order (``symderiv.frontend``), and a write-up's tokens, displayed equations,
chains, names and expressions (``symderiv.claims.latex``).  End-to-end tests show that the
stages work together; these show which stage does what."""

from fractions import Fraction

import pytest

from symderiv import ModelError
from symderiv.claims.latex.displays import chains_of, displayed_spans, rows_of
from symderiv.claims.latex.names import Glossary, NameReader
from symderiv.claims.latex.parser import ExpressionParser
from symderiv.claims.latex.tokens import tokenize
from symderiv.claims.tree import (
    Derivative,
    Grad,
    Hadamard,
    Neg,
    Num,
    OverTime,
    Power,
    Product,
    Quotient,
    ReadError,
    Step,
    Terms,
    Transposed,
    Val,
)
from symderiv.frontend.order import check_states, definition_order
from symderiv.frontend.source import Source, logical_lines
from symderiv.frontend.statements import ParseState, read_statements

T0, T1 = Step("t", 0), Step("t", -1)


# ---------------------------------------------------------------------------------------
# symderiv.frontend


def test_a_logical_line_runs_while_a_bracket_is_open_and_knows_where_each_character_was():
    source = Source("m.sdm", ["dim n  # sizes", "h = tanh(W @ x", "      + b)  # a comment", "", 'latex W "#"'])
    lines = logical_lines(source)
    assert [line.text for line in lines] == ["dim n", "h = tanh(W @ x\n      + b)", 'latex W "#"']
    h = lines[1]
    at_b = h.text.index("b")
    assert (h.pos(at_b).line, h.pos(at_b).col) == (3, 9)  # on the continuation line, in file columns
    assert (h.pos(0).line, h.pos(0).col) == (2, 1)
    assert lines[2].text.endswith('"#"')  # a # inside quotes is text, not a comment


def test_an_unclosed_bracket_is_reported_where_it_opens():
    with pytest.raises(ModelError) as exc:
        logical_lines(Source("m.sdm", ["dim n", "h = tanh((W @ x)", "loss L = h"]))
    assert (exc.value.pos.line, exc.value.pos.col) == (2, 9)
    assert "unclosed parenthesis" in exc.value.message


def _state(lines: list[str]) -> ParseState:
    source = Source("m.sdm", lines)
    state = ParseState(source, "m")
    read_statements(state, logical_lines(source))
    return state


RECURRENT = ["dim n", "time t = 1..T", "param W: (n, n)", "input x[t]: n",
             "loss L = Sum(o[t].T @ o[t], (t, 1, T))", "o[t] = W @ h[t]",
             "h[t] = tanh(W @ x[t] + W @ h[t-1])", "state h[0] = 0"]


def test_statements_declare_in_file_order_and_keep_equations_as_trees():
    s = _state(RECURRENT)
    assert list(s.dims) == ["n"] and (s.time_index, str(s.length)) == ("t", "T")
    assert list(s.definitions) == ["L", "o", "h"]
    assert s.definitions["L"].is_loss and s.definitions["h"].sequence and not s.definitions["L"].sequence
    assert s.quantities["W"].role == "param" and s.quantities["x"].sequence
    assert list(s.states) == ["h"] and list(s.states["h"]) == [0]


def test_definitions_are_ordered_dependencies_first_and_a_lag_does_not_order():
    s = _state(RECURRENT)
    order, lags = definition_order(s)
    assert order == ["h", "o", "L"]  # the file says L, o, h
    assert {name: [(k, d.name) for k, d, _ in uses] for name, uses in lags.items()} == {"h": [(1, "h")]}
    check_states(s, lags)  # h[0] is given


def test_a_cycle_is_reported_at_the_reference_that_closes_it():
    s = _state(["dim n", "param W: (n, n)", "input x: n", "a = W @ b", "b = W @ c", "c = W @ a + x",
                "loss L = a.T @ a"])
    with pytest.raises(ModelError) as exc:
        definition_order(s)
    assert "cycle: a -> b -> c -> a" in exc.value.message
    assert (exc.value.pos.line, exc.value.pos.col) == (6, 9)  # the 'a' in c's equation


def test_a_lag_needs_a_state_for_every_step_it_reaches():
    s = _state(RECURRENT[:-1] + ["state h[-1] = 0"])  # h[t-1] at t = 1 reaches h[0], which is missing
    _, lags = definition_order(s)
    with pytest.raises(ModelError) as exc:
        check_states(s, lags)
    assert "reaches step 0" in exc.value.message


# ---------------------------------------------------------------------------------------
# symderiv.claims.latex


def test_tokens_drop_the_look_and_keep_positions():
    text = r"\delta \mathbf{h}_t = λ \text{(where } x) ⊙ \left( a \right."
    toks = tokenize(text, 0, len(text))
    assert [(t.kind, t.value) for t in toks] == [
        ("cmd", "delta"), ("cmd", "mathbf"), ("char", "{"), ("letter", "h"), ("char", "}"), ("char", "_"),
        ("letter", "t"), ("char", "="), ("cmd", "lambda"), ("text", "(where "), ("letter", "x"), ("char", ")"),
        ("cmd", "odot"), ("char", "("), ("letter", "a")]
    paren = toks[13]
    assert text[paren.pos:paren.end] == r"\left("  # a delimiter spans its \left, so claims quote whole
    assert all(text[t.pos:t.end].strip() for t in toks)


WRITEUP = ("Inline $x = 1$ is prose.\n"
           "\\begin{align}\n\\delta h_t &= a \\\\\n&= b \\quad \\text{(by (3))}\n\\end{align}\n"
           "$$ u = v \\triangleq w $$\n"
           "% $$ z = 0 $$\n"
           "\\[ \\begin{cases} p = q & \\text{if } t = 1 \\\\ r = s & \\text{else} \\end{cases} \\]\n")


def _chains(text: str, markdown: bool = False) -> list[tuple[list[str], list[str]]]:
    out = []
    for start, stop, env in displayed_spans(text, markdown):
        for chain in chains_of(rows_of(tokenize(text, start, stop), env)):
            out.append((["".join(t.value for t in member) for member in chain.members], chain.relations))
    return out


def test_displays_are_found_and_cut_into_chains():
    assert _chains(WRITEUP) == [
        (["deltah_t", "a", "b"], ["=", "="]),  # a continuation row joins its chain; the note is dropped
        (["u", "v", "w"], ["=", "triangleq"]),
        (["p", "q"], ["="]), (["r", "s"], ["="]),  # a row of cases stops at its condition
    ]  # inline math and a commented-out display are not claims


def test_in_markdown_only_a_math_fence_is_a_display():
    text = "```math\nv = w\n```\n\n```python\n$$ not = math $$\n```\n"
    assert _chains(text, markdown=True) == [(["v", "w"], ["="])]


@pytest.fixture(scope="module")
def glossary(seed_derivation):
    return Glossary.of(seed_derivation.model)


@pytest.mark.parametrize("written, meant", [
    (r"\mathbf{W}^{(\mathrm{out})}", ("W_out", None, ())),
    (r"W^{(out)}", ("W_out", None, ())),
    (r"\mathbf{h}_{t-1}", ("h", T1, ())),
    (r"\hat{r}_{t,i}", ("r_hat", T0, ("i",))),
    (r"\mathbf{y}_{h,T}", ("z_h", Step("T", 0), ())),
    (r"\mathbf{V}_{ij}", ("V", None, ("i", "j"))),
])
def test_a_name_as_written_is_a_quantity_a_step_and_entries(glossary, written, meant):
    reader = NameReader(tokenize(written, 0, len(written)), written, glossary)
    atom = reader.atom()
    assert reader.at_end()
    assert glossary.resolve(atom) == meant


def test_an_unknown_name_is_an_error_at_the_name(glossary):
    written = r"\mathbf{Q}_t"
    atom = NameReader(tokenize(written, 0, len(written)), written, glossary).atom()
    with pytest.raises(ReadError) as exc:
        glossary.resolve(atom)
    assert exc.value.pos == 0 and "unknown name" in exc.value.message


@pytest.mark.parametrize("written, tree", [
    (r"\mathbf{W}^\top \delta \mathbf{y}_{o,t}", Product((Transposed(Val("W", None)), Grad("z_o", T0)))),
    (r"\delta \mathbf{h}_{t} \odot (1 - \mathbf{h}_t^2)",
     Hadamard((Grad("h", T0), Terms((Num(Fraction(1)), Neg(Power(Val("h", T0), 2))))))),
    (r"\sum_{t=1}^{T} \delta \mathbf{y}_{h,t} \mathbf{h}_{t-1}^\top",
     OverTime(Product((Grad("z_h", T0), Transposed(Val("h", T1)))))),
    (r"\sigma'(\mathbf{y}_{o,t})", Derivative("sigmoid", Val("z_o", T0))),
    (r"-\frac{\mathbf{r}_t}{\hat{\mathbf{r}}_t}", Neg(Quotient(Val("r", T0), Val("r_hat", T0)))),
    (r"\frac{\partial L}{\partial \mathbf{V}}", Grad("V", None)),
])
def test_an_expression_is_read_into_its_tree(glossary, written, tree):
    assert ExpressionParser(tokenize(written, 0, len(written)), written, glossary).whole() == tree
