"""A write-up → its claims: every chain of every displayed equation, read in order.

A chain whose left side is ``δX``, ``∂L/∂X`` or an entry of one is a claim about X, and its
last member is what is judged; ``δy ≜ ∂L/∂(W h_t + b)`` and ``z = expr`` name expressions for
later claims.  A claim that cannot be read is kept, with the place and the reason, so the
rest of the write-up is still judged.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace

from ..tree import (
    STEP_T,
    ChainRule,
    Claim,
    Entry,
    Grad,
    Hadamard,
    IndexSum,
    Jacobian,
    Neg,
    ReadError,
    ShapeMismatch,
    Terms,
    Transposed,
    Val,
    anchor_steps,
    claim_target,
    make_claim,
    positions,
    references,
)
from .displays import DEFINITIONS, INLINE, Chain, chains_of, displayed_spans, rows_of
from .names import Atom, Glossary
from .parser import ExpressionParser, GradOfExpression
from .tokens import Tok, tokenize

#: Brackets nested deeper than this are refused before parsing (the parser recurses on them).
MAX_NESTING = 60
#: A display's tokens, and a number's digits: far above any derivation (a long LSTM claim has
#: a few hundred tokens), far below what makes judging take minutes (3,200 ⊙ factors did).
MAX_TOKENS = 3_000
MAX_DIGITS = 30


@dataclass
class WriteupReading:
    """The claims of a write-up, how it spells the quantities it names, and every quantity
    it speaks of (for the verdicts' wording)."""

    claims: list[Claim]
    spellings: dict
    vocabulary: set
    notes: list[str] = field(default_factory=list)  # what was assumed or skipped, said once
    skipped: list[int] = field(default_factory=list)  # lines of equations that are no claims (Jacobians)


class _Lines:
    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, pos) - 1
        return k + 1, pos - self.starts[k] + 1


def read_writeup(text: str, derivation, markdown: bool, match_quantity) -> WriteupReading:
    """Every claim of a write-up, in order.  ``match_quantity(node)`` names the model
    quantity an expression equals (for definitions), or None."""
    model = derivation.model
    glossary = Glossary.of(model)
    lines = _Lines(text)
    glossary.cdot_elementwise = _CDOT_ELEMENTWISE.search(text) is not None
    claims: list[Claim] = []
    skipped: list[int] = []
    aside: list[Claim] = []  # inline equations about no quantity the model has (δX = ∂L/∂X in prose)
    items: list = []  # in order: a Claim (a display that could not be cut), or [chain, env]
    for start, stop, env in displayed_spans(text, markdown, inline=True):
        try:
            tokens = tokenize(text, start, stop)
            _check_size(tokens)
            _check_depth(tokens)
            chains = chains_of(rows_of(tokens, None if env == INLINE else env))
        except ReadError as exc:
            if env == INLINE:
                continue  # inline math that is not an equation this reader knows is prose
            line, col = lines.line_col(exc.pos if exc.pos is not None else start)
            items.append(Claim(line, col, _snippet(text, start, stop), problem=_where(lines, exc, start)))
            continue
        for k, chain in enumerate(chains):
            previous = items[-1] if items and isinstance(items[-1], list) else None
            if k == 0 and previous is not None and not chain.members[0] and chain.relations:
                # "$\frac{∂E}{∂V} = …$" then, in the next display, "$= (ŷ − y) s^T$": a claim of its
                # own about the same left side
                chain = Chain([previous[0].members[0]] + chain.members[1:], chain.relations)
            items.append([chain, env])
    for item in _split_left_sides(items, text, glossary):
        if isinstance(item, Claim):
            claims.append(item)
            continue
        chain, env = item
        if not chain.members[0]:
            continue
        claim = _read_chain(chain, text, derivation, glossary, lines, match_quantity)
        if claim is SKIPPED:
            skipped.append(lines.line_col(chain.members[0][0].pos)[0])
        elif env == INLINE and claim is not None and claim.target is None:
            aside.append(claim)
        elif claim is not None and chain.relations[0] == "+=" and _accumulated(claims, claim):
            pass
        elif claim is not None and not any(c.text == claim.text and c.line == claim.line for c in claims):
            claims.append(claim)
    if not claims:  # nothing else was read: these are all there is, and must not pass unseen
        claims = aside
    vocabulary = {c.target.name for c in claims if c.target is not None}
    vocabulary |= {name for c in claims if c.rhs is not None for kind, name in references(c.rhs) if kind == "grad"}
    vocabulary |= {q for entries in glossary.aliases.values() for _, q in entries}
    notes = list(glossary.unread)
    if skipped:
        where = ", ".join(map(str, sorted(set(skipped))))
        many = len(skipped) != 1
        notes.append(f"skipped {len(skipped)} Jacobian equation{'s' if many else ''} ∂a/∂b that "
                     f"{'are' if many else 'is'} no claim about the loss (line{'s' if many else ''} {where})")
    if glossary.local_losses:
        declared = _SUM_OF_STEP_LOSSES.search(text)
        notes.append("∂L_t/∂X is read with L = Σ_t L_t, " + (
            f"as the write-up declares (line {lines.line_col(declared.start())[0]})" if declared else
            "which the write-up does not declare (assumed)"))
    if glossary.cdot_elementwise:
        found = _CDOT_ELEMENTWISE.search(text)
        notes.append(f"· is read as the elementwise product, as the write-up says (line "
                     f"{lines.line_col(found.start())[0] if found else '?'})")
    return WriteupReading(claims, glossary.spellings, vocabulary, notes, skipped)


