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
from ..probe import PROBES, STEPS
from ..tree import (
    Call,
    ChainRule,
    Derivative,
    Entry,
    Given,
    Grad,
    Hadamard,
    IndexSum,
    Indicator,
    Jacobian,
    MatrixPower,
    Neg,
    Num,
    Ones,
    OverTime,
    Power,
    Product,
    Quotient,
    ReadError,
    Rows,
    Step,
    Terms,
    Transposed,
    Val,
    Zero,
    children,
    earlier_params,
)
from .names import Atom, Glossary, NameKey, NameReader
from .tokens import (
    ACCENTS,
    BRACED_COMMANDS,
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

#: The longest sequence the checker's probes use: a sum over the later steps is written out so far.
MAX_STEPS = STEPS + PROBES - 1
#: The largest integer exponent a claim may write (powers of values, f^k).
MAX_EXPONENT = 64


#: Letters a write-up calls its loss by (ℓ is ``ell``), besides the model's own name for it.
LOSS_LETTERS = ("L", "ell", "E", "J", "l", "mathcal{L}")


@dataclass(frozen=True)
class _Diag:
    """diag(v), read only as a factor of a product: diag(v) x is v ⊙ x."""

    arg: object
    pos: int


@dataclass(frozen=True)
class _Links:
    """∂a/∂b ∂b/∂c without ∂L/∂a in front, read only where a δ multiplies a sum of them:
    ``∂E/∂s_4 (∂s_4/∂W + ∂s_4/∂s_3 ∂s_3/∂W)``."""

    links: tuple
    pos: int


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

    def whole(self, pieces: bool = False):
        """The whole token list as one expression (with ``pieces``, one that may be a piece of a
        chain rule, inside brackets)."""
        if not self.toks:
            raise ReadError("an empty side", None)
        node = self.sum()
        if not self.at_end():
            rest = self.toks[self.i]
            raise self.error(f"cannot read '{self.source[rest.pos:rest.end]}' here")
        if isinstance(node, _Diag):
            raise ReadError("diag(…) alone: it is read as a factor of a product", node.pos)
        left = _fragment(node) if not pieces else None
        if left is not None:
            raise ReadError("a product of Jacobians ∂a/∂b is read only after a ∂L/∂a that it follows",
                            getattr(left, "pos", None))
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
                node = _flat(Hadamard, [node, self.product(explicit=False)])
            elif (t is not None and t.kind == "cmd" and t.value == "cdot" and isinstance(node, Hadamard)
                  and not self.glossary.cdot_elementwise):
                # a ⊙ f'(z) · xᵀ: ⊙ and an explicit · side by side read left to right
                self.take()
                node = self._product_of([node, self.product(explicit=False)])
            elif t is not None and ((t.kind == "cmd" and t.value in ("oslash", "div")) or t.value == "/"):
                self.take()
                node = Quotient(node, self.product())
            else:
                return node

    def product(self, explicit: bool = True):
        """Factors side by side, or joined by ``\\cdot``, ``\\times``, ``*`` (with ``explicit``;
        without, a ``\\cdot`` ends the product, for the left-to-right reading after ⊙)."""
        factors = [self.factor()]
        hadamard: list[int] = []  # factors after a · the write-up declares elementwise
        while True:
            t = self.peek()
            if not explicit and t is not None and t.kind == "cmd" and t.value == "cdot":
                break
            if t is not None and t.kind == "char" and t.value == "." and self._starts_factor(1):
                self.take()  # (ŷ_4 − y_4).s_4: a dot between two factors is a product, as \cdot
                if self.glossary.cdot_elementwise:
                    hadamard.append(len(factors))
                    self.glossary.used.add("cdot")
                factors.append(self.factor())
            elif t is not None and ((t.kind == "cmd" and t.value in ("cdot", "times", "ast")) or t.value == "*"):
                self.take()
                if t.value == "cdot" and self.glossary.cdot_elementwise:
                    hadamard.append(len(factors))
                    self.glossary.used.add("cdot")
                factors.append(self.factor())
            elif self._starts_factor():
                factors.append(self.factor())
            else:
                break
        if hadamard:
            groups: list[list] = [[]]
            for k, f in enumerate(factors):
                if k in hadamard:
                    groups.append([])
                groups[-1].append(f)
            return _flat(Hadamard, [self._product_of(g) for g in groups])
        return self._product_of(factors)

    def _product_of(self, factors: list):
        if any(isinstance(f, _Links) for f in factors) and len(factors) > 1:
            # (∏_j ∂s_j/∂s_{j-1}) between other factors: its Jacobians, in place
            factors = [x for f in factors for x in (f.links if isinstance(f, _Links) else [f])]
        if len(factors) > 1 and any(isinstance(f, Jacobian) and f.entries != ((), ()) for f in factors):
            return self._entry_chain_rule(factors)
        if len(factors) == 2 and isinstance(_untransposed(factors[0]), Grad) and isinstance(factors[1], Terms) \
                and all(isinstance(_untransposed(x), (Jacobian, _Links)) for x in factors[1].terms):
            # ∂E/∂s_4 (∂s_4/∂W + ∂s_4/∂s_3 ∂s_3/∂W): the δ carried along each path
            return Terms(tuple(self._chain_rule([factors[0]] + (list(x.links) if isinstance(x, _Links) else [x]))
                               for x in factors[1].terms))
        if len(factors) > 1 and any(isinstance(_untransposed(f), Jacobian) for f in factors):
            return self._chain_rule(factors)
        for k, f in enumerate(factors):
            if isinstance(f, _Diag):
                left, right = factors[:k], factors[k + 1:]
                if right:
                    scaled = _flat(Hadamard, [f.arg, self._product_of(right)])
                    return _flat(Product, left + [scaled]) if left else scaled
                if left:
                    return _flat(Hadamard, [_flat(Product, left), Transposed(f.arg)])
        return _flat(Product, factors)

    def _entry_chain_rule(self, factors: list):
        """``∂E/∂ŷ_k ∂ŷ_k/∂q_l ∂q_l/∂V_{ij}`` (k, l summed, as index notation does): the entry (i, j)
        of the vector chain rule ∂E/∂ŷ ∂ŷ/∂q ∂q/∂V, if each link's indices are the next one's."""
        start, *links = factors
        if not (isinstance(start, Entry) and isinstance(start.arg, Grad)) or not links or not all(
                isinstance(j, Jacobian) for j in links):
            raise self.error("entries of a Jacobian (∂a_i/∂b_j) are read only in a chain rule ∂L/∂a_k ∂a_k/∂b_l …")
        here, indices = start.arg, tuple(start.indices)
        plain_links = []
        for j in links:
            of_entries, wrt_entries = j.entries
            if (j.of.name, j.of.offset) != (here.name, here.offset) or tuple(of_entries) != indices \
                    or not of_entries or not wrt_entries:
                raise self.error("the indices of this chain rule do not link up (∂L/∂a_k ∂a_k/∂b_l ∂b_l/∂c_m …)")
            plain_links.append(Jacobian(j.of, j.wrt))
            here, indices = j.wrt, tuple(wrt_entries)
        model = self.glossary.model
        for j in plain_links:
            of, wrt = j.of.name, j.wrt.name  # type: ignore[attr-defined]
            if model.quantities[wrt].role == "param" and wrt in earlier_params(model, of):
                raise self.error(f"∂{of}/∂{wrt} of entries: {of} depends on {wrt} "
                                 "through earlier steps too, and index notation does not say whether the explicit "
                                 "or the total derivative is meant")
        return Entry(ChainRule(start.arg, tuple(plain_links)), indices)

    def _chain_rule(self, factors: list):
        """∂L/∂a ∂a/∂b ∂b/∂c, in any order or layout: a ``ChainRule`` from δa along the links."""
        jacobians: list = [_untransposed(f) for f in factors if isinstance(_untransposed(f), Jacobian)]
        starts: list = [_untransposed(f) for f in factors if isinstance(_untransposed(f), Grad)]
        others = [f for f in factors if not isinstance(_untransposed(f), (Jacobian, Grad))]
        if not starts and not others:
            at = self.peek()
            return _Links(tuple(jacobians), at.pos if at is not None else 0)
        if len(starts) != 1 or others:
            raise self.error("a product with Jacobians ∂a/∂b is read only as a chain rule ∂L/∂a ∂a/∂b …")
        here, links = starts[0], []
        while jacobians:
            nxt: Jacobian | None = next((j for j in jacobians if (j.of.name, j.of.offset) == (here.name, here.offset)),
                                        None)
            if nxt is None:
                raise self.error("the factors of this chain rule do not link up (∂L/∂a ∂a/∂b ∂b/∂c …)")
            jacobians.remove(nxt)
            links.append(nxt)
            here = nxt.wrt
        return ChainRule(starts[0], tuple(links))

    def _starts_factor(self, k: int = 0) -> bool:
        t = self.peek(k)
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
                                    or t.value in ("frac", "dfrac", "tfrac", "sum", "partial", "nabla", "diag",
                                                   "delta", "Delta"))

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
        if script and all(t.kind == "num" and t.value.startswith("=") for t in script):
            # W^{4-j-1} inside a sum written out: the power of a matrix (of a value, elementwise)
            return MatrixPower(node, self._exponent(script[0].value[1:], tok))
        m = re.fullmatch(r"(?:\\circ)?(-?\d+)", text)
        if m:
            return Power(node, self._exponent(m.group(1), tok))
        raise self.error(f"cannot read the superscript '{self.source[tok.pos:script[-1].end if script else tok.end]}'",
                         tok)

    def _exponent(self, text: str, tok: Tok) -> int:
        """An integer exponent, at most MAX_EXPONENT in size: 2^{99999999999999} would be an exact
        number of 10^13 digits."""
        if len(text.lstrip("-")) > 3 or abs(int(text)) > MAX_EXPONENT:
            raise self.error(f"the exponent {text[:20]}{'…' if len(text) > 20 else ''} is larger than any "
                             f"derivation needs (at most {MAX_EXPONENT})", tok)
        return int(text)

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
        if t.kind == "char" and t.value == "[":
            indicator = self._step_range(matching(self.toks, self.i))
            if indicator is not None:
                return indicator
        if t.kind == "char" and t.value in "([":
            close = matching(self.toks, self.i)
            inner = self.sub_parser(self.toks[self.i + 1:close]).whole(pieces=True)
            self.i = close + 1
            return inner
        if (t.kind == "char" and t.value == "|") or (t.kind == "cmd" and t.value == "lVert"):
            return self._norm()
        if t.kind == "cmd":
            method = {"frac": self._fraction, "dfrac": self._fraction, "tfrac": self._fraction,
                      "delta": self._delta, "sum": self._sum, "partial": self._partial, "nabla": self._partial,
                      "prod": self._product_over}.get(t.value)
            if method is not None:
                return method()
            if t.value == "Delta" and self.is_char("_", 1) and self._delta_of_loss():
                return self._big_delta()
            if t.value == "Sigma" and self.is_char("_", 1) and any(
                    x.value == "=" for x in self.toks[self.i + 2:matching(self.toks, self.i + 2) + 1]
                    if self.is_char("{", 2)):
                return self._sum()  # \Sigma_{j=1}^{t}: the letter written for the sum sign
            if t.value in FUNCTION_COMMANDS and not self._names_a_quantity():
                return self._function(FUNCTION_COMMANDS[t.value])
            special = self._ones_or_zero() if t.value in FONTS else None
            if special is not None:
                return special
        if t.kind == "letter":
            run = self.letter_run()  # tanh(c_t), diag[o_t] written as plain letters
            bracket = self.is_char("(", len(run)) or self.is_char("[", len(run))
            if (run in FUNCTION_WORDS or run == "diag") and bracket:
                self.merge_word(run)
                t = self.peek()
        if t.kind == "text" and t.value.strip() in FUNCTION_WORDS:
            return self._function(FUNCTION_WORDS[t.value.strip()])
        if t.kind == "text" and t.value.strip() == "prod" and self.is_char("(", 1):
            return self._prod()
        if (t.kind == "text" and t.value.strip() == "diag") or (t.kind == "cmd" and t.value == "diag"):
            self.take()
            if not (self.is_char("(") or self.is_char("[") or self.is_char("{")):
                raise self.error("diag needs an argument in brackets", t)
            return _Diag(self.primary(), t.pos)
        if self._d_notation():
            self.take()
            return self._gradient(self._named_atom("d must be followed by the name of a quantity", t))
        generic = self._generic_derivative()
        if generic is not None:
            return generic
        if t.kind == "char" and t.value == "{" and not self._braced_atom():
            return self.sub_parser(self.group()).whole()
        atom = self.atom()
        if atom is None:
            raise self.error(f"cannot read '{self.source[t.pos:t.end]}' here")
        return self._value(atom)

    def _prod(self):
        """``\\textrm{prod}(∂J/∂o, ∂o/∂W)`` (Dive into Deep Learning's notation): the product of
        its arguments after whatever transposes make the shapes fit, here the chain rule."""
        head = self.take()
        close = matching(self.toks, self.i)
        args = [self.sub_parser(part).whole() for part in split_top(self.toks[self.i + 1:close],
                                                                        lambda t: t.value == ",")]
        self.i = close + 1
        if len(args) < 2 or not any(isinstance(_untransposed(a), Jacobian) for a in args):
            raise self.error("prod(…) is read only as a chain rule, prod(∂L/∂a, ∂a/∂b)", head)
        return self._product_of(args)

    def _d_notation(self) -> bool:
        """``dW``, ``d\\mathbf{h}_t``, ``\\mathrm{d}W``: δ, if d is no quantity of the model."""
        t = self.peek()
        if t is None or not ((t.kind == "letter" and t.value == "d") or (t.kind == "text" and t.value.strip() == "d")):
            return False
        nxt = self.peek(1)
        if nxt is None or not (nxt.kind in ("letter", "text") or (nxt.kind == "cmd" and (
                nxt.value in FONTS or nxt.value in ACCENTS or nxt.value in LETTERS)) or nxt.value == "{"):
            return False
        try:
            self.glossary.resolve(Atom(NameKey("d"), (), "d", "", t.pos))
            return False
        except ReadError:
            pass
        save = self.i
        self.i += 1
        try:
            return self.atom() is not None  # d is no quantity: dW is δW, whatever W turns out to be
        except ReadError:
            return False
        finally:
            self.i = save

    def _named_atom(self, message: str, head: Tok) -> Atom:
        atom = self.atom()
        if atom is None:
            raise self.error(message, head)
        return atom

    def _generic_derivative(self):
        """``f'(z)``, ``\\phi'(z)``, ``g^\\prime(z)``: the derivative of the function the model applies to z."""
        t = self.peek()
        if t is None or not (t.kind == "letter" or (t.kind == "cmd" and t.value in LETTERS)):
            return None
        nxt = self.peek(1)
        prime = nxt is not None and (nxt.value == "'" or (nxt.value == "^" and self.is_("cmd", "prime", 2)))
        if not prime:
            return None
        try:
            self.glossary.resolve(Atom(NameKey(t.value), (), t.value, "", t.pos))
            return None  # a quantity of the model, with a prime
        except ReadError:
            pass
        self.take()
        if self.take().value == "^":
            self.take()
        if not (self.is_char("(") or self.is_char("[")):
            raise self.error(f"{t.value}' needs its argument, as in {t.value}'(z)", t)
        return Derivative("?", self.primary())

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
        """``\\sigma`` not followed by an argument may be a quantity called sigma (``\\sqrt{z}``'s
        braces hold its argument)."""
        here, nxt = self.peek(), self.peek(1)
        braced = here is not None and here.value in BRACED_COMMANDS and nxt is not None and nxt.value == "{"
        return nxt is None or not (nxt.value in ("(", "'", "^", "[") or nxt.kind in ("letter", "cmd") or braced)

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
        if inner == ["I"] and font.value in ("mathbb", "mathds") and close + 1 < len(self.toks) \
                and self.toks[close + 1].value == "[":  # 𝕀[z > 0], the spelling symderiv writes
            self.i = close + 1
            return self._indicator()
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
                    power = self._exponent(text, tok)
                else:
                    raise self.error(f"cannot read the superscript '{text}' of {fname}", tok)
            elif self.is_char("_"):
                raise self.error(f"subscripts on {fname} (entries of a Jacobian) are not supported", self.peek())
            else:
                break
        braced = head.kind == "cmd" and head.value in BRACED_COMMANDS
        if braced and self.is_char("["):  # \sqrt[n]{z}: TeX's optional argument, an n-th root
            raise self.error(f"\\{head.value}[...]{{...}} (a root of another degree) is not supported", head)
        if braced and self.is_char("{"):
            arg = self.sub_parser(self.group()).whole()
        elif self.is_char("(") or self.is_char("["):
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
        if len(numer) > 1 and len(denom) > 1 and _is_d(numer[0]) and _is_d(denom[0]) and (
                self._loss(numer[1:]) is not None or self._names_one(numer[1:])):  # \frac{dL}{dW}, \frac{dp}{dz}
            return self._derivative_fraction(numer, [Tok("cmd", "partial", denom[0].pos, denom[0].end)] + denom[1:],
                                             head)
        return Quotient(self.sub_parser(numer).whole(), self.sub_parser(denom).whole())

    def _derivative_fraction(self, numer: list[Tok], denom: list[Tok], head: Tok):
        k = next((i for i, t in enumerate(denom) if t.kind == "cmd" and t.value == "partial"), None)
        if denom and k and denom[0].value not in ("partial", "d"):  # \frac{∂l}{T \cdot ∂o_t}: ∂l/∂o_t over T
            prefix = denom[:k]
            if prefix and prefix[-1].kind == "cmd" and prefix[-1].value in ("cdot", "times"):
                prefix = prefix[:-1]
            return Quotient(self._derivative_fraction(numer, denom[k:], head), self.sub_parser(prefix).whole())
        if not denom or denom[0].value not in ("partial", "d"):
            raise self.error("expected ∂X in the denominator", head)
        loss = self._loss(numer[1:])
        if loss is None:
            return self._jacobian(numer[1:], denom[1:], head)
        node = self._loss_gradient(denom[1:], head)
        if loss is not True and isinstance(node, (Grad, Entry)):
            grad: Grad = node.arg if isinstance(node, Entry) else node  # type: ignore[assignment]
            grad = Grad(grad.name, grad.offset, local=loss, scaled=self.glossary.mean_loss)
            self.glossary.local_losses = True
            self.glossary.used.add("local")
            node = Entry(grad, node.indices) if isinstance(node, Entry) else grad
        return node

    def _jacobian(self, numer: list[Tok], denom: list[Tok], head: Tok):
        """∂a/∂b of two quantities, for a chain rule."""
        sides = []
        for part in (numer, denom):
            sub = self.sub_parser(part)
            atom = sub.atom()
            if atom is None or not sub.at_end():
                raise self.error("a Jacobian ∂a/∂b is read only between two quantities, in a chain rule", head)
            qname, step, entries = self.glossary.resolve(atom)
            sides.append((Val(qname, step), entries))
        (of, of_entries), (wrt, wrt_entries) = sides
        return Jacobian(of, wrt, (of_entries, wrt_entries))

    def _loss_gradient(self, denom: list[Tok], head: Tok):
        if isinstance(self._loss(denom), str):  # ∂L/∂L_t = 1, with L = Σ_t L_t
            self.glossary.used.add("local")
            return Num(Fraction(1))
        rest = denom
        if rest and rest[0].kind == "char" and rest[0].value in "([":
            close = matching(rest, 0)
            if close == len(rest) - 1:
                return GradOfExpression(self.sub_parser(rest[1:-1]).whole(), head.pos)
        sub = self.sub_parser(rest)
        atom = sub.atom()
        if atom is None or not sub.at_end():
            raise self.error("expected ∂X in the denominator, with X a name", head)
        return self._gradient(atom)

    def _names_one(self, tokens: list[Tok]) -> bool:
        """Whether the tokens are one name (so ``\\frac{dp_i}{dz_i}`` is a Jacobian, not δp/δz)."""
        sub = self.sub_parser(tokens)
        try:
            return sub.atom() is not None and sub.at_end()
        except ReadError:
            return False

    def _loss(self, tokens: list[Tok]):
        """True if the tokens name the loss, the step (text) of a per-step loss ``L_t``,
        ``E^{(t)}``, ``\\ell(o_t, y_t)``, or None."""
        sub = self.sub_parser(tokens)
        try:
            atom = sub.atom()
        except ReadError:
            return None
        if atom is None:
            return None
        if sub.is_char("(") and atom.key.body in LOSS_LETTERS:  # ℓ(o, y): the loss as a function
            close = matching(sub.toks, sub.i)
            args = sub.toks[sub.i + 1:close]
            sub.i = close + 1
            if not sub.at_end():
                return None
            if atom.subs or atom.step is not None:
                return self._loss_step(atom)
            return self._step_of(args) or True  # ℓ(o_t, y_t): the loss of step t
        if not sub.at_end():
            return None
        try:
            qname, _, _ = self.glossary.resolve(atom)
            if self.glossary.model.quantities[qname].role == "loss" and not atom.subs:
                return True
            if self.glossary.model.quantities[qname].role != "loss":
                return None
        except ReadError:
            pass
        if atom.key.body not in LOSS_LETTERS or atom.key.sups:
            return None
        if not atom.subs and atom.step is None:
            return True
        return self._loss_step(atom)

    def _step_of(self, tokens: list[Tok]) -> str | None:
        """The step ``t`` if the tokens subscript something with it (``o_t``, ``y_{t}``)."""
        index = self.glossary.index
        for k, t in enumerate(tokens):
            after_sub = k > 0 and (tokens[k - 1].value == "_" or (
                k > 1 and tokens[k - 1].value == "{" and tokens[k - 2].value == "_"))
            if t.kind == "letter" and t.value == index and after_sub:
                return index
        return None

    def _loss_step(self, atom: Atom) -> str | None:
        items = list(atom.subs) + ([atom.step] if atom.step else [])
        if len(items) == 1 and self.glossary.is_step(items[0]):
            return items[0]
        return None

    def _partial(self):
        """``\\partial E_t / \\partial W`` and ``\\nabla_{W} L``, written inline."""
        head = self.take()
        if head.value == "partial" and self.is_char("_"):  # \partial_{o_j} l(y, ŷ): ∂l/∂o_j
            self.take()
            wrt = self.group()
            if not self.at_end() and self.peek().kind in ("letter", "cmd", "text"):
                save = self.i
                self.atom()
                if self.is_char("("):
                    self.i = matching(self.toks, self.i) + 1
                if self._loss(self.toks[save:self.i]) is None:
                    self.i = save
                    raise self.error("∂_x of something that is not the loss", head)
            return self._loss_gradient(wrt, head)
        if head.value == "nabla":
            if not self.is_char("_"):
                raise self.error("∇ needs its variable as a subscript, as in \\nabla_W L", head)
            self.take()
            wrt = self.group()
            if not self.at_end() and (self.peek().kind in ("letter", "cmd", "text")):
                save = self.i
                loss = self.atom()
                if loss is None or self._loss([t for t in self.toks[save:self.i]]) is None:
                    self.i = save
            return self._loss_gradient(wrt, head)
        start = self.i
        depth = 0
        while not self.at_end():
            t = self.peek()
            if t.kind == "char" and t.value in "({[":
                depth += 1
            elif t.kind == "char" and t.value in ")}]":
                depth -= 1
            elif depth == 0 and t.value == "/":
                break
            self.i += 1
        numer = self.toks[start:self.i]
        if self.at_end() or not self.is_("cmd", "partial", 1):
            raise self.error("write ∂L/∂X as \\frac{\\partial L}{\\partial X} or δX", head)
        self.take()
        self.take()
        den_start = self.i
        atom = self.atom()
        if atom is None:
            raise self.error("expected ∂X in the denominator, with X a name", head)
        return self._derivative_fraction([head] + numer, self.toks[den_start - 1:self.i], head)

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
        if self.is_char("_") or self.is_char("^"):  # δ_t, δ^{(o)}_t: an error signal's name
            return self._signal(head)
        atom = self.atom()
        if atom is None:
            raise self.error("δ must be followed by the name of a quantity", head)
        return self._gradient(atom)

    def _delta_of_loss(self) -> bool:
        """Whether ``\\Delta_{X}`` is followed by the loss (``\\Delta_{W_x}L``): the gradient ∂L/∂X."""
        save = self.i
        try:
            self.i += 2
            self.group()
            start = self.i
            if self.atom() is None:
                return False
            return self._loss(self.toks[start:self.i]) is True
        except ReadError:
            return False
        finally:
            self.i = save

    def _big_delta(self):
        """``\\Delta_{X} L`` (a GRU post's notation): ∂L/∂X."""
        head = self.take()
        self.take()
        wrt = self.group()
        self.atom()  # the loss, as _delta_of_loss found
        sub = self.sub_parser(wrt)
        atom = sub.atom()
        if atom is None or not sub.at_end():
            raise self.error("expected Δ_X L with X a name", head)
        return self._gradient(atom)

    def _signal(self, head: Tok):
        """δ_t as the write-up's name for the adjoint it defined (``δ_t = ∂L/∂z_t``)."""
        atom = self.signal_atom(head)
        found = self.glossary.signal(atom)
        if found is None:
            raise ReadError("δ" + self.source[head.end:self.toks[self.i - 1].end] + " names no quantity: say which "
                            "adjoint it is, as in \\delta_t = \\frac{\\partial L}{\\partial z_t}", head.pos)
        qname, step, entries = found
        node = Grad(qname, step)
        return Entry(node, entries) if entries else node

    def _gradient(self, atom: Atom):
        qname, step, entries = self.glossary.resolve(atom)
        node = Grad(qname, step)
        return Entry(node, entries) if entries else node

    def _value(self, atom: Atom):
        if atom.key == NameKey(self.glossary.length) and not atom.subs and self.glossary.model.length is not None \
                and self.glossary.length not in self.glossary.model.quantities:
            return Given(self.glossary.model.length)  # T, the number of steps, as a number
        size = self._dim_value(atom)
        if size is not None:
            return size
        qname, step, entries = self.glossary.resolve(atom)
        if self.glossary.model.quantities[qname].role == "loss":
            raise ReadError("the loss itself on a right side", atom.pos)
        node = Val(qname, step)
        return Entry(node, entries) if entries else node

    def _dim_value(self, atom: Atom):
        """A dim of the model as a number (``\\frac{1}{n}``, n the number of examples), where no
        quantity is called so; the write-ups' N for the model's n too, if the model has one
        dim of that letter and no other spelling."""
        if atom.subs or atom.key.sups or atom.key.accent or atom.step is not None:
            return None
        try:
            self.glossary.resolve(atom)
            return None  # a quantity of the model
        except ReadError:
            pass
        dims = self.glossary.model.dims
        name = atom.key.body
        if name in dims:
            return Given(dims[name])
        alike = [d for d in dims if d.lower() == name.lower()]
        return Given(dims[alike[0]]) if len(alike) == 1 else None

    def _step_range(self, close: int) -> Indicator | None:
        """An Iverson bracket on the step, [t ≤ T − 1], [2 ≤ t], [2 ≤ t ≤ T − 1] (the adjoints of a
        loss over a part of the sequence), or None when the bracket holds no comparison."""
        inside = self.toks[self.i + 1:close]
        if not any(t.kind == "cmd" and t.value in ("le", "leq", "ge", "geq") for t in inside):
            return None
        text = plain(inside).replace("\\leq", "\\le").replace("\\geq", "\\ge")
        t = self.glossary.index if self.glossary else "t"
        T = self.glossary.length if self.glossary else "T"
        parts = re.split(r"(\\le|\\ge)", text)
        items, ops = parts[::2], set(parts[1::2])
        if ops == {"\\ge"}:
            items.reverse()  # T - 1 ≥ t ≥ 2 is 2 ≤ t ≤ T - 1
        first, last = 1, 0
        ok = len(ops) == 1 and t in items and len(items) <= 3
        if ok:
            at = items.index(t)
            below, above = items[:at], items[at + 1:]
            ok = len(below) <= 1 and len(above) <= 1 and bool(below or above)
            if ok and below:
                ok = below[0].isdigit() and int(below[0]) >= 1
                first = int(below[0]) if ok else 1
            m = re.fullmatch(rf"{re.escape(T)}(?:-(\d+))?", above[0]) if ok and above else None
            if ok and above:
                ok = m is not None
                last = int(m.group(1) or 0) if m is not None else 0
        if not ok:
            raise self.error(f"cannot read the bracket [{self.source[inside[0].pos:inside[-1].end]}] as the steps "
                             f"of a range ([{t} \\le {T} - 1], [2 \\le {t}], [2 \\le {t} \\le {T} - 1])",
                             self.toks[self.i])
        self.i = close + 1
        return Indicator(first, last)

    def _limits(self) -> tuple[list[Tok] | None, list[Tok] | None]:
        """The lower and upper limits after a Σ or ∏ (``_{…}`` and ``^{…}``, in either order), taken."""
        lower = upper = None
        while self.is_char("_") or self.is_char("^"):
            mark = self.take().value
            script = self.group()
            if mark == "_":
                lower = script
            else:
                upper = script
        return lower, upper

    def _sum(self):
        head = self.take()
        lower, upper = self._limits()
        expanded = self._expanded(lower, upper, "sum")
        if expanded is not None:
            return expanded
        later = self._later_steps(lower, upper, head)
        if later is not None:
            return later
        running = self._running_step(lower, upper)
        if running is not None:
            return running
        index = self._sum_index(lower, head)
        last = self._sum_last(upper, head) if index is None or isinstance(index, int) else 0
        body = self.elementwise()
        if isinstance(index, int):
            return OverTime(body, index, last)
        if index is None:
            return OverTime(body, 1, last)
        return IndexSum(index, body)  # the upper limit of an entry index is its size

    def _sum_last(self, upper: list[Tok] | None, head: Tok) -> int:
        """k of a sum over time up to T − k (0 without an upper limit, or up to T)."""
        if not upper:
            return 0
        T = self.glossary.length if self.glossary else "T"
        m = re.fullmatch(rf"{re.escape(T)}(?:-(\d+))?", plain(upper))
        if m is None:
            shown = self.source[upper[0].pos:upper[-1].end]
            raise self.error(f"a sum over time up to '{shown}' is not supported (only up to {T} or {T} - k)", head)
        return int(m.group(1) or 0)

    def _product_over(self):
        """``\\prod_{j=k+1}^{4} ∂s_j/∂s_{j-1}`` over fixed numbers: the factors written out."""
        head = self.take()
        lower, upper = self._limits()
        expanded = self._expanded(lower, upper, "prod")
        if expanded is None:
            raise self.error("a product ∏ is read only over fixed numbers (∏_{j=2}^{4})", head)
        return expanded

    def _expanded(self, lower: list[Tok] | None, upper: list[Tok] | None, kind: str):
        """A sum or product over a letter between two numbers (``Σ_{j=1}^{4}`` in a claim about
        step 4), its terms written out with the letter replaced by each number; None if the
        bounds are not numbers."""
        m = re.fullmatch(r"([a-zA-Z])=(.+)", plain(lower or []))
        if m is None or m.group(1) in (self.glossary.index, self.glossary.length):
            return None
        start, stop = _integer(m.group(2)), _integer(plain(upper or []))
        if start is None or stop is None or stop - start >= MAX_EXPANDED:
            return None
        letter = m.group(1)
        body = self._summand()
        parts = []
        for v in range(start, stop + 1):
            sub = self.sub_parser(_folded([Tok("num", str(v), t.pos, t.end) if t.kind == "letter" and t.value == letter
                                           else t for t in body]))
            node = sub.elementwise()
            if not sub.at_end():
                rest = sub.toks[sub.i]
                raise self.error(f"cannot read '{self.source[rest.pos:rest.end]}' here", rest)
            parts.append(node)
        if kind == "sum":
            if not parts:
                return Num(Fraction(0))
            return _flat(Terms, parts)
        links: list = []
        for p in parts:
            links.extend(p.links if isinstance(p, _Links) else [p])
        if all(isinstance(_untransposed(p), Jacobian) for p in links):
            return _Links(tuple(links), body[0].pos if body else 0)
        if not parts:
            return Num(Fraction(1))
        return _flat(Product, parts)

    def _summand(self) -> list[Tok]:
        """The tokens of a sum's term, up to the next + or − outside brackets (taken)."""
        end = self.i
        depth = 0
        while end < len(self.toks):
            t = self.toks[end]
            if t.kind == "char" and t.value in "{([":
                depth += 1
            elif t.kind == "char" and t.value in "})]":
                depth -= 1
            elif depth == 0 and end > self.i and t.kind == "char" and t.value in "+-":
                break
            end += 1
        body = self.toks[self.i:end]
        self.i = end
        return body

    def _later_steps(self, lower: list[Tok] | None, upper: list[Tok] | None, head: Tok):
        """``Σ_{i=t}^{T} (W^T)^{T-i} V^T δo_{T+t-i}`` (Dive into Deep Learning's): over the later steps
        i = t..T, written out as i = T, T−1, … for the sequences the checker uses (at most
        MAX_STEPS long); read only where each term holds a value of a step past t, which is zero
        past T, so that the terms of i < t vanish."""
        m = re.fullmatch(r"([a-zA-Z])=(\w+)", plain(lower or []))
        time, length = self.glossary.index, self.glossary.length
        if m is None or m.group(1) in (time, length) or m.group(2) != time or plain(upper or []) != length \
                or len(length) != 1 or len(time) != 1:
            return None
        letter = m.group(1)
        body = self._summand()
        terms = []
        for k in range(MAX_STEPS):
            toks: list[Tok] = []
            for t in body:
                if t.kind == "letter" and t.value == letter:  # i = T − k
                    toks += [Tok("char", "{", t.pos, t.end), Tok("char", "(", t.pos, t.end),
                             Tok("letter", length, t.pos, t.end), Tok("char", "-", t.pos, t.end),
                             Tok("num", str(k), t.pos, t.end), Tok("char", ")", t.pos, t.end),
                             Tok("char", "}", t.pos, t.end)]
                else:
                    toks.append(t)
            sub = self.sub_parser(_folded(toks, (time, length)))
            node = sub.elementwise()
            if not sub.at_end():
                rest = sub.toks[sub.i]
                raise self.error(f"cannot read '{self.source[rest.pos:rest.end]}' here", rest)
            if k and not any(isinstance(x, (Val, Grad)) and isinstance(x.offset, Step) and x.offset.base == "t"
                             and x.offset.offset >= k for x in _factors(node)):
                raise self.error(f"a sum over the later steps {letter} = {time}..{length} is read only where each "
                                 f"term holds a value of step {letter} (zero past {length})", head)
            terms.append(node)
        self.glossary.used.add("later-steps")
        return _flat(Terms, terms)

    def _running_step(self, lower: list[Tok] | None, upper: list[Tok] | None):
        """``Σ_{j=1}^{t} δ_{o,j} h_{j-1}^T`` (an LSTM note's, E the error at the last step t): a sum
        over the steps whose running step is j, t in it the last step; None if the sum is not
        one over the steps with its own letter."""
        m = re.fullmatch(r"([a-zA-Z])=1", plain(lower or []))
        time, length = self.glossary.index, self.glossary.length
        top = plain(upper or [])
        if m is None or m.group(1) in (time, length) or top not in (time, length) or self.glossary.running:
            return None
        if top == time and not self.glossary.last_step_loss:
            return None  # Σ_{k=1}^{t} of a loss summed over the steps: a partial sum, not read
        letter = m.group(1)
        save = self.i
        self.glossary.running, self.glossary.last = letter, (time if top == time else None)
        try:
            body = self.elementwise()
        except ReadError:
            self.i = save
            raise
        finally:
            self.glossary.running, self.glossary.last = None, None
        if top == time:
            self.glossary.used.add("last-step")
        return OverTime(body)

    def _sum_index(self, lower: list[Tok] | None, head: Tok) -> str | int | None:
        """None for Σ_t over the whole sequence; else the entry index summed over."""
        text = plain(lower or [])
        m = re.fullmatch(r"([a-zA-Z])(?:=(\w+))?", text)
        if m is None:
            shown = self.source[lower[0].pos:lower[-1].end] if lower else ""
            raise self.error(f"a sum over '{shown}' is not supported (only Σ_t over t = 1..T, and sums over an "
                             "entry index)", head)
        index, start = m.groups()
        if index == (self.glossary.index if self.glossary else "t"):
            if start is not None and start.isdigit() and int(start) > 1:
                return int(start)  # Σ_{t=2}^{T}
            if start not in (None, "1"):
                raise self.error(f"a sum over steps {index} = {start}..T is not supported (only over the whole "
                                 "sequence)", head)
            return None
        if start is not None and not start.isdigit():
            raise self.error(f"a sum over {index} from {start} is not supported", head)
        return index


