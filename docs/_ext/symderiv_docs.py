"""The docs' own Sphinx extension: everything the pages show is computed when they are built.

- ``sdm-model``: a model file (or a fragment of one, completed by ``:context:``) that must
  parse; shown as written.
- ``sdm-error``: a model file that must fail with the message given as the argument; shown
  with the error symderiv really prints.
- ``sdm-command``: a ``symderiv ...`` command run now, in a scratch directory that sees the
  repository's ``examples/``, ``tests/data/`` and ``docs/examples/``; shown with its real output, and its exit
  status must be the one the page states.
- ``sdm-cli``: the help of every command, from the argument parser itself.
- the gallery: one page per model of ``examples/``, written before the pages are read, from
  ``examples/`` and ``generated/`` (nothing is committed that could go stale), with the
  write-up compiled to PDF when ``pdflatex`` is there.
- math by KaTeX from the copy that ``tests/katex`` installs from npm: no network when the
  site is built or read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from pygments import token
from pygments.lexer import RegexLexer
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.ext.mathjax import html_visit_displaymath, html_visit_math
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
KATEX = ROOT / "tests" / "katex" / "node_modules" / "katex" / "dist"
GALLERY = Path(__file__).resolve().parents[1] / "gallery"
logger = logging.getLogger(__name__)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class ModelLexer(RegexLexer):
    """Model files (.sdm): the declarations' keywords, the language's functions, steps, numbers."""

    name = "sdm"
    aliases = ["sdm"]
    filenames = ["*.sdm", "*.claims"]
    tokens = {
        "root": [
            (r"#.*$", token.Comment.Single),
            (r"^(model|dim|time|input|target|param|state|loss|latex)\b", token.Keyword.Declaration),
            (r"\b(distribution|scalar)\b", token.Keyword.Pseudo),
            (r'"(\\.|[^"\\])*"', token.String),
            (r"\b[A-Za-z_][A-Za-z_0-9]*(?=\()", token.Name.Function),
            (r"\.T\b", token.Operator),
            (r"\b\d+(\.\d*)?([eE][-+]?\d+)?\b", token.Number),
            (r"\.\.|[-+*/@=<>]", token.Operator),
            (r"[A-Za-z_][A-Za-z_0-9]*", token.Name),
            (r"[\[\](),:]", token.Punctuation),
            (r"\s+", token.Whitespace),
            (r".", token.Text),
        ],
    }


def _code(text: str, language: str = "text", wrap: bool = False) -> nodes.literal_block:
    """A code block; ``wrap``: an output whose long lines wrap rather than scroll (a message)."""
    block = nodes.literal_block(text, text)
    block["language"] = language
    if wrap:
        block["classes"].append("sdm-output")
    return block


class ModelExample(SphinxDirective):
    """A model that must parse: ``:context:`` lines are prepended (and not shown)."""

    has_content = True
    option_spec = {"context": directives.unchanged, "caption": directives.unchanged}

    def run(self):
        from symderiv import ModelError, parse

        text = "\n".join(self.content) + "\n"
        context = (self.options.get("context") or "").replace("\\n", "\n")
        try:
            parse((context + "\n" if context else "") + text, "example.sdm")
        except ModelError as err:
            raise self.error(f"this model example does not parse:\n{err.format()}") from None
        return [_code(text, "sdm")]


class ErrorExample(SphinxDirective):
    """A model that must fail with the message given as the argument."""

    has_content = True
    required_arguments = 1
    final_argument_whitespace = True

    def run(self):
        from symderiv import ModelError, parse

        expected = self.arguments[0]
        text = "\n".join(self.content) + "\n"
        try:
            parse(text, "example.sdm")
        except ModelError as err:
            shown = err.format()
            if expected not in err.message:
                raise self.error(f"the example fails with another message:\n{shown}\nexpected: {expected}") from None
        else:
            raise self.error(f"the example parses, but should fail with: {expected}")
        # The message first, so that a reader scanning the page finds it; then the file, then
        # what symderiv prints for it.
        title = nodes.rubric("", "", nodes.literal(expected, expected), classes=["sdm-message"])
        return [title, _code(text, "sdm"), _code("$ symderiv show example.sdm\n" + shown + "\n", wrap=True)]


def _scratch(env) -> Path:
    """One scratch directory per build: examples/ and tests/data/ of the repository in it."""
    path = getattr(env, "_symderiv_scratch", None)
    if path is None or not Path(path).exists():
        path = Path(tempfile.mkdtemp(prefix="symderiv-docs-"))
        (path / "tests").mkdir()
        os.symlink(ROOT / "examples", path / "examples")
        os.symlink(ROOT / "tests" / "data", path / "tests" / "data")
        (path / "docs").mkdir()
        os.symlink(ROOT / "docs" / "examples", path / "docs" / "examples")
        env._symderiv_scratch = path
    return Path(path)


class Command(SphinxDirective):
    """``symderiv ARGS`` run now; its output shown; its exit status must be ``:returncode:``."""

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = {"returncode": int, "head": int}

    def run(self):
        args = self.arguments[0].split()
        if args[0] != "symderiv":
            raise self.error("an sdm-command runs symderiv")
        env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
        done = subprocess.run([sys.executable, "-m", "symderiv", *args[1:]], cwd=_scratch(self.env),
                              capture_output=True, text=True, env=env, timeout=300)
        want = self.options.get("returncode", 0)
        output = done.stdout + done.stderr
        if done.returncode != want:
            raise self.error(f"'{self.arguments[0]}' exited with {done.returncode}, the page says {want}:\n{output}")
        lines = output.rstrip("\n").split("\n")
        head = self.options.get("head")
        if head and len(lines) > head:
            lines = lines[:head] + [f"... ({len(lines) - head} more lines)"]
        shown = f"$ {self.arguments[0]}\n" + "\n".join(lines) + "\n"
        if want:
            shown += f"$ echo $?\n{done.returncode}\n"
        return [_code(shown, "console", wrap=True)]


class CommandLine(SphinxDirective):
    """Every command's ``--help``, from ``symderiv.cli``'s parser."""

    def run(self):
        import argparse

        from symderiv.cli import _parser

        parser = _parser()
        os.environ["COLUMNS"] = "100"
        out = []
        section = nodes.section(ids=["symderiv"])
        section += nodes.title(text="symderiv")
        section += _code(parser.format_help(), "text")
        out.append(section)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    section = nodes.section(ids=[f"symderiv-{name}"])
                    section += nodes.title(text=f"symderiv {name}")
                    section += _code(sub.format_help(), "text")
                    out.append(section)
        return out


# ---------------------------------------------------------------------------------------
# The gallery.

_PAGE = """\
# `{name}`

