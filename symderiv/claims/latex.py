"""Claims in a LaTeX or Markdown write-up.

Every displayed equation (``$$…$$``, ``\\[…\\]``, equation/align/gather environments, the
rows of split/aligned/cases inside them) is cut into chains ``A = B = C``; a chain whose
left side is ``δX``, ``∂L/∂X`` or an entry of one is a claim about X, and its last member is
what is judged.  ``δy ≜ ∂L/∂(W h_t + b)`` names an intermediate expression for later
claims.  Names are matched through the model's LaTeX spellings, ignoring fonts (bold or
not, ``\\text``/``\\mathrm``/``\\texttt``).

The text is tokenized and parsed by recursive descent over a fixed subset of LaTeX;
nothing in it is evaluated.  A claim that cannot be read is kept, with the place and the
reason, so the rest of the write-up is still judged.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp

from ..ir.names import split_name
from ..ops import ELEMENTWISE, LANGUAGE
from .tree import (
    STEP_T,
    Call,
    Claim,
    Derivative,
    Entry,
    Grad,
    Hadamard,
    IndexSum,
    Neg,
    Num,
    Ones,
    OverTime,
    Power,
    Product,
    Quotient,
    ReadError,
    Rows,
    ShapeMismatch,
    Step,
    Terms,
    Transposed,
    Val,
    Zero,
    anchor_steps,
    claim_target,
    make_claim,
    references,
)

# ---------------------------------------------------------------------------------------
# Tokens.

#: Commands whose braced argument is plain text, read whole (``\text{(where }`` is one token).
TEXT_COMMANDS = {"text", "mathrm", "textrm", "texttt", "mathtt", "textit", "textbf", "operatorname", "mbox",
                 "textsf", "mathsf", "textnormal", "hbox", "textup", "mathup"}
#: Commands that change only the look: dropped (with a following ``.`` for \left. \right.).
INVISIBLE = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr",
             "Biggl", "Biggr", "middle", "displaystyle", "textstyle", "limits", "nolimits", "nonumber", "notag",
             "mathstrut", "strut", "allowbreak", "nobreak", "hfill", "enspace", "thinspace", "medspace",
             "thickspace", "negthinspace", "relax", "cr"}
#: Commands dropped together with their braced argument.
DROPPED_WITH_ARGUMENT = {"label", "tag", "hspace", "vspace", "phantom", "hphantom", "vphantom", "intertext",
                         "shortintertext", "eqref", "ref"}
FONTS = {"mathbf", "bm", "boldsymbol", "mathbfit", "mathit", "mathcal", "mathscr", "mathfrak", "mathbb", "mathds",
         "vec", "pmb", "bf", "symbf", "symbfit"}
ACCENTS = {"hat": "hat", "widehat": "hat", "tilde": "tilde", "widetilde": "tilde", "bar": "bar", "overline": "bar"}
GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "pi", "rho", "varrho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
    "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "ell",
}
#: The LaTeX commands and the text words a write-up may use for a function, from its record.
FUNCTION_COMMANDS = {c: f.name for f in ELEMENTWISE.values() if not f.params for c in f.commands}
FUNCTION_WORDS = {w: f.name for f in [*ELEMENTWISE.values(), *LANGUAGE.values()] for w in f.words}
UNICODE = {"−": ("char", "-"), "⊙": ("cmd", "odot"), "∘": ("cmd", "circ"), "⊘": ("cmd", "oslash"),
           "·": ("cmd", "cdot"), "×": ("cmd", "times"), "∂": ("cmd", "partial"), "∑": ("cmd", "sum"),
           "⊤": ("cmd", "top"), "≜": ("cmd", "triangleq"), "≔": ("cmd", "coloneqq"), "⟺": ("cmd", "iff"),
           "⇔": ("cmd", "iff"), "′": ("char", "'"), "≠": ("cmd", "neq"), "≤": ("cmd", "leq"), "∇": ("cmd", "nabla")}
DEFINITIONS = {"triangleq", "coloneqq", ":=", "def", "equiv", "doteq", "eqqcolon", "="}
EQUIVALENCES = {"Longleftrightarrow", "iff", "Leftrightarrow", "Longrightarrow", "Rightarrow", "implies",
                "longleftrightarrow", "Longleftarrow"}
BINARY = {"odot", "oslash", "circ", "cdot", "times", "div"}
MAX_NESTING = 60
TRANSPOSES = {"T", "\\top", "\\intercal", "\\mathsf{T}", "\\prime\\prime"}


@dataclass(frozen=True)
class Tok:
    kind: str  # cmd, text, letter, num, char, begin, end
    value: str
    pos: int
    end: int


def tokenize(text: str, start: int, stop: int) -> list[Tok]:
    """The tokens of ``text[start:stop]``; positions are offsets into ``text``."""
    out: list[Tok] = []
    i = start
    while i < stop:
        c = text[i]
        if c.isspace() or c == "~":
            i += 1
        elif c == "%":
            i = _line_end(text, i, stop)
        elif c == "\\":
            i = _command(text, i, stop, out)
        elif c.isdigit():
            m = re.compile(r"\d+(\.\d+)?").match(text, i, stop)
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


def _line_end(text: str, i: int, stop: int) -> int:
    j = text.find("\n", i, stop)
    return stop if j < 0 else j + 1


def _letter(c: str, i: int) -> Tok:
    if c.isascii():
        return Tok("letter", c, i, i + 1)
    name = unicodedata.name(c, "")
    m = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER (\w+)", name)
    if m:
        word = m.group(2).lower()
        return Tok("cmd", word if m.group(1) == "SMALL" else word.capitalize(), i, i + 1)
    return Tok("letter", c, i, i + 1)


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


# ---------------------------------------------------------------------------------------
# Displayed equations.

DISPLAY_ENVIRONMENTS = {"equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*",
                        "eqnarray", "eqnarray*", "flalign", "flalign*", "alignat", "alignat*", "displaymath"}
ROW_ENVIRONMENTS = {"split", "aligned", "alignedat", "gathered", "cases", "dcases", "rcases", "array", "align",
                    "align*", "alignat", "alignat*", "gather", "gather*", "eqnarray", "eqnarray*", "flalign",
                    "flalign*", "multline", "multline*", "multlined"}
CASES = {"cases", "dcases", "rcases"}
#: Environments whose first braced argument is not content (column count or layout).
WITH_ARGUMENT = {"alignedat", "alignat", "alignat*", "array"}


def displayed_spans(text: str, markdown: bool) -> list[tuple[int, int, str | None]]:
    """(start, stop, environment) of every displayed equation's content."""
    spans = []
    i, n = 0, len(text)
    begin = re.compile(r"\\begin\s*\{([A-Za-z*]+)\}")
    while i < n:
        if markdown and text.startswith(("```", "~~~"), i) and (i == 0 or text[i - 1] == "\n"):
            fence = text[i:i + 3]
            line_end = _line_end(text, i, n)
            close = text.find("\n" + fence, line_end - 1)
            stop = n if close < 0 else close + 1
            if text[i + 3:line_end].strip() == "math":
                spans.append((line_end, stop, None))
            i = _line_end(text, stop, n) if close >= 0 else n
            continue
        c = text[i]
        if c == "%" and not markdown:
            i = _line_end(text, i, n)
        elif c == "\\" and text.startswith("\\[", i):
            close = text.find("\\]", i + 2)
            stop = n if close < 0 else close
            spans.append((i + 2, stop, None))
            i = stop + 2
        elif c == "\\" and text.startswith("\\(", i):
            close = text.find("\\)", i + 2)
            i = n if close < 0 else close + 2
        elif c == "\\" and (m := begin.match(text, i)) and m.group(1) in DISPLAY_ENVIRONMENTS:
            close = text.find("\\end{" + m.group(1) + "}", m.end())
            stop = n if close < 0 else close
            spans.append((m.end(), stop, m.group(1)))
            i = stop + len("\\end{}") + len(m.group(1))
        elif c == "\\":
            i += 2
        elif text.startswith("$$", i):
            close = text.find("$$", i + 2)
            stop = n if close < 0 else close
            spans.append((i + 2, stop, None))
            i = stop + 2
        elif c == "$":
            close = i + 1
            while close < n and (text[close] != "$" or text[close - 1] == "\\"):
                close += 1
            i = close + 1
        else:
            i += 1
    return spans


