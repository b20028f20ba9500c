"""One member of a chain → a claim expression tree, by recursive descent over a fixed
subset of LaTeX (sums, ⊙ and ⊘, products, fractions, δ and ∂L/∂X, Σ, functions and their
derivatives, transposes, powers, entries and row ranges).  Nothing is evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from ...ops import ELEMENTWISE
from ..tree import (
    Call,
    Derivative,
    Entry,
    Grad,
    Hadamard,
    IndexSum,
    Neg,
    Num,
    Ones,
    OverTime,
    Power,
    Product,
    Quotient,
    ReadError,
    Rows,
    Terms,
    Transposed,
    Val,
    Zero,
)
from .names import Atom, Glossary, NameReader
from .tokens import (
    ACCENTS,
    FONTS,
    FUNCTION_COMMANDS,
    FUNCTION_WORDS,
    INVERSE_TRANSPOSES,
    LETTERS,
    TRANSPOSES,
    Tok,
    is_word,
    matching,
    plain,
    split_top,
)


@dataclass(frozen=True)
class GradOfExpression:
    """∂L/∂(expression): only meaningful as the right side of a definition."""

    expr: object
    pos: int


class ExpressionParser(NameReader):
    """One member of a chain → a claim expression tree (``claims.tree`` nodes)."""

    glossary: Glossary  # always the model's: a claim names its quantities

    def __init__(self, tokens: list[Tok], source: str, glossary: Glossary) -> None:
        super().__init__(tokens, source, glossary)

    def whole(self):
        """The whole token list as one expression."""
        if not self.toks:
            raise ReadError("an empty side", None)
        node = self.sum()
        if not self.at_end():
            t = self.peek()
            raise self.error(f"cannot read '{self.source[t.pos:t.end]}' here")
        return node

    def sum(self):
        terms = []
        negative = False
        if self.is_char("+") or self.is_char("-"):
            negative = self.take().value == "-"
        while True:
            term = self.elementwise()
            terms.append(Neg(term) if negative else term)
            if self.is_char("+") or self.is_char("-"):
                negative = self.take().value == "-"
                continue
            break
        return _flat(Terms, terms)

    def elementwise(self):
        node = self.product()
        while True:
            t = self.peek()
            if t is not None and t.kind == "cmd" and t.value in ("odot", "circ"):
                self.take()
                node = _flat(Hadamard, [node, self.product()])
            elif t is not None and ((t.kind == "cmd" and t.value in ("oslash", "div")) or t.value == "/"):
                self.take()
                node = Quotient(node, self.product())
            else:
                return node

    def product(self):
        factors = [self.factor()]
        while True:
            t = self.peek()
            if t is not None and ((t.kind == "cmd" and t.value in ("cdot", "times")) or t.value == "*"):
                self.take()
                factors.append(self.factor())
            elif self._starts_factor():
                factors.append(self.factor())
            else:
                return _flat(Product, factors)

    def _starts_factor(self) -> bool:
        t = self.peek()
        if t is None:
            return False
        if t.kind in ("letter", "num"):
            return True
        if t.kind == "text":
            return is_word(t.value)
        if t.kind == "char":
            return t.value in "({["
        return t.kind == "cmd" and (t.value in LETTERS or t.value in FONTS or t.value in ACCENTS
                                    or t.value in FUNCTION_COMMANDS
                                    or t.value in ("frac", "dfrac", "tfrac", "sum", "partial", "nabla"))

    def factor(self):
        if self.is_char("-"):
            self.take()
            return Neg(self.factor())
        node = self.primary()
        return self.postfix(node)

    def postfix(self, node):
        while True:
            if self.is_char("^"):
                node = self._superscript(node)
            elif self.is_char("_"):
                tok = self.take()
                script = self.group()
                if any(t.value == ":" for t in script):
                    node = self._rows(node, script, tok)
                else:
                    node = Entry(node, self._indices(script, tok))
            elif self.is_char("'"):
                raise self.error("a prime on an expression: write the derivative out")
            else:
                return node

    def _superscript(self, node):
        tok = self.take()
        script = self.group()
        text = plain(script)
        if text in TRANSPOSES or text in ("\\prime",):
            return Transposed(node)
        if text in INVERSE_TRANSPOSES:  # X^{-⊤}
            return Transposed(Call("inv", node))
        if text == "-1":  # X^{-1}: the inverse of a square matrix (of a vector, 1 ⊘ v)
            return Call("inv", node)
        m = re.fullmatch(r"(?:\\circ)?(-?\d+)", text)
        if m:
            return Power(node, int(m.group(1)))
        raise self.error(f"cannot read the superscript '{self.source[tok.pos:script[-1].end if script else tok.end]}'",
                         tok)

    def _rows(self, node, script: list[Tok], tok: Tok):
        """``[v]_{1:n_h}``: rows 1..n_h of v."""
        bounds = plain(script).split(":")
        if len(bounds) != 2 or self.glossary is None:
            raise self.error("a row range is written [v]_{a:b}", tok)
        start, stop = (self._size(b, tok) for b in bounds)
        return Rows(node, start, stop)

    def _size(self, text: str, tok: Tok) -> sp.Expr:
        """A size written with the model's dims: ``n_h``, ``n_{h} + 1``, ``2``."""
        total = sp.Integer(0)
        for part in text.split("+"):
            if part.isdigit():
                total += int(part)
            elif part in self.glossary.model.dims:
                total += self.glossary.model.dims[part]
            else:
                raise self.error(f"cannot read the size '{part}' (a dim of the model or a number)", tok)
        return total

    def _indices(self, script: list[Tok], tok: Tok) -> tuple:
        items = [plain(part) for part in split_top(script, lambda t: t.value == ",")]
        if len(items) == 1 and re.fullmatch(r"[a-zA-Z]{2}", items[0]):
            items = list(items[0])
        for item in items:
            if not re.fullmatch(r"[a-zA-Z]", item) or (self.glossary and item == self.glossary.index):
                raise self.error(f"cannot read the subscript '{item}' as an entry index", tok)
        return tuple(items)

    def primary(self):
        t = self.peek()
        if t is None:
            raise self.error("the expression ends too early")
        if t.kind == "num":
            self.take()
            return Num(Fraction(t.value))
        if t.kind == "char" and t.value in "([":
            close = matching(self.toks, self.i)
            inner = self.sub_parser(self.toks[self.i + 1:close]).whole()
            self.i = close + 1
            return inner
        if (t.kind == "char" and t.value == "|") or (t.kind == "cmd" and t.value == "lVert"):
            return self._norm()
        if t.kind == "cmd":
            method = {"frac": self._fraction, "dfrac": self._fraction, "tfrac": self._fraction,
                      "delta": self._delta, "sum": self._sum, "partial": self._partial, "nabla": self._partial}.get(
                t.value)
            if method is not None:
                return method()
            if t.value in FUNCTION_COMMANDS and not self._names_a_quantity():
                return self._function(FUNCTION_COMMANDS[t.value])
            special = self._ones_or_zero() if t.value in FONTS else None
            if special is not None:
                return special
        if t.kind == "text" and t.value.strip() in FUNCTION_WORDS:
            return self._function(FUNCTION_WORDS[t.value.strip()])
        if t.kind == "char" and t.value == "{" and not self._braced_atom():
            return self.sub_parser(self.group()).whole()
        atom = self.atom()
        if atom is None:
            raise self.error(f"cannot read '{self.source[t.pos:t.end]}' here")
        return self._value(atom)

    def _norm(self):
        """‖v‖₂ (\\|v\\|_2, \\lVert v \\rVert): the Euclidean or Frobenius norm; ‖v‖₁ the entrywise 1-norm."""
        open_ = self.take()
        closer = "|" if open_.value == "|" else "rVert"
        depth, j = 0, self.i
        while j < len(self.toks):
            tok = self.toks[j]
            if tok.kind == "char" and tok.value in "({[":
                depth += 1
            elif tok.kind == "char" and tok.value in ")}]":
                depth -= 1
            elif depth == 0 and tok.value == closer and tok.kind in ("char", "cmd"):
                break
            j += 1
        else:
            raise self.error("a norm is written \\|v\\|_2", open_)
        inner = self.sub_parser(self.toks[self.i:j]).whole()
        self.i = j + 1
        fname = "norm2"
        if self.is_char("_"):
            tok = self.take()
            which = plain(self.group())
            if which not in ("1", "2", "F"):
                raise self.error(f"a norm is \\|v\\|_2, \\|A\\|_F or \\|v\\|_1, not _{which}", tok)
            fname = "norm1" if which == "1" else "norm2"
        return Call(fname, inner)

    def _names_a_quantity(self) -> bool:
        """``\\sigma`` not followed by an argument may be a quantity called sigma."""
        nxt = self.peek(1)
        return nxt is None or not (nxt.value in ("(", "'", "^", "[") or nxt.kind in ("letter", "cmd"))

    def _ones_or_zero(self):
        """𝟏 or 𝟎 (``\\mathbf{1}``, ``\\mathbb{1}``), or 𝟙[z > 0]; None if this is a name."""
        font = self.peek()
        nxt = self.peek(1)
        if nxt is None:
            return None
        if nxt.kind == "char" and nxt.value == "{":
            close = matching(self.toks, self.i + 1)
            inner = [x.value for x in self.toks[self.i + 2:close]]
        else:
            close, inner = self.i + 1, [nxt.value]
        if inner not in (["1"], ["0"]):
            return None
        self.i = close + 1
        if inner == ["0"]:
            return Zero()
        if font.value in ("mathbb", "mathds") and self.is_char("["):
            return self._indicator()
        return Ones()

    def _indicator(self):
        """𝟙[z > 0], the derivative of relu."""
        close = matching(self.toks, self.i)
        inner = self.toks[self.i + 1:close]
        self.i = close + 1
        values = [x.value for x in inner]
        if len(values) < 3 or values[-2:] != [">", "0"]:
            raise self.error("an indicator 1[...] is read only as 1[z > 0]", inner[0] if inner else None)
        return Call("step", self.sub_parser(inner[:-2]).whole())

    def _function(self, fname: str):
        head = self.take()
        derivative, power = False, 1
        while True:
            if self.is_char("'"):
                self.take()
                derivative = True
            elif self.is_char("^"):
                tok = self.take()
                text = plain(self.group())
                if text == "\\prime":
                    derivative = True
                elif re.fullmatch(r"\d+", text):
                    power = int(text)
                else:
                    raise self.error(f"cannot read the superscript '{text}' of {fname}", tok)
            elif self.is_char("_"):
                raise self.error(f"subscripts on {fname} (entries of a Jacobian) are not supported", self.peek())
            else:
                break
        if self.is_char("(") or self.is_char("["):
            arg = self.primary()
        elif self._starts_factor():
            arg = self.factor()
        else:
            raise self.error(f"{fname} needs an argument", head)
        if derivative:
            if fname not in ELEMENTWISE:
                raise self.error(f"{fname}' is a Jacobian, not an elementwise derivative; write it out", head)
            node: Derivative | Call = Derivative(fname, arg)
        else:
            node = Call(fname, arg)
        return Power(node, power) if power != 1 else node

    def _fraction(self):
        head = self.take()
        numer = self.group()
        denom = self.group()
        if numer and numer[0].kind == "cmd" and numer[0].value == "partial":
            return self._derivative_fraction(numer, denom, head)
        return Quotient(self.sub_parser(numer).whole(), self.sub_parser(denom).whole())

    def _derivative_fraction(self, numer: list[Tok], denom: list[Tok], head: Tok):
        if not self._is_loss(numer[1:]):
            raise self.error("a Jacobian ∂a/∂b is not supported; write its product with the adjoint out", head)
        if not denom or denom[0].value != "partial":
            raise self.error("expected ∂X in the denominator", head)
        rest = denom[1:]
        if rest and rest[0].kind == "char" and rest[0].value in "([":
            close = matching(rest, 0)
            if close == len(rest) - 1:
                return GradOfExpression(self.sub_parser(rest[1:-1]).whole(), head.pos)
        sub = self.sub_parser(rest)
        atom = sub.atom()
        if atom is None or not sub.at_end():
            raise self.error("expected ∂X in the denominator, with X a name", head)
        return self._gradient(atom)

    def _is_loss(self, tokens: list[Tok]) -> bool:
        sub = self.sub_parser(tokens)
        atom = sub.atom()
        if atom is None or not sub.at_end() or atom.subs:
            return False
        if atom.key.body in ("L", "ell", "E", "J"):
            return True
        try:
            qname, _, _ = self.glossary.resolve(atom)
        except ReadError:
            return False
        return self.glossary.model.quantities[qname].role == "loss"

    def _partial(self):
        raise self.error("write ∂L/∂X as \\frac{\\partial L}{\\partial X} or δX")

    def _delta(self):
        """δX, or δ(X) whose entries follow: ``\\delta (\\mathbf{U}_n)_{i,j}``."""
        head = self.take()
        if self.is_char("("):
            close = matching(self.toks, self.i)
            sub = self.sub_parser(self.toks[self.i + 1:close])
            atom = sub.atom()
            if atom is None or not sub.at_end():
                raise self.error("δ(…) must hold the name of one quantity", head)
            self.i = close + 1
            return self._gradient(atom)
        atom = self.atom()
        if atom is None:
            raise self.error("δ must be followed by the name of a quantity", head)
        return self._gradient(atom)

    def _gradient(self, atom: Atom):
        qname, step, entries = self.glossary.resolve(atom)
        node = Grad(qname, step)
        return Entry(node, entries) if entries else node

    def _value(self, atom: Atom):
        qname, step, entries = self.glossary.resolve(atom)
        if self.glossary.model.quantities[qname].role == "loss":
            raise ReadError("the loss itself on a right side", atom.pos)
        node = Val(qname, step)
        return Entry(node, entries) if entries else node

    def _sum(self):
        head = self.take()
        lower = None
        while self.is_char("_") or self.is_char("^"):
            mark = self.take().value
            script = self.group()  # the upper limit is the whole range (T, or the size of the index)
            if mark == "_":
                lower = script
        index = self._sum_index(lower, head)
        body = self.elementwise()
        if index is None:
            return OverTime(body)
        return IndexSum(index, body)

    def _sum_index(self, lower: list[Tok] | None, head: Tok) -> str | None:
        """None for Σ_t over the whole sequence; else the entry index summed over."""
        text = plain(lower or [])
        m = re.fullmatch(r"([a-zA-Z])(?:=(\w+))?", text)
        if m is None:
            shown = self.source[lower[0].pos:lower[-1].end] if lower else ""
            raise self.error(f"a sum over '{shown}' is not supported (only Σ_t over t = 1..T, and sums over an "
                             "entry index)", head)
        index, start = m.groups()
        if index == (self.glossary.index if self.glossary else "t"):
            if start not in (None, "1"):
                raise self.error(f"a sum over steps {index} = {start}..T is not supported (only over the whole "
                                 "sequence)", head)
            return None
        if start is not None and not start.isdigit():
            raise self.error(f"a sum over {index} from {start} is not supported", head)
        return index


def _flat(kind: type[Terms] | type[Product] | type[Hadamard], parts: list[object]) -> object:
    """One node for a chain of the same operation: a + (b + c) is a + b + c."""
    flat: list[object] = []
    for p in parts:
        if isinstance(p, Terms) and kind is Terms:
            flat.extend(p.terms)
        elif isinstance(p, (Product, Hadamard)) and isinstance(p, kind):
            flat.extend(p.factors)
        else:
            flat.append(p)
    if len(flat) == 1:
        return flat[0]
    return kind(tuple(flat))
