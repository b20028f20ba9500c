"""Model source text → logical lines, with a map from every character back to its file
line and column; and the positions of ``ast`` nodes inside a line, for messages.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..errors import ModelError, Position


@dataclass
class SourceLine:
    """One logical line: its text and where each character came from."""

    text: str
    starts: list[tuple[int, int, int]]  # (offset in text, file line, file column of offset)
    source: Source

    def pos(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        for start, line, col in reversed(self.starts):
            if offset >= start:
                return Position(self.source.path, line, col + offset - start)
        _, line, col = self.starts[0]
        return Position(self.source.path, line, col)

    def error(self, message: str, offset: int = 0) -> ModelError:
        pos = self.pos(offset)
        return ModelError(message, pos, self.source.line(pos.line))

    @property
    def line(self) -> int:
        return self.starts[0][1]


@dataclass
class Source:
    """A model file's name and its physical lines, for positions and the lines shown in messages."""

    path: str
    lines: list[str]

    def line(self, n: int) -> str:
        return self.lines[n - 1] if 0 < n <= len(self.lines) else ""

    def error(self, message: str, line: int = 1, col: int = 1) -> ModelError:
        return ModelError(message, Position(self.path, line, col), self.line(line) or None)


def _strip_comment(line: str) -> str:
    quote, escaped = None, False
    for i, ch in enumerate(line):
        if escaped:  # the character after a backslash in a string: "\"W # x" is one string
            escaped = False
        elif quote:
            if ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _depth_change(line: str) -> int:
    depth, quote = 0, None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


def logical_lines(source: Source) -> list[SourceLine]:
    """Logical lines: one statement a line, continued while parentheses are open."""
    statements: list[SourceLine] = []
    current: SourceLine | None = None
    depth = 0
    for number, raw in enumerate(source.lines, start=1):
        code = _strip_comment(raw).rstrip()
        if current is None:
            stripped = code.lstrip()
            if not stripped:
                continue
            col = len(code) - len(stripped) + 1
            current = SourceLine(stripped, [(0, number, col)], source)
            depth = _depth_change(stripped)
        else:
            current.starts.append((len(current.text) + 1, number, 1))
            current.text += "\n" + code
            depth += _depth_change(code)
        if depth <= 0:
            statements.append(current)
            current = None
            depth = 0
    if current is not None:
        opened, closer = unmatched_brackets(current.text)
        if opened is None and closer is not None:  # ")(" : the depth went below zero on the way
            raise current.error(f"unmatched '{current.text[closer]}'", closer)
        raise current.error("unclosed parenthesis: the statement runs to the end of the file", opened or 0)
    return statements


def unmatched_brackets(text: str) -> tuple[int | None, int | None]:
    """(offset of the first bracket never closed, offset of the first closer never opened)."""
    stack: list[int] = []
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote or ch == "\n":  # a quote never spans lines (as in _depth_change)
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(i)
        elif ch in ")]}":
            if not stack:
                return None, i
            stack.pop()
    return (stack[0] if stack else None), None



def char_offset(text: str, lineno: int, col_bytes: int) -> int:
    """The offset in ``text`` of an ``ast`` position (a 1-based line, a column in UTF-8 bytes)."""
    lines = text.split("\n")
    line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
    col = len(line.encode("utf-8")[:col_bytes].decode("utf-8", errors="ignore"))
    return sum(len(x) + 1 for x in lines[: lineno - 1]) + col


def end_of(node: ast.expr) -> tuple[int, int]:
    """Where ``node`` ends: its last line and the column past it, in UTF-8 bytes.

    ``ast.parse`` sets both on every expression it returns; ``ast``'s types allow None only
    for nodes built by hand, which never reach here."""
    if node.end_lineno is None or node.end_col_offset is None:
        raise ValueError(f"internal error: an expression without an end position ({ast.dump(node)})")
    return node.end_lineno, node.end_col_offset


def operator_offset(text: str, left: ast.expr) -> int:
    """Where the operator after the operand ``left`` is (past closing parentheses and spaces)."""
    i = char_offset(text, *end_of(left))
    while i < len(text) and text[i] in " \t\n)":
        i += 1
    return i


def node_error(stmt: SourceLine, offset: int, text: str, node: ast.expr | ast.keyword, message: str) -> ModelError:
    """An error at ``node`` of the expression ``text``, which starts at ``offset`` of the line."""
    return stmt.error(message, offset + char_offset(text, node.lineno, node.col_offset))

