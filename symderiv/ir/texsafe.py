r"""What TeX may read from a model file: the allow-list for ``latex NAME "..."`` spellings.

A spelling from someone else's model file is pasted into a write-up that gets compiled
(``NAME.tex``) and into a page that gets rendered (``NAME.md``, KaTeX or MathJax inside
Markdown).  A deny-list over the raw text cannot be right, because TeX does not read the raw
text: ``^^5c`` is a backslash to TeX, so ``^^5cinput{/etc/hostname}`` is ``\input``, and
``\pdfobj``, ``\loop``, ``\endinput``, ... are endless.  So this module reads a spelling the
way TeX's input processor and math mode would, and accepts only a small math language:

- characters: ASCII letters, digits, space and ``_ ^ { } ( ) [ ] , ' + - *``;
- commands (control words only; every control symbol such as ``\\``, ``\,``, ``\{``,
  ``\"`` is refused): the math alphabets in ``MATH_ALPHABETS``, the accents in ``ACCENTS``,
  the Greek letters in ``GREEK``, the symbols in ``SYMBOLS``, and ``\left( ... \right)`` /
  ``\left[ ... \right]`` pairs;
- structure: braces balanced, round and square brackets paired inside the group they open
  in, ``\left``/``\right`` paired inside one group, every ``^``/``_`` and every command that
  takes an argument given one (a group in braces, one letter or digit or ``* + -``, or a
  command of ``ORDINARY``), no double superscript or subscript (TeX's prime ``'`` counts as
  a superscript, and merges only with a ``'`` or ``^`` that follows it at once), no ``^``,
  ``_`` or ``'`` before anything at the start of the spelling (it would attach to whatever
  symbol is printed before the name).

Refused before anything else: ``^^`` in any form (``^^5c``, ``^^M``, ``^^^^005c``), since it
can spell any character, the backslash included.  Also refused: ``# % $ & ~ < > " ` | = . : ;``,
``\`` at the end, every other character (non-ASCII characters are active in pdflatex and
expand to macros), an empty spelling, a spelling longer than ``MAX_LENGTH`` characters or
nested deeper than ``MAX_DEPTH`` groups.

Decisions, documented here because they are choices, not TeX facts:

- ``\text`` is refused: it leaves math mode, and in a Markdown page its argument is where
  link syntax (``\text{[x](javascript:...)}``) would be rendered.  ``\operatorname`` is
  refused: a quantity is not an operator, and its argument is read by different rules
  (``\operatorname*``, text-mode ``-`` and ``*``).  ``\mathit``, ``\mathsf``, ``\mathtt``
  are allowed: kernel math alphabets, the same kind of thing as ``\mathrm``.  ``\ell``,
  ``\star``, ``\ast`` are allowed: symbols that take no argument.
- ``\boldsymbol`` (from ``bm``) is read as transparent, as ``bm`` typesets it: the
  sub/superscripts of its argument are those of the symbol, so ``\boldsymbol{x_a}_b`` is a
  double subscript.  A ``\boldsymbol`` inside a ``\boldsymbol`` is refused: ``bm`` takes
  minutes and then exhausts TeX's memory on two levels.
- An accent inside an accent is refused: amsmath typesets the outer one as a choice of
  four styles, after which a sub/superscript lands on an empty symbol.
- A ``]`` followed at once by ``(`` or ``[`` is refused: in Markdown that is a link
  (``[x](y)``, ``[x][y]``).  A spelling may not start with ``+``, ``-`` or ``*``: a
  Markdown line starting so (a static quantity's equation starts with its name) is a list.

``check_tex_spelling`` returns the first offending offset and a message.  For an accepted
spelling, ``braces_come_off`` tells whether TeX would take off braces put around it: a
spelling that is one accent carrying a sub/superscript (``\hat{y}_o``) loses them (TeX's
rule for a group holding a single accent), so ``{\hat{y}_o}_{t}`` is a double subscript;
the spelling of a name at a step or transposed must then be closed with ``{}``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

MATH_ALPHABETS = frozenset({"mathbf", "mathrm", "mathit", "mathsf", "mathtt", "mathcal", "mathbb", "boldsymbol"})
ACCENTS = frozenset({"hat", "tilde", "bar", "vec", "dot"})
GREEK = frozenset("""
    alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi psi
    omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega
    varepsilon vartheta varpi varrho varsigma varphi