def _factors(node):
    """The leaves a product multiplies (through products, ⊙, transposes, powers of matrices)."""
    if isinstance(node, (Product, Hadamard)):
        for f in node.factors:
            yield from _factors(f)
    elif isinstance(node, (Transposed, MatrixPower)):
        yield from _factors(node.arg)
    else:
        yield node


#: The most terms a sum (or factors a product) over fixed numbers is written out into.
MAX_EXPANDED = 32


def _integer(text: str) -> int | None:
    """The value of ``4``, ``4+1``, ``4-3-1`` (numbers, + and −), without evaluating anything else."""
    text = text.replace(" ", "")
    if not re.fullmatch(r"[+-]?\d{1,4}([+-]\d{1,4})*", text):
        return None
    return sum(int(x) for x in re.findall(r"[+-]?\d+", text))


def _linear(text: str, names: tuple) -> dict | None:
    """``T+t-(T-3)`` as {"t": 1, "": 3}: a sum of numbers and the letters ``names`` (the time
    index and length), with + − and brackets; None for anything else (nothing is evaluated)."""
    pos = 0

    def expr() -> dict | None:
        nonlocal pos
        total: dict = {}
        sign = 1
        first = True
        while pos < len(text):
            c = text[pos]
            if c in "+-":
                sign = 1 if c == "+" else -1
                pos += 1
            elif not first:
                break
            if pos >= len(text):
                return None
            c = text[pos]
            if c == "(":
                pos += 1
                inner = expr()
                if inner is None or pos >= len(text) or text[pos] != ")":
                    return None
                pos += 1
            elif c.isdigit():
                digits = re.match(r"\d{1,4}", text[pos:])
                if digits is None:
                    return None
                inner = {"": int(digits.group(0))}
                pos += len(digits.group(0))
            elif c in names:
                inner = {c: 1}
                pos += 1
            else:
                return None
            for k, v in inner.items():
                total[k] = total.get(k, 0) + sign * v
            sign, first = 1, False
        return total

    out = expr()
    if out is None or pos != len(text):
        return None
    return {k: v for k, v in out.items() if v}