@dataclass
class _Row:
    tokens: list[Tok]
    cases: bool = False


def rows_of(tokens: list[Tok], env: str | None = None) -> list[_Row]:
    """The rows of a displayed equation: a row environment is split at ``\\\\`` (recursively)."""
    if env in ROW_ENVIRONMENTS:
        body = tokens
        if env in WITH_ARGUMENT and tokens and tokens[0].value == "{":
            body = tokens[_matching(tokens, 0) + 1:]
        rows = []
        for row in _split_top(body, lambda t: t.kind == "cmd" and t.value == "\\"):
            rows.extend(rows_of(row) if _single_environment(row) else [_Row(row, env in CASES)])
        return rows
    inner = _single_environment(tokens)
    if inner is not None:
        name, body = inner
        if name in ROW_ENVIRONMENTS:
            return rows_of(body, name)
    return [_Row(row) for row in _split_top(tokens, lambda t: t.kind == "cmd" and t.value == "\\")]


def _single_environment(tokens: list[Tok]):
    """(name, body) if the tokens are one environment, give or take a brace delimiter around it."""
    toks = list(tokens)
    while toks and toks[0].kind == "char" and toks[0].value in ("\\{", "{"):
        toks.pop(0)
    while toks and toks[-1].kind == "char" and toks[-1].value in ("\\}", "}", ".", ","):
        toks.pop()
    if len(toks) < 2 or toks[0].kind != "begin" or toks[-1].kind != "end" or toks[0].value != toks[-1].value:
        return None
    depth = 0
    for k, t in enumerate(toks):
        depth += (t.kind == "begin") - (t.kind == "end")
        if depth == 0 and k != len(toks) - 1:
            return None
    return toks[0].value, toks[1:-1]


def _matching(tokens: list[Tok], i: int) -> int:
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


def _split_top(tokens: list[Tok], is_separator) -> list[list[Tok]]:
    """Split at separators outside every brace, bracket and environment."""
    parts, current, depth = [], [], 0
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


# ---------------------------------------------------------------------------------------
# Chains: A = B = C.


@dataclass
class _Chain:
    members: list[list[Tok]]
    relations: list[str]


def chains_of(rows: list[_Row]) -> list[_Chain]:
    """The equations of a displayed block, with continuation rows (``&= …``) joined to theirs."""
    chains: list[_Chain] = []
    for row in rows:
        tokens = _cut_condition(row.tokens) if row.cases else [t for t in row.tokens if t.value != "&"]
        for k, equation in enumerate(_equations(tokens)):
            members, relations = _members(equation)
            if k == 0 and chains and relations and not members[0]:
                chains[-1].members.extend(members[1:])
                chains[-1].relations.extend(relations)
            elif any(members):
                chains.append(_Chain(members, relations))
    return chains


