"""Reading a hand derivation into claims.

Two forms: a claims file (``.claims``), one claim a line in the model language
(``d(o[t]) = W_out.T @ d(h_out[t])``, ``d(W_out)[i, j] = o[t][j] * d(h_out[t])[i]``), read
with Python's ``ast`` and a whitelist like a model file; or a LaTeX / Markdown write-up
(``.tex``, ``.md``, ``.txt``), read by ``claims.latex``.  Nothing is ever evaluated.

A file that cannot be read at all is a ``ClaimError``; a claim that cannot be read is kept
as a ``Claim`` with its ``problem``, so the rest of the file is still judged.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import numpy as np
import sympy as sp

from ..ad.derive import Derivation
from ..errors import ClaimError, Position
from ..frontend.language import decode_source, parse_expression
from ..frontend.statements import did_you_mean
from ..ir.expr import same_shape
from ..ops import ELEMENTWISE, LANGUAGE
from ..ops.structural import axis_keyword, size_argument
from .latex import read_writeup
from .latex.names import preactivations
from .probe import probes
from .sources import markdown_images, notebook_text, page_text
from .tree import (
    FUNCTIONS,
    Call,
    Claim,
    ClaimExpressionBuilder,
    Entry,
    Given,
    Grad,
    Hadamard,
    IndexSum,
    Neg,
    Num,
    OverTime,
    Product,
    Quotient,
    ReadError,
    Step,
    Terms,
    Transposed,
    Val,
    claim_target,
    make_claim,
    references,
)

FORMATS = {".claims": "claims", ".tex": "latex", ".md": "markdown", ".markdown": "markdown", ".txt": "markdown",
           ".ipynb": "notebook", ".html": "html", ".htm": "html", ".xhtml": "html"}
#: The path that means standard input.
STDIN = "-"
MAX_DEPTH = 100


@dataclass
class Reading:
    """The claims of one file, and what the judge needs to answer in the file's own notation."""

    path: str
    claims: list[Claim]
    spellings: dict = field(default_factory=dict)  # quantity → how the write-up spells it
    vocabulary: set = field(default_factory=set)  # quantities whose δ the file itself names
    notes: list = field(default_factory=list)  # what the reader assumed or skipped, each said once
    skipped: list = field(default_factory=list)  # lines of equations that are no claims (Jacobians)


def read_claims(path: str | Path, derivation: Derivation, stdin_text: str | None = None) -> Reading:
    """Every claim of a claims file or write-up (``-``: standard input, or ``stdin_text``, read as
    Markdown or LaTeX).  Raises ``ClaimError`` if the file cannot be read."""
    if str(path) == STDIN:
        given = stdin_text if stdin_text is not None else _read_stdin()
        kind = "claims" if re.match(r"\s*(#.*\n\s*)*d\(", given) else "markdown"
        return read_text_as(given, "<stdin>", kind, derivation)
    path = Path(path)
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise ClaimError(f"{path}: cannot tell what this file is; a hand derivation is a .claims file or a "
                         "write-up (.tex, .md, .txt, .ipynb, .html), or - for standard input")
    return read_text_as(read_text(path), str(path), found, derivation)


def read_text_as(text: str, path: str, kind: str, derivation: Derivation) -> Reading:
    """The claims of ``text``, read as ``kind`` (a value of ``FORMATS``)."""
    if kind == "claims":
        return _bounded(read_claims_file(text, path, derivation))
    if kind == "notebook":
        text, kind = notebook_text(text, path), "markdown"
    elif kind == "html":
        text, kind = page_text(text), "markdown"
    if kind == "markdown":
        text = markdown_images(text)
    found = read_writeup(text, derivation, kind == "markdown", QuantityMatcher(derivation))
    return _bounded(Reading(path, found.claims, found.spellings, found.vocabulary, found.notes, found.skipped))


def _read_stdin() -> str:
    import sys
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    return decode_source(data, "<stdin>", ClaimError)


#: Bounds on one hand derivation: a homework's write-up is a few kilobytes and a few dozen
#: claims; judging takes some 20 ms a claim.
MAX_FILE_BYTES = 2_000_000
MAX_CLAIMS = 500


