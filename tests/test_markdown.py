"""Every formula of every generated Markdown page renders with KaTeX itself."""

import json
import os
import re
import shutil
import subprocess

import pytest

from .helpers import GENERATED, ROOT

KATEX_DIR = ROOT / "tests" / "katex"
HAVE_KATEX = shutil.which("node") is not None and (KATEX_DIR / "node_modules" / "katex").is_dir()
PAGES = sorted(GENERATED.glob("*.md"))


def formulas(markdown: str) -> list[dict]:
    """Display blocks ($$…$$) and inline formulas ($…$) of a page."""
    found = [{"tex": m.group(1).strip(), "display": True} for m in re.finditer(r"\$\$(.+?)\$\$", markdown, re.S)]
    rest = re.sub(r"\$\$(.+?)\$\$", "", markdown, flags=re.S)
    rest = re.sub(r"`[^`]*`", "", rest)  # code spans are not maths
    found += [{"tex": m.group(1), "display": False} for m in re.finditer(r"\$([^$\n]+)\$", rest)]
    return found


def render_errors(items: list[dict]) -> list[str | None]:
    out = subprocess.run(["node", str(KATEX_DIR / "render.js")], input=json.dumps(items), capture_output=True,
                         text=True, timeout=120, check=True)
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
