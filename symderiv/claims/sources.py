"""The text of a write-up that is not plain LaTeX or Markdown: a Jupyter notebook's Markdown
cells, an HTML page's mathematics (MathJax and KaTeX sources, codecogs images' LaTeX).

Each is turned into Markdown text that the write-up reader reads as it reads a ``.md`` file.
A notebook is parsed as JSON and never run; a page with the standard library's HTML parser,
its scripts never run either (only a ``math/tex`` script's text is kept, as mathematics).
"""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from ..errors import ClaimError


def notebook_text(text: str, path: str) -> str:
    """The Markdown cells of a Jupyter notebook, in order, one blank line apart.  A line of the
    result starts a comment ``<!-- cell N -->`` before each cell, so a claim's line can be found."""
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClaimError(f"{path}:{exc.lineno}:{exc.colno}: error: not a Jupyter notebook (invalid JSON: "
                         f"{exc.msg})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if cells is None and isinstance(nb, dict) and isinstance(nb.get("worksheets"), list):  # nbformat 3
        cells = [c for w in nb["worksheets"] if isinstance(w, dict) for c in w.get("cells", [])]
    if not isinstance(cells, list):
        raise ClaimError(f"{path}: error: not a Jupyter notebook (no list of cells)")
    parts = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            continue
        parts.append(f"<!-- cell {number} -->\n{source}")
    return "\n\n".join(parts) + "\n"


#: Where an HTML page keeps the LaTeX behind its formulas.
_TEX_SCRIPTS = ("math/tex", "math/tex; mode=display", "text/x-mathjax-config")


class _PageReader(HTMLParser):
    """An HTML page → Markdown text: its prose, and each formula's LaTeX between ``$…$`` or ``$$…$$``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0  # inside <style>, a script that is no math, or KaTeX's rendered HTML
        self.stack: list[tuple[str, bool]] = []  # open elements that change how text is read
        self.math: list[str] | None = None  # LaTeX being collected
        self.display = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "img":
            self._image(a)
            return
        if tag in ("br", "hr", "meta", "link", "input", "wbr", "source"):
            if tag in ("br", "hr"):
                self.out.append("\n")
            return
        skipping = False
        if tag == "script":
            kind = a.get("type", "").strip().lower()
            if kind.startswith("math/tex") and self.skip == 0:
                self.math, self.display = [], "mode=display" in kind
            else:
                skipping = True
        elif tag == "style" or "katex-html" in classes or a.get("aria-hidden") == "true":
            skipping = True
        elif tag == "annotation" and "tex" in a.get("encoding", "").lower():
            self.math = []
        elif "katex-display" in classes:
            self.display = True
        elif tag == "math" and a.get("display") == "block":
            self.display = True
        if skipping:
            self.skip += 1
        self.stack.append((tag, skipping))
        if tag in ("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "blockquote"):
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if self.math is not None and tag in ("script", "annotation"):
            latex = "".join(self.math).strip()
            self.math = None
            if latex:
                self.out.append(f"\n\n$${latex}$$\n\n" if self.display else f"${latex}$")
            self.display = False
        while self.stack:
            name, skipping = self.stack.pop()
            if skipping:
                self.skip -= 1
            if name == tag:
                break
        if tag in ("p", "div", "li", "tr", "pre", "blockquote"):
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.math is not None:
            self.math.append(data)
        elif self.skip == 0:
            self.out.append(data)

    def _image(self, a: dict) -> None:
        """A codecogs (or similar) image of a formula: its LaTeX is the query of its address, or its alt."""
        src = a.get("src", "")
        latex = ""
        parts = urlsplit(src)
        if "codecogs" in parts.netloc or "latex" in parts.path.lower() or "tex" in parts.path.lower():
            latex = codecogs(parts.query or "")
            if latex.startswith(("\\dpi{", "\\inline")):
                latex = latex.split("}", 1)[-1] if latex.startswith("\\dpi{") else latex[len("\\inline"):]
        if not latex.strip() and a.get("alt") and any(c in a["alt"] for c in "\\=^_"):
            latex = a["alt"]
        if latex.strip():
            self.out.append(f"\n\n$${latex.strip()}$$\n\n")


def codecogs(query: str) -> str:
    """The LaTeX of a codecogs image address's query (``\\frac{\\partial&space;L}{…}``)."""
    latex = unquote(query)
    for entity, char in (("&space;", " "), ("&plus;", "+")):
        latex = latex.replace(entity, char)
    # the rest as HTML entities: &amp;, &lt;, and the numeric ones a page writes backslashes
    # with (``&#x5C;frac``, an LSTM note's Markdown)
    return html.unescape(latex)


def page_text(text: str) -> str:
    """The prose and mathematics of an HTML page, as Markdown with ``$…$`` and ``$$…$$``."""
    reader = _PageReader()
    reader.feed(text)
    reader.close()
    return "".join(reader.out)


def markdown_images(text: str) -> str:
    """Markdown with each codecogs image ``![alt](https://latex.codecogs.com/svg.latex?…)`` also
    written out as ``$$…$$`` (README files show formulas so)."""
    import re

    def latex_of(m: re.Match) -> str:
        url = m.group(2)
        parts = urlsplit(url)
        latex = codecogs(parts.query or "")
        if latex.startswith("\\dpi{"):
            latex = latex.split("}", 1)[-1]
        return m.group(0) + (f" $${latex.strip()}$$" if latex.strip() else "")

    def latex_of_tag(m: re.Match) -> str:
        # an attribute's value is HTML: its entities first (``&#x5C;`` is a backslash, and its
        # ``#`` would otherwise end the address's query)
        latex = codecogs(urlsplit(html.unescape(m.group(1))).query or "")
        if latex.startswith("\\dpi{"):
            latex = latex.split("}", 1)[-1]
        inline = latex.startswith("\\inline")
        latex = latex[len("\\inline"):].strip() if inline else latex.strip()
        if not latex:
            return m.group(0)
        return m.group(0) + (f" ${latex}$ " if inline else f" $${latex}$$ ")

    text = re.sub(r"!\[([^\]]*)\]\((https?://latex\.codecogs\.com/(?:[^()\s]|\([^()\s]*\))+)\)", latex_of, text)
    # <img src="https://latex.codecogs.com/gif.latex?\inline&space;a^{[4]}" ...> in Markdown (HTML inside it)
    return re.sub(r"""<img\s[^>]*?src=["'](https?://latex\.codecogs\.com/[^"']+)["'][^>]*>""", latex_of_tag, text)
