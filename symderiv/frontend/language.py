"""Model files (``.sdm``) → ``Model``.

Each statement is matched by its keyword; expressions are parsed by Python's ``ast`` and
checked node by node against a whitelist, then built into SymPy matrix expressions with
their shapes checked.  Nothing is evaluated.  Every problem is a ``ModelError`` with the
file, line and column of its cause.
"""

from __future__ import annotations

import ast
import keyword
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp
from sympy import MatrixSymbol, OneMatrix, ZeroMatrix

from ..errors import ModelError, Position
from ..ir.expr import (
    Apply,
    At,
    LogSoftmax,
    Softmax,
    TimeSum,
    add,
    broadcast,
    hadamard,
    hadamard_div,
    matmul,
    neg,
    same_shape,
    scale,
    sub,
    transpose,
)
from ..ir.model import Model, Quantity
from ..ops import ELEMENTWISE, FUNCTIONS, LANGUAGE, BuildContext
from .nfkc import check_spellings

NAME = r"[A-Za-z_][A-Za-z_0-9]*"
KEYWORDS = ("model", "dim", "time", "input", "target", "param", "state", "loss", "latex")
MAX_EXPRESSION_DEPTH = 200


# ---------------------------------------------------------------------------------------
# Source handling: logical lines with a map back to file positions.


@dataclass
class Statement:
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
    path: str
    lines: list[str]

    def line(self, n: int) -> str:
        return self.lines[n - 1] if 0 < n <= len(self.lines) else ""

    def error(self, message: str, line: int = 1, col: int = 1) -> ModelError:
        return ModelError(message, Position(self.path, line, col), self.line(line) or None)


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
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


def split_statements(source: Source) -> list[Statement]:
    """Logical lines: one statement a line, continued while parentheses are open."""
    statements: list[Statement] = []
    current: Statement | None = None
    depth = 0
    for number, raw in enumerate(source.lines, start=1):
        code = _strip_comment(raw).rstrip()
        if current is None:
            stripped = code.lstrip()
            if not stripped:
                continue
            col = len(code) - len(stripped) + 1
            current = Statement(stripped, [(0, number, col)], source)
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
        opened, closer = _brackets(current.text)
        if opened is None and closer is not None:  # ")(" : the depth went below zero on the way
            raise current.error(f"unmatched '{current.text[closer]}'", closer)
        raise current.error("unclosed parenthesis: the statement runs to the end of the file", opened or 0)
    return statements


def _brackets(text: str) -> tuple[int | None, int | None]:
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


# ---------------------------------------------------------------------------------------
# Statement forms.

_EQUATION = re.compile(rf"(?P<name>{NAME})\s*(?:\[(?P<index>[^\]]*)\])?\s*=(?!=)\s*(?P<expr>.*)", re.DOTALL)
_MODEL = re.compile(rf"model\s+(?P<name>{NAME})\s*", re.DOTALL)
_DIM = re.compile(r"dim\s+(?P<names>.*)", re.DOTALL)
_TIME = re.compile(rf"time\s+(?P<index>{NAME})\s*=\s*1\s*\.\.\s*(?P<length>{NAME})\s*", re.DOTALL)
_DATA = re.compile(
    rf"(?P<role>input|target)\s+(?P<name>{NAME})\s*(?:\[\s*(?P<index>[^\]]*?)\s*\])?\s*:\s*(?P<size>.*?)"
    r"(?:\s*,\s*(?P<dist>distribution))?\s*", re.DOTALL)
_PARAM = re.compile(rf"param\s+(?P<name>{NAME})\s*:\s*(?P<size>.*?)\s*", re.DOTALL)
_STATE = re.compile(rf"state\s+(?P<name>{NAME})\s*\[\s*(?P<step>[^\]]*?)\s*\]\s*=\s*(?P<expr>.*?)\s*", re.DOTALL)
_LOSS = re.compile(rf"loss\s+(?P<name>{NAME})\s*=\s*(?P<expr>.*)", re.DOTALL)
_LATEX = re.compile(rf"latex\s+(?P<name>{NAME})\s+\"(?P<text>(?:[^\"\\]|\\.)*)\"\s*", re.DOTALL)


@dataclass
class _Definition:
    """A quantity defined by an equation (or the loss), waiting to be built."""

    name: str
    sequence: bool
    stmt: Statement
    expr_offset: int
    tree: ast.expr
    is_loss: bool = False


@dataclass
class _Parse:
    source: Source
    name: str
    dims: dict[str, sp.Symbol] = field(default_factory=dict)
    time_index: str | None = None
    length: sp.Symbol | None = None
    time_stmt: Statement | None = None
    quantities: dict[str, Quantity] = field(default_factory=dict)
    definitions: dict[str, _Definition] = field(default_factory=dict)
    states: dict[str, dict[int, tuple[Statement, int, str]]] = field(default_factory=dict)
    latex: dict[str, str] = field(default_factory=dict)
    defined_at: dict[str, Position] = field(default_factory=dict)
    loss: str | None = None
    latex_positions: dict[str, Position] = field(default_factory=dict)


def load(path: str | Path) -> Model:
    """Read a model file.  Raises ``ModelError`` for anything wrong with it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(data, str(path))


def decode_source(text: str | bytes, filename: str, error=ModelError) -> str:
    """User text as ``str``: UTF-8, a byte-order mark dropped; invalid UTF-8, a NUL or a lone
    surrogate is an ``error`` at its line and column (model files and claims files alike)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = text[: exc.start].decode("utf-8").removeprefix("\ufeff")
            line, col = _line_col(before, len(before))
            shown = _LINE_END.split(text.decode("utf-8", errors="replace").removeprefix("\ufeff"))[line - 1]
            raise error("the file is not valid UTF-8", Position(filename, line, col), shown) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    if "\x00" in text:
        line, col = _line_col(text, text.index("\x00"))
        shown = _LINE_END.split(text)[line - 1].replace("\x00", "\N{SYMBOL FOR NULL}")
        raise error("the file contains a NUL character", Position(filename, line, col), shown)
    lone = re.search("[\ud800-\udfff]", text)  # only a str can hold one; no file could be written from it
    if lone:
        line, col = _line_col(text, lone.start())
        shown = _LINE_END.split(text)[line - 1].encode("utf-8", errors="replace").decode("utf-8")
        raise error(f"the text contains a lone surrogate U+{ord(lone.group()):04X}, which is not a character",
                    Position(filename, line, col), shown)
    return text