#: A sentence that says · (``\cdot``) is the elementwise product.
_CDOT_ELEMENTWISE = re.compile(r"(\\cdot|·|\\bullet)[^.\n]{0,40}?(element[- ]?wise|hadamard|entry[- ]?wise|"
                               r"point[- ]?wise|component[- ]?wise)|(element[- ]?wise|hadamard|entry[- ]?wise|"
                               r"point[- ]?wise)[^.\n]{0,40}?(\\cdot|·)", re.I)
#: ``L = \sum_t L_t``, ``\mathcal{L} = \sum_{t=1}^{T} \mathcal{L}^{(t)}``, ``J = \frac{1}{T}\sum_t J(t)``.
_SUM_OF_STEP_LOSSES = re.compile(r"(\\mathcal\{[LJE]\}|\\ell|\b[LEJ])\s*(\(\s*\w*\s*\))?\s*=\s*"
                                 r"(\\frac\{1\}\{T\}\s*)?\\sum")
#: ``_read_chain``'s answer for an equation that is read and is no claim (a Jacobian ∂a/∂b).
SKIPPED = Claim(0, 0, "")


def _accumulated(claims: list[Claim], claim: Claim) -> bool:
    """``δz = A`` and later ``δz += B`` (the GRU post's accumulation): one claim, δz = A + B,
    kept where the first was written: the uses of z_t within one step, summed.  False when no
    earlier claim is about the same target, and for a parameter (``δW += …`` in a loop over
    the steps is the step's contribution, judged as a claim of its own)."""
    if claim.target is None or claim.target.step is None:
        return False
    for k in range(len(claims) - 1, -1, -1):
        first = claims[k]
        if first.target != claim.target:
            continue
        if first.problem is not None:
            return True  # the sum cannot be judged without its first part; that is reported already
        if claim.problem is not None or claim.rhs is None:
            claims[k] = replace(first, rhs=None, problem=claim.problem or "the accumulated term cannot be read")
            return True
        parts = list(first.rhs.terms if isinstance(first.rhs, Terms) else [first.rhs])
        parts += list(claim.rhs.terms if isinstance(claim.rhs, Terms) else [claim.rhs])
        claims[k] = replace(first, rhs=Terms(tuple(parts)), text=first.text + " += " + claim.text.split(" = ", 1)[-1],
                            assumed=tuple(dict.fromkeys(first.assumed + claim.assumed)))
        return True
    return False


def _split_left_sides(items: list, text: str, glossary: Glossary) -> list:
    """``Δ_{g_11} L = Δ_{g_12} L = Δ_{h_t} L``: a chain whose middle members are gradients
    of other quantities, as its left side is, holds one claim per left side, each about
    the last member."""
    out: list = []
    for item in items:
        if isinstance(item, Claim):
            out.append(item)
            continue
        chain, env = item
        members = chain.members
        if len(members) < 3 or any(r != "=" for r in chain.relations) or not all(members):
            out.append(item)
            continue
        sides = [_lone_gradient(m, text, glossary) for m in members[:-1]]
        if any(s is None for s in sides) or len(set(sides)) != len(sides):
            out.append(item)
            continue
        out.extend([Chain([m, members[-1]], ["="]), env] for m in members[:-1])
    return out


