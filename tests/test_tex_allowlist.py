r"""A model file's ``latex`` spelling never reaches TeX or the Markdown page as anything but math.

The check (symderiv/ir/texsafe.py) is an allow-list decided on what TeX reads, not
on the raw text: ``^^5c`` is a backslash to TeX.  Here: every attack of the security issue,
as a model file given to ``symderiv derive``, exits 2 at the offending character; the
spellings people write still work and appear verbatim in the write-up and the page; and
any accepted spelling, generated at random, compiles with pdflatex without reading or
writing a file other than the write-up's own.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import string
import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import symderiv
from symderiv import ModelError, SymderivError
from symderiv.ir.texsafe import (
    ALLOWED_CHARACTERS,
    ALLOWED_COMMANDS,
    GREEK,
    MATH_ALPHABETS,
    ORDINARY,
    braces_come_off,
    check_tex_spelling,
)
from symderiv.render.emit import render

from .helpers import EXAMPLES, ROOT, pdflatex

MODEL = """\
dim n_in, n_out
time t = 1..T
input x[t]: n_in
param W: (n_out, n_in)
h[t] = W @ x[t]
loss L = Sum(sum(h[t]), (t, 1, T))
"""
LATEX_LINE = len(MODEL.splitlines()) + 1
COL = len('latex W "') + 1  # the column of a spelling's first character

# (spelling, where the error must point, a word the message must hold): the attacks first.
ATTACKS = [
    (r"^^5cinput{/etc/hostname}", 0, "'^^'"),
    (r"^^5cimmediate^^5copenout5=hostile.py ^^5cimmediate^^5cwrite5{import os}", 0, "'^^'"),
    (r"^^5cwrite18{touch PWNED}", 0, "'^^'"),
    (r"W^^5cinput{/etc/hostname}", 1, "'^^'"),
    (r"\mathbf{^^M}", 8, "'^^'"),
    (r"^^^^005cinput x", 0, "'^^'"),
    (r"\pdfobj stream file {/etc/hostname}\pdfrefobj\pdflastobj", 0, r"'\pdfobj'"),
    (r"\pdfunescapehex{3c3c2f4f70656e416374696f6e}", 0, r"'\pdfunescapehex'"),
    (r"\loop\iftrue\repeat", 0, r"'\loop'"),
    (r"W\endinput", 1, r"'\endinput'"),
    (r"\iffalse W", 0, r"'\iffalse'"),
    ("W # x", 2, "'#'"),
    (r"\left(W", 0, r"'\left('"),
    (r"\verb|W|", 0, r"'\verb'"),
    (r"\"W # x", 0, "'\\\"'"),
    (r"\text{[x](javascript:alert(1))}", 0, r"'\text'"),
    ("<script>alert(1)</script>", 0, "'<'"),
    ("W$$ <b>x</b> $$", 1, "'$'"),
    ("[x](y)", 2, "']('"),
]


def _model_file(tmp_path, spelling: str):
    path = tmp_path / "hostile.sdm"
    path.write_text(MODEL + f'latex W "{spelling}"\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("spelling, at, word", ATTACKS, ids=range(len(ATTACKS)))
def test_derive_refuses_each_attack_at_its_character(tmp_path, spelling, at, word):
    path = _model_file(tmp_path, spelling)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "symderiv", "derive", str(path), "-o", str(out)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"{path}:{LATEX_LINE}:{COL + at}: error: "), run.stderr
    assert word in run.stderr.splitlines()[0], run.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.sdm"]


# More that TeX or the page would misread, checked through the parser (same path, no process).
REFUSED = [
    ("W^{a}'", 5, "prime"),  # x^a' is a double superscript
    ("W' '", 3, "prime"),  # the space ends the prime: a second superscript
    ("W' ^a", 3, "second superscript"),
    ("W_a_b", 3, "second subscript"),
    ("W^a^b", 3, "second superscript"),
    (r"\boldsymbol{W_a}_b", 16, "second subscript"),  # bm leaves the argument's scripts on the symbol
    (r"\boldsymbol{\boldsymbol{W}}", 12, r"\boldsymbol inside"),  # bm: minutes, then out of memory
    (r"\hat{\mathbf{\tilde{W}}}", 13, "accent inside an accent"),
    ("^2", 0, "start with '^'"),
    ("'W", 0, "start with '"),
    ("- W", 0, "start with '-'"),
    ("W^", 1, "no argument"),
    (r"\hat", 0, "no argument"),
    (r"\mathbf\hat{W}", 0, "put it in braces"),
    (r"W^\mathbf{x}", 1, "put it in braces"),
    ("W^}", 1, "not '}'"),
    ("W}", 1, "unmatched '}'"),
    (r"\mathbf{W", 7, "unclosed '{'"),
    ("W(", 1, "unclosed '('"),
    ("W(]", 2, "closes '('"),
    (r"\left(W\right]", 13, r"'\right)'"),
    (r"{\left(W}\right)", 1, r"'\left'"),
    (r"\right)", 0, r"'\right'"),
    (r"\left\{W\right\}", 0, r"'\left' must be followed"),
    ("[W][x]", 2, "']['"),
    (r"W\\x", 1, "line break"),
    (r"W\,x", 1, r"'\,'"),
    (r"W\ x", 1, r"'\ '"),
    (r"\operatorname{W}", 0, r"'\operatorname'"),
    (r"\mathrm{W}\csname input\endcsname", 10, r"'\csname'"),
    (r"\catcode`\$=11", 0, r"'\catcode'"),
    ("W~x", 1, "'~'"),
    ("W & x", 2, "'&'"),
    ("W % x", 2, "'%'"),
    ("W:x", 1, "':'"),
    ("W.x", 1, "'.'"),
    ("Wé", 1, "U+00E9"),
    ("W\u2028x", 1, "U+2028"),
    ("W\x0cx", 1, "U+000C"),
    ("", 0, "empty"),
    ("   ", 0, "empty"),
    ("W" * 201, 200, "longer than"),
    ("{" * 20 + "W" + "}" * 20, 16, "nested deeper"),
    (r"\omicron", 0, r"'\omicron'"),  # TeX has no \omicron: it would stop the compile
    (r"\alphabet", 0, r"'\alphabet'"),  # a control word is all its letters
]


@pytest.mark.parametrize("spelling, at, word", REFUSED, ids=range(len(REFUSED)))
def test_parse_refuses_what_tex_or_the_page_would_misread(spelling, at, word):
    with pytest.raises(ModelError) as info:
        symderiv.parse(MODEL + f'latex W "{spelling}"\n', "hostile.sdm")
    err = info.value
    assert (err.pos.line, err.pos.col) == (LATEX_LINE, COL + at), err.format()
    assert word in err.message, err.message
    assert check_tex_spelling(spelling)[0] == at


def test_a_backslash_at_the_end_is_refused():  # (in a model file it would escape the closing quote)
    assert check_tex_spelling("W\\")[0] == 1 and "at the end" in check_tex_spelling("W\\")[1]


def test_the_message_names_what_is_allowed():
    _, message = check_tex_spelling(r"\input{x}")
    for piece in (r"'\input'", "letters, digits", r"\mathbf", r"\hat", r"\alpha", r"\prime", r"\left("):
        assert piece in message, message


def test_the_allowed_commands_are_the_documented_set():
    assert {"mathbf", "mathrm", "boldsymbol", "mathcal", "mathbb"} <= MATH_ALPHABETS
    assert {"mathit", "mathsf", "mathtt"} <= MATH_ALPHABETS  # kernel math alphabets: allowed
    assert {"hat", "tilde", "bar", "vec", "dot", "prime", "ell", "star", "ast", "left", "right"} <= ALLOWED_COMMANDS
    assert not {"text", "operatorname", "input", "def", "csname", "href", "omicron", "verb"} & ALLOWED_COMMANDS
    upper = {g for g in GREEK if g[0].isupper()}
    assert upper == {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}
    lower = {g for g in GREEK if g[0].islower() and not g.startswith("var")}
    assert len(lower) == 23 and "omicron" not in lower  # the 24 letters but omicron, which TeX lacks
    assert {g for g in GREEK if g.startswith("var")} == {"varepsilon", "vartheta", "varpi", "varrho", "varsigma",
                                                         "varphi"}


# ---------------------------------------------------------------------------------------
# What must still work


def _spellings_in_files() -> list[str]:
    found = []
    for folder in (EXAMPLES, ROOT / "tests" / "models", ROOT / "tests" / "data"):
        for path in sorted(folder.rglob("*.sdm")):
            for line in path.read_text(encoding="utf-8").splitlines():
                m = re.match(r'\s*latex\s+\w+\s+"((?:[^"\\]|\\.)*)"', line)
                if m:
                    found.append(m.group(1))
    return found


FROM_FILES = _spellings_in_files()
ACCEPTED = FROM_FILES + [
    r"\mathbf{W}_{hy}", r"\hat{y}", r"\boldsymbol{\alpha}", "W^{(out)}", "h'", r"\mathbf{W}^{(\mathrm{in})}",
    r"\tilde{\mathbf{c}}", r"\mathbf{y}^{*}", r"\boldsymbol{\Theta}_{[1]}", r"\hat{\mathbf{r}}", r"\mathcal{L}",
    r"\mathbb{E}", r"\mathit{W}", r"\mathsf{W}", r"\mathtt{W}", r"\ell_\star", r"y^\ast", "h''", "h'_t", "h'^{(2)}",
    r"W_{\left(1\right)}", r"\left[W\right]^{2}", r"\varepsilon_{k}", r"\Omega + \Upsilon", r"\mathbf W", r"\hat x",
    r"\bar{\mathbf{x}}", r"\vec{v}", r"\dot{\mathbf{h}}", "W^{[1]} x", "f'{b}'", "[b for b in W]", r"\hat{y}_o",
    r"\boldsymbol{x_a}",
]


def test_every_spelling_in_the_repository_files_is_found():
    assert len(FROM_FILES) >= 15 and r"\mathbf{y}^{*}" in FROM_FILES


@pytest.mark.parametrize("spelling", ACCEPTED)
def test_ordinary_spellings_are_accepted_as_written(spelling):
    assert check_tex_spelling(spelling) is None
    model = symderiv.parse(MODEL + f'latex W "{spelling}"\n', "ok.sdm")
    assert model.latex_overrides["W"] == spelling


SEQUENCE_MODEL = """\
dim n, m
time t = 1..T
input x[t]: n
param W: (m, n)
param b: m
param v: m
state h[0] = 0
h[t] = tanh(W @ x[t] + v * h[t-1] + b)
z = Sum(h[t], (t, 1, T))
loss L = sum(z * z) + sum(b * b)
"""
ROLES = ("W", "h", "z", "L")  # a matrix, a quantity at steps (and a state), a static quantity, the loss


def _writeup(spellings, fmt):
    text = SEQUENCE_MODEL + "".join(f'latex {name} "{s}"\n' for name, s in zip(ROLES, spellings))
    model = symderiv.parse(text, "spelt.sdm")
    return render(symderiv.derive(model), fmt, "spelt.sdm")


def test_spellings_appear_verbatim_in_the_writeup_and_the_page():
    spellings = [r"\mathbf{W}_{hy}", r"\boldsymbol{\hat{h}}'", "z^{(out)}", r"\mathcal{J}"]
    for fmt in ("tex", "md"):
        text = _writeup(spellings, fmt)
        for s in spellings:
            assert s in text, (fmt, s)
        # each at a step is the spelling in braces, closed by {} where TeX would drop the braces
        assert r"{\boldsymbol{\hat{h}}'{}}_{t}" in text
        assert r"\frac{\partial \mathcal{J}}{\partial \mathbf{W}_{hy}}" in text


def test_braces_come_off_only_a_lone_accent_with_a_script():
    assert braces_come_off(r"\hat{y}_o") and braces_come_off(r"\hat{y}'") and braces_come_off(r"\mathbf{\hat{y}}^2")
    assert braces_come_off(r"\boldsymbol{\hat{h}}_a")  # bm is transparent: still one accent
    assert not braces_come_off(r"\hat{y}") and not braces_come_off(r"\mathbf{y}_o")
    assert not braces_come_off(r"\hat{y}_o x") and not braces_come_off(r"\hat{y_o}")
    assert not braces_come_off(r"\input x")  # refused: nothing to say


def test_a_default_name_with_an_accent_and_a_superscript_keeps_its_braces():
    model = symderiv.parse("dim n, m\ntime t = 1..T\ninput x[t]: n\nparam W_hat_in: (m, n)\nparam V: (n, m)\n"
                           "h_hat_out[t] = tanh(W_hat_in @ x[t])\nloss L = Sum(sum(V @ h_hat_out[t]), (t, 1, T))\n",
                           "accents.sdm")
    assert model.latex("h_hat_out", "t") == r"\hat{\mathbf{h}}^{(\mathrm{out})}_t{}"
    assert model.latex("W_hat_in") == r"\hat{\mathbf{W}}^{(\mathrm{in})}{}"


# ---------------------------------------------------------------------------------------
# Random spellings: the check's word against TeX's and the page's

LETTER = st.sampled_from(list(string.ascii_letters + string.digits))
ORDINARY_CS = st.sampled_from(sorted("\\" + c for c in ORDINARY))
HOSTILE = st.sampled_from([
    r"\input canary ", "^^5cinput canary ", r"\endinput", r"\csname", "#", "%", "$", "&", "~", r"\\", r"\ ",
    r"\text{", "<", "](", r"\openout", r"\write", r"\def", "}", "{", "^", "_", "'", r"\left(", r"\right)", "é",
    r"\iffalse", r"\pdfobj", r"\boldsymbol{\boldsymbol{", r"\verb|",
])


@st.composite
def math_list(draw, depth=0):
    """A sequence of atoms with optional scripts, mostly well formed, now and then not."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        parts.append(draw(atom(depth)))
        for script in draw(st.lists(st.sampled_from(["^", "_", "'"]), max_size=2)):
            parts.append("'" if script == "'" else script + draw(argument(depth)))
        if draw(st.integers(0, 12)) == 0:
            parts.append(draw(HOSTILE))
        if draw(st.booleans()):
            parts.append(" ")
    return "".join(parts)