def _bounded(reading: Reading) -> Reading:
    """A derivation of more than MAX_CLAIMS claims is refused at the first claim past the bound."""
    if len(reading.claims) > MAX_CLAIMS:
        extra = reading.claims[MAX_CLAIMS]
        raise ClaimError(f"more than {MAX_CLAIMS} claims ({len(reading.claims):,}); a derivation may hold at most "
                         f"{MAX_CLAIMS}: split it into several files", Position(reading.path, extra.line, extra.col))
    return reading


def read_text(path: Path) -> str:
    """The file as text: UTF-8, with a byte-order mark dropped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        hint = "; check the path of the derivation (relative to the current directory)" if isinstance(
            exc, FileNotFoundError) else ""
        raise ClaimError(f"cannot read {path}: {exc.strerror or exc}{hint}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ClaimError(f"the derivation is {len(data):,} bytes; a derivation may be at most {MAX_FILE_BYTES:,}",
                         Position(str(path), 1, 1))
    return decode_source(data, str(path), ClaimError)


class QuantityMatcher:
    """Which quantity of the model an expression is: a write-up's ``δy ≜ ∂L/∂(W h_t + b)``
    names the pre-activation y.  Compared by value at a random point, so any way of writing
    the expression is recognised."""

    def __init__(self, derivation: Derivation):
        self.d = derivation

    @cached_property
    def probe(self):
        return probes(self.d, 1)[0]

    def __call__(self, node) -> str | None:
        expr = ClaimExpressionBuilder(self.d, stepwise=False).expression(node)
        ev = self.probe.exact
        steps = self.probe.steps or [None]
        for q in self.d.model.quantities.values():
            if q.role != "intermediate" or not same_shape(q.symbol, expr):
                continue
            forward = ev.values.forward[q.name]
            for_steps = steps if q.sequence else [None]
            values = [ev.value(expr, t) for t in for_steps]
            truth = [forward[t] if q.sequence else forward for t in for_steps]
            if all(v is not None and v.shape == np.shape(w) and np.allclose(v, w, rtol=1e-9, atol=1e-12)
                   for v, w in zip(values, truth)):
                return q.name
        return None


# ---------------------------------------------------------------------------------------
# Claims files.


def read_claims_file(text: str, path: str, derivation: Derivation) -> Reading:
    """One claim a line, ``d(X) = EXPR`` or ``d(X)[i, j] = EXPR``; ``#`` starts a comment.  A line that
    cannot be read is a claim whose problem starts ``FILE:LINE:COL:``, as a model file's errors do."""
    model = derivation.model
    claims = []
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        code = raw.split("#", 1)[0].rstrip()
        stripped = code.lstrip()
        if not stripped:
            continue
        col = len(code) - len(stripped) + 1
        m = re.fullmatch(r"(?P<lhs>[^=]*?)\s*=(?!=)\s*(?P<rhs>.*)", stripped)
        if m is None:
            claims.append(Claim(number, col, stripped, problem=f"{path}:{number}:{col}: expected a claim 'd(X) = ...'"))
            continue
        reader = _PythonSide(model, stripped)
        target = None
        try:
            target_node = reader.read(m.group("lhs"), m.start("lhs"))
            target = claim_target(model, target_node)
            rhs = reader.read(m.group("rhs"), m.start("rhs"))
        except ReadError as exc:
            where = col + (exc.pos or 0)
            claims.append(Claim(number, col, stripped, target, problem=f"{path}:{number}:{where}: {exc.message}"))
            continue
        claims.append(make_claim(model, number, col, stripped, target_node, rhs))
    vocabulary = {c.target.name for c in claims if c.target is not None}
    vocabulary |= {n for c in claims if c.rhs is not None for kind, n in references(c.rhs) if kind == "grad"}
    return Reading(path, claims, {}, vocabulary)


_DESCRIBE = {ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.Compare: "a comparison",
             ast.BoolOp: "a boolean operator", ast.IfExp: "a conditional expression", ast.Dict: "a dict",
             ast.List: "a list", ast.Set: "a set", ast.JoinedStr: "an f-string", ast.Starred: "a starred argument",
             ast.NamedExpr: "an assignment expression", ast.Slice: "a slice"}


