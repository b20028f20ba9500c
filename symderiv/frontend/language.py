"""Model files (``.sdm``) → ``Model``.

The stages: ``source`` cuts the text into logical lines; ``statements`` reads each by its
keyword; expressions are parsed here by Python's ``ast`` (nothing is evaluated); ``order``
checks each tree against a whitelist and sorts the definitions, dependencies first; the
builder here turns the trees into SymPy matrix expressions with their shapes checked.
Every problem is a ``ModelError`` with the file, line and column of its cause.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import sympy as sp
from sympy import MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..errors import ModelError, Position, SymderivError
from ..ir.expr import (
    At,
    AtEnd,
    AtStep,
    TimeSum,
    Value,
    Window,
    add,
    broadcast,
    hadamard,
    hadamard_div,
    matmul,
    neg,
    same_shape,
    scalar_times,
    scale,
    sub,
    transpose,
)
from ..ir.model import Model, Quantity
from ..ir.names import preactivation_of
from ..ir.texsafe import check_tex_spelling
from ..ops import ELEMENTWISE, FUNCTIONS, LANGUAGE, BuildContext, apply_function
from .bounds import check_model, check_statements, check_text
from .nfkc import check_spellings
from .order import (
    LAMBDA_MESSAGE,
    check_directions,
    check_states,
    definition_order,
    fixed_step,
    fixed_step_in_step,
    lag,
    not_allowed,
)
from .source import (
    Source,
    SourceLine,
    char_offset,
    end_of,
    logical_lines,
    node_error,
    operator_offset,
    unmatched_brackets,
)
from .statements import Definition, ParseState, did_you_mean, read_statements

MAX_EXPRESSION_DEPTH = 200


def load(path: str | Path) -> Model:
    """Read a model file.  Raises ``ModelError`` for anything wrong with it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        hint = "; check the path of the model file (relative to the current directory)" if isinstance(
            exc, FileNotFoundError) else ""
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}{hint}") from None
    return parse(data, str(path))


def decode_source(text: str | bytes, filename: str,
                  error: Callable[[str, Position, str], SymderivError] = ModelError) -> str:
    """User text as ``str``: UTF-8, a byte-order mark dropped; invalid UTF-8, a NUL or a lone
    surrogate is an ``error`` at its line and column (model files and claims files alike)."""
    if isinstance(text, bytes):
        data = text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[: exc.start].decode("utf-8").removeprefix("\ufeff")
            line, col = _line_col(before, len(before))
            shown = _LINE_END.split(data.decode("utf-8", errors="replace").removeprefix("\ufeff"))[line - 1]
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
    check_text(text, filename)  # its size and its lines' length (frontend/bounds.py)
    # Only \n, \r\n and \r end a line (str.splitlines would also split at \f, \x85, \u2028, ...).
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    source = Source(filename, lines)
    stem = Path(filename).stem
    state = ParseState(source, stem if stem.isidentifier() else "model")
    statements = logical_lines(source)
    check_spellings(statements)  # NFKC-equivalent names, a second model line
    read_statements(state, statements)
    check_statements(state, source)  # how many equations, how large, how far back a state
    model = _ModelBuilder(state).build()
    check_model(model)  # how many entries a value has, how far a lag reaches, how large a number
    return model


_LINE_END = re.compile(r"\r\n|\r|\n")


def _line_col(text: str, at: int) -> tuple[int, int]:
    """The 1-based line and column of offset ``at``, lines ending as the parser ends them."""
    ends = list(_LINE_END.finditer(text, 0, at))
    start = ends[-1].end() if ends else 0
    return len(ends) + 1, at - start + 1



def _check_latex(stmt: SourceLine, text: str, offset: int) -> None:
    """A ``latex`` spelling is a piece of math, read as TeX would read it (see ``ir.texsafe``)."""
    refused = check_tex_spelling(text)
    if refused is not None:
        i, message = refused
        raise stmt.error(message, offset + i)



# ---------------------------------------------------------------------------------------
# Expressions: ast, whitelisted.