{description}

{{download}}`{name}.sdm <../../examples/{stem}.sdm>` ·
{pdf}{{download}}`the NumPy module {name}.py <../../generated/{name}.py>` ·
{{download}}`the LaTeX source <../../generated/{name}.tex>`

## The model file

```{{literalinclude}} ../../examples/{stem}.sdm
:language: sdm
```

## The derivation

What `symderiv derive examples/{stem}.sdm` writes to `{name}.md` (the committed copy in
`generated/`), shown as is:

```{{include}} ../../generated/{name}.md
:heading-offset: 2
```
"""


def _description(path: Path) -> str:
    """The comment lines at the top of a model file, joined: what the model is."""
    comments = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        comments.append(line.lstrip("# ").strip())
    return " ".join(c for c in comments if c) or f"examples/{path.name}"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _pdf(tex: Path, outdir: Path) -> Path | None:
    """The write-up compiled by pdflatex (twice, for references), or None without pdflatex."""
    if shutil.which("pdflatex") is None:
        return None
    pdf = outdir / (tex.stem + ".pdf")
    if pdf.exists() and pdf.stat().st_mtime >= tex.stat().st_mtime:
        return pdf
    with tempfile.TemporaryDirectory() as work:
        shutil.copy(tex, work)
        for _ in range(2):  # as the README says to compile: no shell escape, TeX kept inside its directory
            done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                                   tex.name], cwd=work, capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "openin_any": "p", "openout_any": "p"})
            if done.returncode:
                raise ExtensionError(f"pdflatex failed on {tex}:\n{done.stdout[-2000:]}")
        shutil.copy(Path(work) / pdf.name, pdf)
    return pdf


def write_gallery(app: Sphinx) -> None:
    """docs/gallery/*.md from examples/ and generated/, before Sphinx reads the sources."""
    from symderiv import load

    (GALLERY / "pdf").mkdir(parents=True, exist_ok=True)
    entries = []
    for path in sorted((ROOT / "examples").glob("*.sdm")):
        name = load(path).name
        description = _description(path)
        tex = ROOT / "generated" / f"{name}.tex"
        pdf = _pdf(tex, GALLERY / "pdf")
        if pdf is None:
            logger.warning(f"pdflatex is not installed: the gallery has no PDF of {name}")
            link = ""
        else:
            link = f"{{download}}`the write-up as PDF <pdf/{pdf.name}>` · "
        page = _PAGE.format(description=description, name=name, stem=path.stem, pdf=link)
        _write_if_changed(GALLERY / f"{path.stem}.md", page)
        entries.append((path.stem, description))
    index = ["# Gallery", "",
             "Every model of `examples/`, with the derivation symderiv writes for it (the Markdown page of",
             "`generated/`, its math rendered), the write-up as PDF and the generated NumPy module.",
             "These pages are written when the site is built, from the files in the repository.", "",
             "| model | what it is |", "|---|---|"]
    index += [f"| [`{stem}.sdm`]({stem}.md) | {title} |" for stem, title in entries]
    index += ["", "```{toctree}", ":hidden:", "", *[stem for stem, _ in entries], "```", ""]
    _write_if_changed(GALLERY / "index.md", "\n".join(index))


# ---------------------------------------------------------------------------------------
# Math by KaTeX, offline.


def _copy_katex(app: Sphinx, exc) -> None:
    if exc is None and app.builder.format == "html":
        shutil.copytree(KATEX, Path(app.outdir) / "_static" / "katex", dirs_exist_ok=True)


def _check_katex(app: Sphinx) -> None:
    if app.builder.format == "html" and not (KATEX / "katex.min.js").exists():
        raise ExtensionError("KaTeX is missing: run `npm install --prefix tests/katex` (the docs render math "
                             "with the KaTeX the Markdown test installs; nothing is fetched at build time)")


def setup(app: Sphinx) -> dict:
    app.add_lexer("sdm", ModelLexer)
    app.add_directive("sdm-model", ModelExample)
    app.add_directive("sdm-error", ErrorExample)
    app.add_directive("sdm-command", Command)
    app.add_directive("sdm-cli", CommandLine)
    app.connect("builder-inited", write_gallery)
    app.connect("builder-inited", _check_katex)
    app.connect("build-finished", _copy_katex)
    # The visitors of sphinx.ext.mathjax write \( \) and \[ \] into the page; KaTeX's
    # auto-render reads those delimiters.
    app.add_html_math_renderer("katex", (html_visit_math, None), (html_visit_displaymath, None))
    app.add_css_file("katex/katex.min.css")
    app.add_css_file("symderiv.css")
    app.add_js_file("katex/katex.min.js", defer="defer")
    app.add_js_file("katex/contrib/auto-render.min.js", defer="defer")
    app.add_js_file("katex-init.js", defer="defer")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