def _cut_condition(tokens: list[Tok]) -> list[Tok]:
    """A row of ``cases``: the value before ``&``; the condition after it is prose."""
    return _split_top(tokens, lambda t: t.kind == "char" and t.value == "&")[0]


def _equations(tokens: list[Tok]) -> list[list[Tok]]:
    """Split a row at ⟺ and at ``\\quad`` gaps that start a new equation; drop trailing notes."""
    out = []
    for part in _split_top(tokens, lambda t: t.kind == "cmd" and t.value in EQUIVALENCES):
        segments = _split_top(part, lambda t: t.kind == "cmd" and t.value in ("quad", "qquad"))
        current = segments[0]
        for seg in segments[1:]:
            if not seg:
                continue
            if _starts_with_operator(seg):
                current = current + seg
            elif _has_relation(seg) and seg[0].kind != "text":
                out.append(current)
                current = seg
            # else: an annotation such as (1 ≤ i ≤ C) or \text{(a vector)}
        out.append(current)
    trimmed = [_trim(eq) for eq in out]
    return [eq for eq in trimmed if eq]


def _starts_with_operator(seg: list[Tok]) -> bool:
    t = seg[0]
    return (t.kind == "char" and t.value in "+-=/") or (t.kind == "cmd" and t.value in BINARY | DEFINITIONS)


def _has_relation(seg: list[Tok]) -> bool:
    return len(_members(seg)[0]) > 1


def _trim(tokens: list[Tok]) -> list[Tok]:
    """Without trailing punctuation and prose."""
    toks = list(tokens)
    while toks and ((toks[-1].kind == "char" and toks[-1].value in ".,;")
                    or (toks[-1].kind == "text" and not _is_word(toks[-1].value))):
        toks.pop()
    return toks


def _members(tokens: list[Tok]) -> tuple[list[list[Tok]], list[str]]:
    """The members of ``A = B ≜ C`` and the relations between them."""
    members: list[list[Tok]] = [[]]
    relations: list[str] = []
    depth, i = 0, 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "char" and t.value in "{([":
            depth += 1
        elif t.kind == "char" and t.value in "})]":
            depth -= 1
        elif t.kind in ("begin", "end"):
            depth += 1 if t.kind == "begin" else -1
        relation, width = _relation_at(tokens, i) if depth <= 0 else (None, 1)
        if relation:
            relations.append(relation)
            members.append([])
            i += width
            continue
        members[-1].append(t)
        i += 1
    return members, relations


def _relation_at(tokens: list[Tok], i: int) -> tuple[str | None, int]:
    t = tokens[i]
    if t.kind == "char" and t.value == "=":
        return "=", 1
    if t.kind == "char" and t.value == ":" and i + 1 < len(tokens) and tokens[i + 1].value == "=":
        return ":=", 2
    if t.kind == "cmd" and t.value in DEFINITIONS:
        return t.value, 1
    if t.kind == "cmd" and t.value in ("overset", "stackrel") and i + 1 < len(tokens) and tokens[i + 1].value == "{":
        first = _matching(tokens, i + 1)
        if first + 1 < len(tokens) and tokens[first + 1].value == "{":
            second = _matching(tokens, first + 1)
            if [x.value for x in tokens[first + 2:second]] == ["="]:
                return "def", second - i + 1
    return None, 1


# ---------------------------------------------------------------------------------------
# Names.


@dataclass(frozen=True)
class NameKey:
    """A name without fonts: ``\\mathbf{W}^{(\\text{out})}`` and ``W^{(out)}`` are one key."""

    body: str
    accent: str | None = None
    sups: tuple = ()


@dataclass(frozen=True)
class Atom:
    """A name as written: its key, its subscript items, and its source pieces for spelling."""

    key: NameKey
    subs: tuple
    core: str
    sup: str
    pos: int


@dataclass(frozen=True)
class Spelling:
    """How the write-up spells a quantity, so a correct form reads in its own notation."""

    core: str
    sup: str
    subs: tuple

    def latex(self, step: str | None = None) -> str:
        subs = list(self.subs) + ([step] if step else [])
        text = self.core + self.sup
        sub = ",".join(subs)
        if sub:
            text += f"_{sub}" if len(sub) == 1 else "_{" + sub + "}"
        return text