def parse(text: str | bytes, filename: str = "<model>") -> Model:
    """Parse model text; ``filename`` is used in messages and as the default model name."""
    text = decode_source(text, filename)
    # Only \n, \r\n and \r end a line (str.splitlines would also split at \f, \x85, \u2028, ...).
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    source = Source(filename, lines)
    stem = Path(filename).stem
    state = _Parse(source, stem if stem.isidentifier() else "model")
    statements = split_statements(source)
    check_spellings(statements)  # NFKC-equivalent names, a second model line
    # Dims and the time axis first: declarations may use them wherever they appear.
    for stmt in statements:
        word = re.match(NAME, stmt.text)
        if _EQUATION.fullmatch(stmt.text) or word is None:
            continue
        if word.group(0) == "dim":
            _parse_dim(state, stmt)
        elif word.group(0) == "time":
            _parse_time(state, stmt)
    for stmt in statements:
        _parse_statement(state, stmt)
    return _Builder(state).build()


_LINE_END = re.compile(r"\r\n|\r|\n")


def _line_col(text: str, at: int) -> tuple[int, int]:
    """The 1-based line and column of offset ``at``, lines ending as the parser ends them."""
    ends = list(_LINE_END.finditer(text, 0, at))
    start = ends[-1].end() if ends else 0
    return len(ends) + 1, at - start + 1


def _fullmatch(pattern: re.Pattern, stmt: Statement, what: str) -> re.Match:
    m = pattern.fullmatch(stmt.text)
    if m is None:
        raise stmt.error(f"cannot read this {what} statement; expected {_USAGE[what]}")
    return m


_USAGE = {
    "model": "'model NAME'",
    "dim": "'dim A, B, ...'",
    "time": "'time t = 1..T'",
    "input": "'input NAME[t]: SIZE' or 'input NAME: SIZE'",
    "target": "'target NAME[t]: SIZE' (optionally ', distribution')",
    "param": "'param NAME: (ROWS, COLS)', 'param NAME: SIZE' or 'param NAME: scalar'",
    "state": "'state NAME[k] = 0' or 'state NAME[k] = PARAM'",
    "loss": "'loss NAME = EXPR'",
    "latex": "'latex NAME \"...\"'",
}


def _parse_statement(state: _Parse, stmt: Statement) -> None:
    text = stmt.text
    eq = _EQUATION.fullmatch(text)
    if eq:  # 'loss L = ...' and 'state h[0] = ...' never match: a second name precedes '='
        _parse_equation(state, stmt, eq)
        return
    word = re.match(NAME, text)
    keyword_ = word.group(0) if word else ""
    if keyword_ in ("dim", "time"):
        return  # read in the first pass
    if keyword_ == "model":
        m = _fullmatch(_MODEL, stmt, "model")
        state.name = m.group("name")
        _check_name(state, stmt, state.name, m.start("name"), what="model name")
    elif keyword_ in ("input", "target"):
        _parse_data(state, stmt, _fullmatch(_DATA, stmt, keyword_))
    elif keyword_ == "param":
        _parse_param(state, stmt, _fullmatch(_PARAM, stmt, "param"))
    elif keyword_ == "state":
        _parse_state(state, stmt, _fullmatch(_STATE, stmt, "state"))
    elif keyword_ == "loss":
        m = _fullmatch(_LOSS, stmt, "loss")
        if state.loss is not None:
            raise stmt.error(f"a second loss: '{state.loss}' is already the loss (one loss a model)")
        name = m.group("name")
        _declare(state, stmt, name, m.start("name"))
        state.loss = name
        state.definitions[name] = _Definition(name, False, stmt, m.start("expr"),
                                              _parse_expr(stmt, m.start("expr")), is_loss=True)
    elif keyword_ == "latex":
        m = _fullmatch(_LATEX, stmt, "latex")
        _check_latex(stmt, m.group("text"), m.start("text"))
        state.latex[m.group("name")] = m.group("text").replace('\\"', '"')
        state.latex_positions[m.group("name")] = stmt.pos(m.start("name"))
    else:
        raise stmt.error("cannot read this line: expected a declaration (" + ", ".join(KEYWORDS)
                         + ") or an equation 'NAME[t] = EXPR'")


# TeX that reads or writes files, runs commands, redefines TeX or leaves the formula: a
# spelling from someone else's model file goes into write-ups that get compiled and pages
# that get rendered, so it is math and nothing else.
_TEX_FORBIDDEN = frozenset("""
    write write18 immediate openout openin closeout closein read readline input include includeonly
    InputIfFileExists IfFileExists verbatiminput lstinputlisting includegraphics special directlua luaexec
    latelua ShellEscape pdfshellescape pdffiledump pdfmdfivesum pdffilesize pdffilemoddate
    def edef gdef xdef let futurelet global long outer catcode lccode uccode mathcode sfcode delcode
    csname endcsname expandafter noexpand afterassignment aftergroup everymath everydisplay everypar
    newcommand renewcommand providecommand DeclareRobustCommand newenvironment renewenvironment
    usepackage RequirePackage documentclass makeatletter makeatother begin end
    href url htmlClass htmlId htmlStyle htmlData
""".split())
_TEX_COMMAND = re.compile(r"\\([A-Za-z]+|.?)", re.DOTALL)


