"""LaTeX tokens: the vocabulary the write-up reader knows, the tokenizer, and the
helpers every later stage uses on token lists (brackets, top-level splits, plain text).

Positions are offsets into the whole write-up, so every problem found later can be shown
at its line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...ir.names import GREEK
from ...ops import ELEMENTWISE, LANGUAGE
from ..tree import ReadError

#: Commands whose braced argument is plain text, read whole (``\text{(where }`` is one token).
TEXT_COMMANDS = {"text", "mathrm", "textrm", "texttt", "mathtt", "textit", "textbf", "operatorname", "mbox",
                 "textsf", "mathsf", "textnormal", "hbox", "textup", "mathup"}
#: Commands that change only the look: dropped (with a following ``.`` for \left. \right.).
INVISIBLE = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr",
             "Biggl", "Biggr", "middle", "displaystyle", "textstyle", "limits", "nolimits", "nonumber", "notag",
             "mathstrut", "strut", "allowbreak", "nobreak", "hfill", "enspace", "thinspace", "medspace",
             "thickspace", "negthinspace", "relax", "cr",
             # sizes (\large before an equation)
             "tiny", "scriptsize", "footnotesize", "small", "normalsize", "large", "Large", "LARGE", "huge", "Huge",
             "scriptstyle", "scriptscriptstyle"}
#: Commands dropped together with their braced argument.
DROPPED_WITH_ARGUMENT = {"label", "tag", "hspace", "vspace", "phantom", "hphantom", "vphantom", "intertext",
                         "shortintertext", "eqref", "ref"}
FONTS = {"mathbf", "bm", "boldsymbol", "mathbfit", "mathit", "mathcal", "mathscr", "mathfrak", "mathbb", "mathds",
         "vec", "pmb", "bf", "symbf", "symbfit"}
ACCENTS = {"hat": "hat", "widehat": "hat", "tilde": "tilde", "widetilde": "tilde", "bar": "bar", "overline": "bar"}
#: LaTeX letters read as names: the Greek letters a model name may be, their variants, and ℓ.
LETTERS = set(GREEK) | {"varepsilon", "vartheta", "varrho", "varphi", "ell"}
#: The LaTeX commands and the text words a write-up may use for a function, from its record.
FUNCTION_COMMANDS = ({c: f.name for f in ELEMENTWISE.values() if not f.params for c in f.commands}
                     | {c: f.name for f in LANGUAGE.values() for c in f.commands})
#: The commands whose argument TeX reads braced, as their record spells them (``\sqrt{z}``).
BRACED_COMMANDS = {c for f in ELEMENTWISE.values() if not f.params for c in f.commands
                   if f.latex_form == "\\" + c + "{$x}"}
FUNCTION_WORDS = ({w: f.name for f in ELEMENTWISE.values() for w in f.words}
                  | {w: f.name for f in LANGUAGE.values() for w in f.words})
UNICODE = {"−": ("char", "-"), "⊙": ("cmd", "odot"), "∘": ("cmd", "circ"), "⊘": ("cmd", "oslash"),
           "·": ("cmd", "cdot"), "×": ("cmd", "times"), "∂": ("cmd", "partial"), "∑": ("cmd", "sum"),
           "⊤": ("cmd", "top"), "≜": ("cmd", "triangleq"), "≔": ("cmd", "coloneqq"), "⟺": ("cmd", "iff"),
           "⇔": ("cmd", "iff"), "′": ("char", "'"), "≠": ("cmd", "neq"), "≤": ("cmd", "leq"), "∇": ("cmd", "nabla")}
TRANSPOSES = {"T", "\\top", "\\intercal", "\\mathsf{T}", "\\prime\\prime"}
#: X^{-⊤}: the transpose of the inverse of a square matrix (X^{-1} is its inverse).
INVERSE_TRANSPOSES = {"-" + t for t in ("T", "\\top", "\\intercal", "\\mathsf{T}")}


@dataclass(frozen=True)
class Tok:
    """One token and the offsets it spans in the whole text."""

    kind: str  # cmd, text, letter, num, char, begin, end
    value: str
    pos: int
    end: int


_NUMBER = re.compile(r"\d+(\.\d+)?")


def tokenize(text: str, start: int, stop: int) -> list[Tok]:
    """The tokens of ``text[start:stop]``; positions are offsets into ``text``."""
    out: list[Tok] = []
    i = start
    while i < stop:
        c = text[i]
        if c.isspace() or c == "~":
            i += 1
        elif c == "%":
            i = end_of_line(text, i, stop)
        elif c == "\\":
            i = _command(text, i, stop, out)
        elif c.isdigit() and (m := _NUMBER.match(text, i, stop)):
            # (a digit \d does not match, such as ², is a character, read or refused later)
            out.append(Tok("num", m.group(0), i, m.end()))
            i = m.end()
        elif c in UNICODE:
            kind, value = UNICODE[c]
            out.append(Tok(kind, value, i, i + 1))
            i += 1
        elif c.isalpha():
            out.append(_letter(c, i))
            i += 1
        else:
            out.append(Tok("char", c, i, i + 1))
            i += 1
    return out


def end_of_line(text: str, i: int, stop: int) -> int:
    """The offset just past the line break after ``i`` (or ``stop``)."""
    j = text.find("\n", i, stop)
    return stop if j < 0 else j + 1


_GREEK_COMMANDS = {char: name for name, char in GREEK.items()}


def _letter(c: str, i: int) -> Tok:
    """A letter; a Greek one stands for its command (``λ`` is ``\\lambda``)."""
    command = _GREEK_COMMANDS.get(c)
    return Tok("letter", c, i, i + 1) if command is None else Tok("cmd", command, i, i + 1)


def _command(text: str, i: int, stop: int, out: list[Tok]) -> int:
    """Read the command at ``text[i] == '\\\\'``; returns where reading goes on."""
    if i + 1 >= stop:
        out.append(Tok("char", "\\", i, i + 1))
        return i + 1
    m = re.compile(r"[A-Za-z]+").match(text, i + 1, stop)
    if m is None:
        c = text[i + 1]
        if c == "\\":
            out.append(Tok("cmd", "\\", i, i + 2))
            return _skip_optional(text, i + 2, stop)
        if c in "{}|":
            out.append(Tok("char", "\\" + c if c != "|" else "|", i, i + 2))
        return i + 2  # \, \; \! \  \% and the like: spacing or escapes
    name, j = m.group(0), m.end()
    if name in INVISIBLE:
        k = _skip_spaces(text, j, stop)
        if name in ("left", "right", "middle") and k < stop and text[k] in ".()[]|":
            if text[k] != ".":  # the delimiter, spanning its \left so claims are quoted whole
                out.append(Tok("char", text[k], i, k + 1))
            return k + 1
        return j
    if name in DROPPED_WITH_ARGUMENT:
        k = _skip_spaces(text, j, stop)
        return _group_end(text, k, stop) if k < stop and text[k] == "{" else j
    if name in ("begin", "end"):
        k = _skip_spaces(text, j, stop)
        if k < stop and text[k] == "{":
            close = _group_end(text, k, stop)
            out.append(Tok(name, text[k + 1:close - 1].strip(), i, close))
            return close
    if name in TEXT_COMMANDS:
        k = _skip_spaces(text, j, stop)
        if k < stop and text[k] == "{":
            close = _group_end(text, k, stop)
            out.append(Tok("text", text[k + 1:close - 1], i, close))
            return close
    out.append(Tok("cmd", name, i, j))
    return j


def _skip_spaces(text: str, i: int, stop: int) -> int:
    while i < stop and text[i] in " \t":
        i += 1
    return i


def _skip_optional(text: str, i: int, stop: int) -> int:
    """After ``\\\\``: skip a spacing argument such as ``[6pt]``."""
    k = _skip_spaces(text, i, stop)
    if k < stop and text[k] == "[":
        close = text.find("]", k, stop)
        if close > 0 and re.fullmatch(r"\s*-?[\d.]+\s*[a-z]{2}\s*", text[k + 1:close]):
            return close + 1
    return i


def _group_end(text: str, i: int, stop: int) -> int:
    """The offset just past the brace group that opens at ``text[i] == '{'``."""
    depth = 0
    j = i
    while j < stop:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return stop


def matching(tokens: list[Tok], i: int) -> int:
    """The index of the bracket closing the one at ``tokens[i]``."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    opener, closer = tokens[i].value, pairs[tokens[i].value]
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind == "char" and tokens[j].value == opener:
            depth += 1
        elif tokens[j].kind == "char" and tokens[j].value == closer:
            depth -= 1
            if depth == 0:
                return j
    raise ReadError(f"unbalanced '{opener}'", tokens[i].pos)