@dataclass
class Names:
    """The model's quantities by LaTeX key, the write-up's own definitions, and its spellings."""

    model: object
    table: dict = field(default_factory=dict)  # NameKey → [(subscript prefix, quantity)]
    aliases: dict = field(default_factory=dict)
    spellings: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model) -> Names:
        names = cls(model)
        for q in model.quantities.values():
            atom = _parse_spelling(model.latex(q.name))
            if atom is not None:
                names._add(names.table, atom.key, atom.subs, q.name)
            parts = split_name(q.name)
            names._add(names.table, NameKey(parts.body, parts.accent), parts.subscripts + parts.superscripts, q.name)
            layer = re.fullmatch(r"([A-Za-z]+)(\d+)", parts.body)
            if layer:  # W1 is also W_1, W^{[1]} and W^{(1)}
                letters, number = layer.groups()
                names._add(names.table, NameKey(letters, parts.accent), (number,) + parts.subscripts, q.name)
                for sup in (f"[{number}]", f"({number})"):
                    names._add(names.table, NameKey(letters, parts.accent, (sup,)), parts.subscripts, q.name)
        return names

    @staticmethod
    def _add(table: dict, key: NameKey, subs: tuple, qname: str) -> None:
        entries = table.setdefault(key, [])
        if (subs, qname) not in entries:
            entries.append((subs, qname))

    @property
    def index(self) -> str:
        return self.model.time_index or "t"

    @property
    def length(self) -> str:
        return self.model.length.name if self.model.length is not None else "T"

    def define(self, atom: Atom, qname: str) -> None:
        """The write-up's own name for a quantity (from ``≜``)."""
        subs = atom.subs
        if subs and self.is_step(subs[-1]):
            subs = subs[:-1]
        self._add(self.aliases, atom.key, subs, qname)
        self.spellings[qname] = Spelling(atom.core, atom.sup, subs)

    def resolve(self, atom: Atom) -> tuple[str, Step | None, tuple]:
        """(quantity, step or None, entry indices) for a name as written."""
        for table in (self.aliases, self.table):
            found = [(p, q) for p, q in table.get(atom.key, []) if atom.subs[:len(p)] == p]
            if found:
                prefix, qname = max(found, key=lambda pq: len(pq[0]))
                step, entries = self._step_and_entries(qname, atom.subs[len(prefix):], atom)
                self.spellings.setdefault(qname, Spelling(atom.core, atom.sup, prefix))
                return qname, step, entries
        raise ReadError(f"unknown name {atom.core}{atom.sup}" + (f"_{{{','.join(atom.subs)}}}" if atom.subs else "")
                        + ": not a quantity of the model", atom.pos)

    def is_step(self, item: str) -> bool:
        return re.fullmatch(rf"({re.escape(self.index)}|{re.escape(self.length)})([+-]\d+)?|\d+", item) is not None

    def step(self, item: str) -> Step:
        m = re.fullmatch(rf"({re.escape(self.index)}|{re.escape(self.length)})([+-]\d+)?", item)
        if m is None:
            return Step("", int(item))
        return Step("t" if m.group(1) == self.index else "T", int(m.group(2) or 0))

    def _step_and_entries(self, qname: str, rest: tuple, atom: Atom) -> tuple[Step | None, tuple]:
        q = self.model.quantities[qname]
        items = list(rest)
        step = None
        if items and self.is_step(items[0]):
            if not q.sequence:
                raise ReadError(f"'{qname}' is not a sequence, so it has no step {items[0]}", atom.pos)
            step = self.step(items.pop(0))
        entries: list[str] = []
        for item in items:
            if re.fullmatch(r"[a-zA-Z]", item) and item != self.index:
                entries.append(item)
            elif re.fullmatch(r"[a-zA-Z]{2}", item) and not q.is_vector and not entries:
                entries.extend(item)
            else:
                raise ReadError(f"cannot read the subscript '{item}' of '{qname}' (a step or an entry index)",
                                atom.pos)
        return step, tuple(entries)


def _parse_spelling(latex: str) -> Atom | None:
    tokens = tokenize(latex, 0, len(latex))
    parser = _Parser(tokens, latex, None)
    try:
        atom = parser.atom()
    except ReadError:
        return None
    return atom if atom is not None and parser.at_end() else None


def _plain(tokens: list[Tok]) -> str:
    """A script's text without fonts, braces or spaces: ``(\\text{out})`` → ``(out)``."""
    out = []
    for t in tokens:
        if t.kind == "cmd" and t.value in FONTS:
            continue
        if t.kind == "char" and t.value in "{}":
            continue
        out.append("\\" + t.value if t.kind == "cmd" else t.value.strip())
    return "".join(out)