def _check_latex(stmt: Statement, text: str, offset: int) -> None:
    """A ``latex`` spelling is a piece of math: balanced braces, no file or shell access."""
    opened: list[int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            command = _TEX_COMMAND.match(text, i).group(1)
            if command in _TEX_FORBIDDEN:
                raise stmt.error(f"'\\{command}' is not allowed in a latex spelling (only math is: nothing that "
                                 "reads or writes files, runs commands or redefines TeX)", offset + i)
            if command == "\\":
                raise stmt.error("a line break '\\\\' is not allowed in a latex spelling", offset + i)
            i += 1 + len(command)
            continue
        if ch in "$%&<>" or not ch.isprintable():
            what = {"$": "a '$' (the spelling is already inside math)", "%": "a '%' (it would comment out the "
                    "rest of the line)", "&": "a '&' (an alignment tab)", "<": "a '<' (write \\lt)",
                    ">": "a '>' (write \\gt)"}.get(ch, f"the character U+{ord(ch):04X}")
            raise stmt.error(f"{what} is not allowed in a latex spelling", offset + i)
        if ch == "{":
            opened.append(i)
        elif ch == "}":
            if not opened:
                raise stmt.error("unmatched '}' in a latex spelling", offset + i)
            opened.pop()
        i += 1
    if opened:
        raise stmt.error("unclosed '{' in a latex spelling", offset + opened[0])


def _check_name(state: _Parse, stmt: Statement, name: str, offset: int, what: str = "name") -> None:
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise stmt.error(f"'{name}' is a Python keyword and cannot be used as a {what}", offset)
    if name in FUNCTIONS or name in ("d",):
        raise stmt.error(f"'{name}' is a function of the model language and cannot be used as a {what}",
                         offset)


def _declare(state: _Parse, stmt: Statement, name: str, offset: int) -> None:
    _check_name(state, stmt, name, offset)
    pos = stmt.pos(offset)
    if name in state.defined_at or name in state.dims or name == state.time_index or (
            state.length is not None and name == state.length.name):
        first = state.defined_at.get(name) or (state.time_stmt.pos(0) if state.time_stmt else None)
        where = f" (first defined at line {first.line})" if first else " (it is a dim)"
        raise stmt.error(f"'{name}' is defined twice{where}", offset)
    state.defined_at[name] = pos


def _parse_dim(state: _Parse, stmt: Statement) -> None:
    m = _fullmatch(_DIM, stmt, "dim")
    offset = m.start("names")
    for piece in m.group("names").split(","):
        name = piece.strip()
        here = offset + (len(piece) - len(piece.lstrip()))
        if not re.fullmatch(NAME, name):
            raise stmt.error(f"'{name}' is not a valid dim name", here)
        _check_name(state, stmt, name, here, what="dim name")
        if name in state.dims or name in state.defined_at:
            raise stmt.error(f"'{name}' is defined twice", here)
        state.dims[name] = sp.Symbol(name, integer=True, positive=True)
        state.defined_at[name] = stmt.pos(here)
        offset += len(piece) + 1


def _parse_time(state: _Parse, stmt: Statement) -> None:
    m = _fullmatch(_TIME, stmt, "time")
    if state.time_index is not None:
        raise stmt.error("a second time axis: a model has at most one 'time' line")
    index, length = m.group("index"), m.group("length")
    for name, off in ((index, m.start("index")), (length, m.start("length"))):
        _check_name(state, stmt, name, off)
        if name in state.dims:
            raise stmt.error(f"'{name}' is defined twice (it is a dim)", off)
    if index == length:
        raise stmt.error("the time index and the sequence length need different names", m.start("length"))
    state.time_index = index
    state.length = sp.Symbol(length, integer=True, positive=True)
    state.time_stmt = stmt


def _parse_index(state: _Parse, stmt: Statement, index: str | None, offset: int, name: str) -> bool:
    """``[t]`` after a declared name: True for a sequence."""
    if index is None:
        return False
    if state.time_index is None:
        raise stmt.error(f"'{name}[{index}]' needs a time axis; add a line 'time {index} = 1..T'", offset)
    if index.strip() != state.time_index:
        raise stmt.error(f"a sequence is declared as '{name}[{state.time_index}]'", offset)
    return True


def _parse_size(state: _Parse, stmt: Statement, text: str, offset: int):
    """A size: a dim, a positive integer, or a sum of these (``n_h + n_x``)."""
    tree = _parse_expr(stmt, offset, text)

    def size(node):
        if isinstance(node, ast.Name):
            if node.id not in state.dims:
                raise _node_error(stmt, offset, text, node, f"unknown dim '{node.id}'; declare it with 'dim'")
            return state.dims[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value > 0:
            return sp.Integer(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return size(node.left) + size(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(
                node.left, ast.Constant) and type(node.left.value) is int and node.left.value > 0:
            return node.left.value * size(node.right)
        raise _node_error(stmt, offset, text, node,
                          "a size is a dim, a positive integer or a sum of these (like n_h + n_x)")

    return size(tree)


def _parse_shape(state: _Parse, stmt: Statement, text: str, offset: int):
    stripped = text.strip()
    if stripped == "scalar":
        return (sp.Integer(1), sp.Integer(1)), "scalar"
    tree = _parse_expr(stmt, offset, text)
    if isinstance(tree, ast.Tuple):
        if len(tree.elts) != 2:
            raise _node_error(stmt, offset, text, tree, "a matrix shape is (ROWS, COLS)")
        seg = [ast.get_source_segment(text, e) or "" for e in tree.elts]
        starts = [_char_offset(text, e.lineno, e.col_offset) for e in tree.elts]
        rows = _parse_size(state, stmt, seg[0], offset + starts[0])
        cols = _parse_size(state, stmt, seg[1], offset + starts[1])
        return (rows, cols), (seg[0].strip(), seg[1].strip())
    return (_parse_size(state, stmt, text, offset), sp.Integer(1)), text.strip()


def _parse_data(state: _Parse, stmt: Statement, m: re.Match) -> None:
    name = m.group("name")
    _declare(state, stmt, name, m.start("name"))
    seq = _parse_index(state, stmt, m.group("index"), m.start("index") if m.group("index") is not None else 0,
                       name)
    if m.group("size").strip() == "scalar":
        shape, declared = (sp.Integer(1), sp.Integer(1)), "scalar"
    else:
        shape = (_parse_size(state, stmt, m.group("size"), m.start("size")), sp.Integer(1))
        declared = m.group("size").strip()
    role = m.group("role")
    dist = m.group("dist") is not None
    if dist and role != "target":
        raise stmt.error("only a target can be a distribution", m.start("dist"))
    state.quantities[name] = Quantity(name, role, MatrixSymbol(name, *shape), seq, stmt.pos(m.start("name")),
                                      distribution=dist, declared_shape=declared)


def _parse_param(state: _Parse, stmt: Statement, m: re.Match) -> None:
    name = m.group("name")
    _declare(state, stmt, name, m.start("name"))
    shape, declared = _parse_shape(state, stmt, m.group("size"), m.start("size"))
    state.quantities[name] = Quantity(name, "param", MatrixSymbol(name, *shape), False,
                                      stmt.pos(m.start("name")), declared_shape=declared)


def _parse_state(state: _Parse, stmt: Statement, m: re.Match) -> None:
    name, step_text = m.group("name"), m.group("step")
    try:
        step = int(step_text.replace(" ", ""))
    except ValueError:
        raise stmt.error("a state step is an integer k <= 0, as in 'state h[0] = 0'", m.start("step")) from None
    if step > 0:
        raise stmt.error(f"a state gives a value before the sequence starts: the step must be <= 0, not {step}",
                         m.start("step"))
    steps = state.states.setdefault(name, {})
    if step in steps:
        raise stmt.error(f"'{name}[{step}]' is defined twice (first at line {steps[step][0].line})",
                         m.start("name"))
    value = m.group("expr").strip()
    if value not in ("0", "0.0") and not re.fullmatch(NAME, value):
        raise stmt.error("an initial state is 0 or a param", m.start("expr"))
    steps[step] = (stmt, m.start("expr"), value)


def _parse_equation(state: _Parse, stmt: Statement, m: re.Match) -> None:
    name = m.group("name")
    if name in KEYWORDS and m.group("index") is None and re.match(rf"{name}\s+{NAME}", stmt.text):
        raise stmt.error(f"cannot read this {name} statement; expected {_USAGE[name]}")
    _declare(state, stmt, name, m.start("name"))
    index = m.group("index")
    seq = _parse_index(state, stmt, index, m.start("index") if index is not None else 0, name)
    state.definitions[name] = _Definition(name, seq, stmt, m.start("expr"), _parse_expr(stmt, m.start("expr")))
    state.quantities[name] = None  # placeholder until built; keeps declaration order


# ---------------------------------------------------------------------------------------
# Expressions: ast, whitelisted.


def _char_offset(text: str, lineno: int, col_bytes: int) -> int:
    lines = text.split("\n")
    line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
    col = len(line.encode("utf-8")[:col_bytes].decode("utf-8", errors="ignore"))
    return sum(len(x) + 1 for x in lines[: lineno - 1]) + col


def _operator_offset(text: str, left: ast.AST) -> int:
    """Where the operator after the operand ``left`` is (past closing parentheses and spaces)."""
    i = _char_offset(text, left.end_lineno, left.end_col_offset)
    while i < len(text) and text[i] in " \t\n)":
        i += 1
    return i


def _node_error(stmt: Statement, offset: int, text: str, node: ast.AST, message: str) -> ModelError:
    return stmt.error(message, offset + _char_offset(text, node.lineno, node.col_offset))


def parse_expression(source: str) -> ast.expr:
    """``ast.parse`` in eval mode, without Python's warnings: "invalid escape sequence" in a
    string literal would go to stderr, while the string itself is refused later, with a position."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        return ast.parse(source, mode="eval").body


def _parse_expr(stmt: Statement, offset: int, text: str | None = None) -> ast.expr:
    """Parse with ``ast`` in eval mode; nothing is evaluated."""
    text = stmt.text[offset:] if text is None else text
    if not text.strip():
        raise stmt.error("an expression is missing here", offset)
    depth = 0
    for i, ch in enumerate(text):  # CPython's parser gives up (or overflows) on very deep nesting
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth > MAX_EXPRESSION_DEPTH:
            raise stmt.error(f"the expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep",
                             offset + i)
    closer = _brackets(text)[1]
    if closer is not None:  # the wrapping "(...)" below would hide where it is
        raise stmt.error(f"unmatched '{text[closer]}'", offset + closer)
    try:
        tree = parse_expression("(" + text.strip() + "\n)")
    except SyntaxError as exc:
        lead = len(text) - len(text.lstrip())
        lineno = exc.lineno or 1
        col = (exc.offset or 1) - 1 - (1 if lineno == 1 else 0)
        where = offset + lead + sum(len(x) + 1 for x in text.strip().split("\n")[: lineno - 1]) + max(col, 0)
        raise stmt.error(f"invalid syntax: {exc.msg}", where) from None
    except (RecursionError, MemoryError) as exc:  # CPython's own limits on nesting
        raise stmt.error(f"the expression is nested too deeply to read ({type(exc).__name__}; at most "
                         f"{MAX_EXPRESSION_DEPTH} levels, and a long sum or product counts one level a term)",
                         offset + len(text) - len(text.lstrip())) from None
    except ValueError as exc:  # not expected (NUL bytes and lone surrogates are refused first)
        raise stmt.error(f"cannot parse this expression ({exc})", offset) from None
    lead = len(text) - len(text.lstrip())
    # The wrapping "(" shifts columns of the first line by one; record that for positions.
    _shift_positions(tree, lead - 1, lead)
    # Operators nest without parentheses too (b + b + ... is a left-deep tree): every later
    # stage walks the tree recursively, so bound its depth here.
    deep = _too_deep(tree, MAX_EXPRESSION_DEPTH)
    if deep is not None:
        raise _node_error(stmt, offset, text, deep,
                          f"the expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep "
                          "(a long sum or product counts one level a term: name some of its parts)")
    return tree


def _too_deep(tree: ast.AST, limit: int) -> ast.expr | None:
    """The first expression node more than ``limit`` levels down, found without recursion."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return node
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    return None


def _shift_positions(tree: ast.AST, first_line_shift: int, lead: int) -> None:
    for node in ast.walk(tree):
        if hasattr(node, "col_offset") and node.lineno == 1:
            node.col_offset += first_line_shift
            if getattr(node, "end_lineno", None) == 1 and node.end_col_offset is not None:
                node.end_col_offset += first_line_shift


_ALLOWED_NODES = (ast.BinOp, ast.UnaryOp, ast.Call, ast.Attribute, ast.Subscript, ast.Name, ast.Constant,
                  ast.Tuple)
_DESCRIBE = {
    ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.JoinedStr: "an f-string",
    ast.Starred: "a starred argument", ast.IfExp: "a conditional expression", ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operator", ast.Dict: "a dict", ast.Set: "a set", ast.List: "a list",
    ast.NamedExpr: "an assignment expression", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.Slice: "a slice", ast.FormattedValue: "an f-string",
}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@"}


class _Builder:
    """Builds every equation into SymPy, in dependency order, checking shapes."""

    def __init__(self, state: _Parse):
        self.s = state
        self.shapes_pending: dict[str, MatrixSymbol] = {}
        self.bindings: dict[sp.Symbol, sp.Expr] = {}

    # --- orchestration ------------------------------------------------------------------

    def build(self) -> Model:
        s = self.s
        if s.loss is None:
            raise s.source.error("there is no loss: add a line 'loss L = ...'",
                                 max(len(s.source.lines), 1), 1)
        order = self._order()
        self._check_states()
        for name in order:
            d = s.definitions[name]
            try:
                self._build_definition(d)
            except RecursionError:  # a last resort: _parse_expr bounds the depth of every tree
                raise d.stmt.error("the expression is too deeply nested to process", d.expr_offset) from None
        self._finish_shapes()
        loss = s.quantities[s.loss]
        if loss.shape != (1, 1):
            d = s.definitions[s.loss]
            raise d.stmt.error(f"the loss must be a scalar, but {s.loss} is {_shape_text(loss.shape)}",
                               d.expr_offset)
        for name, pos in s.latex_positions.items():
            if name not in s.quantities:
                raise ModelError(f"'latex' names '{name}', which is not defined", pos, s.source.line(pos.line))
        states = {name: {k: self._state_value(name, k, v) for k, v in steps.items()}
                  for name, steps in s.states.items()}
        return Model(name=s.name, path=s.source.path, dims=dict(s.dims), quantities=dict(s.quantities),
                     loss=s.loss, time_index=s.time_index, length=s.length, states=states,
                     latex_overrides=dict(s.latex), order=order)

    def _order(self) -> list[str]:
        """Definitions, dependencies first; a cycle not through a lag is an error."""
        s = self.s
        deps: dict[str, list[tuple[str, ast.AST]]] = {}
        self.lags: dict[str, list[tuple[int, _Definition, ast.AST]]] = {}
        for name, d in s.definitions.items():
            deps[name] = []
            for ref, lag, node in self._references(d):
                if ref in s.definitions and lag == 0:
                    deps[name].append((ref, node))
                if lag > 0:
                    self.lags.setdefault(ref, []).append((lag, d, node))
        order: list[str] = []
        status: dict[str, int] = {}  # 1: on the current path, 2: done
        # Depth-first, dependencies first, with an explicit stack: a file may chain thousands
        # of definitions (h1 = f(h0), h2 = f(h1), ...), deeper than Python's recursion limit.
        for root in s.definitions:
            if status.get(root) == 2:
                continue
            status[root] = 1
            stack = [(root, iter(deps[root]))]
            while stack:
                name, pending = stack[-1]
                for ref, via in pending:
                    if status.get(ref) == 2:
                        continue
                    if status.get(ref) == 1:
                        path = [n for n, _ in stack]
                        cycle = path[path.index(ref):] + [ref]
                        d = s.definitions[name]  # the reference 'via' in its equation closes the loop
                        raise _node_error(d.stmt, d.expr_offset, d.stmt.text[d.expr_offset:], via,
                                          "cycle: " + " -> ".join(cycle)
                                          + " (only a lag such as h[t-1] may close a loop)")
                    status[ref] = 1
                    stack.append((ref, iter(deps[ref])))
                    break
                else:
                    stack.pop()
                    status[name] = 2
                    order.append(name)
        return order

    def _references(self, d: _Definition):
        """(name, lag, node) for every quantity a definition refers to; validates the tree."""
        text = d.stmt.text[d.expr_offset:]
        indexed = {id(n.value) for n in ast.walk(d.tree) if isinstance(n, ast.Subscript)}
        for node in ast.walk(d.tree):
            if isinstance(node, ast.expr) and not isinstance(node, _ALLOWED_NODES):
                what = _DESCRIBE.get(type(node), f"'{type(node).__name__}'")
                if isinstance(node, ast.BinOp):
                    what = "this operator"
                if isinstance(node, ast.Compare):
                    raise d.stmt.error(f"{what} is not allowed in a model file",
                                       d.expr_offset + _operator_offset(text, node.left))
                raise _node_error(d.stmt, d.expr_offset, text, node, f"{what} is not allowed in a model file")
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                yield node.value.id, self._lag(d, node), node
            elif isinstance(node, ast.Name) and node.id in self.s.definitions and id(node) not in indexed:
                yield node.id, 0, node

    def _lag(self, d: _Definition, node: ast.Subscript) -> int:
        """0 for ``x[t]``, k for ``x[t-k]``; anything else is an error."""
        s, idx = self.s, node.slice
        text = d.stmt.text[d.expr_offset:]
        name = node.value.id
        if s.time_index is None:
            raise _node_error(d.stmt, d.expr_offset, text, node,
                              f"'{name}[...]' needs a time axis; add a line 'time t = 1..T'")
        t = s.time_index
        if isinstance(idx, ast.Name) and idx.id == t:
            return 0
        if (isinstance(idx, ast.BinOp) and isinstance(idx.left, ast.Name) and idx.left.id == t
                and isinstance(idx.right, ast.Constant) and type(idx.right.value) is int):
            k = idx.right.value
            if isinstance(idx.op, ast.Sub):
                if k < 0:
                    raise _node_error(d.stmt, d.expr_offset, text, node,
                                      f"future reference {name}[{t}+{-k}]: only the current step or earlier ones")
                return k
            if isinstance(idx.op, ast.Add):
                if k == 0:
                    return 0
                raise _node_error(d.stmt, d.expr_offset, text, node,
                                  f"future reference {name}[{t}+{k}]: only the current step or earlier ones")
        raise _node_error(d.stmt, d.expr_offset, text, node,
                          f"a step is written {t} or {t}-k with a constant k >= 1, as in {name}[{t}-1]")

    def _check_states(self) -> None:
        s = self.s
        for name, steps in s.states.items():
            stmt, off, _ = next(iter(steps.values()))
            at = re.match(r"state\s+", stmt.text).end()  # where the name is
            if name not in s.definitions and name not in s.quantities:
                raise stmt.error(f"'state' for '{name}', which is not defined", at)
            d = s.definitions.get(name)
            if d is None and s.quantities.get(name) is not None:
                raise stmt.error(f"'state' for '{name}', which is {s.quantities[name].role} data: only quantities "
                                 "defined by an equation have initial states", at)
            if d is None or not d.sequence:
                raise stmt.error(f"'state' gives initial values of a sequence quantity, and '{name}' is not one", at)
        for name, uses in self.lags.items():
            for lag, d, node in uses:
                text = d.stmt.text[d.expr_offset:]
                target = s.definitions.get(name)
                if target is None:
                    q = s.quantities.get(name)
                    if q is None:
                        continue  # reported as an unknown name when built
                    raise _node_error(d.stmt, d.expr_offset, text, node,
                                      f"'{name}' is {q.role} data: only quantities defined by an equation can be "
                                      "used at an earlier step")
                have = s.states.get(name, {})
                for step in range(0, 1 - lag - 1, -1):
                    if step not in have:
                        raise _node_error(d.stmt, d.expr_offset, text, node,
                                          f"lag without a state: {name}[{s.time_index}-{lag}] reaches step {step} "
                                          f"before {s.time_index} = 1; add 'state {name}[{step}] = ...'")

    # --- building -----------------------------------------------------------------------

    def _build_definition(self, d: _Definition) -> None:
        s = self.s
        self.current = d
        expr = self._expr(d.tree, step=d.sequence)
        if not getattr(expr, "is_Matrix", False):  # a constant: a 1x1 value
            expr = scale(expr, OneMatrix(1, 1))
        role = "loss" if d.is_loss else "intermediate"
        shape = tuple(self._resolve(x) for x in expr.shape)
        pending = self.shapes_pending.get(d.name)
        if pending is not None:
            self._unify(pending.shape, shape, d.tree, f"'{d.name}' as used at an earlier step", d.name)
        sym = MatrixSymbol(d.name, *shape)
        s.quantities[d.name] = Quantity(d.name, role, sym, d.sequence, d.stmt.pos(0), expr=expr)

    def _finish_shapes(self) -> None:
        """Replace placeholder symbols (used for lagged references) by the final ones."""
        s = self.s
        mapping = {}
        for name, placeholder in self.shapes_pending.items():
            mapping[placeholder] = s.quantities[name].symbol
        dims = {k: self._resolve(k) for k in self.bindings}
        for q in s.quantities.values():
            if q.expr is not None:
                expr = q.expr.xreplace(mapping) if mapping else q.expr
                if dims:
                    expr = expr.xreplace(dims)
                q.expr = expr
            if dims:  # a size settled after the quantity was built (it used a lag of a later one)
                q.symbol = q.symbol.xreplace(dims)
            for x in q.shape:
                if any(isinstance(a, sp.Dummy) for a in sp.sympify(x, strict=True).free_symbols):
                    d = s.definitions[q.name]
                    raise d.stmt.error(f"cannot tell the size of '{q.name}' from its equation; "
                                       f"give it an initial state that is a param", 0)

    def _state_value(self, name: str, step: int, entry):
        stmt, off, value = entry
        q = self.s.quantities[name]
        if value in ("0", "0.0"):
            return ZeroMatrix(*q.shape)
        p = self.s.quantities.get(value)
        if p is None:
            raise stmt.error(f"unknown name '{value}'", off)
        if p.role != "param":
            raise stmt.error(f"an initial state is 0 or a param, and '{value}' is {p.role}", off)
        if not same_shape(p.symbol, q.symbol):
            raise stmt.error(f"shape mismatch: {name} is {_shape_text(q.shape)} but {value} is "
                             f"{_shape_text(p.shape)}", off)
        return p.symbol

    def _resolve(self, x):
        x = sp.sympify(x, strict=True)
        for _ in range(10):
            y = x.xreplace(self.bindings)
            if y == x:
                return sp.expand(y)
            x = y
        return sp.expand(x)

    def _unify(self, a, b, node, what_a, what_b) -> None:
        """Shapes must be equal; a placeholder size (from a lag) takes the other's value."""
        for x, y in zip(a, b):
            x, y = self._resolve(x), self._resolve(y)
            diff = sp.expand(x - y)
            if diff == 0:
                continue
            # A placeholder may sit inside a sum (concat(h[t-1], x[t]) has n_x + rows_h rows): solve for it.
            for dummy in sorted(_pending(diff), key=str):
                coeff = diff.coeff(dummy)
                if coeff.is_number and coeff != 0 and dummy not in (diff - coeff * dummy).free_symbols:
                    self.bindings[dummy] = sp.expand(-(diff - coeff * dummy) / coeff)
                    break
            else:
                raise self._error(node, f"shape mismatch: {what_a} is {_shape_text(a, self._resolve)} but "
                                        f"{what_b} is {_shape_text(b, self._resolve)}")

    def _error(self, node: ast.AST, message: str) -> ModelError:
        d = self.current
        return _node_error(d.stmt, d.expr_offset, d.stmt.text[d.expr_offset:], node, message)

    def _text(self, node: ast.AST) -> str:
        d = self.current
        seg = ast.get_source_segment(d.stmt.text[d.expr_offset:], node)
        return (seg or ast.unparse(node)).replace("\n", " ")

    def _expr(self, node: ast.AST, step: bool):
        """An ast node → a SymPy number or matrix expression."""
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            what = _DESCRIBE.get(type(node), f"'{type(node).__name__}'")
            raise self._error(node, f"{what} is not allowed in a model file")
        return method(node, step)

    def _Constant(self, node: ast.Constant, step: bool):
        v = node.value
        if type(v) is int:
            return sp.Integer(v)
        if type(v) is float:
            if v != v or v in (float("inf"), float("-inf")):
                raise self._error(node, "a number must be finite")
            return sp.Rational(repr(v))
        raise self._error(node, f"only numbers are allowed as constants, not {type(v).__name__}")

    def _Name(self, node: ast.Name, step: bool):
        s, name = self.s, node.id
        if name == s.time_index:
            raise self._error(node, f"the time index '{name}' can only appear in a step, as in x[{name}]")
        if name in s.dims or (s.length is not None and name == s.length.name):
            raise self._error(node, f"'{name}' is a size, not a value")
        if name in FUNCTIONS:
            raise self._error(node, f"'{name}' is a function; call it, as in {name}(...)")
        q = self._quantity(node, name)
        if q.sequence:
            raise self._error(node, f"'{name}' is a sequence; write {name}[{s.time_index}]")
        return q.symbol

    def _quantity(self, node: ast.AST, name: str) -> Quantity:
        s = self.s
        if name in s.quantities and s.quantities[name] is not None:
            return s.quantities[name]
        if name in s.definitions:
            # Only reachable through a lag of a quantity not built yet: use a placeholder shape.
            if name not in self.shapes_pending:
                self.shapes_pending[name] = MatrixSymbol(name, sp.Dummy(f"rows_{name}"), sp.Dummy(f"cols_{name}"))
            return Quantity(name, "intermediate", self.shapes_pending[name], s.definitions[name].sequence,
                            s.definitions[name].stmt.pos(0))
        close = [n for n in s.quantities if n.lower() == name.lower()]
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise self._error(node, f"unknown name '{name}'{hint}")

    def _Subscript(self, node: ast.Subscript, step: bool):
        s = self.s
        if not isinstance(node.value, ast.Name):
            raise self._error(node, "only a name can be indexed by a step, as in h[t-1]")
        name = node.value.id
        lag = self._lag(self.current, node)
        q = self._quantity(node.value, name)
        if not q.sequence:
            raise self._error(node, f"'{name}' is not a sequence; write it without [{s.time_index}]")
        if not step:
            raise self._error(node, f"'{name}[...]' is a sequence value, and this is not a per-step equation; "
                                    f"sum it over time with Sum(..., ({s.time_index}, 1, {s.length}))")
        return At(q.symbol, -lag)

    def _Attribute(self, node: ast.Attribute, step: bool):
        if node.attr != "T":
            d = self.current
            text = d.stmt.text[d.expr_offset:]
            at = _char_offset(text, node.end_lineno, node.end_col_offset) - len(node.attr)
            raise d.stmt.error(f"attribute '.{node.attr}' is not allowed (only .T, the transpose)", d.expr_offset + at)
        inner = self._expr(node.value, step)
        if not getattr(inner, "is_Matrix", False):
            return inner
        return transpose(inner)

    def _UnaryOp(self, node: ast.UnaryOp, step: bool):
        inner = self._expr(node.operand, step)
        if isinstance(node.op, ast.USub):
            return neg(inner) if getattr(inner, "is_Matrix", False) else -inner
        if isinstance(node.op, ast.UAdd):
            return inner
        raise self._error(node, "this operator is not allowed in a model file")

    def _BinOp(self, node: ast.BinOp, step: bool):
        op = _BINOPS.get(type(node.op))
        if op is None:
            sym = {ast.Pow: "**", ast.Mod: "%", ast.FloorDiv: "//", ast.LShift: "<<", ast.RShift: ">>",
                   ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^"}.get(type(node.op), "this operator")
            raise self._op_error(node, f"'{sym}' is not part of the model language")
        a, b = self._expr(node.left, step), self._expr(node.right, step)
        am, bm = getattr(a, "is_Matrix", False), getattr(b, "is_Matrix", False)
        if not am and not bm:
            if op == "@":
                raise self._op_error(node, "'@' needs two matrices or vectors")
            if op == "/" and b == 0:
                raise self._op_error(node, "division by zero")
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
        if op == "@":
            if not (am and bm):
                raise self._op_error(node, "'@' needs two matrices or vectors; use '*' to scale")
            ra, ca = map(self._resolve, a.shape)
            rb, cb = map(self._resolve, b.shape)
            if sp.expand(ca - rb) != 0:
                if _pending(ca) or _pending(rb):
                    self._unify((ca,), (rb,), node, f"the columns of {self._text(node.left)}",
                                f"the rows of {self._text(node.right)}")
                else:
                    raise self._op_error(node, f"shape mismatch in '@': {self._text(node.left)} is "
                                               f"{_shape_text(a.shape, self._resolve)} but {self._text(node.right)} "
                                               f"is {_shape_text(b.shape, self._resolve)} ({ca} columns, {rb} rows)")
            return matmul(a, b)
        a, b = self._conform(node, a, b, op)
        if op == "+":
            return add(a, b)
        if op == "-":
            return sub(a, b)
        if op == "*":
            if not getattr(a, "is_Matrix", False):
                return scale(a, b)
            if not getattr(b, "is_Matrix", False):
                return scale(b, a)
            return hadamard(a, b)
        # division
        if not getattr(b, "is_Matrix", False):
            if b == 0:
                raise self._op_error(node, "division by zero")
            return scale(1 / b, a)
        if not getattr(a, "is_Matrix", False):
            return scale(a, sp.HadamardPower(b, -1))
        return hadamard_div(a, b)

    def _op_error(self, node: ast.BinOp, message: str) -> ModelError:
        d = self.current
        return d.stmt.error(message, d.expr_offset + _operator_offset(d.stmt.text[d.expr_offset:], node.left))

    def _conform(self, node: ast.AST, a, b, op: str, where: str | None = None):
        """Broadcast a number or a 1x1 value over the other side's shape; else shapes must agree.

        ``node`` is the ``BinOp``, or the call ``where`` (like ``cross_entropy()``) of two arguments."""
        left, right = (node.left, node.right) if isinstance(node, ast.BinOp) else node.args[:2]
        am, bm = getattr(a, "is_Matrix", False), getattr(b, "is_Matrix", False)
        if op in "*/" and (not am or not bm):
            return a, b
        if not am:
            return broadcast(a, b.shape), b
        if not bm:
            return a, broadcast(b, a.shape)
        sa = tuple(map(self._resolve, a.shape))
        sb = tuple(map(self._resolve, b.shape))
        if all(sp.expand(x - y) == 0 for x, y in zip(sa, sb)):
            return a, b
        if sa == (1, 1):
            return broadcast(a, b.shape), b
        if sb == (1, 1):
            return a, broadcast(b, a.shape)
        if any(_pending(x) for x in sa + sb):
            self._unify(sa, sb, node, self._text(left), self._text(right))
            return a, b
        message = (f"shape mismatch in {where or repr(op)}: {self._text(left)} is {_shape_text(sa)} but "
                   f"{self._text(right)} is {_shape_text(sb)}")
        raise self._op_error(node, message) if isinstance(node, ast.BinOp) else self._error(node, message)

    def _Tuple(self, node: ast.Tuple, step: bool):
        raise self._error(node, "a tuple is only allowed as the range of Sum(..., (t, 1, T))")

    def _Call(self, node: ast.Call, step: bool):
        if not isinstance(node.func, ast.Name):
            raise self._error(node, f"call of '{self._text(node.func)}' is not allowed; only the functions of the "
                                    "model language can be called")
        fname = node.func.id
        if node.keywords:
            raise self._error(node.keywords[0], f"{fname}() takes no keyword arguments")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._error(arg, "a starred argument is not allowed in a model file")
        if fname == "Sum":
            return self._sum(node, step)
        if fname not in FUNCTIONS:
            raise self._error(node.func, f"unknown function '{fname}'; the model language has "
                                         + ", ".join(FUNCTIONS))
        elementwise = ELEMENTWISE.get(fname)
        arity = 1 + len(elementwise.params) if elementwise else LANGUAGE[fname].arity
        if arity is not None and len(node.args) != arity:
            raise self._error(node, f"{fname}() takes {arity} argument{'s' if arity > 1 else ''}, "
                                    f"got {len(node.args)}")
        if arity is None and not node.args:
            raise self._error(node, f"{fname}() needs at least one argument")
        args = [self._expr(a, step) for a in node.args]
        if elementwise:
            a, *params = args
            for name, p, p_node in zip(elementwise.params, params, node.args[1:]):
                if getattr(p, "is_Matrix", False) or not p.is_number:
                    raise self._error(p_node, f"the {name} of {fname}() must be a constant number, "
                                              f"not {self._text(p_node)}")
            if not getattr(a, "is_Matrix", False):
                value = elementwise.scalar(a, *params)
                if not value.is_finite:
                    raise self._error(node, f"{fname}({a}) is not finite")
                return value
            return Apply(fname, a, *params)
        for a, arg_node in zip(args, node.args):
            if not getattr(a, "is_Matrix", False):
                raise self._error(arg_node, f"{fname}() needs a vector here, not a number")
        ctx = BuildContext(self._error, self._need_vector, self._conform, self._text, self._resolve, _shape_text,
                           _pending)
        return LANGUAGE[fname].build(ctx, node, args)

    def _need_vector(self, node: ast.AST, value, fname: str) -> None:
        if _pending(self._resolve(value.shape[1])):  # a lagged quantity not built yet: a vector
            self._unify((value.shape[1],), (1,), node, f"the columns of {self._text(node)}", "1")
        if sp.expand(self._resolve(value.shape[1]) - 1) != 0:
            raise self._error(node, f"{fname}() needs a column vector, but {self._text(node)} is "
                                    f"{_shape_text(value.shape, self._resolve)}")

    def _sum(self, node: ast.Call, step: bool):
        s = self.s
        if s.time_index is None:
            raise self._error(node, "Sum(..., (t, 1, T)) needs a time axis; add a line 'time t = 1..T'")
        if step:
            raise self._error(node, "Sum over time inside a per-step equation; sum in a static equation or the loss")
        if len(node.args) != 2:
            raise self._error(node, f"Sum takes an expression and a range ({s.time_index}, 1, {s.length})")
        rng = node.args[1]
        ok = (isinstance(rng, ast.Tuple) and len(rng.elts) == 3 and isinstance(rng.elts[0], ast.Name)
              and rng.elts[0].id == s.time_index and isinstance(rng.elts[1], ast.Constant)
              and rng.elts[1].value == 1 and type(rng.elts[1].value) is int
              and isinstance(rng.elts[2], ast.Name) and rng.elts[2].id == s.length.name)
        if not ok:
            raise self._error(rng, f"the range of a Sum is ({s.time_index}, 1, {s.length}), the whole sequence")
        inner = self._expr(node.args[0], step=True)
        if not getattr(inner, "is_Matrix", False):
            raise self._error(node.args[0], "Sum of a constant; sum a quantity that depends on the step")
        return TimeSum(inner)


def _pending(x) -> set:
    """The placeholder sizes (of lagged quantities not built yet) in a size expression."""
    return {a for a in sp.sympify(x, strict=True).free_symbols if isinstance(a, sp.Dummy)}


def _log(p):
    """log p, with log(softmax(z)) kept as one node so it is computed stably."""
    if isinstance(p, Softmax) and not isinstance(p, LogSoftmax):
        return LogSoftmax(p.arg)
    return Apply("log", p)


def _shape_text(shape, resolve=lambda x: x) -> str:
    rows, cols = (resolve(x) for x in shape)
    if rows == 1 and cols == 1:
        return "a scalar"
    names = [("?" if isinstance(x, sp.Dummy) else str(x)) for x in (rows, cols)]
    if cols == 1:
        return f"a vector of size {names[0]}"
    return f"({names[0]}, {names[1]})"
