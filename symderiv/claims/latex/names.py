"""Names in a write-up: how a symbol as written maps to a quantity of the model.

A name is read without its fonts (``\\mathbf{W}^{(\\text{out})}`` and ``W^{(out)}`` are one
key); its subscripts are a prefix that belongs to the name, then a step (``t-1``) and entry
indices.  The ``Glossary`` holds the model's quantities by key, the write-up's own names for
them (from ``≜``) and the way the write-up spells each, so a correct form reads in its notation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...ir.model import Model
from ...ir.names import split_name
from ..tree import ReadError, Step
from .tokens import (
    ACCENTS,
    FONTS,
    FUNCTION_WORDS,
    INVERSE_TRANSPOSES,
    LETTERS,
    TRANSPOSES,
    Cursor,
    Tok,
    is_word,
    matching,
    plain,
    split_top,
    tokenize,
)


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
class Glossary:
    """The model's quantities by LaTeX key, the write-up's own definitions, and its spellings."""

    model: Model
    table: dict[NameKey, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)  # → [(subscripts, quantity)]
    aliases: dict[NameKey, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    spellings: dict[str, Spelling] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Model) -> Glossary:
        glossary = cls(model)
        for q in model.quantities.values():
            atom = _parse_spelling(model.latex(q.name))
            if atom is not None:
                glossary._add(glossary.table, atom.key, atom.subs, q.name)
            parts = split_name(q.name)
            glossary._add(glossary.table, NameKey(parts.body, parts.accent), parts.subscripts + parts.superscripts,
                          q.name)
            layer = re.fullmatch(r"([A-Za-z]+)(\d+)", parts.body)
            if layer:  # W1 is also W_1, W^{[1]} and W^{(1)}
                letters, number = layer.groups()
                glossary._add(glossary.table, NameKey(letters, parts.accent), (number,) + parts.subscripts, q.name)
                for sup in (f"[{number}]", f"({number})"):
                    glossary._add(glossary.table, NameKey(letters, parts.accent, (sup,)), parts.subscripts, q.name)
        return glossary

    @staticmethod
    def _add(table: dict[NameKey, list[tuple[tuple[str, ...], str]]], key: NameKey, subs: tuple[str, ...],
             qname: str) -> None:
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


class NameReader(Cursor):
    """Reads a name with its scripts from a token list (``atom``); the expression parser is one."""

    def __init__(self, tokens: list[Tok], source: str, glossary: Glossary | None):
        super().__init__(tokens, source)
        self.glossary = glossary

    def sub_parser(self, tokens: list[Tok]):
        """A reader of the same kind over ``tokens``, with the same source and glossary."""
        return type(self)(tokens, self.source, self.glossary)

    def _braced_atom(self) -> bool:
        """Whether the ``{`` here wraps just a name (``{\\mathbf{c}}_t``, as symderiv writes it)."""
        close = matching(self.toks, self.i)
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
                subs.extend(plain(part) for part in split_top(script, lambda t: t.value == ","))
            elif self.is_char("^") and self._is_name_superscript():
                tok = self.take()
                script = self.group()
                sups.append(plain(script))
                sup_text += self.source[tok.pos:self.toks[self.i - 1].end]
            else:
                break
        return Atom(NameKey(key.body, key.accent, tuple(sups)), tuple(subs), core_text, sup_text, start.pos)

    def _is_name_superscript(self) -> bool:
        """``^{(out)}`` names; ``^T``, ``^{\\top}``, ``^2`` are operations."""
        save = self.i
        self.take()
        try:
            text = plain(self.group())
        finally:
            self.i = save
        return not (text in TRANSPOSES or text == "\\prime" or re.fullmatch(r"(?:\\circ)?-?\d+", text)
                    or text in INVERSE_TRANSPOSES)

    def _core(self) -> tuple[NameKey, str, str, tuple] | None:
        """The name before its scripts: (key, its LaTeX, the LaTeX of superscripts, subscripts).

        Scripts come with it only from a braced name such as ``{\\mathbf{W}_y}^{\\top}``."""
        t = self.peek()
        if t is None:
            return None
        start = self.i
        if t.kind == "letter":
            self.take()
            return NameKey(t.value), t.value, "", ()
        if t.kind == "cmd" and t.value in LETTERS and t.value not in ("delta", "partial"):
            self.take()
            return NameKey(t.value), "\\" + t.value, "", ()
        if t.kind == "text" and is_word(t.value) and t.value.strip() not in FUNCTION_WORDS:
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
            close = matching(self.toks, self.i)
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


def _parse_spelling(latex: str) -> Atom | None:
    tokens = tokenize(latex, 0, len(latex))
    parser = NameReader(tokens, latex, None)
    try:
        atom = parser.atom()
    except ReadError:
        return None
    return atom if atom is not None and parser.at_end() else None