def _is_word(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", text.strip()) is not None


# ---------------------------------------------------------------------------------------
# Expressions: recursive descent.


@dataclass(frozen=True)
class _GradOfExpression:
    """∂L/∂(expression): only meaningful as the right side of a definition."""

    expr: object
    pos: int


class _Parser:
    """One member of a chain → a claim expression tree (``claimexpr`` nodes)."""

    def __init__(self, tokens: list[Tok], source: str, names: Names | None):
        self.toks = tokens
        self.source = source
        self.names = names
        self.i = 0

    # --- cursor -------------------------------------------------------------------------

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
            close = _matching(self.toks, self.i)
            inner = self.toks[self.i + 1:close]
            self.i = close + 1
            return inner
        return [self.take()]

    def sub_parser(self, tokens: list[Tok]) -> _Parser:
        return _Parser(tokens, self.source, self.names)

    def error(self, message: str, tok: Tok | None = None) -> ReadError:
        tok = tok or self.peek()
        return ReadError(message, tok.pos if tok else self._end_pos())

    # --- the grammar --------------------------------------------------------------------

    def whole(self):
        """The whole token list as one expression."""
        if not self.toks:
            raise ReadError("an empty side", None)
        node = self.sum()
        if not self.at_end():
            t = self.peek()
            raise self.error(f"cannot read '{self.source[t.pos:t.end]}' here")
        return node

    def sum(self):
        terms = []
        negative = False
        if self.is_char("+") or self.is_char("-"):
            negative = self.take().value == "-"
        while True:
            term = self.elementwise()
            terms.append(Neg(term) if negative else term)
            if self.is_char("+") or self.is_char("-"):
                negative = self.take().value == "-"
                continue
            break
        return _flat(Terms, terms)

    def elementwise(self):
        node = self.product()
        while True:
            t = self.peek()
            if t is not None and t.kind == "cmd" and t.value in ("odot", "circ"):
                self.take()
                node = _flat(Hadamard, [node, self.product()])
            elif t is not None and ((t.kind == "cmd" and t.value in ("oslash", "div")) or t.value == "/"):
                self.take()
                node = Quotient(node, self.product())
            else:
                return node

    def product(self):
        factors = [self.factor()]
        while True:
            t = self.peek()
            if t is not None and ((t.kind == "cmd" and t.value in ("cdot", "times")) or t.value == "*"):
                self.take()
                factors.append(self.factor())
            elif self._starts_factor():
                factors.append(self.factor())
            else:
                return _flat(Product, factors)

    def _starts_factor(self) -> bool:
        t = self.peek()
        if t is None:
            return False
        if t.kind in ("letter", "num"):
            return True
        if t.kind == "text":
            return _is_word(t.value)
        if t.kind == "char":
            return t.value in "({["
        return t.kind == "cmd" and (t.value in GREEK or t.value in FONTS or t.value in ACCENTS
                                    or t.value in FUNCTION_COMMANDS
                                    or t.value in ("frac", "dfrac", "tfrac", "sum", "partial", "nabla"))

    def factor(self):
        if self.is_char("-"):
            self.take()
            return Neg(self.factor())
        node = self.primary()
        return self.postfix(node)

    def postfix(self, node):
        while True:
            if self.is_char("^"):
                node = self._superscript(node)
            elif self.is_char("_"):
                tok = self.take()
                script = self.group()
                if any(t.value == ":" for t in script):
                    node = self._rows(node, script, tok)
                else:
                    node = Entry(node, self._indices(script, tok))
            elif self.is_char("'"):
                raise self.error("a prime on an expression: write the derivative out")
            else:
                return node

    def _superscript(self, node):
        tok = self.take()
        script = self.group()
        text = _plain(script)
        if text in TRANSPOSES or text in ("\\prime",):
            return Transposed(node)
        m = re.fullmatch(r"(?:\\circ)?(-?\d+)", text)
        if m:
            return Power(node, int(m.group(1)))
        raise self.error(f"cannot read the superscript '{self.source[tok.pos:script[-1].end if script else tok.end]}'",
                         tok)

    def _rows(self, node, script: list[Tok], tok: Tok):
        """``[v]_{1:n_h}``: rows 1..n_h of v."""
        bounds = _plain(script).split(":")
        if len(bounds) != 2 or self.names is None:
            raise self.error("a row range is written [v]_{a:b}", tok)
        start, stop = (self._size(b, tok) for b in bounds)
        return Rows(node, start, stop)

    def _size(self, text: str, tok: Tok):
        """A size written with the model's dims: ``n_h``, ``n_{h} + 1``, ``2``."""
        total = sp.Integer(0)
        for part in text.split("+"):
            if part.isdigit():
                total += int(part)
            elif part in self.names.model.dims:
                total += self.names.model.dims[part]
            else:
                raise self.error(f"cannot read the size '{part}' (a dim of the model or a number)", tok)
        return total

    def _indices(self, script: list[Tok], tok: Tok) -> tuple:
        items = [_plain(part) for part in _split_top(script, lambda t: t.value == ",")]
        if len(items) == 1 and re.fullmatch(r"[a-zA-Z]{2}", items[0]):
            items = list(items[0])
        for item in items:
            if not re.fullmatch(r"[a-zA-Z]", item) or (self.names and item == self.names.index):
                raise self.error(f"cannot read the subscript '{item}' as an entry index", tok)
        return tuple(items)

    def primary(self):
        t = self.peek()
        if t is None:
            raise self.error("the expression ends too early")
        if t.kind == "num":
            self.take()
            return Num(Fraction(t.value))
        if t.kind == "char" and t.value in "([":
            close = _matching(self.toks, self.i)
            inner = self.sub_parser(self.toks[self.i + 1:close]).whole()
            self.i = close + 1
            return inner
        if t.kind == "cmd":
            method = {"frac": self._fraction, "dfrac": self._fraction, "tfrac": self._fraction,
                      "delta": self._delta, "sum": self._sum, "partial": self._partial, "nabla": self._partial}.get(
                t.value)
            if method is not None:
                return method()
            if t.value in FUNCTION_COMMANDS and not self._names_a_quantity():
                return self._function(FUNCTION_COMMANDS[t.value])
            special = self._ones_or_zero() if t.value in FONTS else None
            if special is not None:
                return special
        if t.kind == "text" and t.value.strip() in FUNCTION_WORDS:
            return self._function(FUNCTION_WORDS[t.value.strip()])
        if t.kind == "char" and t.value == "{" and not self._braced_atom():
            return self.sub_parser(self.group()).whole()
        atom = self.atom()
        if atom is None:
            raise self.error(f"cannot read '{self.source[t.pos:t.end]}' here")
        return self._value(atom)

    def _names_a_quantity(self) -> bool:
        """``\\sigma`` not followed by an argument may be a quantity called sigma."""
        nxt = self.peek(1)
        return nxt is None or not (nxt.value in ("(", "'", "^", "[") or nxt.kind in ("letter", "cmd"))

    def _ones_or_zero(self):
        """𝟏 or 𝟎 (``\\mathbf{1}``, ``\\mathbb{1}``), or 𝟙[z > 0]; None if this is a name."""
        font = self.peek()
        nxt = self.peek(1)
        if nxt is None:
            return None
        if nxt.kind == "char" and nxt.value == "{":
            close = _matching(self.toks, self.i + 1)
            inner = [x.value for x in self.toks[self.i + 2:close]]
        else:
            close, inner = self.i + 1, [nxt.value]
        if inner not in (["1"], ["0"]):
            return None
        self.i = close + 1
        if inner == ["0"]:
            return Zero()
        if font.value in ("mathbb", "mathds") and self.is_char("["):
            return self._indicator()
        return Ones()

    def _indicator(self):
        """𝟙[z > 0], the derivative of relu."""
        close = _matching(self.toks, self.i)
        inner = self.toks[self.i + 1:close]
        self.i = close + 1
        values = [x.value for x in inner]
        if len(values) < 3 or values[-2:] != [">", "0"]:
            raise self.error("an indicator 1[...] is read only as 1[z > 0]", inner[0] if inner else None)
        return Call("step", self.sub_parser(inner[:-2]).whole())

    def _function(self, fname: str):
        head = self.take()
        derivative, power = False, 1
        while True:
            if self.is_char("'"):
                self.take()
                derivative = True
            elif self.is_char("^"):
                tok = self.take()
                text = _plain(self.group())
                if text == "\\prime":
                    derivative = True
                elif re.fullmatch(r"\d+", text):
                    power = int(text)
                else:
                    raise self.error(f"cannot read the superscript '{text}' of {fname}", tok)
            elif self.is_char("_"):
                raise self.error(f"subscripts on {fname} (entries of a Jacobian) are not supported", self.peek())
            else:
                break
        if self.is_char("(") or self.is_char("["):
            arg = self.primary()
        elif self._starts_factor():
            arg = self.factor()
        else:
            raise self.error(f"{fname} needs an argument", head)
        if derivative:
            if fname not in ELEMENTWISE:
                raise self.error(f"{fname}' is a Jacobian, not an elementwise derivative; write it out", head)
            node = Derivative(fname, arg)
        else:
            node = Call(fname, arg)
        return Power(node, power) if power != 1 else node

    def _fraction(self):
        head = self.take()
        numer = self.group()
        denom = self.group()
        if numer and numer[0].kind == "cmd" and numer[0].value == "partial":
            return self._derivative_fraction(numer, denom, head)
        return Quotient(self.sub_parser(numer).whole(), self.sub_parser(denom).whole())

    def _derivative_fraction(self, numer: list[Tok], denom: list[Tok], head: Tok):
        if not self._is_loss(numer[1:]):
            raise self.error("a Jacobian ∂a/∂b is not supported; write its product with the adjoint out", head)
        if not denom or denom[0].value != "partial":
            raise self.error("expected ∂X in the denominator", head)
        rest = denom[1:]
        if rest and rest[0].kind == "char" and rest[0].value in "([":
            close = _matching(rest, 0)
            if close == len(rest) - 1:
                return _GradOfExpression(self.sub_parser(rest[1:-1]).whole(), head.pos)
        sub = self.sub_parser(rest)
        atom = sub.atom()
        if atom is None or not sub.at_end():
            raise self.error("expected ∂X in the denominator, with X a name", head)
        return self._gradient(atom)

    def _is_loss(self, tokens: list[Tok]) -> bool:
        sub = self.sub_parser(tokens)
        atom = sub.atom()
        if atom is None or not sub.at_end() or atom.subs:
            return False
        if atom.key.body in ("L", "ell", "E", "J"):
            return True
        try:
            qname, _, _ = self.names.resolve(atom)
        except ReadError:
            return False
        return self.names.model.quantities[qname].role == "loss"

    def _partial(self):
        raise self.error("write ∂L/∂X as \\frac{\\partial L}{\\partial X} or δX")

    def _delta(self):
        """δX, or δ(X) whose entries follow: ``\\delta (\\mathbf{U}_n)_{i,j}``."""
        head = self.take()
        if self.is_char("("):
            close = _matching(self.toks, self.i)
            sub = self.sub_parser(self.toks[self.i + 1:close])
            atom = sub.atom()
            if atom is None or not sub.at_end():
                raise self.error("δ(…) must hold the name of one quantity", head)
            self.i = close + 1
            return self._gradient(atom)
        atom = self.atom()
        if atom is None:
            raise self.error("δ must be followed by the name of a quantity", head)
        return self._gradient(atom)

    def _gradient(self, atom: Atom):
        qname, step, entries = self.names.resolve(atom)
        node = Grad(qname, step)
        return Entry(node, entries) if entries else node

    def _value(self, atom: Atom):
        qname, step, entries = self.names.resolve(atom)
        if self.names.model.quantities[qname].role == "loss":
            raise ReadError("the loss itself on a right side", atom.pos)
        node = Val(qname, step)
        return Entry(node, entries) if entries else node

    def _sum(self):
        head = self.take()
        lower = None
        while self.is_char("_") or self.is_char("^"):
            mark = self.take().value
            script = self.group()  # the upper limit is the whole range (T, or the size of the index)
            if mark == "_":
                lower = script
        index = self._sum_index(lower, head)
        body = self.elementwise()
        if index is None:
            return OverTime(body)
        return IndexSum(index, body)

    def _sum_index(self, lower: list[Tok] | None, head: Tok) -> str | None:
        """None for Σ_t over the whole sequence; else the entry index summed over."""
        text = _plain(lower or [])
        m = re.fullmatch(r"([a-zA-Z])(?:=(\w+))?", text)
        if m is None:
            shown = self.source[lower[0].pos:lower[-1].end] if lower else ""
            raise self.error(f"a sum over '{shown}' is not supported (only Σ_t over t = 1..T, and sums over an "
                             "entry index)", head)
        index, start = m.groups()
        if index == (self.names.index if self.names else "t"):
            if start not in (None, "1"):
                raise self.error(f"a sum over steps {index} = {start}..T is not supported (only over the whole "
                                 "sequence)", head)
            return None
        if start is not None and not start.isdigit():
            raise self.error(f"a sum over {index} from {start} is not supported", head)
        return index

    # --- names --------------------------------------------------------------------------

    def _braced_atom(self) -> bool:
        """Whether the ``{`` here wraps just a name (``{\\mathbf{c}}_t``, as symderiv writes it)."""
        close = _matching(self.toks, self.i)
        sub = self.sub_parser(self.toks[self.i + 1:close])
        try:
            return sub.atom() is not None and sub.at_end()
        except ReadError:
            return False

    def atom(self) -> Atom | None:
        """A name with its scripts, or None if no name starts here."""
        start = self.peek()
        if start is None:
            return None
        core = self._core()
        if core is None:
            return None
        key, core_text, sup_text, inner_subs = core
        subs = list(inner_subs)
        sups = list(key.sups)
        while True:
            if self.is_char("_"):
                self.take()
                script = self.group()
                subs.extend(_plain(part) for part in _split_top(script, lambda t: t.value == ","))
            elif self.is_char("^") and self._is_name_superscript():
                tok = self.take()
                script = self.group()
                sups.append(_plain(script))
                sup_text += self.source[tok.pos:self.toks[self.i - 1].end]
            else:
                break
        return Atom(NameKey(key.body, key.accent, tuple(sups)), tuple(subs), core_text, sup_text, start.pos)

    def _is_name_superscript(self) -> bool:
        """``^{(out)}`` names; ``^T``, ``^{\\top}``, ``^2`` are operations."""
        save = self.i
        self.take()
        try:
            text = _plain(self.group())
        finally:
            self.i = save
        return not (text in TRANSPOSES or text == "\\prime" or re.fullmatch(r"(?:\\circ)?-?\d+", text))

    def _core(self) -> tuple[NameKey, str, str, tuple] | None:
        """The name before its scripts: (key, its LaTeX, the LaTeX of superscripts, subscripts).

        Scripts come with it only from a braced name such as ``{\\mathbf{W}_y}^{\\top}``."""
        t = self.peek()
        start = self.i
        if t.kind == "letter":
            self.take()
            return NameKey(t.value), t.value, "", ()
        if t.kind == "cmd" and t.value in GREEK and t.value not in ("delta", "partial"):
            self.take()
            return NameKey(t.value), "\\" + t.value, "", ()
        if t.kind == "text" and _is_word(t.value) and t.value.strip() not in FUNCTION_WORDS:
            self.take()
            return NameKey(t.value.strip()), self.source[t.pos:t.end], "", ()
        if t.kind == "cmd" and (t.value in FONTS or t.value in ACCENTS):
            self.take()
            key = self.sub_parser(self.group())._letters()
            if key is None:
                self.i = start
                return None
            accent = ACCENTS.get(t.value) or key.accent
            return NameKey(key.body, accent), self.source[t.pos:self.toks[self.i - 1].end], "", ()
        if t.kind == "char" and t.value == "{":
            close = _matching(self.toks, self.i)
            sub = self.sub_parser(self.toks[self.i + 1:close])
            atom = sub.atom()
            if atom is None or not sub.at_end():
                return None
            self.i = close + 1
            return atom.key, atom.core, atom.sup, atom.subs
        return None

    def _letters(self) -> NameKey | None:
        """The inside of a font or an accent: a word (``ctx``, ``h0``), a Greek letter, or another
        font or accent."""
        t = self.peek()
        if t is None:
            return None
        rest = self.toks[self.i:]
        if t.kind == "letter" and all(x.kind in ("letter", "num") for x in rest):
            return NameKey("".join(x.value for x in rest))
        core = self._core()
        if core is None or not self.at_end() or core[3]:
            return None
        return core[0]


def _flat(kind, parts: list):
    """One node for a chain of the same operation: a + (b + c) is a + b + c."""
    flat = []
    for p in parts:
        flat.extend(p.terms if kind is Terms and isinstance(p, Terms) else
                    p.factors if kind is not Terms and isinstance(p, kind) else [p])
    if len(flat) == 1:
        return flat[0]
    return kind(tuple(flat))


# ---------------------------------------------------------------------------------------
# The write-up → claims.


@dataclass
class WriteupReading:
    claims: list[Claim]
    spellings: dict
    vocabulary: set


class _Lines:
    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, pos) - 1
        return k + 1, pos - self.starts[k] + 1


