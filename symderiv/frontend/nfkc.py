"""Two checks over a model file's statements that Python's own parser cannot make for us.

Python reads identifiers in their NFKC form, so ``𝐖`` (mathematical bold W) and ``ℌ`` are
silently ``W`` and ``H`` inside an equation, while a declaration keeps the spelling as
written: a name that NFKC changes is refused, pointing at every other spelling of the same
name.  And a file has at most one ``model`` line (a second one silently renamed the outputs).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from .source import SourceLine

# A string literal (skipped: LaTeX spellings may hold anything), or an identifier.
_TOKEN = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"?|'(?:[^'\\\n]|\\.)*'?|(?P<name>[^\W\d]\w*)")


def check_spellings(statements: Sequence[SourceLine]) -> None:
    """Raise ``ModelError`` at the first name NFKC normalisation changes, or at a second
    ``model`` line.  ``statements`` are the parser's logical lines (``.text``, ``.pos``)."""
    spellings: dict[str, list[tuple[str, SourceLine, int]]] = {}  # NFKC form → (spelling, statement, offset)
    first_model = None
    for stmt in statements:
        if re.match(r"model\b", stmt.text):
            if first_model is not None:
                where = first_model.pos(0)
                raise stmt.error(f"a second 'model' line: the model is already named at line {where.line} "
                                 "(one 'model' line a file)")
            first_model = stmt
        for m in _TOKEN.finditer(stmt.text):
            name = m.group("name")
            if name is not None:
                spellings.setdefault(unicodedata.normalize("NFKC", name), []).append((name, stmt, m.start()))
    for norm, uses in spellings.items():
        for name, stmt, offset in uses:
            if name == norm:
                continue
            others = sorted({f"'{n}' at {s.pos(o)}" for n, s, o in uses if n != name})
            also = f"; the same name is written {', '.join(others)}" if others else ""
            raise stmt.error(f"'{name}' is read by Python as '{norm}' (Unicode NFKC normalisation), "
                             f"so it would silently be the name '{norm}'{also}; write '{norm}'"
                             " or pick a name that stays itself", offset)