def _lone_gradient(tokens: list[Tok], text: str, glossary: Glossary):
    """The (name, step) of a member that is δ of one quantity and nothing else, or None."""
    if not _is_claim_side(tokens):
        return None
    try:
        node = ExpressionParser(tokens, text, glossary).whole()
    except ReadError:
        return None
    if isinstance(node, Entry):
        node = node.arg
    return (node.name, node.offset) if isinstance(node, Grad) else None


def _check_size(tokens: list[Tok]) -> None:
    """Refuse a display of more than MAX_TOKENS tokens, and a number of more than MAX_DIGITS digits."""
    if len(tokens) > MAX_TOKENS:
        raise ReadError(f"the display has {len(tokens):,} symbols; a display may hold at most {MAX_TOKENS:,}",
                        tokens[MAX_TOKENS].pos)
    for t in tokens:
        if t.kind == "num" and len(t.value) > MAX_DIGITS:
            raise ReadError(f"a number of {len(t.value):,} digits; a number may have at most {MAX_DIGITS}", t.pos)


def _check_depth(tokens: list[Tok]) -> None:
    """Refuse brackets nested deeper than any derivation needs (the parser recurses on them)."""
    depth = 0
    for t in tokens:
        if t.kind == "char" and t.value in "{([":
            depth += 1
            if depth > MAX_NESTING:
                raise ReadError(f"brackets nested more than {MAX_NESTING} deep", t.pos)
        elif t.kind == "char" and t.value in "})]":
            depth -= 1


def _read_chain(chain: Chain, text: str, derivation, glossary: Glossary, lines: _Lines, match_quantity) -> Claim | None:
    lhs = chain.members[0]
    if not lhs or len(chain.members) < 2:
        return None
    claim_like = _is_claim_side(lhs)
    if _is_jacobian_side(lhs, text, glossary):
        return SKIPPED
    glossary.used.clear()
    claim = _read_claim(chain, text, derivation, glossary, lines, match_quantity, claim_like)
    if claim is not None and claim is not SKIPPED and glossary.used:
        claim.assumed = tuple(_assumed(u, text, lines) for u in sorted(glossary.used))
    return claim


def _assumed(use: str, text: str, lines: _Lines) -> str:
    """How an ambiguous notation was read, and on what grounds, for a claim's message."""
    if use == "local":
        declared = _SUM_OF_STEP_LOSSES.search(text)
        where = (f"as the write-up declares (line {lines.line_col(declared.start())[0]})" if declared
                 else "which the write-up does not declare: assumed")
        if declared and declared.group(3):
            return f"∂L_t/∂X read as the derivative of the step-t loss, with L = (1/T) Σ_t L_t, {where}"
        return f"∂L_t/∂X read as the derivative of the step-t loss, with L = Σ_t L_t, {where}"
    if use == "later-steps":
        return ("a sum over the later steps i = t..T written out term by term for the sequences the checker "
                "uses (each term holds a value of step i, zero past T)")
    if use == "matrix-rows":
        return "row i of a matrix (P_i) summed over i read as the vector of a vector's gradient"
    if use == "row":
        return "a left side δx^T read as the gradient δx written as a row"
    if use == "last-step":
        return "in Σ_{j=1}^{t}, j is the running step and t the last step T (the error is that of the last step)"
    if use == "param-step":
        return "a parameter with the step t in its subscript (W_{oh,t}) read as its copy used at step t"
    if use == "signal-pattern":
        return ("an error signal δ_{x,t} the write-up did not define read as ∂L/∂ of the name its other "
                "δ_{g,t} follow (δ_{o,t} = ∂L/∂net_{o,t})")
    found = _CDOT_ELEMENTWISE.search(text)
    return ("· read as the elementwise product, as the write-up says"
            + (f" (line {lines.line_col(found.start())[0]})" if found else ""))