def read_writeup(text: str, derivation, markdown: bool, match_quantity) -> WriteupReading:
    """Every claim of a write-up, in order.  ``match_quantity(node)`` names the model
    quantity an expression equals (for definitions), or None."""
    model = derivation.model
    names = Names.of(model)
    lines = _Lines(text)
    claims: list[Claim] = []
    for start, stop, env in displayed_spans(text, markdown):
        try:
            tokens = tokenize(text, start, stop)
            _check_depth(tokens)
            chains = chains_of(rows_of(tokens, env))
        except ReadError as exc:
            line, col = lines.line_col(exc.pos if exc.pos is not None else start)
            claims.append(Claim(line, col, _snippet(text, start, stop), problem=_where(lines, exc, start)))
            continue
        for chain in chains:
            claim = _read_chain(chain, text, derivation, names, lines, match_quantity)
            if claim is not None:
                claims.append(claim)
    vocabulary = {c.target.name for c in claims if c.target is not None}
    vocabulary |= {name for c in claims if c.rhs is not None for kind, name in references(c.rhs) if kind == "grad"}
    vocabulary |= {q for entries in names.aliases.values() for _, q in entries}
    return WriteupReading(claims, names.spellings, vocabulary)


def _check_depth(tokens: list[Tok]) -> None:
    """Refuse brackets nested deeper than any derivation needs (the parser recurses on them)."""
    depth = 0
    for t in tokens:
        if t.kind == "char" and t.value in "{([":
            depth += 1
            if depth > MAX_NESTING:
                raise ReadError(f"brackets nested more than {MAX_NESTING} deep", t.pos)
        elif t.kind == "char" and t.value in "})]":
            depth -= 1