def parse_expression(source: str) -> ast.expr:
    """``ast.parse`` in eval mode, without Python's warnings: "invalid escape sequence" in a
    string literal would go to stderr, while the string itself is refused later, with a position."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        return ast.parse(source, mode="eval").body


def _parse_expr(stmt: SourceLine, offset: int, text: str | None = None) -> ast.expr:
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
    closer = unmatched_brackets(text)[1]
    if closer is not None:  # the wrapping "(...)" below would hide where it is
        raise stmt.error(f"unmatched '{text[closer]}'", offset + closer)
    try:
        tree = parse_expression("(" + text.strip() + "\n)")
    except SyntaxError as exc:
        lead = len(text) - len(text.lstrip())
        lineno = exc.lineno or 1
        col = (exc.offset or 1) - 1 - (1 if lineno == 1 else 0)
        where = offset + lead + sum(len(x) + 1 for x in text.strip().split("\n")[: lineno - 1]) + max(col, 0)
        keyword = re.search(r"\blambda\b", text)
        if keyword is not None:  # lambda(x), `if lambda`: Python's own message would be "invalid syntax"
            raise stmt.error(LAMBDA_MESSAGE, offset + keyword.start()) from None
        detail = "" if exc.msg == "invalid syntax" else f": {exc.msg}"
        raise stmt.error(f"invalid syntax{detail}", where) from None
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
        raise node_error(stmt, offset, text, deep,
                         f"the expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep "
                         "(a long sum or product counts one level a term: name some of its parts)")
    return tree


def _too_deep(tree: ast.expr, limit: int) -> ast.expr | None:
    """The first expression node more than ``limit`` levels down, found without recursion."""
    stack: list[tuple[ast.expr, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return node
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    return None


def _shift_positions(tree: ast.AST, first_line_shift: int, lead: int) -> None:
    for node in ast.walk(tree):
        # every node with a position (expressions, keywords); operators and contexts have none
        if hasattr(node, "col_offset") and hasattr(node, "lineno") and node.lineno == 1:
            node.col_offset += first_line_shift
            if getattr(node, "end_lineno", None) == 1 and hasattr(node, "end_col_offset") \
                    and node.end_col_offset is not None:
                node.end_col_offset += first_line_shift


#: An ast node with a position of its own: what an error can point at.
Located = ast.expr | ast.keyword

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@"}


class _ModelBuilder:
    """Builds every equation into SymPy, in dependency order, checking shapes."""

    def __init__(self, state: ParseState) -> None:
        self.s = state
        self.shapes_pending: dict[str, MatrixSymbol] = {}
        self.bindings: dict[sp.Symbol, sp.Expr] = {}

    # --- orchestration ------------------------------------------------------------------

    def build(self) -> Model:
        s = self.s
        if s.loss is None:
            raise s.source.error("there is no loss: add a line 'loss L = ...'",
                                 max(len(s.source.lines), 1), 1)
        order, lags = definition_order(s)
        check_states(s, lags)
        check_directions(s, lags)
        for name in order:
            d = s.definitions[name]
            try:
                self._build_definition(d)
            except RecursionError:  # a last resort: _parse_expr bounds the depth of every tree
                raise d.stmt.error("the expression is too deeply nested to process", d.expr_offset) from None
        built = _built(s.quantities)
        self._finish_shapes(built)
        loss = built[s.loss]
        if loss.shape != (1, 1):
            d = s.definitions[s.loss]
            raise d.stmt.error(f"the loss must be a scalar, but {s.loss} is {_shape_text(loss.shape)}",
                               d.expr_offset)
        for name, pos in s.latex_positions.items():
            if name not in built and preactivation_of(name, built) is None:  # z_h: named when derived
                raise ModelError(f"'latex' names '{name}', which is not defined", pos, s.source.line(pos.line))
        states = {name: {k: self._state_value(built, name, k, v) for k, v in steps.items()}
                  for name, steps in s.states.items()}
        end_states = {name: {k: self._state_value(built, name, k, v) for k, v in steps.items()}
                      for name, steps in s.end_states.items()}
        return Model(name=s.name, path=s.source.path, dims=dict(s.dims), quantities=built,
                     loss=s.loss, time_index=s.time_index, length=s.length, states=states,
                     latex_overrides=dict(s.latex), order=order, end_states=end_states)

    def _lag(self, d: Definition, node: ast.Subscript) -> int:
        """0 for ``x[t]``, k for ``x[t-k]`` (see ``order.lag``)."""
        return lag(self.s, d, node)

    # --- building -----------------------------------------------------------------------

    def _build_definition(self, d: Definition) -> None:
        s = self.s
        self.current = d
        expr = self._expr(d.tree, step=d.sequence)
        if not getattr(expr, "is_Matrix", False):  # a constant: a 1x1 value
            expr = scale(expr, OneMatrix(1, 1))
        role = "loss" if d.is_loss else "intermediate"
        shape = tuple(self._resolve(x) for x in expr.shape)
        pending = self.shapes_pending.get(d.name)
        if pending is not None:
            try:
                self._unify(pending.shape, shape, d.tree, f"'{d.name}' as used at an earlier step", d.name)
            except ModelError as mismatch:
                raise self._blame_the_lag(d, shape) or mismatch from None
        sym = MatrixSymbol(d.name, *shape)
        s.quantities[d.name] = Quantity(d.name, role, sym, d.sequence, d.stmt.pos(0), expr=expr)

    def _blame_the_lag(self, d: Definition, shape: tuple) -> ModelError | None:
        """The error at the term that reads ``h[t-1]`` wrongly, if there is one: the equation is
        built again with ``h[t-1]`` of the size the equation gives ``h``, so ``W @ h[t-1]`` with W
        (n_h, n_x) is blamed at its ``@``, not the sum it stands in."""
        if any(isinstance(a, sp.Dummy) for x in shape for a in sp.sympify(x, strict=True).free_symbols):
            return None  # the equation does not settle h's size itself: no term to blame
        self.shapes_pending[d.name] = MatrixSymbol(d.name, *shape)
        try:
            self._expr(d.tree, step=d.sequence)
        except ModelError as err:
            return err
        return None

    def _finish_shapes(self, quantities: dict[str, Quantity]) -> None:
        """Replace placeholder symbols (used for lagged references) by the final ones."""
        s = self.s
        mapping = {}
        for name, placeholder in self.shapes_pending.items():
            mapping[placeholder] = quantities[name].symbol
        dims = {k: self._resolve(k) for k in self.bindings}
        for q in quantities.values():
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

    def _state_value(self, quantities: dict[str, Quantity], name: str, step: int,
                     entry: tuple[SourceLine, int, str]) -> MatrixExpr:
        """A state: 0, or an expression of params, static data and static quantities of the
        quantity's size (version 2: ``state h[0] = tanh(W_0 @ c)``)."""
        stmt, off, value = entry
        q = quantities[name]
        if value in ("0", "0.0"):
            return ZeroMatrix(*q.shape)
        d = Definition(name, False, stmt, off, _parse_expr(stmt, off))
        self.current = d
        for node in ast.walk(d.tree):
            if isinstance(node, ast.Name) and (p := quantities.get(node.id)) is not None and p.sequence:
                raise self._error(node, f"an initial state is an expression of params, static data and static "
                                        f"quantities, and '{node.id}' is a sequence; read one step of it in a "
                                        f"static equation (c = {node.id}[T]) and use that")
        expr = self._expr(d.tree, step=False)
        if not getattr(expr, "is_Matrix", False):
            expr = broadcast(expr, q.shape)
        elif expr.shape == (1, 1) and q.shape != (1, 1):
            expr = broadcast(expr, q.shape)
        if not same_shape(expr, q.symbol):
            raise stmt.error(f"shape mismatch: {name} is {_shape_text(q.shape)} but its state is "
                             f"{_shape_text(expr.shape)}", off)
        return expr

    def _resolve(self, x: sp.Expr | int) -> sp.Expr:
        x = sp.sympify(x, strict=True)
        for _ in range(10):
            y = x.xreplace(self.bindings)
            if y == x:
                return sp.expand(y)
            x = y
        return sp.expand(x)

    def _unify(self, a: Sequence[sp.Expr | int], b: Sequence[sp.Expr | int], node: Located, what_a: str,
               what_b: str) -> None:
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

    def _error(self, node: Located, message: str) -> ModelError:
        d = self.current
        return node_error(d.stmt, d.expr_offset, d.stmt.text[d.expr_offset:], node, message)

    def _text(self, node: ast.AST) -> str:
        d = self.current
        seg = ast.get_source_segment(d.stmt.text[d.expr_offset:], node)
        return (seg or ast.unparse(node)).replace("\n", " ")

    def _expr(self, node: ast.expr, step: bool) -> Value:
        """An ast node → a SymPy number or matrix expression."""
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self._error(node, not_allowed(node))
        return method(node, step)

    def _Constant(self, node: ast.Constant, step: bool) -> sp.Expr:
        v = node.value
        if type(v) is int:
            return sp.Integer(v)
        if type(v) is float:
            if v != v or v in (float("inf"), float("-inf")):
                raise self._error(node, "a number must be finite")
            return sp.Rational(repr(v))
        raise self._error(node, f"only numbers are allowed as constants, not {type(v).__name__}")

    def _Name(self, node: ast.Name, step: bool) -> MatrixExpr:
        s, name = self.s, node.id
        if name == s.time_index:
            raise self._error(node, f"the time index '{name}' can only appear in a step, as in x[{name}]")
        if name in s.dims:  # a dim inside an expression is its value, a positive integer
            return s.dims[name]
        if s.length is not None and name == s.length.name:
            return s.length
        if name in FUNCTIONS:
            raise self._error(node, f"'{name}' is a function; call it, as in {name}(...)")
        q = self._quantity(node, name)
        if q.sequence:
            raise self._error(node, f"'{name}' is a sequence; write {name}[{s.time_index}]")
        return q.symbol

    def _quantity(self, node: ast.expr, name: str) -> Quantity:
        s = self.s
        built = s.quantities.get(name)
        if built is not None:
            return built
        if name in s.definitions:
            # Only reachable through a lag of a quantity not built yet: use a placeholder shape.
            if name not in self.shapes_pending:
                self.shapes_pending[name] = MatrixSymbol(name, sp.Dummy(f"rows_{name}"), sp.Dummy(f"cols_{name}"))
            return Quantity(name, "intermediate", self.shapes_pending[name], s.definitions[name].sequence,
                            s.definitions[name].stmt.pos(0))
        scope = [*s.quantities, *(n for n in s.definitions if n not in s.quantities), *s.dims]
        if s.length is not None:
            scope.append(s.length.name)
        raise self._error(node, f"unknown name '{name}'{did_you_mean(name, scope) or did_you_mean(name, FUNCTIONS)}")

    def _Subscript(self, node: ast.Subscript, step: bool) -> MatrixExpr:
        s = self.s
        if not isinstance(node.value, ast.Name):
            raise self._error(node, "only a name can be indexed by a step, as in h[t-1]")
        name = node.value.id
        fixed = fixed_step(s, self.current, node)
        lag = self._lag(self.current, node) if fixed is None else 0
        q = self._quantity(node.value, name)
        if not q.sequence:
            raise self._error(node, f"'{name}' is not a sequence; write it without [{s.time_index}]")
        if fixed is not None:
            return self._fixed_step(node, q, fixed, step)
        if not step:
            raise self._error(node, f"'{name}[...]' is a sequence value, and this is not a per-step equation; "
                                    f"sum it over time with Sum(..., ({s.time_index}, 1, {s.length}))")
        return At(q.symbol, -lag)

    def _fixed_step(self, node: ast.Subscript, q: Quantity, fixed: tuple[str, int], step: bool) -> MatrixExpr:
        """``h[T]``, ``h[T-1]``, ``h[1]``: one step of a sequence, read by a static equation or the loss."""
        if step:
            d = self.current
            raise self._error(node, fixed_step_in_step(d.stmt.text[d.expr_offset:], node))
        where, k = fixed
        return AtEnd(q.symbol, k) if where == "end" else AtStep(q.symbol, k)

    def _Attribute(self, node: ast.Attribute, step: bool) -> Value:
        if node.attr != "T":
            d = self.current
            text = d.stmt.text[d.expr_offset:]
            at = char_offset(text, *end_of(node)) - len(node.attr)
            raise d.stmt.error(f"attribute '.{node.attr}' is not allowed (only .T, the transpose)", d.expr_offset + at)
        inner = self._expr(node.value, step)
        if not getattr(inner, "is_Matrix", False):
            return inner
        return transpose(inner)

    def _UnaryOp(self, node: ast.UnaryOp, step: bool) -> Value:
        inner = self._expr(node.operand, step)
        if isinstance(node.op, ast.USub):
            return neg(inner) if getattr(inner, "is_Matrix", False) else -inner
        if isinstance(node.op, ast.UAdd):
            return inner
        raise self._error(node, "this operator is not allowed in a model file")

    def _BinOp(self, node: ast.BinOp, step: bool) -> Value:
        op = _BINOPS.get(type(node.op))
        if isinstance(node.op, ast.Pow):
            return self._power(node, step)
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
        if op == "/" and self._divides_by_scalar(a, b):  # e / √(s + ε) scales e by 1/√(s + ε)
            return scalar_times(sp.HadamardPower(b, -1), a)
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

    def _power(self, node: ast.BinOp, step: bool) -> Value:
        """``a ** k``: elementwise power by a constant number k."""
        a, k = self._expr(node.left, step), self._expr(node.right, step)
        if getattr(k, "is_Matrix", False) or not k.is_number:
            raise self._error(node.right, f"the exponent of '**' must be a constant number, not "
                                          f"'{self._text(node.right)}'")
        if not getattr(a, "is_Matrix", False):
            # Bounded before it is computed: 9 ** 9 ** 9 ** 9 would never finish.
            size = abs(float(k)) * max(1.0, float(sp.log(abs(a) + 1, 10).evalf(5))) if a.is_number else 0.0
            if a.is_number and (abs(k) > 1000 or size > 300):
                raise self._op_error(node, f"the constant power '**' {self._text(node)} is too large to compute "
                                           "(a constant power is at most 10^300)")
            value = a ** k
            if not value.is_finite or not value.is_real:
                raise self._op_error(node, f"{self._text(node)} is not a finite real number")
            return value
        if k == 1:
            return a
        if k == 0:
            return OneMatrix(*a.shape)
        return sp.HadamardPower(a, k)

    def _divides_by_scalar(self, a: Value, b: Value) -> bool:
        """A vector or matrix divided by a 1x1 expression (not a number)."""
        if not (getattr(a, "is_Matrix", False) and getattr(b, "is_Matrix", False)):
            return False
        sa, sb = (tuple(map(self._resolve, x.shape)) for x in (a, b))
        return sb == (1, 1) and sa != (1, 1) and not any(_pending(x) for x in sa)

    def _op_error(self, node: ast.BinOp, message: str) -> ModelError:
        d = self.current
        return d.stmt.error(message, d.expr_offset + operator_offset(d.stmt.text[d.expr_offset:], node.left))

    def _conform(self, node: ast.BinOp | ast.Call, a: Value, b: Value, op: str,
                 where: str | None = None) -> tuple[Value, Value]:
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
        spread = self._column_over_matrix(a, b, sa, sb, op)
        if spread is not None:
            return spread
        if any(_pending(x) for x in sa + sb):
            scalar = self._pending_scalar(sa, sb)
            if scalar is not None:  # one side can only be a scalar (g[t] = σ(wᵀ h[t-1]) times h[t-1])
                self._unify(scalar, (1, 1), node, self._text(left if scalar is sa else right), "a scalar")
                return self._conform(node, a, b, op, where)
            self._unify(sa, sb, node, self._text(left), self._text(right))
            return a, b
        message = (f"shape mismatch in {where or repr(op)}: {self._text(left)} is {_shape_text(sa)} but "
                   f"{self._text(right)} is {_shape_text(sb)}{_row_hint(op, left, right, sa, sb, self._text)}")
        raise self._op_error(node, message) if isinstance(node, ast.BinOp) else self._error(node, message)

    def _column_over_matrix(self, a: MatrixExpr, b: MatrixExpr, sa: tuple, sb: tuple,
                            op: str) -> tuple[Value, Value] | None:
        """A column vector added to a matrix with as many rows is added to every column:
        W X + b is W X + b 1ᵀ."""
        if op not in "+-":
            return None
        for first, (m, v, sm, sv) in enumerate(((a, b, sa, sb), (b, a, sb, sa))):
            if sv[1] == 1 and sm[1] != 1 and not any(_pending(x) for x in sm + sv) \
                    and sp.expand(sm[0] - sv[0]) == 0:
                spread = matmul(v, OneMatrix(1, m.shape[1]))
                return (m, spread) if first == 0 else (spread, m)
        return None

    def _pending_scalar(self, sa: tuple, sb: tuple) -> tuple | None:
        """The shape of the side that has one row and columns not known yet (a lagged quantity not
        built yet) while the other side has more rows: it can only be a scalar, broadcast."""
        for mine, other in ((sa, sb), (sb, sa)):
            if mine[0] == 1 and _pending(mine[1]) and other[0] != 1 and not _pending(other[0]):
                return mine
        return None

    def _Tuple(self, node: ast.Tuple, step: bool) -> Value:
        raise self._error(node, "a tuple is only allowed as the range of Sum(..., (t, 1, T))")

    def _Call(self, node: ast.Call, step: bool) -> Value:
        if not isinstance(node.func, ast.Name):
            raise self._error(node, f"call of '{self._text(node.func)}' is not allowed; only the functions of the "
                                    "model language can be called")
        fname = node.func.id
        record = LANGUAGE.get(fname)
        if node.keywords and not (record is not None and record.keywords):
            raise self._error(node.keywords[0], f"{fname}() takes no keyword arguments")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._error(arg, "a starred argument is not allowed in a model file")
        if fname == "Sum":
            return self._sum(node, step)
        if fname not in FUNCTIONS:
            hint = did_you_mean(fname, FUNCTIONS).removeprefix("; ")
            raise self._error(node.func, f"unknown function '{fname}'{f' ({hint})' if hint else ''}; the model "
                                         "language has " + ", ".join(FUNCTIONS))
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
            return apply_function(fname, a, *params)  # log(exp(u) + 1) is softplus(u)
        for a, arg_node in zip(args, node.args):
            if not getattr(a, "is_Matrix", False) and not LANGUAGE[fname].sizes:
                raise self._error(arg_node, f"{fname}() needs a vector or a matrix here, not a number")
        ctx = BuildContext(self._error, self._need_vector, self._conform, self._text, self._resolve, _shape_text,
                           _pending)
        return LANGUAGE[fname].build(ctx, node, args)

    def _need_vector(self, node: ast.expr, value: MatrixExpr, fname: str) -> None:
        if _pending(self._resolve(value.shape[1])):  # a lagged quantity not built yet: a vector
            self._unify((value.shape[1],), (1,), node, f"the columns of {self._text(node)}", "1")
        if sp.expand(self._resolve(value.shape[1]) - 1) != 0:
            raise self._error(node, f"{fname}() needs a column vector, but {self._text(node)} is "
                                    f"{_shape_text(value.shape, self._resolve)}")

    def _sum(self, node: ast.Call, step: bool) -> MatrixExpr:
        s = self.s
        if s.time_index is None or s.length is None:  # the two are declared together
            raise self._error(node, "Sum(..., (t, 1, T)) needs a time axis; add a line 'time t = 1..T'")
        if step:
            raise self._error(node, "Sum over time inside a per-step equation; sum in a static equation or the loss")
        if len(node.args) != 2:
            raise self._error(node, f"Sum takes an expression and a range ({s.time_index}, 1, {s.length})")
        first, last = self._sum_range(node.args[1])
        inner = self._expr(node.args[0], step=True)
        if not getattr(inner, "is_Matrix", False):
            raise self._error(node.args[0], "Sum of a constant; sum a quantity that depends on the step")
        if (first, last) == (1, 0):
            return TimeSum(inner)
        return TimeSum(scalar_times(Window(first, last), inner))

    def _sum_range(self, rng: ast.expr) -> tuple[int, int]:
        """The range of a Sum as (a, k): steps a .. T − k.  The whole sequence is (t, 1, T); version 2
        allows a constant first step a >= 1 and a last step T − k with a constant k >= 0."""
        s = self.s
        assert s.length is not None  # checked by _sum
        t, T = s.time_index, s.length.name
        whole = f"({t}, 1, {T})"
        if not (isinstance(rng, ast.Tuple) and len(rng.elts) == 3):
            raise self._error(rng, f"the range of a Sum is ({t}, FIRST, LAST): {whole} for the whole sequence, "
                                   f"({t}, a, {T}) or ({t}, a, {T} - k) for a part of it")
        index, low, high = rng.elts
        if not (isinstance(index, ast.Name) and index.id == t):
            raise self._error(index, f"a Sum runs over the time index '{t}', not '{self._text(index)}'")
        negative = isinstance(low, ast.UnaryOp) and isinstance(low.op, ast.USub)
        number = low.operand if isinstance(low, ast.UnaryOp) and negative else low
        if not (isinstance(number, ast.Constant) and type(number.value) is int):
            raise self._error(low, f"the first step of a Sum is a constant whole number (1 for the whole sequence), "
                                   f"not '{self._text(low)}'")
        first = -number.value if negative else number.value
        if first < 1:
            raise self._error(low, f"the first step of a Sum is at least 1, the first step of the sequence, "
                                   f"not {first}")
        last = self._last_step(high)
        if last is None:
            raise self._error(high, f"the last step of a Sum is {T} or {T} - k with a constant whole number k, "
                                    f"not '{self._text(high)}'")
        return first, last

    def _last_step(self, high: ast.expr) -> int | None:
        """k of a last step written ``T`` or ``T - k`` (k a whole number >= 0), else None."""
        assert self.s.length is not None
        T = self.s.length.name
        if isinstance(high, ast.Name) and high.id == T:
            return 0
        if (isinstance(high, ast.BinOp) and isinstance(high.op, ast.Sub) and isinstance(high.left, ast.Name)
                and high.left.id == T and isinstance(high.right, ast.Constant) and type(high.right.value) is int
                and high.right.value >= 0):
            return high.right.value
        return None