def argument(depth):
    bare = st.one_of(LETTER, ORDINARY_CS)
    if depth >= 3:
        return bare
    return st.one_of(bare, math_list(depth + 1).map(lambda s: "{" + s + "}"))


def atom(depth):
    simple = st.one_of(LETTER, ORDINARY_CS, st.sampled_from(list(",+-*")))
    if depth >= 3:
        return simple
    inner = math_list(depth + 1)
    return st.one_of(
        simple,
        inner.map(lambda s: "{" + s + "}"),
        st.tuples(st.sampled_from(sorted(MATH_ALPHABETS | {"hat", "tilde", "bar", "vec", "dot"})),
                  argument(depth)).map(lambda p: "\\" + p[0] + (p[1] if p[1].startswith("{") else " " + p[1])),
        inner.map(lambda s: r"\left(" + s + r"\right)"),
        inner.map(lambda s: "[" + s + "]"),
        inner.map(lambda s: "(" + s + ")"),
    )


ANY_TEXT = st.text(alphabet=st.sampled_from(list(string.printable) + ["é", "\u2028"]), max_size=40)


@settings(max_examples=300)
@given(st.one_of(math_list(), ANY_TEXT, st.lists(HOSTILE, max_size=5).map("".join)))
def test_an_accepted_spelling_has_only_allowed_pieces(text):
    refused = check_tex_spelling(text)
    if refused is not None:
        offset, message = refused
        assert 0 <= offset <= len(text) and message
        return
    # independently of the reader: characters, control words, braces, ^^, Markdown
    assert "^^" not in text and "](" not in text and "][" not in text
    assert set(text) <= ALLOWED_CHARACTERS | {"\\"}
    assert re.fullmatch(r"(?:[^\\]|\\[A-Za-z]+)*", text), text  # no control symbol
    assert set(re.findall(r"\\([A-Za-z]+)", text)) <= ALLOWED_COMMANDS
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert text.strip()[0] not in "+-*^_'"