def _read_chain(chain: _Chain, text: str, derivation, names: Names, lines: _Lines, match_quantity) -> Claim | None:
    model = derivation.model
    lhs = chain.members[0]
    if not lhs or len(chain.members) < 2:
        return None
    line, col = lines.line_col(lhs[0].pos)
    claim_like = _is_claim_side(lhs)
    members = chain.members
    if chain.relations[0] in DEFINITIONS:
        defined = _definition(lhs, members[1], text, names, derivation, match_quantity, claim_like)
        if isinstance(defined, ReadError):
            return Claim(line, col, _claim_text(text, lhs, members[-1]), problem=_where(lines, defined, lhs[0].pos))
        if defined is True:
            members = [lhs] + members[2:]
    if not claim_like or len(members) < 2:
        return None
    last = members[-1]
    shown = _claim_text(text, lhs, last)
    try:
        target_node = _Parser(lhs, text, names).whole()
        target = claim_target(model, target_node)
    except ReadError as exc:
        return Claim(line, col, shown, problem=_where(lines, exc, lhs[0].pos))
    try:
        if not last:
            raise ReadError("the right side is empty", lhs[-1].end)
        rhs = _Parser(last, text, names).whole()
        if isinstance(rhs, _GradOfExpression):
            raise ReadError("∂L/∂(expression) on a right side: name the expression with ≜ first", rhs.pos)
    except ReadError as exc:
        return Claim(line, col, shown, target, problem=_where(lines, exc, last[0].pos if last else None))
    return make_claim(model, line, col, shown, target_node, rhs)


