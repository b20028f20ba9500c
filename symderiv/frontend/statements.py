"""The statements of a model file: each logical line matched by its keyword, its names
declared and checked, its sizes read; equations kept as ``ast`` trees for the builder.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol

from ..errors import Position
from ..ir.model import Quantity
from ..ops import FUNCTIONS
from .source import Source, SourceLine, char_offset, node_error

NAME = r"[A-Za-z_][A-Za-z_0-9]*"
KEYWORDS = ("model", "dim", "time", "input", "target", "param", "state", "loss", "latex")


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
class Definition:
    """A quantity defined by an equation (or the loss), waiting to be built."""

    name: str
    sequence: bool
    stmt: SourceLine
    expr_offset: int
    tree: ast.expr
    is_loss: bool = False


@dataclass
class ParseState:
    """Everything the statements of one file declare, filled in file order."""

    source: Source
    name: str
    dims: dict[str, sp.Symbol] = field(default_factory=dict)
    time_index: str | None = None
    length: sp.Symbol | None = None
    time_stmt: SourceLine | None = None
    # None: a quantity defined by an equation, not built yet (the builder fills it in)
    quantities: dict[str, Quantity | None] = field(default_factory=dict)
    definitions: dict[str, Definition] = field(default_factory=dict)
    states: dict[str, dict[int, tuple[SourceLine, int, str]]] = field(default_factory=dict)
    # states after the sequence: name → {k: ...} for 'state g[T+k] = ...'
    end_states: dict[str, dict[int, tuple[SourceLine, int, str]]] = field(default_factory=dict)
    latex: dict[str, str] = field(default_factory=dict)
    defined_at: dict[str, Position] = field(default_factory=dict)
    loss: str | None = None
    latex_positions: dict[str, Position] = field(default_factory=dict)


def read_statements(state: ParseState, lines: list[SourceLine]) -> None:
    """Read every statement into ``state``, in file order (an error stops at the first problem)."""
    # Dims and the time axis first: declarations may use them wherever they appear.
    for stmt in lines:
        word = re.match(NAME, stmt.text)
        if _EQUATION.fullmatch(stmt.text) or word is None:
            continue
        if word.group(0) == "dim":
            _parse_dim(state, stmt)
        elif word.group(0) == "time":
            _parse_time(state, stmt)
    for stmt in lines:
        _parse_statement(state, stmt)


def _expression(stmt: SourceLine, offset: int, text: str | None = None) -> ast.expr:
    """An expression of the line as a checked ``ast`` tree (``language._parse_expr``).

    The expression reader lives in ``language``, which imports this module: it is looked up
    when first needed, not at import time."""
    from .language import _parse_expr

    return _parse_expr(stmt, offset, text)


def _latex_spelling(stmt: SourceLine, text: str, offset: int) -> None:
    """A ``latex`` spelling must be math and nothing else (``language._check_latex``)."""
    from .language import _check_latex

    _check_latex(stmt, text, offset)


def _fullmatch(pattern: re.Pattern, stmt: SourceLine, what: str) -> re.Match:
    m = pattern.fullmatch(stmt.text)
    if m is None:
        raise stmt.error(f"cannot read this {what} statement; expected {_USAGE[what]}")
    return m


_USAGE = {
    "model": "'model NAME'",
    "dim": "'dim A, B, ...'",
    "time": "'time t = 1..T'",
    "input": "'input NAME[t]: SIZE' or 'input NAME: SIZE' (SIZE: a dim, (ROWS, COLS) or scalar)",
    "target": "'target NAME[t]: SIZE' (SIZE: a dim, (ROWS, COLS) or scalar; optionally ', distribution')",
    "param": "'param NAME: (ROWS, COLS)', 'param NAME: SIZE' or 'param NAME: scalar'",
    "state": "'state NAME[k] = EXPR' (0, a param, or an expression of static values)",
    "loss": "'loss NAME = EXPR'",
    "latex": "'latex NAME \"...\"'",
}


def _parse_statement(state: ParseState, stmt: SourceLine) -> None:
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
        state.definitions[name] = Definition(name, False, stmt, m.start("expr"),
                                             _expression(stmt, m.start("expr")), is_loss=True)
    elif keyword_ == "latex":
        m = _fullmatch(_LATEX, stmt, "latex")
        _latex_spelling(stmt, m.group("text"), m.start("text"))
        state.latex[m.group("name")] = m.group("text").replace('\\"', '"')
        state.latex_positions[m.group("name")] = stmt.pos(m.start("name"))
    else:
        raise stmt.error("cannot read this line: expected a declaration (" + ", ".join(KEYWORDS)
                         + ") or an equation 'NAME[t] = EXPR'")



def _check_name(state: ParseState, stmt: SourceLine, name: str, offset: int, what: str = "name") -> None:
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise stmt.error(f"'{name}' is a Python keyword and cannot be used as a {what}", offset)
    if name in FUNCTIONS:
        raise stmt.error(f"'{name}' is a function of the model language and cannot be used as a {what}",
                         offset)


def _declare(state: ParseState, stmt: SourceLine, name: str, offset: int) -> None:
    _check_name(state, stmt, name, offset)
    pos = stmt.pos(offset)
    if name in state.defined_at or name in state.dims or name == state.time_index or (
            state.length is not None and name == state.length.name):
        first = state.defined_at.get(name) or (state.time_stmt.pos(0) if state.time_stmt else None)
        where = f" (first defined at line {first.line})" if first else " (it is a dim)"
        raise stmt.error(f"'{name}' is defined twice{where}", offset)
    state.defined_at[name] = pos


def _parse_dim(state: ParseState, stmt: SourceLine) -> None:
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


def _parse_time(state: ParseState, stmt: SourceLine) -> None:
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


def _parse_index(state: ParseState, stmt: SourceLine, index: str | None, offset: int, name: str) -> bool:
    """``[t]`` after a declared name: True for a sequence."""
    if index is None:
        return False
    if state.time_index is None:
        raise stmt.error(f"'{name}[{index}]' needs a time axis; add a line 'time {index} = 1..T'", offset)
    if index.strip() != state.time_index:
        raise stmt.error(f"a sequence is declared as '{name}[{state.time_index}]'", offset)
    return True


#: How alike (difflib's ratio) a known name must be to be suggested: 'bb' for 'b' (0.67) and 'tahn'
#: for 'tanh' (0.75) are, 'concat' for 'frobnicate' (0.62) is not.
CLOSE = 0.65


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest ``name``: the same name in other letter case first, then ``difflib``'s
    closest; None when none is close."""
    known = list(dict.fromkeys(known))
    close = [n for n in known if n.lower() == name.lower()] or difflib.get_close_matches(name, known, n=1, cutoff=CLOSE)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'relu'?"`` for the known name nearest ``name`` (``nearest``), or ``""`` when
    none is close."""
    close = nearest(name, known)
    return f"; did you mean '{close}'?" if close is not None else ""


def _parse_size(state: ParseState, stmt: SourceLine, text: str, offset: int):
    """A size: a dim, a positive integer, or a sum of these (``n_h + n_x``)."""
    tree = _expression(stmt, offset, text)

    def size(node):
        if isinstance(node, ast.Name):
            if node.id not in state.dims:
                hint = did_you_mean(node.id, state.dims).removeprefix("; ")
                raise node_error(stmt, offset, text, node, f"unknown dim '{node.id}'; declare it with 'dim'"
                                 + (f" ({hint})" if hint else ""))
            return state.dims[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value > 0:
            return sp.Integer(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return size(node.left) + size(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(
                node.left, ast.Constant) and type(node.left.value) is int and node.left.value > 0:
            return node.left.value * size(node.right)
        raise node_error(stmt, offset, text, node,
                         "a size is a dim, a positive integer or a sum of these (like n_h + n_x)")

    return size(tree)


def _parse_shape(state: ParseState, stmt: SourceLine, text: str, offset: int):
    stripped = text.strip()
    if stripped == "scalar":
        return (sp.Integer(1), sp.Integer(1)), "scalar"
    tree = _expression(stmt, offset, text)
    if isinstance(tree, ast.Tuple):
        if len(tree.elts) != 2:
            raise node_error(stmt, offset, text, tree, "a matrix shape is (ROWS, COLS)")
        seg = [ast.get_source_segment(text, e) or "" for e in tree.elts]
        starts = [char_offset(text, e.lineno, e.col_offset) for e in tree.elts]
        rows = _parse_size(state, stmt, seg[0], offset + starts[0])
        cols = _parse_size(state, stmt, seg[1], offset + starts[1])
        return (rows, cols), (seg[0].strip(), seg[1].strip())
    return (_parse_size(state, stmt, text, offset), sp.Integer(1)), text.strip()


def _parse_data(state: ParseState, stmt: SourceLine, m: re.Match) -> None:
    name = m.group("name")
    _declare(state, stmt, name, m.start("name"))
    seq = _parse_index(state, stmt, m.group("index"), m.start("index") if m.group("index") is not None else 0,
                       name)
    _check_modifiers(stmt, m)
    # a scalar, a vector of size n or a matrix (rows, cols), as for a param
    shape, declared = _parse_shape(state, stmt, m.group("size"), m.start("size"))
    role = m.group("role")
    dist = m.group("dist") is not None
    if dist and role != "target":
        raise stmt.error("only a target can be a distribution", m.start("dist"))
    if dist and declared == "scalar":
        raise stmt.error("a scalar target cannot be a distribution: its one entry would always be 1 (for a "
                         "binary label, use a distribution target of size 2 and a softmax)", m.start("dist"))
    state.quantities[name] = Quantity(name, role, MatrixSymbol(name, *shape), seq, stmt.pos(m.start("name")),
                                      distribution=dist, declared_shape=declared)


#: The modifiers after the size of an input or a target, and what each says.
MODIFIERS = {"distribution": "each target vector sums to 1, as one-hot or soft labels do"}


def _check_modifiers(stmt: SourceLine, m: re.Match) -> None:
    """``target y: n_y, onehot``: a word after the size that is no modifier is named as such,
    with the modifiers there are (not read as a malformed size)."""
    size = m.group("size")
    found = re.search(rf",\s*(?P<word>{NAME})\s*$", size)
    if found is None or found.group("word") in MODIFIERS:
        return
    word, role, name = found.group("word"), m.group("role"), m.group("name")
    there_are = ", ".join(f"'{k}' ({v})" for k, v in MODIFIERS.items())
    if role == "input":
        advice = f"an input takes no modifier (a target takes {there_are})"
    else:
        plain = size[:found.start()].strip()
        advice = (f"the modifiers of a target are {there_are}; a one-hot target is a distribution: "
                  f"'target {name}{'[' + m.group('index') + ']' if m.group('index') else ''}: {plain}, distribution'")
    raise stmt.error(f"unknown modifier '{word}' of {role} '{name}'; {advice}", m.start("size") + found.start("word"))


def _parse_param(state: ParseState, stmt: SourceLine, m: re.Match) -> None:
    name = m.group("name")
    _declare(state, stmt, name, m.start("name"))
    shape, declared = _parse_shape(state, stmt, m.group("size"), m.start("size"))
    state.quantities[name] = Quantity(name, "param", MatrixSymbol(name, *shape), False,
                                      stmt.pos(m.start("name")), declared_shape=declared)


def _parse_state(state: ParseState, stmt: SourceLine, m: re.Match) -> None:
    name, step_text = m.group("name"), m.group("step")
    end = _end_step(state, step_text)
    if end is not None:  # 'state g[T+1] = 0': after the sequence, for a recurrence backwards in time
        if end < 1:
            raise stmt.error(f"a state after the sequence is at a step {state.length}+k with k >= 1, "
                             f"as in 'state {name}[{state.length}+1] = 0'", m.start("step"))
        steps = state.end_states.setdefault(name, {})
        if end in steps:
            raise stmt.error(f"'{name}[{state.length}+{end}]' is defined twice (first at line "
                             f"{steps[end][0].line})", m.start("name"))
        steps[end] = _state_entry(stmt, m)
        return
    try:
        step = int(step_text.replace(" ", ""))
    except ValueError:
        raise stmt.error("a state step is an integer k <= 0, as in 'state h[0] = 0', or T+k after the "
                         "sequence, as in 'state g[T+1] = 0'", m.start("step")) from None
    if step > 0:
        raise stmt.error(f"a state gives a value before the sequence starts: the step must be <= 0, not {step} "
                         "(or T+k, after it)", m.start("step"))
    steps = state.states.setdefault(name, {})
    if step in steps:
        raise stmt.error(f"'{name}[{step}]' is defined twice (first at line {steps[step][0].line})",
                         m.start("name"))
    steps[step] = _state_entry(stmt, m)


def _end_step(state: ParseState, text: str) -> int | None:
    """k for a step written ``T+k`` (the sequence length plus a constant); None for anything else."""
    if state.length is None:
        return None
    found = re.fullmatch(rf"{re.escape(state.length.name)}\s*(?:([+-])\s*(\d+))?", text.strip())
    if found is None:
        return None
    k = int(found.group(2) or 0)
    return -k if found.group(1) == "-" else k


def _state_entry(stmt: SourceLine, m: re.Match) -> tuple[SourceLine, int, str]:
    value = m.group("expr").strip()
    _expression(stmt, m.start("expr"))  # version 2: an expression of static values, built later
    return (stmt, m.start("expr"), value)


def _parse_equation(state: ParseState, stmt: SourceLine, m: re.Match) -> None:
    name = m.group("name")
    if name in KEYWORDS and m.group("index") is None and re.match(rf"{name}\s+{NAME}", stmt.text):
        raise stmt.error(f"cannot read this {name} statement; expected {_USAGE[name]}")
    _declare(state, stmt, name, m.start("name"))
    index = m.group("index")
    seq = _parse_index(state, stmt, index, m.start("index") if index is not None else 0, name)
    state.definitions[name] = Definition(name, seq, stmt, m.start("expr"), _expression(stmt, m.start("expr")))
    state.quantities[name] = None  # placeholder until built; keeps declaration order