class _PythonSide:
    """One side of a claims-file line → a claim expression tree.  ``pos`` in errors is the
    offset in the line."""

    def __init__(self, model, line: str):
        self.model = model
        self.line = line
        self.index = model.time_index or "t"
        self.length = model.length.name if model.length is not None else "T"
        self.offset = 0

    def read(self, text: str, offset: int):
        self.offset = offset
        if not text.strip():
            raise ReadError("an expression is missing here", offset)
        depth = 0
        for i, ch in enumerate(text):
            depth += (ch in "([{") - (ch in ")]}")
            if depth > MAX_DEPTH:
                raise ReadError(f"nested more than {MAX_DEPTH} levels deep", offset + i)
        try:
            tree = parse_expression(text.strip())
        except SyntaxError as exc:
            lead = len(text) - len(text.lstrip())
            message = "invalid syntax" if exc.msg == "invalid syntax" else f"invalid syntax: {exc.msg}"
            raise ReadError(message, offset + lead + max((exc.offset or 1) - 1, 0)) from None
        except (RecursionError, MemoryError, ValueError) as exc:
            raise ReadError(f"cannot parse this expression ({type(exc).__name__})", offset) from None
        self.offset = offset + len(text) - len(text.lstrip())
        return self.node(tree)

    def error(self, node: ast.AST, message: str) -> ReadError:
        return ReadError(message, self.offset + getattr(node, "col_offset", 0))

    def node(self, n: ast.AST):
        method = getattr(self, "_" + type(n).__name__, None)
        if method is None:
            what = _DESCRIBE.get(type(n), f"'{type(n).__name__}'")
            raise self.error(n, f"{what} is not allowed in a claim")
        return method(n)

    def _BinOp(self, n: ast.BinOp):
        a, b = self.node(n.left), self.node(n.right)
        if isinstance(n.op, ast.Add):
            return _joined(Terms, a, b)
        if isinstance(n.op, ast.Sub):
            return _joined(Terms, a, Neg(b))
        if isinstance(n.op, ast.Mult):
            return _joined(Hadamard, a, b)
        if isinstance(n.op, ast.MatMult):
            return _joined(Product, a, b)
        if isinstance(n.op, ast.Div):
            return Quotient(a, b)
        raise self.error(n, "this operator is not part of the claims language (use + - * / @ and .T)")

    def _UnaryOp(self, n: ast.UnaryOp):
        inner = self.node(n.operand)
        if isinstance(n.op, ast.USub):
            return Neg(inner)
        if isinstance(n.op, ast.UAdd):
            return inner
        raise self.error(n, "this operator is not part of the claims language")

    def _Constant(self, n: ast.Constant):
        if type(n.value) is int or (type(n.value) is float and np.isfinite(n.value)):
            return Num(Fraction(repr(n.value)))
        raise self.error(n, "only finite numbers are allowed as constants")

    def _Name(self, n: ast.Name):
        size = self._size_value(n.id)
        if size is not None:
            return Given(size)
        return Val(self._quantity(n, n.id).name, None)

    def _size_value(self, name: str):
        """A dim, or the sequence length T, as its value (a positive integer), as in a model
        file: ``(P - Y) / n``, ``Sum(..., (t, 1, T)) / T``; None for any other name."""
        if name in self.model.quantities:
            return None
        if name in self.model.dims:
            return self.model.dims[name]
        if self.model.length is not None and name == self.model.length.name:
            return self.model.length
        return None

    def _quantity(self, n: ast.AST, name: str, gradient: bool = False):
        q = self.model.quantities.get(name)
        if q is None:
            if name == self.index or (name == self.length and self.model.length is None):
                raise self.error(n, f"'{name}' is a step; it goes inside [...], as in h[{self.index}-1]")
            if self._size_value(name) is not None:
                what = "the number of steps" if name == self.length else "a dim"
                raise self.error(n, f"'{name}' is {what}, a size: it has " +
                                 ("no gradient" if gradient else "no entries and no steps"))
            raise self.error(n, f"unknown name '{name}'{self._did_you_mean(name, gradient)}")
        if q.role == "loss":
            raise self.error(n, "the loss itself on a right side")
        return q

    def _did_you_mean(self, name: str, gradient: bool) -> str:
        """The model language's hint for an unknown name: the nearest name a claim may use
        there (in d(...), a quantity that has a gradient), else the nearest function."""
        if gradient:
            scope = [n for n, q in self.model.quantities.items() if q.role not in ("input", "target", "loss")]
        else:
            scope = [n for n, q in self.model.quantities.items() if q.role != "loss"] + list(self.model.dims)
            if self.model.length is not None:
                scope.append(self.model.length.name)
        return (did_you_mean(name, scope) or did_you_mean(name, _CALLABLE)
                or preactivations(self.model, written=False))

    def _Attribute(self, n: ast.Attribute):
        if n.attr != "T":
            raise self.error(n, f"attribute '.{n.attr}' is not allowed (only .T, the transpose)")
        return Transposed(self.node(n.value))

    def _Subscript(self, n: ast.Subscript):
        base = n.value
        if isinstance(base, ast.Name):
            q = self._quantity(base, base.id)
            if q.sequence and self._is_step(n.slice):
                return Val(q.name, self._step(n.slice))
        return Entry(self.node(base), self._indices(n.slice))

    def _is_step(self, s: ast.AST) -> bool:
        if isinstance(s, ast.Constant):
            return type(s.value) is int
        if isinstance(s, ast.BinOp) and isinstance(s.op, (ast.Add, ast.Sub)):
            return self._is_step(s.left) and isinstance(s.right, ast.Constant) and type(s.right.value) is int
        return isinstance(s, ast.Name) and s.id in (self.index, self.length)

    def _step(self, s: ast.AST) -> Step:
        """The step of a subscript that ``_is_step`` accepts."""
        if isinstance(s, ast.Constant) and type(s.value) is int:
            return Step("", s.value)
        if isinstance(s, ast.BinOp) and isinstance(s.right, ast.Constant) and type(s.right.value) is int:
            k = s.right.value if isinstance(s.op, ast.Add) else -s.right.value
            inner = self._step(s.left)
            return Step(inner.base, inner.offset + k)
        if isinstance(s, ast.Name):
            return Step("t" if s.id == self.index else "T", 0)
        raise TypeError(f"internal error: not a step: {ast.dump(s)}")

    def _indices(self, s: ast.AST) -> tuple:
        parts = s.elts if isinstance(s, ast.Tuple) else [s]
        out = []
        for p in parts:
            if not isinstance(p, ast.Name) or p.id in (self.index, self.length):
                raise self.error(p, "an entry index is a name such as i or j")
            out.append(p.id)
        return tuple(out)

    def _Call(self, n: ast.Call):
        if not isinstance(n.func, ast.Name):
            raise self.error(n, "only the functions of the model language can be called")
        fname = n.func.id
        record = LANGUAGE.get(fname)
        if n.keywords and not (record is not None and record.keywords and fname in FUNCTIONS):
            raise self.error(n.keywords[0], f"{fname}() takes no keyword arguments")
        if fname == "d":
            return self._gradient(n)
        if fname == "Sum":
            return self._sum(n)
        if fname in _SIZE_FUNCTIONS:
            return self._sized(n)
        if fname not in FUNCTIONS:
            hint = did_you_mean(fname, _CALLABLE).removeprefix("; ")
            raise self.error(n.func, f"unknown function '{fname}'{f' ({hint})' if hint else ''}; a claim may use "
                                     "d(...), Sum(...) and " + ", ".join((*FUNCTIONS, *_SIZE_FUNCTIONS)))
        if n.keywords:  # sum(A, axis=0), mean(A, axis=1): read as the model language reads them
            axis = axis_keyword(_ReaderContext(self.error), n)
            if len(n.args) != 1:
                raise self.error(n, f"{fname}() takes one argument")
            return Call(fname, self.node(n.args[0]), axis=axis)
        names = ELEMENTWISE[fname].params if fname in ELEMENTWISE else ()
        if len(n.args) != 1 + len(names):
            raise self.error(n, f"{fname}() takes one argument" if not names else
                             f"{fname}() takes {1 + len(names)} arguments: the argument and " + ", ".join(names))
        params = []
        for name, p in zip(names, n.args[1:]):
            value = self.node(p)
            if isinstance(value, Neg) and isinstance(value.arg, Num):
                value = Num(-value.arg.value)
            if not isinstance(value, Num):
                raise self.error(p, f"the {name} of {fname}() must be a constant number")
            params.append(value.value)
        return Call(fname, self.node(n.args[0]), tuple(params))

    def _sized(self, n: ast.Call):
        """``ones(n)``, ``ones(n, m)``, ``eye(n)``: their arguments are sizes (dims, positive
        integers, sums and products of these), as in a model file."""
        fname = n.func.id  # type: ignore[attr-defined]
        counts = (1, 2) if fname == "ones" else (1,)
        if len(n.args) not in counts:
            raise self.error(n, f"{fname}() takes " + ("1 or 2 sizes" if fname == "ones" else "one size")
                             + f", got {len(n.args)}")
        sizes = []
        for arg in n.args:  # each a size by the model language's rule (NaN: a piece that spells no number)
            size = _size_of(self.node(arg))
            sizes.append(size_argument(_ReaderContext(self.error), fname, arg, sp.nan if size is None else size))
        return Given(LANGUAGE[fname].make(*sizes))

    def _gradient(self, n: ast.Call):
        if len(n.args) != 1:
            raise self.error(n, "d() takes one quantity, as in d(h[t])")
        arg = n.args[0]
        if isinstance(arg, ast.Name):
            return Grad(self._quantity(arg, arg.id, gradient=True).name, None)
        if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name) and self._is_step(arg.slice):
            q = self._quantity(arg.value, arg.value.id, gradient=True)
            if not q.sequence:
                raise self.error(arg, f"'{q.name}' is not a sequence; write d({q.name})")
            return Grad(q.name, self._step(arg.slice))
        raise self.error(arg, "d() takes one quantity, as in d(W) or d(h[t-1])")

    def _sum(self, n: ast.Call):
        rng = n.args[1] if len(n.args) == 2 else None
        if not (isinstance(rng, ast.Tuple) and len(rng.elts) == 3 and isinstance(rng.elts[0], ast.Name)):
            raise self.error(n, "Sum takes an expression and a range, as in "
                                f"Sum(..., ({self.index}, 1, {self.length}))")
        index = rng.elts[0].id
        body = self.node(n.args[0])
        return OverTime(body) if index == self.index else IndexSum(index, body)