def _read_claim(chain: Chain, text: str, derivation, glossary: Glossary, lines: _Lines, match_quantity,
                claim_like: bool) -> Claim | None:
    model = derivation.model
    lhs = chain.members[0]
    line, col = lines.line_col(lhs[0].pos)
    members = chain.members
    if not claim_like and _looks_like_gradient(lhs):
        return Claim(line, col, _claim_text(text, lhs, members[-1]),
                     problem=_where(lines, ReadError("this looks like a gradient, but its left side is not read as δX "
                                                     "or ∂L/∂X", lhs[0].pos), lhs[0].pos))
    if chain.relations[0] in DEFINITIONS:
        defined = _definition(lhs, members[1], text, glossary, derivation, match_quantity, claim_like)
        if isinstance(defined, ReadError):
            return Claim(line, col, _claim_text(text, lhs, members[-1]), problem=_where(lines, defined, lhs[0].pos))
        if defined is True:
            members = [lhs] + members[2:]
    if not claim_like or len(members) < 2:
        return None
    last = members[-1]
    shown = _claim_text(text, lhs, last)
    row = False
    try:
        target_node = ExpressionParser(lhs, text, glossary).whole()
        if isinstance(target_node, Jacobian):
            return SKIPPED
        if isinstance(target_node, Transposed) and isinstance(target_node.arg, Grad):
            target_node, row = target_node.arg, True  # δ_{o,t}^T = …: the gradient written as a row
        target = claim_target(model, target_node)
    except ReadError as exc:
        return Claim(line, col, shown, problem=_where(lines, exc, lhs[0].pos))
    try:
        if not last:
            raise ReadError("the right side is empty", lhs[-1].end)
        rhs = ExpressionParser(last, text, glossary).whole()
        if isinstance(rhs, GradOfExpression):
            raise ReadError("∂L/∂(expression) on a right side: name the expression with ≜ first", rhs.pos)
    except ReadError as exc:
        return Claim(line, col, shown, target, problem=_where(lines, exc, last[0].pos if last else None))
    if row:
        rhs = _as_column(rhs, model) if model.quantities[target.name].is_vector else Transposed(rhs)
        glossary.used.add("row")
    elif model.quantities[target.name].is_vector and not target.indices and _sums_matrix_rows(rhs, model):
        # ∇_b = (1/N) Σ_i (P_i − Y_i): the rows of P summed (a row), as the vector b
        glossary.used.add("matrix-rows")
        claim = make_claim(model, line, col, shown, target_node, rhs)
        if claim.rhs is not None:
            claim.rhs = Transposed(claim.rhs)
        return claim
    return make_claim(model, line, col, shown, target_node, rhs)


def _holds_entry(node) -> bool:
    return any(isinstance(n, Entry) for _, n in positions(node))


def _sums_matrix_rows(node, model) -> bool:
    """Whether the tree sums rows of a matrix over an index (``Σ_i P_i``, P a matrix, i its rows)."""
    found = False
    if any(isinstance(n, Transposed) and _holds_entry(n) for _, n in positions(node)):
        return False  # written as a column already (Σ_i P_i^T)
    for _, n in positions(node):
        if isinstance(n, IndexSum):
            for _, m in positions(n.arg):
                if isinstance(m, Entry) and len(m.indices) == 1 and m.indices[0] == n.index \
                        and isinstance(m.arg, Val) and model.quantities[m.arg.name].kind == "matrix":
                    found = True
    return found


def _as_column(node, model):
    """The right side of ``δx^T = …`` as the column δx: a product written as a row (``δ^T W``)
    transposed; an elementwise product of vectors, whichever way each is written (``δ_t^T ∘
    tanh(c_t)``), and a chain rule or a lone δ (the same vector in either layout), as they are."""
    if isinstance(node, Terms):
        return Terms(tuple(_as_column(t, model) for t in node.terms))
    if isinstance(node, Neg):
        return Neg(_as_column(node.arg, model))
    if isinstance(node, Hadamard):
        return Hadamard(tuple(_unrowed(f, model) for f in node.factors))
    if isinstance(node, (ChainRule, Grad, Val)):
        return node
    if isinstance(node, Transposed) and _unrowed(node, model) is not node:
        return node.arg
    return Transposed(node)


def _unrowed(node, model):
    """A factor written transposed inside an elementwise product of vectors (``δ_t^T ∘ …``,
    ``f'(z)^T``), as the vector; a matrix's transpose stays."""
    if isinstance(node, Transposed) and not (isinstance(node.arg, (Grad, Val))
                                             and model.quantities[node.arg.name].kind == "matrix"):
        return node.arg
    return node