def _folded(tokens: list[Tok], names: tuple = ()) -> list[Tok]:
    """Each braced group of numbers (and the letters ``names``), + − and brackets (``s_{4-1}``,
    ``W^{4-4-1}``, ``y_{o,{(T-2)}}``, after a sum's letter became a number) folded, innermost
    first: to a number, or t + k; an exponent so folded is marked (a ``num`` token ``=k``),
    read as a matrix power."""
    out: list[Tok] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "char" and t.value == "{":
            close = matching(tokens, i)
            inner = _folded(tokens[i + 1:close], names)
            exponent = bool(out) and out[-1].kind == "char" and out[-1].value == "^"
            folded = _fold_group(inner, names, exponent)
            out += [t, *(folded if folded is not None else inner), tokens[close]]
            i = close + 1
            continue
        out.append(t)
        i += 1
    return out


def _fold_group(inner: list[Tok], names: tuple, exponent: bool) -> list[Tok] | None:
    """The tokens of one folded group, or None if it is no sum of numbers, t and T."""
    if len(inner) < 2 or not all(x.kind == "num" or (x.kind == "char" and x.value in "+-(){}")
                                 or (x.kind == "letter" and x.value in names) for x in inner):
        return None
    text = "".join(x.value for x in inner).replace("{", "(").replace("}", ")")
    value = _linear(text, names)
    if value is None:
        return None
    pos, end = inner[0].pos, inner[-1].end
    number = value.get("", 0)
    letters = [k for k in value if k]
    if not letters:
        return [Tok("num", f"={number}" if exponent else str(number), pos, end)]
    if len(letters) == 1 and value[letters[0]] == 1 and not exponent:
        folded = [Tok("letter", letters[0], pos, pos + 1)]
        if number:
            folded += [Tok("char", "+" if number > 0 else "-", pos, end), Tok("num", str(abs(number)), pos, end)]
        return folded
    return None


def _fragment(node):
    """A piece that only a chain rule around it could read (``_Links``), if the tree holds one."""
    if isinstance(node, _Links):
        return node
    if isinstance(node, (_Diag, GradOfExpression)):
        return None
    for kid in children(node):
        found = _fragment(kid)
        if found is not None:
            return found
    return None


def _untransposed(node):
    return node.arg if isinstance(node, Transposed) else node


def _is_d(t: Tok) -> bool:
    return (t.kind == "letter" and t.value == "d") or (t.kind == "text" and t.value.strip() == "d")


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