#: The functions of the model language whose arguments are sizes, not values.
_SIZE_FUNCTIONS = tuple(name for name, f in LANGUAGE.items() if f.sizes)
#: Everything a claim may call, for the hint at an unknown name.
_CALLABLE = (*FUNCTIONS, *_SIZE_FUNCTIONS, "d", "Sum")


@dataclass(frozen=True)
class _ReaderContext:
    """What the model language's shared checks (``axis_keyword``, ``size_argument``) ask of their
    reader: positioned errors and an argument's text."""

    error: Callable

    @staticmethod
    def text(node: ast.AST) -> str:
        return ast.unparse(node)


def _size_of(node) -> sp.Expr | None:
    """The size a claim piece spells (a dim, a number, sums and products of these), else None."""
    if isinstance(node, Num):
        return sp.Rational(node.value.numerator, node.value.denominator)
    if isinstance(node, Given) and not getattr(node.expr, "is_Matrix", False):
        return node.expr
    if isinstance(node, Neg):
        inner = _size_of(node.arg)
        return None if inner is None else -inner
    if isinstance(node, Quotient):
        num, den = _size_of(node.num), _size_of(node.den)
        return None if num is None or den is None or den == 0 else num / den
    parts = node.terms if isinstance(node, Terms) else node.factors if isinstance(node, (Product, Hadamard)) \
        else None
    if parts is None:
        return None
    values = [_size_of(p) for p in parts]
    if any(v is None for v in values):
        return None
    return sp.Add(*values) if isinstance(node, Terms) else sp.Mul(*values)


def _joined(kind, a, b):
    """a + (b + c) and (a + b) + c both as one flat node."""
    parts = []
    for x in (a, b):
        inner = (x.terms if isinstance(x, Terms) else None) if kind is Terms else \
            (x.factors if isinstance(x, kind) else None)
        parts.extend(inner if inner is not None else [x])
    return kind(tuple(parts))