def _built(quantities: dict[str, Quantity | None]) -> dict[str, Quantity]:
    """The quantities once every equation is built; one still a placeholder is an internal error."""
    missing = [name for name, q in quantities.items() if q is None]
    if missing:
        raise RuntimeError(f"internal error: the equations of {', '.join(missing)} were not built")
    return {name: q for name, q in quantities.items() if q is not None}


def _pending(x: sp.Expr | int) -> set[sp.Dummy]:
    """The placeholder sizes (of lagged quantities not built yet) in a size expression."""
    return {a for a in sp.sympify(x, strict=True).free_symbols if isinstance(a, sp.Dummy)}


def _shape_text(shape: Sequence[sp.Expr | int],
                resolve: Callable[[sp.Expr | int], sp.Expr | int] = lambda x: x) -> str:
    rows, cols = (resolve(x) for x in shape)
    if rows == 1 and cols == 1:
        return "a scalar"
    names = [("?" if isinstance(x, sp.Dummy) else str(x)) for x in (rows, cols)]
    if cols == 1:
        return f"a vector of size {names[0]}"
    return f"({names[0]}, {names[1]})"


def _row_hint(op: str, left: ast.AST, right: ast.AST, sa: tuple, sb: tuple, text) -> str:
    """What to write for a vector added to every row of a matrix (a sheet whose examples are rows,
    X W + b): only a column added to every column is implied, so say how the row one is written."""
    if op not in "+-":
        return ""
    for sm, (sv, node_v) in ((sa, (sb, right)), (sb, (sa, left))):
        if sm[0] == 1 or sm[1] == 1 or any(_pending(x) for x in sm + sv):
            continue
        vector = text(node_v)
        if sv[1] == 1 and sp.expand(sv[0] - sm[1]) == 0:
            return f"; for {vector} in every row, write ones({sm[0]}) @ {vector}.T"
        if sv[0] == 1 and sp.expand(sv[1] - sm[1]) == 0:
            return f"; for the row {vector} in every row, write ones({sm[0]}) @ {vector}"
    return ""

