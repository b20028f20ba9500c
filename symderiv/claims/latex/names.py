"""Names in a write-up: how a symbol as written maps to a quantity of the model.

A name is read without its fonts (``\\mathbf{W}^{(\\text{out})}`` and ``W^{(out)}`` are one
key); its subscripts are a prefix that belongs to the name, then a step (``t-1``) and entry
indices.  The ``Glossary`` holds the model's quantities by key, the write-up's own names for
them (from ``≜``) and the way the write-up spells each, so a correct form reads in its notation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...frontend.statements import nearest
from ...ir.expr import AtEnd, TimeSum
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


def preactivation_hint(model: Model, atom: Atom) -> str:
    """What the model calls its pre-activations, for a name it does not know (a write-up's
    ``\\delta \\mathbf{a}_t`` where symderiv says z_h), and the ``latex`` line that spells one so."""
    named = [q for q in model.quantities.values() if q.auxiliary]
    if not named:
        return ""
    spelling = atom.core + atom.sup
    written = spelling + (f"_{{{','.join(atom.subs)}}}" if atom.subs else "")
    first = named[0].name
    return (preactivations(model) + f": write {'that' if len(named) == 1 else 'one of these'}, define your name in "
            "the write-up (\\delta " + written + " \\triangleq \\partial \\mathcal{L} / \\partial (...)), or add a "
            f"line to the model file: latex {first} \"{spelling}\"")


def preactivations(model: Model, written: bool = True) -> str:
    """``; if it is a pre-activation, the model calls them …``: each pre-activation symderiv named, as
    ``z_h (the argument of sigmoid in h, written \\mathbf{z}_{h,t})`` (without its LaTeX, ``written=False``:
    for a claims file); "" when it named none."""
    named = [q for q in model.quantities.values() if q.auxiliary]
    if not named:
        return ""
    readers = {}
    for q in model.quantities.values():
        arg = getattr(q.expr, "arg", None)
        for p in named:
            if arg is not None and (arg == p.symbol or getattr(arg, "base", None) == p.symbol):
                readers[p.name] = q
    index = model.time_index or "t"
    parts = []
    for p in named:
        reader = readers.get(p.name)
        if reader is None:
            of = "a pre-activation"
        else:
            of = f"the argument of {getattr(reader.expr, 'fname', type(reader.expr).__name__.lower())} in {reader.name}"
        latex = f", written {model.latex(p.name, index if p.sequence else None)}" if written else ""
        parts.append(f"{p.name} ({of}{latex})")
    return f"; if it is a pre-activation, the model calls {'it' if len(named) == 1 else 'them'} " + "; ".join(parts)


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
    step: str | None = None  # a step written as a superscript: h^t, h^{t-1}, h^{(t)}, h^{<t>}


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

    #: The model's own LaTeX spellings that cannot be read as a name (so never match), as notes.
    unread: list[str] = field(default_factory=list)
    #: The write-up says ``\\cdot`` is elementwise ("where · denotes the elementwise product").
    cdot_elementwise: bool = False
    #: Some claim was written with the loss of one step, ``∂L_t/∂X``.
    local_losses: bool = False
    #: The model's loss is a mean over steps, L = (1/T) Σ_t L_t: ∂L_t/∂X is T times step t's
    #: part of ∂L/∂X.
    mean_loss: bool = False
    #: What the claim being read relied on ("cdot", "local"), emptied before each claim.
    used: set = field(default_factory=set)
    #: Error signals the write-up named: ``δ_t = ∂L/∂z_t`` (superscripts → [(subscripts, quantity)]).
    signals: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: Model) -> Glossary:
        glossary = cls(model)
        bodies = {split_name(name).body for name in model.quantities}
        loss = next((q for q in model.quantities.values() if q.role == "loss"), None)
        glossary.mean_loss = model.length is not None and loss is not None and loss.expr is not None and \
            model.length in loss.expr.free_symbols
        glossary.last_step_loss = loss is not None and loss.expr is not None and model.has_time and \
            bool(loss.expr.atoms(AtEnd)) and not loss.expr.has(TimeSum)
        for q in model.quantities.values():
            if q.auxiliary and "y" not in bodies:
                # A pre-activation symderiv calls z_h is also y_h, as the seed course writes it,
                # where the model has no y of its own.
                parts = split_name(q.name)
                glossary._add(glossary.table, NameKey("y", parts.accent), parts.subscripts + parts.superscripts,
                              q.name)
            atom = _parse_spelling(model.latex(q.name))
            if atom is not None:
                glossary._add(glossary.table, atom.key, atom.subs + ((atom.step,) if atom.step else ()), q.name)
            else:
                glossary.unread.append(f"the latex spelling {model.latex(q.name)!r} of '{q.name}' cannot be read "
                                       "as a name, so a write-up's use of it is not recognised")
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
    def words(self) -> set[str]:
        """The names of several letters (``net`` of net_f) a write-up may write without ``\\text``."""
        return {k.body for table in (self.table, self.aliases) for k in table
                if len(k.body) > 1 and k.body.isalpha()}

    #: Inside ``\\Sigma_{j=1}^{t}`` (an LSTM note's sum over the steps with E at the last step
    #: t): j is the running step, and t the last step T.
    running: str | None = None
    last: str | None = None
    #: The loss reads only the last step (E = ℓ(h_T)): a sum to "t" in a write-up that says E is
    #: the error at time t runs to the last step.
    last_step_loss: bool = False

    @property
    def index(self) -> str:
        return self.running or self.model.time_index or "t"

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

    def define_signal(self, atom: Atom, qname: str) -> None:
        """``δ_t ≜ ∂L/∂z_t``: δ with these scripts is the adjoint of ``qname``."""
        subs = atom.subs + ((atom.step,) if atom.step else ())
        if subs and self.is_step(subs[-1]):
            subs = subs[:-1]
        self.signals.setdefault(atom.key.sups, [])
        if (subs, qname) not in self.signals[atom.key.sups]:
            self.signals[atom.key.sups].append((subs, qname))

    def signal(self, atom: Atom) -> tuple[str, Step | None, tuple] | None:
        """(quantity, step, entries) of an error signal ``δ_t`` the write-up named, or None."""
        items = atom.subs if atom.step is None else (atom.step,) + atom.subs
        signals = self.signals.get(atom.key.sups, [])
        found = [(p, q) for p, q in signals if items[:len(p)] == p]
        if found:
            prefix, qname = max(found, key=lambda pq: len(pq[0]))
            try:
                step, entries = self._step_and_entries(qname, items[len(prefix):], atom)
                return qname, step, entries
            except ReadError:
                if prefix:
                    raise
        # δ_{o,t} ≜ ∂E/∂net_{o,t}, δ_{f,t} ≜ ∂E/∂net_{f,t}, …: the write-up's pattern, so δ_{c,t}
        # is ∂E/∂net_{c,t} though only δ_{\bar{c},t} was defined
        bodies = {split_name(q).body for p, q in signals if p and split_name(q).subscripts == p}
        if len(bodies) != 1 or not atom.subs:
            if found:
                raise ReadError(f"δ{atom.sup}_{{{','.join(items)}}} names no quantity the write-up defined", atom.pos)
            return None
        body = bodies.pop()
        try:
            qname, step, entries = self.resolve(Atom(NameKey(body), atom.subs, body, "", atom.pos, atom.step))
        except ReadError:
            return None
        self.used.add("signal-pattern")
        return qname, step, entries

    def resolve(self, atom: Atom) -> tuple[str, Step | None, tuple]:
        """(quantity, step or None, entry indices) for a name as written."""
        for table in (self.aliases, self.table):
            found = [(p, q) for p, q in table.get(atom.key, []) if atom.subs[:len(p)] == p]
            if found:
                prefix, qname = max(found, key=lambda pq: len(pq[0]))
                rest = atom.subs[len(prefix):]
                if atom.step is not None:
                    rest = (atom.step,) + rest
                step, entries = self._step_and_entries(qname, rest, atom)
                self.spellings.setdefault(qname, Spelling(atom.core, atom.sup, prefix))
                return qname, step, entries
        if atom.step is None and atom.key.sups:  # h^{(3)}: a fixed step, if no layer is called that
            time = _time_superscript(atom.key.sups[-1], self.index, self.length, numbers=True)
            if time is not None:
                return self.resolve(Atom(NameKey(atom.key.body, atom.key.accent, atom.key.sups[:-1]), atom.subs,
                                         atom.core, atom.sup, atom.pos, time))
        example = re.fullmatch(r"\(([a-zA-Z])\)", atom.key.sups[-1]) if atom.key.sups else None
        if example and example.group(1) not in (self.index, self.length):
            # y^{(i)}: example i, an entry of the batch's vector y, if no layer is called (i)
            return self.resolve(Atom(NameKey(atom.key.body, atom.key.accent, atom.key.sups[:-1]),
                                     atom.subs + (example.group(1),), atom.core, atom.sup, atom.pos, atom.step))
        written = f"{atom.core}{atom.sup}" + (f"_{{{','.join(atom.subs)}}}" if atom.subs else "")
        raise ReadError(f"unknown name {written}: not a quantity of the model"
                        + (self._did_you_mean(atom) or preactivation_hint(self.model, atom)), atom.pos)

    def _did_you_mean(self, atom: Atom) -> str:
        """The model language's hint for a slip of a name (``\\mathbf{rr}``: did you mean
        ``\\mathbf{r}``, r?), through the names' LaTeX keys; "" when no name is close, or when the
        nearest body is that of several quantities (``\\mathbf{z}`` of the seed RNN: z_a, z_h, z_o),
        where picking one would steer the writer wrong (the pre-activations' hint lists them all)."""
        names: dict[str, list[str]] = {}
        for table in (self.aliases, self.table):
            for key, entries in table.items():
                for _, qname in entries:
                    if self.model.quantities[qname].role != "loss" and qname not in names.get(key.body, []):
                        names.setdefault(key.body, []).append(qname)
        close = nearest(atom.key.body, names)
        if close is None or len(names[close]) > 1:
            return ""
        qname = names[close][0]
        q = self.model.quantities[qname]
        return f"; did you mean {self.model.latex(qname, self.index if q.sequence else None)} ({qname})?"

    def _bare(self, item: str) -> str:
        """``\\tau-1`` as ``tau-1`` when the model's length (or index) is called tau."""
        for name in (self.index, self.length):
            if item.startswith("\\" + name):
                return item[1:]
        return item

    def _steps_pattern(self) -> str:
        names = [self.index, self.length] + ([self.last] if self.last else [])
        return "(" + "|".join(map(re.escape, names)) + r")([+-]\d+)?"

    def is_step(self, item: str) -> bool:
        item = self._bare(item)
        return re.fullmatch(self._steps_pattern() + r"|\d+", item) is not None

    def step(self, item: str) -> Step:
        item = self._bare(item)
        m = re.fullmatch(self._steps_pattern(), item)
        if m is None:
            return Step("", int(item))
        return Step("t" if m.group(1) == self.index else "T", int(m.group(2) or 0))

    def _step_and_entries(self, qname: str, rest: tuple, atom: Atom) -> tuple[Step | None, tuple]:
        q = self.model.quantities[qname]
        items = list(rest)
        step = None
        if items and self.is_step(items[0]):
            if not q.sequence and q.role == "param" and self.step(items[0]) == Step("t", 0):
                # W_{oh,t}: the copy of W_oh used at step t (an LSTM note's), whose gradient is
                # step t's term of the whole
                items.pop(0)
                self.used.add("param-step")
            elif not q.sequence:
                raise ReadError(f"'{qname}' is not a sequence, so it has no step {items[0]}", atom.pos)
            else:
                step = self.step(items.pop(0))
        entries: list[str] = []
        for item in items:
            if re.fullmatch(r"[a-zA-Z]", item) and item not in (self.index, self.last):
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
        return self._scripts(start, *core)

    def signal_atom(self, head: Tok) -> Atom:
        """The scripts after δ, when δ itself is a name (``δ_t``, ``δ^{(o)}_{t+1}``)."""
        return self._scripts(head, NameKey("\\delta"), "\\delta", "", ())

    def _scripts(self, start: Tok, key: NameKey, core_text: str, sup_text: str, inner_subs: tuple) -> Atom:
        """The sub- and superscripts after a name's core."""
        subs = list(inner_subs)
        sups = list(key.sups)
        step = None
        index, length = (self.glossary.index, self.glossary.length) if self.glossary is not None else ("t", "T")
        while True:
            if self.is_char("_"):
                self.take()
                script = self.group()
                for part in split_top(script, lambda t: t.value == ","):
                    # b_{y_i}, \\hat{y}_{t_k}: a subscript with its own subscript is two items
                    subs.extend(_accents_alike(plain(piece)) for piece in split_top(part, lambda t: t.value == "_")
                                if piece)
            elif self.is_char("^") and self._is_name_superscript():
                tok = self.take()
                script = self.group()
                text = plain(script)
                time = _time_superscript(text, index, length) if step is None else None
                if time is not None:
                    step = time
                    continue
                sups.append(text)
                sup_text += self.source[tok.pos:self.toks[self.i - 1].end]
            else:
                break
        return Atom(NameKey(key.body, key.accent, tuple(sups)), tuple(subs), core_text, sup_text, start.pos, step)

    def _is_name_superscript(self) -> bool:
        """``^{(out)}`` names; ``^T``, ``^{\\top}``, ``^2`` are operations."""
        save = self.i
        self.take()
        try:
            text = plain(self.group())
        finally:
            self.i = save
        return not (text in TRANSPOSES or text == "\\prime" or re.fullmatch(r"(?:\\circ|=)?-?\d+", text)
                    or text in INVERSE_TRANSPOSES)

    def letter_run(self) -> str:
        """The letters written together from here, as one string (``net`` of ``net_{f,t}``)."""
        k = self.i
        while k < len(self.toks) and self.toks[k].kind == "letter" and (
                k == self.i or self.toks[k].pos == self.toks[k - 1].end):
            k += 1
        return "".join(t.value for t in self.toks[self.i:k])

    def merge_word(self, word: str) -> None:
        """The letters of ``word`` here as one word token, as ``\\text{word}`` would be."""
        first, last = self.toks[self.i], self.toks[self.i + len(word) - 1]
        self.toks[self.i:self.i + len(word)] = [Tok("text", word, first.pos, last.end)]

    def _core(self) -> tuple[NameKey, str, str, tuple] | None:
        """The name before its scripts: (key, its LaTeX, the LaTeX of superscripts, subscripts).

        Scripts come with it only from a braced name such as ``{\\mathbf{W}_y}^{\\top}``."""
        t = self.peek()
        if t is None:
            return None
        start = self.i
        if t.kind == "letter":
            # a name of several letters written without \text: ``net_{f,t}`` for the model's
            # net_f (a spelling is one name; in a claim, only a word that is a model's name)
            run = self.letter_run()
            if len(run) > 1 and (run in self.glossary.words if self.glossary is not None else
                                 self.i + len(run) == len(self.toks) or self.toks[self.i + len(run)].value in "_^"):
                self.merge_word(run)
                t = self.toks[self.i]
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
            inside = self.group()
            key = self.sub_parser(inside)._letters()
            if key is None:
                return self._scripted_inside(t, inside, start)
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

    def _scripted_inside(self, font: Tok, inside: list[Tok], start: int):
        """A font around a name with its scripts: ``\\mathbf{J_t}``, ``\\mathbf{W^{hy}}``,
        ``\\hat{a^t}``: the same name as ``\\mathbf{J}_t``, ``\\mathbf{W}^{hy}``."""
        sub = self.sub_parser(inside)
        try:
            atom = sub.atom()
        except ReadError:
            atom = None
        if atom is None or not sub.at_end():
            self.i = start
            return None
        accent = ACCENTS.get(font.value) or atom.key.accent
        core = "\\" + font.value + "{" + atom.core + "}"
        subs = atom.subs + ((atom.step,) if atom.step else ())
        return NameKey(atom.key.body, accent, atom.key.sups), core, atom.sup, subs

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


def _accents_alike(text: str) -> str:
    """A subscript with its accents spelled one way: ``net_{\\overline{c}}`` is ``net_{\\bar{c}}``
    (in plain text, braces dropped: ``\\overlinec``)."""
    for command, accent in ACCENTS.items():
        if command != accent:
            text = text.replace("\\" + command, "\\" + accent)
    # and its argument braced again, as the printers write it back: \\barc → \\bar{c}
    return re.sub(r"\\(bar|hat|tilde)([A-Za-z])(?![A-Za-z])", r"\\\1{\2}", text)


def _time_superscript(text: str, index: str, length: str, numbers: bool = False) -> str | None:
    """The step of a superscript that writes time (``t``, ``t-1``, ``(t)``, ``<t>``,
    ``\\langle t \\rangle``; with ``numbers``, ``(3)``), as a subscript item, or None."""
    inner = text.replace("\\", "") if text.lstrip("(<").startswith("\\" + length) else text
    text = inner if inner != text else text
    for left, right in (("(", ")"), ("<", ">"), ("\\langle", "\\rangle"), ("\\lt", "\\gt")):
        if inner.startswith(left) and inner.endswith(right):
            inner = inner[len(left):len(inner) - len(right)]
            break
    else:
        if numbers:
            return None
    if re.fullmatch(rf"({re.escape(index)}|{re.escape(length)})([+-]\d+)?", inner):
        return None if inner == length and text == length else inner  # ^T is a transpose
    if numbers and re.fullmatch(r"\d+", inner) and text != inner:
        return inner
    return None


def _parse_spelling(latex: str) -> Atom | None:
    tokens = tokenize(latex, 0, len(latex))
    parser = NameReader(tokens, latex, None)
    try:
        atom = parser.atom()
    except ReadError:
        return None
    return atom if atom is not None and parser.at_end() else None