def _is_claim_side(tokens: list[Tok]) -> bool:
    """``δX``, ``(δX)_i``, ``\\frac{\\partial L}{\\partial X}``: the left side of a claim."""
    toks = [t for t in tokens if not (t.kind == "char" and t.value in "([")]
    if not toks:
        return False
    first = toks[0]
    if first.kind == "cmd" and first.value == "delta":
        return True
    return (first.kind == "cmd" and first.value in ("frac", "dfrac", "tfrac") and len(toks) > 2
            and toks[1].value == "{" and toks[2].value == "partial")


def _definition(lhs, member, text, names: Names, derivation, match_quantity, claim_like: bool):
    """Register ``δy ≜ ∂L/∂(expr)`` or ``z = expr`` as the write-up's name for a quantity.

    True if ``member`` was a definition (and so not a claim's value), None if it is none, a
    ``ReadError`` if it defines something that is not a quantity of the model."""
    parser = _Parser(lhs, text, names)
    if claim_like:
        if not (lhs[0].kind == "cmd" and lhs[0].value == "delta"):
            return None
        parser.take()
    try:
        atom = parser.atom()
    except ReadError:
        return None  # the left side is reported, if it is a claim's, when it is read as one
    if atom is None or not parser.at_end():
        return None
    if not claim_like and _resolves(names, atom):
        return None
    try:
        value = _Parser(member, text, names).whole()
    except ReadError:
        return None  # not a definition this reader understands; a claim's middle member need not be read
    if claim_like:
        if not isinstance(value, _GradOfExpression):
            return None
        value = value.expr
    elif isinstance(value, _GradOfExpression):
        return None
    try:
        qname = match_quantity(anchor_steps(derivation.model, value, STEP_T))
    except (ReadError, ShapeMismatch):
        qname = None
    if qname is None:
        if claim_like:
            return ReadError("the expression this defines is not a quantity of the model", member[0].pos)
        return None
    names.define(atom, qname)
    return True if claim_like else None


def _resolves(names: Names, atom: Atom) -> bool:
    try:
        names.resolve(atom)
    except ReadError:
        return False
    return True


def _claim_text(text: str, lhs: list[Tok], rhs: list[Tok]) -> str:
    left = " ".join(text[lhs[0].pos:lhs[-1].end].split())
    if not rhs:
        return left
    right = " ".join(text[rhs[0].pos:rhs[-1].end].split())
    return f"{left} = {right}"


def _snippet(text: str, start: int, stop: int) -> str:
    body = " ".join(text[start:stop].split())
    return body if len(body) <= 80 else body[:77] + "..."


def _where(lines: _Lines, exc: ReadError, fallback: int | None) -> str:
    pos = exc.pos if exc.pos is not None else fallback
    if pos is None:
        return exc.message
    line, col = lines.line_col(pos)
    return f"line {line}, column {col}: {exc.message}"