@settings(max_examples=15)
@given(math_list())
def test_an_accepted_spelling_stays_inside_the_math_of_the_page(spelling):
    assume(check_tex_spelling(spelling) is None)
    page = _writeup([spelling, spelling, spelling, r"\mathcal{L}"], "md")  # z's equation starts a line
    body = page.split("\n", 1)[1]  # after the header comment
    assert "<" not in body and "](" not in body and "javascript" not in body
    blocks = body.split("$$")
    assert len(blocks) % 2 == 1  # every display opened is closed
    for inside in blocks[1::2]:
        assert "$" not in inside and "\n\n" not in inside.strip("\n")
        assert not re.search(r"^\s*([-+*]\s|\d+[.)]\s|#|>)", inside, re.M)  # no Markdown block starts


@pytest.mark.latex
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                    reason="pdflatex or pdftotext is not installed")
@settings(max_examples=8)
@given(math_list(), st.sampled_from([r"\mathbf{W}", r"\hat{y}_o", "h'", r"\boldsymbol{\alpha}^{(1)}"]))
def test_an_accepted_spelling_compiles_and_reads_no_file(tmp_path_factory, spelling, other):
    assume(check_tex_spelling(spelling) is None)
    # as a matrix, a quantity at steps, a static quantity, the loss; and beside a spelling of the table above
    spellings = [spelling, spelling, spelling, other] if len(spelling) % 2 else [other, spelling, spelling, spelling]
    tex = _writeup(spellings, "tex")
    work = tmp_path_factory.mktemp("tex")
    secret = "CANARY" + secrets.token_hex(8)
    for name in ("canary", "canary.tex", "hostile.py"):  # what \input or \openout would find next to it
        (work / name).write_text(secret + "\n")
    (work / "spelt.tex").write_text(tex, encoding="utf-8")
    # Deliberately not in kpathsea's paranoid mode (helpers.PDFLATEX_ENV, how the other tests and the
    # README compile): the allow-list alone must keep TeX inside the directory.
    run = subprocess.run(["pdflatex", "-no-shell-escape", "-recorder", "-interaction=nonstopmode", "-halt-on-error",
                          "spelt.tex"], cwd=work, capture_output=True, text=True, timeout=300, check=False)
    log = (work / "spelt.log").read_text(errors="replace")
    assert run.returncode == 0 and not re.search(r"^! ", log, re.M), (spellings, log[-3000:])
    assert sorted(p.name for p in work.iterdir()) == ["canary", "canary.tex", "hostile.py", "spelt.aux",
                                                      "spelt.fls", "spelt.log", "spelt.pdf", "spelt.tex"]
    # -recorder lists every file TeX opened: nothing of this directory but the write-up's own
    opened = {line.split(" ", 1)[1] for line in (work / "spelt.fls").read_text().splitlines()
              if line.startswith(("INPUT ", "OUTPUT "))}
    assert not {p for p in opened if os.path.basename(p).startswith(("canary", "hostile"))}, opened
    for name in ("canary", "canary.tex", "hostile.py"):
        assert (work / name).read_text() == secret + "\n"
    text = subprocess.run(["pdftotext", "spelt.pdf", "-"], cwd=work, capture_output=True, text=True, timeout=120,
                          check=True).stdout
    assert secret not in text and "CANARY" not in text