def split_top(tokens: list[Tok], is_separator: Callable[[Tok], bool]) -> list[list[Tok]]:
    """Split at separators outside every brace, bracket and environment."""
    parts: list[list[Tok]] = []
    current: list[Tok] = []
    depth = 0
    for t in tokens:
        if t.kind == "char" and t.value in "{([":
            depth += 1
        elif t.kind == "char" and t.value in "})]":
            depth -= 1
        elif t.kind == "begin":
            depth += 1
        elif t.kind == "end":
            depth -= 1
        if depth <= 0 and is_separator(t):
            parts.append(current)
            current = []
        else:
            current.append(t)
    parts.append(current)
    return parts


def plain(tokens: list[Tok]) -> str:
    """A script's text without fonts, braces or spaces: ``(\\text{out})`` → ``(out)``."""
    out = []
    for t in tokens:
        if t.kind == "cmd" and t.value in FONTS:
            continue
        if t.kind == "char" and t.value in "{}":
            continue
        out.append("\\" + t.value if t.kind == "cmd" else t.value.strip())
    return "".join(out)


def is_word(text: str) -> bool:
    """Whether ``text`` is one word (``ctx``, ``h0``, ``log_softmax``), spaces around it aside."""
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", text.strip()) is not None


class Cursor:
    """A position in a token list, read left to right."""

    def __init__(self, tokens: list[Tok], source: str):
        self.toks = tokens
        self.source = source
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at_end(self) -> bool:
        return self.i >= len(self.toks)

    def take(self) -> Tok:
        t = self.peek()
        if t is None:
            raise ReadError("the expression ends too early", self._end_pos())
        self.i += 1
        return t

    def is_(self, kind: str, value: str | None = None, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == kind and (value is None or t.value == value)

    def is_char(self, value: str, k: int = 0) -> bool:
        return self.is_("char", value, k)

    def _end_pos(self) -> int:
        return self.toks[-1].end if self.toks else 0

    def group(self) -> list[Tok]:
        """The tokens of a braced group (or the single token that stands for one)."""
        if self.is_char("{"):
            close = matching(self.toks, self.i)
            inner = self.toks[self.i + 1:close]
            self.i = close + 1
            return inner
        return [self.take()]

    def error(self, message: str, tok: Tok | None = None) -> ReadError:
        tok = tok or self.peek()
        return ReadError(message, tok.pos if tok else self._end_pos())
