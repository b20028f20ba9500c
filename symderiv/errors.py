"""Errors as values: every problem with user input carries a file, a line and a column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """A place in a source file; ``line`` and ``col`` are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SymderivError(Exception):
    """A user-facing error: the CLI prints it and exits with status 2."""

    def __init__(self, message: str, pos: Position | None = None, source_line: str | None = None):
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.source_line = source_line

    def format(self) -> str:
        """``FILE:LINE:COL: error: MESSAGE`` followed by the offending line and a caret."""
        if self.pos is None:
            return f"error: {self.message}"
        text = f"{self.pos}: error: {self.message}"
        if self.source_line is not None:
            line = self.source_line.rstrip("\n").expandtabs(1)
            caret = " " * (max(self.pos.col, 1) - 1) + "^"
            text += f"\n    {line}\n    {caret}"
        return text

    def __str__(self) -> str:
        return self.format()


class ModelError(SymderivError):
    """A mistake in a model file."""


class ClaimError(SymderivError):
    """A claim that cannot be read."""


class UnknownNameError(SymderivError, KeyError):
    """A name the model does not have, asked of the Python API (``Derivation.adjoint('y')``);
    the message lists the names there are.  A ``KeyError`` too, as a lookup by name is."""

    def __str__(self) -> str:
        return self.message