def test_a_model_built_without_the_parser_cannot_smuggle_a_spelling():
    model = symderiv.parse(MODEL, "api.sdm")
    model.latex_overrides["W"] = r"^^5cinput{/etc/hostname}"
    d = symderiv.derive(model)
    for fmt in ("tex", "md"):
        with pytest.raises(SymderivError, match=r"latex spelling of 'W' is not allowed: '\^\^'"):
            render(d, fmt, "api.sdm")


ODD_NAMES = """\
dim n, m
time t = 1..T
input x[t]: n
param _W_a_b: (m, n)
param V: (n, m)
h_hat_out[t] = tanh(_W_a_b @ x[t])
loss L = Sum(sum(V @ h_hat_out[t]), (t, 1, T))
"""


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_names_the_model_file_chooses_compile(tmp_path):
    """A file stem in any script (the title), a name kept whole (_W_a_b), an accent with a
    superscript transposed (h_hat_out): each used to stop pdflatex."""
    path = tmp_path / "模型.sdm"
    path.write_text(ODD_NAMES, encoding="utf-8")
    d = symderiv.derive(symderiv.load(path))
    tex = render(d, "tex", path.name)
    assert r"\texttt{??}" in tex and r"\mathbf{\_W\_a\_b}" in tex
    assert "`模型`" in render(d, "md", path.name)
    (tmp_path / "odd.tex").write_text(tex, encoding="utf-8")
    run = pdflatex("odd.tex", tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_compile_the_readme_gives_reads_nothing_outside_its_folder(tmp_path):
    """The second defence, behind the allow-list: compiled as the README says (helpers.pdflatex),
    TeX refuses to read a file outside its folder and to run a shell command, even when the
    document asks for both."""
    (tmp_path / "evil.tex").write_text("\\documentclass{article}\\begin{document}\\immediate\\write18{touch pwned}"
                                       "\\input{/etc/hostname}\\end{document}\n")
    run = pdflatex("evil.tex", tmp_path)
    assert run.returncode != 0
    assert "Not reading from /etc/hostname (openin_any = p)" in run.stdout + run.stderr
    assert not (tmp_path / "pwned").exists()
