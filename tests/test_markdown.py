"""Every formula of every generated Markdown page renders with KaTeX and with MathJax (GitHub's)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from .helpers import GENERATED, ROOT

KATEX_DIR = ROOT / "tests" / "katex"
HAVE_KATEX = shutil.which("node") is not None and (KATEX_DIR / "node_modules" / "katex").is_dir()
HAVE_MATHJAX = shutil.which("node") is not None and (KATEX_DIR / "node_modules" / "mathjax-full").is_dir()
PAGES = sorted(GENERATED.glob("*.md"))


def formulas(markdown: str) -> list[dict]:
    """Display blocks ($$…$$) and inline formulas ($…$) of a page."""
    found = [{"tex": m.group(1).strip(), "display": True} for m in re.finditer(r"\$\$(.+?)\$\$", markdown, re.S)]
    rest = re.sub(r"\$\$(.+?)\$\$", "", markdown, flags=re.S)
    rest = re.sub(r"`[^`]*`", "", rest)  # code spans are not maths
    found += [{"tex": m.group(1), "display": False} for m in re.finditer(r"\$([^$\n]+)\$", rest)]
    return found


def render_errors(items: list[dict], script: str = "render.js") -> list[str | None]:
    """One error message (or None) a formula, from KaTeX (render.js) or MathJax (mathjax.js)."""
    out = subprocess.run(["node", str(KATEX_DIR / script)], input=json.dumps(items), capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def test_formula_extraction():
    page = "text $a_t$ and `$not$`\n$$\n\\delta x = 1\n$$\n"
    assert formulas(page) == [{"tex": "\\delta x = 1", "display": True}, {"tex": "a_t", "display": False}]


@pytest.mark.skipif(not HAVE_KATEX and not os.environ.get("CI"),
                    reason="KaTeX is not installed (npm install --prefix tests/katex)")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_formula_renders_with_katex(page):
    assert HAVE_KATEX, "CI must install KaTeX: npm install --prefix tests/katex"
    items = formulas(page.read_text(encoding="utf-8"))
    assert len(items) > 5  # the smallest page (one gradient, e.g. a matrixcalculus.org example) has 10
    failures = [(item["tex"], err) for item, err in zip(items, render_errors(items)) if err]
    assert failures == []


@pytest.mark.skipif(not HAVE_KATEX, reason="KaTeX is not installed")
def test_katex_check_catches_a_bad_formula():
    assert render_errors([{"tex": r"\notamacro{x}", "display": True}])[0] is not None


@pytest.mark.skipif(not HAVE_MATHJAX and not os.environ.get("CI"),
                    reason="MathJax is not installed (npm install --prefix tests/katex)")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_formula_renders_with_mathjax(page):
    """GitHub renders a page's maths with MathJax, which reads some TeX KaTeX takes (and back)."""
    assert HAVE_MATHJAX, "CI must install MathJax: npm install --prefix tests/katex"
    items = formulas(page.read_text(encoding="utf-8"))
    assert len(items) > 10
    failures = [(item["tex"], err) for item, err in zip(items, render_errors(items, "mathjax.js")) if err]
    assert failures == []


@pytest.mark.skipif(not HAVE_MATHJAX, reason="MathJax is not installed")
@pytest.mark.parametrize("bad", [r"\notamacro{x}", r"x^{a}^{b}", r"\left( x", r"\begin{aligned} a &= b"])
def test_mathjax_check_catches_a_bad_formula(bad):
    assert render_errors([{"tex": bad, "display": True}], "mathjax.js")[0] is not None


def test_no_display_is_a_long_chain():
    """A chain of equalities breaks into lines as in the PDF (aligned), so no display of a page is
    much wider than a line: at most about 90 characters of visible maths a line."""
    from symderiv.render.emit import _width

    for page in PAGES:
        for item in formulas(page.read_text(encoding="utf-8")):
            if item["display"]:
                for line in item["tex"].split(r"\\"):
                    assert _width(line) < 90, (page.name, line)


def test_the_indicator_is_not_a_double_struck_one():
    """KaTeX, MathJax and pdflatex have no double-struck 1: relu's derivative is \\mathbb{I}[z > 0]."""
    text = (GENERATED / "mlp.md").read_text(encoding="utf-8")
    assert r"\mathbb{1}" not in text and r"\mathbb{I}\left[\mathbf{z}^{[1]} > 0\right]" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_page_has_the_adjoint_summary_of_the_pdf(page):
    text = page.read_text(encoding="utf-8")
    summary = text.split("## In conclusion", 1)[1].split("the gradient of every parameter", 1)[0]
    tex = (GENERATED / (page.stem + ".tex")).read_text(encoding="utf-8")
    in_pdf = tex.split(r"\section*{In conclusion}", 1)[1].split(r"\end{align}", 1)[0]
    rows = [row.split(" \\notag")[0].strip() for row in in_pdf.split("\n") if "&=" in row]
    assert all(row in summary for row in rows)  # none where the model has no adjoint to sum up (mc_trace)