""".split())
SYMBOLS = frozenset({"prime", "ell", "star", "ast"})
ORDINARY = GREEK | SYMBOLS  # commands that take no argument: a symbol each
DELIMITERS = frozenset({"left", "right"})
ALLOWED_COMMANDS = MATH_ALPHABETS | ACCENTS | ORDINARY | DELIMITERS
ALLOWED_CHARACTERS = frozenset(string.ascii_letters + string.digits + " _^{}()[],'+-*")
# Commands people will try, refused on purpose (see the module docstring): a reason each.
REFUSED_ON_PURPOSE = {
    "text": "it leaves math mode, and in the Markdown page its argument is where a link would be read",
    "operatorname": "a quantity is not an operator; use \\mathrm",
    "mbox": "it leaves math mode",
    "textrm": "it leaves math mode; use \\mathrm",
    "textbf": "it leaves math mode; use \\mathbf",
    "bm": "write \\boldsymbol",
}
MAX_LENGTH = 200
MAX_DEPTH = 16

ALLOWED = ("allowed are letters, digits, spaces, _ ^ { } ( ) [ ] , ' + - *, the math alphabets "
           + " ".join("\\" + c for c in sorted(MATH_ALPHABETS)) + ", the accents "
           + " ".join("\\" + c for c in sorted(ACCENTS)) + ", the Greek letters (\\alpha ... \\omega, "
           "\\Gamma ... \\Omega, \\varepsilon \\vartheta \\varpi \\varrho \\varsigma \\varphi), "
           "\\prime \\ell \\star \\ast, and \\left( or \\left[ closed by \\right) or \\right]")

_CHARACTER_REASONS = {
    "$": "a '$' (the spelling is already inside math)",
    "%": "a '%' (TeX would ignore the rest of the line)",
    "&": "a '&' (an alignment tab)",
    "#": "a '#' (a macro parameter to TeX)",
    "~": "a '~' (an active character to TeX)",
    "<": "a '<' (HTML in the Markdown page)",
    ">": "a '>' (HTML in the Markdown page)",
    '"': "a '\"'",
    "`": "a '`' (code in the Markdown page)",
    "|": "a '|' (a table in the Markdown page)",
}
_BARE_ARGUMENT = frozenset(string.ascii_letters + string.digits + "*+-")


class _Refused(Exception):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset, self.message = offset, message


@dataclass
class _List:
    """A math list being built: how many atoms (noads) it has, whether the last is an
    accent, and the scripts the last one already carries."""

    atoms: int = 0
    accent: bool = False
    sup: bool = False
    sub: bool = False
    after_prime: bool = False  # the previous token was a ' : a ' or ^ right after merges with it

    def atom(self, accent: bool = False, sup: bool = False, sub: bool = False) -> None:
        self.atoms += 1
        self.accent, self.sup, self.sub, self.after_prime = accent, sup, sub, False


@dataclass
class _Frame:
    """An open group: ``{`` (``role``: what the group is for) or ``\\left``."""

    kind: str  # "top", "group", "left"
    start: int
    role: str = "atom"  # atom | script | alphabet | accent | bold | left
    math: _List = field(default_factory=_List)
    brackets: list[tuple[str, int]] = field(default_factory=list)
    delimiter: str = ""


def check_tex_spelling(text: str) -> tuple[int, str] | None:
    """``None`` if ``text`` is an allowed LaTeX spelling, else (offset of the first offending
    character, a message saying what is wrong and what is allowed)."""
    try:
        _read(text)
    except _Refused as exc:
        return exc.offset, exc.message
    return None


def braces_come_off(text: str) -> bool:
    """Whether TeX would remove braces put around the (accepted) spelling ``text``: it is
    one accent carrying a sub/superscript, so ``{text}_{t}`` would be read as ``text_{t}``."""
    try:
        top = _read(text)
    except _Refused:
        return False  # not a spelling this module accepts: nothing to say about it
    return top.atoms == 1 and top.accent and (top.sup or top.sub)


def _refuse(offset: int, what: str) -> _Refused:
    return _Refused(offset, f"{what} is not allowed in a latex spelling; {ALLOWED}")


def _read(text: str) -> _List:
    # ^^ first: everything after it would be read as TeX reads it, not as written.
    hat = text.find("^^")
    if hat >= 0:
        raise _Refused(hat, "'^^' is not allowed in a latex spelling (TeX reads '^^5c' as a backslash, so it can "
                            f"spell any command); {ALLOWED}")
    if not text.strip():
        raise _Refused(0, "an empty latex spelling: it must spell the name")
    if len(text) > MAX_LENGTH:
        raise _Refused(MAX_LENGTH, f"a latex spelling longer than {MAX_LENGTH} characters")
    first = len(text) - len(text.lstrip())
    if text[first] in "+-*":
        raise _Refused(first, f"a latex spelling may not start with '{text[first]}' (in the Markdown page a line "
                              "starting so is a list item); put it in braces")
    return _Reader(text).run()


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.frames = [_Frame("top", 0)]
        self.need: tuple[str, int, str] | None = None  # (role, offset, what) of an awaited argument

    # --- tokens -------------------------------------------------------------------------

    def run(self) -> _List:
        text, i = self.text, 0
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                j = i + 1
                if j == len(text):
                    raise _Refused(i, "a '\\' at the end of a latex spelling (TeX would join it to what follows)")
                if text[j] in string.ascii_letters:
                    while j < len(text) and text[j] in string.ascii_letters:
                        j += 1
                    name = text[i + 1:j]
                    while j < len(text) and text[j] == " ":  # TeX skips spaces after a control word
                        j += 1
                    self.command(name, i, j)
                    i = j if name not in DELIMITERS else self.delimiter(name, i, j)
                    continue
                symbol = text[j]
                if symbol == "\\":
                    raise _refuse(i, "a line break '\\\\'")
                shown = symbol if symbol.isprintable() else f"U+{ord(symbol):04X}"
                raise _refuse(i, f"'\\{shown}'")
            if ch not in ALLOWED_CHARACTERS:
                raise _refuse(i, _CHARACTER_REASONS.get(ch) or (
                    f"the character U+{ord(ch):04X}" if not ch.isprintable() or ch.isspace()
                    else f"the character '{ch}' (U+{ord(ch):04X})"))
            self.character(ch, i)
            i += 1
        self.finish()
        return self.frames[0].math

    @property
    def frame(self) -> _Frame:
        return self.frames[-1]

    @property
    def math(self) -> _List:
        for f in reversed(self.frames):  # \boldsymbol's group shares the list it is in
            if f.role != "bold":
                return f.math
        raise AssertionError("the top frame is not bold")

    def at_top(self) -> bool:
        return all(f.role == "bold" for f in self.frames[1:])

    # --- arguments ----------------------------------------------------------------------

    def argument(self, need: tuple[str, int, str]) -> None:
        """A one-token argument (a letter, digit, * + -, or an ORDINARY command) for ``need``,
        what ``self.need`` awaited."""
        role, _, _ = need
        self.need = None
        self.done(role, _List(atoms=1))
        if role == "bold":
            self.math.atom()  # transparent: the symbol joins the list \boldsymbol is in

    def done(self, role: str, inner: _List) -> None:
        """An argument or a group has been read: what it leaves in the list it is part of."""
        lst = self.math
        if role.startswith("script"):
            if lst.atoms == 0:
                lst.atom()  # a script with nothing before it is on an empty atom
            if role == "script^":
                lst.sup = True
            else:
                lst.sub = True
            lst.after_prime = False
        elif role == "accent":
            lst.atom(accent=True)
        elif role == "bold":
            pass  # transparent: its atoms were added to this list
        elif role in ("atom", "alphabet"):
            # TeX's rule for a group of one accent: the group is dropped, the accent stays with its scripts.
            if inner.atoms == 1 and inner.accent:
                lst.atom(accent=True, sup=inner.sup, sub=inner.sub)
            else:
                lst.atom()
        elif role == "left":
            lst.atom()

    def expect(self, role: str, offset: int, what: str) -> None:
        self.need = (role, offset, what)

    def awaited(self, need: tuple[str, int, str], offset: int, found: str) -> None:
        """``found`` cannot be the argument that ``need`` (``self.need``) waits for."""
        _, at, what = need
        raise _Refused(at, f"{what} must be followed by one letter or digit, a Greek letter or a group in braces, "
                           f"not {found} (offset {offset - at} after it)")

    # --- characters ---------------------------------------------------------------------

    def character(self, ch: str, i: int) -> None:
        if self.need is not None:
            if ch == " ":
                return
            if ch == "{":
                self.open_group(self.need[0], i)
                self.need = None
                return
            if ch in _BARE_ARGUMENT:
                self.argument(self.need)
                return
            self.awaited(self.need, i, f"'{ch}'")
        lst = self.math
        if ch == " ":
            lst.after_prime = False
            return
        if ch == "{":
            self.open_group("atom", i)
            return
        if ch == "}":
            self.close_group(i)
            return
        if ch in "^_":
            if lst.atoms == 0 and self.at_top():
                raise _Refused(i, f"a latex spelling may not start with '{ch}' (it would attach to what is printed "
                                  "before the name)")
            if ch == "^" and lst.sup and not lst.after_prime:
                raise _Refused(i, "a second superscript on one symbol (TeX: Double superscript; a prime ' is a "
                                  "superscript too); put the first in braces: {x^a}^b")
            if ch == "_" and lst.sub:
                raise _Refused(i, "a second subscript on one symbol (TeX: Double subscript); put the first in "
                                  "braces: {x_a}_b")
            lst.after_prime = lst.after_prime and ch == "^"
            self.expect("script" + ch, i, f"'{ch}'")
            return
        if ch == "'":
            if lst.atoms == 0 and self.at_top():
                raise _Refused(i, "a latex spelling may not start with ' (it would attach to what is printed "
                                  "before the name)")
            if lst.after_prime:
                return
            if lst.sup:
                raise _Refused(i, "a prime ' after a superscript (TeX: Double superscript); write x'^a, not x^a'")
            if lst.atoms == 0:
                lst.atom()
            lst.sup = True
            lst.after_prime = True
            return
        if ch in "([":
            self.frame.brackets.append((ch, i))
            lst.atom()
            return
        if ch in ")]":
            self.close_bracket(ch, i)
            lst.atom()
            self.no_link(ch, i)
            return
        lst.atom()  # a letter, a digit, , + - *

    def no_link(self, ch: str, i: int) -> None:
        if ch == "]" and i + 1 < len(self.text) and self.text[i + 1] in "([":
            raise _Refused(i, f"']{self.text[i + 1]}' is not allowed in a latex spelling: it is a link in the "
                              "Markdown page; put a space between them")

    def close_bracket(self, ch: str, i: int) -> None:
        opener = "(" if ch == ")" else "["
        brackets = self.frame.brackets
        if not brackets:
            raise _Refused(i, f"unmatched '{ch}' in a latex spelling (brackets pair up inside their group)")
        if brackets[-1][0] != opener:
            raise _Refused(i, f"'{ch}' closes '{brackets[-1][0]}' in a latex spelling")
        brackets.pop()

    # --- groups -------------------------------------------------------------------------

    def open_group(self, role: str, i: int) -> None:
        if len(self.frames) > MAX_DEPTH:
            raise _Refused(i, f"a latex spelling nested deeper than {MAX_DEPTH} groups")
        frame = _Frame("group", i, role)
        if role == "bold":
            self.math.after_prime = False
        self.frames.append(frame)

    def close_group(self, i: int) -> None:
        frame = self.frame
        if frame.kind == "top":
            raise _Refused(i, "unmatched '}' in a latex spelling")
        if frame.kind == "left":
            raise _Refused(frame.start, "'\\left' is not closed by a '\\right' before the '}' of its group")
        self.unclosed_brackets(frame)
        self.frames.pop()
        if frame.role == "bold":
            self.math.after_prime = False
        self.done(frame.role, frame.math)

    def unclosed_brackets(self, frame: _Frame) -> None:
        if frame.brackets:
            ch, at = frame.brackets[0]
            raise _Refused(at, f"unclosed '{ch}' in a latex spelling (brackets pair up inside their group)")

    # --- commands -----------------------------------------------------------------------

    def command(self, name: str, i: int, end: int) -> None:
        if name not in ALLOWED_COMMANDS:
            why = REFUSED_ON_PURPOSE.get(name)
            raise _Refused(i, f"'\\{name}' is not allowed in a latex spelling" + (f" ({why})" if why else "")
                           + f"; {ALLOWED}")
        if name in ACCENTS and any(f.role == "accent" for f in self.frames) or (
                self.need is not None and self.need[0] == "accent" and name in ACCENTS):
            raise _Refused(i, f"an accent inside an accent ('\\{name}'): amsmath cannot typeset it cleanly")
        if name == "boldsymbol" and (any(f.role == "bold" for f in self.frames) or (
                self.need is not None and self.need[0] == "bold")):
            raise _Refused(i, "a \\boldsymbol inside a \\boldsymbol (TeX runs out of memory on it)")
        if self.need is not None:
            if name in ORDINARY:
                self.argument(self.need)
                return
            self.awaited(self.need, i, f"'\\{name}' (put it in braces)")
        lst = self.math
        if name in ORDINARY:
            lst.atom()
        elif name in ACCENTS:
            self.expect("accent", i, f"'\\{name}'")
        elif name in MATH_ALPHABETS:
            self.expect("bold" if name == "boldsymbol" else "alphabet", i, f"'\\{name}'")

    def delimiter(self, name: str, i: int, j: int) -> int:
        """``\\left`` or ``\\right`` at ``i``, its delimiter at ``j``: the offset after it."""
        text = self.text
        if self.need is not None:
            self.awaited(self.need, i, f"'\\{name}'")
        opening = name == "left"
        allowed = "([" if opening else ")]"
        if j >= len(text) or text[j] not in allowed:
            raise _Refused(i, f"'\\{name}' must be followed by " + " or ".join(f"'{c}'" for c in allowed))
        if opening:
            if len(self.frames) > MAX_DEPTH:
                raise _Refused(i, f"a latex spelling nested deeper than {MAX_DEPTH} groups")
            self.frames.append(_Frame("left", i, "left", delimiter=text[j]))
            return j + 1
        frame = self.frame
        if frame.kind != "left":
            raise _Refused(i, "'\\right' without a '\\left' before it in its group")
        expected = ")" if frame.delimiter == "(" else "]"
        if text[j] != expected:
            raise _Refused(j, f"'\\left{frame.delimiter}' is closed by '\\right{expected}', not '\\right{text[j]}'")
        self.unclosed_brackets(frame)
        self.frames.pop()
        self.done("left", frame.math)
        self.no_link(text[j], j)
        return j + 1

    def finish(self) -> None:
        if self.need is not None:
            _, at, what = self.need
            raise _Refused(at, f"{what} at the end of a latex spelling has no argument")
        for frame in self.frames:  # the outermost first
            if frame.kind == "group":
                raise _Refused(frame.start, "unclosed '{' in a latex spelling")
            if frame.kind == "left":
                raise _Refused(frame.start, f"'\\left{frame.delimiter}' is never closed by a '\\right'")
            self.unclosed_brackets(frame)


__all__ = ["ACCENTS", "ALLOWED_CHARACTERS", "ALLOWED_COMMANDS", "DELIMITERS", "GREEK", "MATH_ALPHABETS",
           "MAX_DEPTH", "MAX_LENGTH", "ORDINARY", "SYMBOLS", "braces_come_off", "check_tex_spelling"]
