"""Where the equations of a write-up are, and how each is cut into chains.

Displayed math (``$$…$$``, ``\\[…\\]``, equation/align/gather environments, a Markdown
``math`` fence) and inline math (``$…$``, ``\\(…\\)``) are found in the text; their rows
(split/aligned/cases inside it, continuation rows ``&= …``) are cut into chains ``A = B ≜ C``
of members and the relations between them.  A row that holds two equations (``A = B \\;
\\text{and}\\; C = D``, ``A = B,\\quad C = D``, a second ``&`` column pair) is two chains;
a lead-in (``\\therefore``, ``\\implies``, ``\\text{so}``) is not part of the equation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tokens import Tok, end_of_line, is_word, matching, split_top

#: Relations that define the left side (``δy ≜ ∂L/∂(W h_t + b)``) rather than claim a value.
DEFINITIONS = {"triangleq", "coloneqq", ":=", "def", "equiv", "doteq", "eqqcolon", "="}
EQUIVALENCES = {"Longleftrightarrow", "iff", "Leftrightarrow", "Longrightarrow", "Rightarrow", "implies",
                "longleftrightarrow", "Longleftarrow"}
#: Commands that lead into an equation (``\\therefore δh = …``) and are not part of it.
LEAD_INS = {"therefore", "because", "implies", "Rightarrow", "Longrightarrow", "rightarrow", "to", "hence",
            "thus", "Leftarrow", "iff", "Leftrightarrow", "quad", "qquad"}
#: Words between two equations of one row (``A = B \\; \\text{and} \\; C = D``), and words
#: that lead into one (``\\text{so } δh = …``).
CONNECTIVES = {"and", "or", "so", "thus", "hence", "then", "therefore", "where", "with", "while", "i.e.", "also",
               "similarly", "likewise", "giving", "gives", "we get", "we have", "which gives", "and so", "so that",
               "finally", "now", "since", "by", "let", "and similarly", "as well as"}
#: Operators that continue an equation past a ``\\quad`` gap.
BINARY = {"odot", "oslash", "circ", "cdot", "times", "div"}

DISPLAY_ENVIRONMENTS = {"equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*",
                        "eqnarray", "eqnarray*", "flalign", "flalign*", "alignat", "alignat*", "displaymath"}
ROW_ENVIRONMENTS = {"split", "aligned", "alignedat", "gathered", "cases", "dcases", "rcases", "array", "align",
                    "align*", "alignat", "alignat*", "gather", "gather*", "eqnarray", "eqnarray*", "flalign",
                    "flalign*", "multline", "multline*", "multlined"}
CASES = {"cases", "dcases", "rcases"}
#: Environments whose first braced argument is not content (column count or layout).
WITH_ARGUMENT = {"alignedat", "alignat", "alignat*", "array"}


INLINE = "inline"


def displayed_spans(text: str, markdown: bool, inline: bool = False) -> list[tuple[int, int, str | None]]:
    """(start, stop, environment) of every displayed equation's content; with ``inline``, of
    inline math too (environment ``INLINE``)."""
    spans: list[tuple[int, int, str | None]] = []
    i, n = 0, len(text)
    begin = re.compile(r"\\begin\s*\{([A-Za-z*]+)\}")
    while i < n:
        if markdown and text.startswith(("```", "~~~"), i) and (i == 0 or text[i - 1] == "\n"):
            fence = text[i:i + 3]
            line_end = end_of_line(text, i, n)
            head = text[i + 3:line_end]
            if head.startswith("math") and fence in head[4:]:  # ```math a = b``` on one line
                spans.append((i + 7, i + 3 + head.index(fence, 4), None))
                i = line_end
                continue
            close = text.find("\n" + fence, line_end - 1)
            stop = n if close < 0 else close + 1
            if text[i + 3:line_end].strip() == "math":
                spans.append((line_end, stop, None))
            i = end_of_line(text, stop, n) if close >= 0 else n
            continue
        c = text[i]
        if c == "%" and not markdown:
            i = end_of_line(text, i, n)
        elif c == "\\" and text.startswith("\\[", i):
            close = text.find("\\]", i + 2)
            stop = n if close < 0 else close
            spans.append((i + 2, stop, None))
            i = stop + 2
        elif c == "\\" and text.startswith("\\(", i):
            close = text.find("\\)", i + 2)
            if inline:
                spans.append((i + 2, n if close < 0 else close, INLINE))
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
        elif c == "$" and (i == 0 or text[i - 1] != "\\"):
            close = i + 1
            while close < n and (text[close] != "$" or text[close - 1] == "\\"):
                close += 1
            if inline and close < n and "\n\n" not in text[i + 1:close]:
                spans.append((i + 1, close, INLINE))
            i = close + 1
        else:
            i += 1
    return spans


@dataclass
class Row:
    tokens: list[Tok]
    cases: bool = False


def rows_of(tokens: list[Tok], env: str | None = None) -> list[Row]:
    """The rows of a displayed equation: a row environment is split at ``\\\\`` (recursively)."""
    if env in ROW_ENVIRONMENTS:
        body = tokens
        if env in WITH_ARGUMENT and tokens and tokens[0].value == "{":
            body = tokens[matching(tokens, 0) + 1:]
        rows = []
        for row in split_top(body, lambda t: t.kind == "cmd" and t.value == "\\"):
            rows.extend(rows_of(row) if _single_environment(row) else [Row(row, env in CASES)])
        return rows
    inner = _single_environment(tokens)
    if inner is not None:
        name, body = inner
        if name in ROW_ENVIRONMENTS:
            return rows_of(body, name)
    return [Row(row) for row in split_top(_unwrapped(tokens), lambda t: t.kind == "cmd" and t.value == "\\")]


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


# ---------------------------------------------------------------------------------------
# Chains: A = B = C.


@dataclass
class Chain:
    members: list[list[Tok]]
    relations: list[str]


def chains_of(rows: list[Row]) -> list[Chain]:
    """The equations of a displayed block, with continuation rows (``&= …``) joined to theirs."""
    chains: list[Chain] = []
    for row in rows:
        equations = _equations(_cut_condition(row.tokens)) if row.cases else \
            [eq for column in _column_pairs(row.tokens) for eq in _equations(column)]
        for k, equation in enumerate(equations):
            members, relations = _members(equation)
            if k == 0 and chains and not relations and equation and (
                    _starts_with_operator(equation) or not chains[-1].members[-1]
                    or _ends_with_operator(chains[-1].members[-1])):
                chains[-1].members[-1].extend(equation)  # "&+ B" on the next row, or "A = \\ B": it goes on
                continue
            if k == 0 and chains and relations and not members[0]:
                chains[-1].members.extend(members[1:])
                chains[-1].relations.extend(relations)
            elif any(members):
                chains.append(Chain(members, relations))
    return chains


def _cut_condition(tokens: list[Tok]) -> list[Tok]:
    """A row of ``cases``: the value before ``&``; the condition after it is prose."""
    return split_top(tokens, lambda t: t.kind == "char" and t.value == "&")[0]


def _unwrapped(tokens: list[Tok]) -> list[Tok]:
    """A row that is one brace group (``\\large{\\frac{∂E}{∂W} = …}``) without the braces."""
    toks = tokens
    while len(toks) > 2 and toks[0].kind == "char" and toks[0].value == "{" and matching(toks, 0) == len(toks) - 1:
        toks = toks[1:-1]
    if toks and toks[0].kind == "char" and toks[0].value == "{":
        close = matching(toks, 0)  # \large{A = B} = C: braces for the size only, around a relation
        if len(_members(toks[1:close])[0]) > 1:
            toks = toks[1:close] + toks[close + 1:]
    return toks


def _column_pairs(tokens: list[Tok]) -> list[list[Tok]]:
    """A row without its ``&`` marks; a row of align's column pairs (``A &= B & C &= D``) is
    one token list per pair."""
    columns = split_top(_unwrapped(tokens), lambda t: t.kind == "char" and t.value == "&")
    if len(columns) < 3:
        return [[t for column in columns for t in column]]
    pairs = [columns[k] + (columns[k + 1] if k + 1 < len(columns) else []) for k in range(0, len(columns), 2)]
    return [pair for pair in pairs if pair]


def _connective(t: Tok) -> bool:
    """``\\text{and}``, ``\\text{ where }``: a word between two equations."""
    return t.kind == "text" and t.value.strip(" ,.:;").lower() in CONNECTIVES


def _split_between(tokens: list[Tok], is_separator) -> list[list[Tok]]:
    """Split at separators only where both sides hold an equation (``A = B, C = D``)."""
    parts = split_top(tokens, is_separator)
    out = [parts[0]]
    for part in parts[1:]:
        if _has_relation(part) and _has_relation(out[-1]) and _lead_in_trimmed(part):
            out.append(part)
        else:  # not a second equation: keep the separator where it was
            sep = _separator_between(tokens, out[-1], part)
            out[-1] = out[-1] + ([sep] if sep is not None else []) + part
    return out


def _separator_between(tokens: list[Tok], before: list[Tok], after: list[Tok]) -> Tok | None:
    start = before[-1].end if before else (tokens[0].pos if tokens else 0)
    stop = after[0].pos if after else None
    for t in tokens:
        if t.pos >= start and (stop is None or t.end <= stop):
            return t
    return None


def _lead_in_trimmed(tokens: list[Tok]) -> list[Tok]:
    """Without a lead-in: ``\\therefore``, ``\\implies``, ``\\text{so}``, punctuation."""
    toks = list(tokens)
    while toks and ((toks[0].kind == "cmd" and toks[0].value in LEAD_INS) or _connective(toks[0])
                    or (toks[0].kind == "char" and toks[0].value in ",;:.")):
        toks.pop(0)
    return toks


def _equations(tokens: list[Tok]) -> list[list[Tok]]:
    """Split a row at ⟺, at ``\\quad`` gaps that start a new equation, at words and commas
    between two equations; drop lead-ins and trailing notes."""
    out = []
    pieces = [p for part in _split_between(tokens, _connective)
              for p in _split_between(part, lambda t: t.kind == "char" and t.value in ",;")]
    for part in (p for piece in pieces
                 for p in split_top(piece, lambda t: t.kind == "cmd" and t.value in EQUIVALENCES)):
        part = _lead_in_trimmed(part)
        if not part:
            continue
        segments = split_top(part, lambda t: t.kind == "cmd" and t.value in ("quad", "qquad"))
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
    trimmed = [_trim(_lead_in_trimmed(eq)) for eq in out]
    return [eq for eq in trimmed if eq]


def _ends_with_operator(seg: list[Tok]) -> bool:
    t = seg[-1]
    return (t.kind == "char" and t.value in "+-") or (t.kind == "cmd" and t.value in BINARY)


def _starts_with_operator(seg: list[Tok]) -> bool:
    t = seg[0]
    return (t.kind == "char" and t.value in "+-=/") or (t.kind == "cmd" and t.value in BINARY | DEFINITIONS)


def _has_relation(seg: list[Tok]) -> bool:
    return len(_members(seg)[0]) > 1


def _trim(tokens: list[Tok]) -> list[Tok]:
    """Without trailing punctuation and prose, or a trailing ``\\in \\mathbb{R}^{q}``."""
    toks = split_top(tokens, lambda t: t.kind == "cmd" and t.value == "in")[0]
    while toks and ((toks[-1].kind == "char" and toks[-1].value in ".,;")
                    or (toks[-1].kind == "text" and not is_word(toks[-1].value))):
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
        script = [x.value for x in tokens[i + 1:i + 7]]
        if script[:6] == ["^", "{", "d", "e", "f", "}"]:  # =^{def} (an LSTM note's), and =^{def}= too
            return "def", 8 if i + 7 < len(tokens) and tokens[i + 7].value == "=" else 7
        return "=", 1
    if t.kind == "char" and t.value == ":" and i + 1 < len(tokens) and tokens[i + 1].value == "=":
        return ":=", 2
    if t.kind == "char" and t.value == "+" and i + 1 < len(tokens) and tokens[i + 1].value == "=":
        return "+=", 2  # an accumulation δW += …: the step's contribution, judged as a claim
    if (t.kind == "cmd" and t.value == "mathrel" and [x.value for x in tokens[i + 1:i + 4]] == ["{", "+", "}"]
            and i + 4 < len(tokens) and tokens[i + 4].value == "="):
        return "+=", 5
    if t.kind == "cmd" and t.value in DEFINITIONS:
        return t.value, 1
    if t.kind == "cmd" and t.value in ("overset", "stackrel") and i + 1 < len(tokens) and tokens[i + 1].value == "{":
        first = matching(tokens, i + 1)
        if first + 1 < len(tokens) and tokens[first + 1].value == "{":
            second = matching(tokens, first + 1)
            if [x.value for x in tokens[first + 2:second]] == ["="]:
                return "def", second - i + 1
    return None, 1