def _is_claim_side(tokens: list[Tok]) -> bool:
    """``δX``, ``(δX)_i``, ``\\frac{\\partial L}{\\partial X}``, ``∂L/∂X``, ``\\nabla_X L``,
    ``dX``, ``\\frac{dL}{dX}``: the left side of a claim."""
    toks = [t for t in tokens if not (t.kind == "char" and t.value in "([")]
    if not toks:
        return False
    first = toks[0]
    if first.kind == "cmd" and first.value in ("delta", "nabla", "partial"):
        return True
    if first.kind == "cmd" and first.value == "Delta" and len(toks) > 1 and toks[1].value == "_":  # Δ_W L
        return True
    if _is_d(first) and len(toks) > 1 and toks[1].pos == first.end:  # dW, written as one word
        return True
    return (first.kind == "cmd" and first.value in ("frac", "dfrac", "tfrac") and len(toks) > 2
            and toks[1].value == "{" and (toks[2].value == "partial" or _is_d(toks[2])))


def _is_d(t: Tok) -> bool:
    return (t.kind == "letter" and t.value == "d") or (t.kind == "text" and t.value.strip() == "d")


def _is_jacobian_side(lhs: list[Tok], text: str, glossary: Glossary) -> bool:
    """``\\frac{\\partial h_t}{\\partial h_{t-1}}``: an equation about a Jacobian, no claim."""
    if not (lhs and lhs[0].kind == "cmd" and lhs[0].value in ("frac", "dfrac", "tfrac")):
        return False
    try:
        return isinstance(ExpressionParser(lhs, text, glossary).whole(), Jacobian)
    except ReadError:
        return False


def _looks_like_gradient(lhs: list[Tok]) -> bool:
    """A left side with ∂ or ∇ in it (``\\frac{\\partial}{\\partial W} L``): meant as a claim."""
    return any(t.kind == "cmd" and t.value in ("partial", "nabla") for t in lhs)


def _definition(lhs, member, text, glossary: Glossary, derivation, match_quantity, claim_like: bool):
    """Register ``δy ≜ ∂L/∂(expr)`` or ``z = expr`` as the write-up's name for a quantity.

    True if ``member`` was a definition (and so not a claim's value), None if it is none, a
    ``ReadError`` if it defines something that is not a quantity of the model."""
    parser = ExpressionParser(lhs, text, glossary)
    signal = False
    if claim_like:
        if not (lhs[0].kind == "cmd" and lhs[0].value == "delta"):
            return None
        head = parser.take()
        signal = parser.is_char("_") or parser.is_char("^")
    try:
        atom = parser.signal_atom(head) if signal else parser.atom()
    except ReadError:
        return None  # the left side is reported, if it is a claim's, when it is read as one
    if atom is None or not parser.at_end():
        return None
    if not claim_like and _resolves(glossary, atom):
        return None
    try:
        value = ExpressionParser(member, text, glossary).whole()
    except ReadError:
        return None  # not a definition this reader understands; a claim's middle member need not be read
    if signal and isinstance(value, Grad):
        glossary.define_signal(atom, value.name)
        return True
    if claim_like:
        if not isinstance(value, GradOfExpression):
            return None
        value = value.expr
    elif isinstance(value, GradOfExpression):
        return None
    try:
        qname = match_quantity(anchor_steps(derivation.model, value, STEP_T))
    except (ReadError, ShapeMismatch):
        qname = None
    if qname is None:
        if claim_like:
            return ReadError("the expression this defines is not a quantity of the model", member[0].pos)
        return None
    if signal:
        glossary.define_signal(atom, qname)
        return True
    glossary.define(atom, qname)
    return True if claim_like else None


def _resolves(glossary: Glossary, atom: Atom) -> bool:
    try:
        glossary.resolve(atom)
    except ReadError:
        return False
    return True


def _claim_text(text: str, lhs: list[Tok], rhs: list[Tok]) -> str:
    left = " ".join(text[lhs[0].pos:lhs[-1].end].split())
    if not rhs:
        return left
    right = " ".join(text[rhs[0].pos:rhs[-1].end].split())
    return f"{left} = {right}"


def _snippet(text: str, start: int, stop: int) -> str:
    body = " ".join(text[start:stop].split())
    return body if len(body) <= 80 else body[:77] + "..."


def _where(lines: _Lines, exc: ReadError, fallback: int | None) -> str:
    pos = exc.pos if exc.pos is not None else fallback
    if pos is None:
        return exc.message
    line, col = lines.line_col(pos)
    return f"line {line}, column {col}: {exc.message}"
