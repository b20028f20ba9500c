"""Judging a hand derivation claim by claim, and saying what is wrong with a wrong claim.

Each claim is compared with the derivation: symbolically where SymPy can decide it (both
sides brought to one normal form), and always numerically, at every step, at several
random sizes where all dims differ (so a claim that only fits when n_h = n_o fails).  A
right side that depends on t, claimed for a parameter, is compared with the parameter's
step-t term (verdict ``per-step``).

A wrong claim is diagnosed by trying the usual slips, cheapest explanation first: single
repairs of the claim (flip a sign, transpose a factor, drop a term, scale one term by the
factor read off the values, put in a missing activation derivative or recurrent term, change
a factor, move the weights of an outer product onto the error signal, shift every matrix
power of a sum by one) and single changes of what it is compared with (the model with
backpropagation through time cut, Σ_t of the claim, a constant factor or a dim's); then a
transpose or a sign together with one more.  The slips of the
cheapest repair that makes the claim right are the diagnosis.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import islice

import numpy as np
import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose

from ..ad.derive import Derivation, computed_states, state_adjoint
from ..ad.simplify import tidy
from ..ir.expr import Apply, At, AtEnd, AtStep, Delta, TimeSum, ZeroMatrix, add, at_step, same_shape, shift
from ..ops import ELEMENTWISE, activation_derivative
from ..render.printing import LatexPrinter, step_text
from . import tree as C
from .probe import probes
from .reading import Reading

VERDICTS = ("correct", "per-step", "incorrect", "unreadable")
#: Diagnosis codes, most telling first: when two repairs of the same cost explain a claim,
#: the one whose slips come first here is reported.
CODES = ("sign", "transpose", "missing-recurrent-term", "missing-sum-over-time", "missing-activation-derivative",
         "extra-term", "wrong-factor", "shape")
RTOL = 1e-7
#: Bounds on the repairs tried for one claim, so a very long claim stays quick to judge.
MAX_SINGLE_REPAIRS = 400
MAX_PAIRED_REPAIRS = 3000


@dataclass
class Verdict:
    """The judgement of one claim, as ``--json`` reports it."""

    line: int
    text: str
    target: str
    verdict: str
    diagnosis: list[str] = field(default_factory=list)
    expected: str = ""
    message: str = ""
    col: int = 0
    lhs: str = ""  # the target in LaTeX, for the correct form

    def as_dict(self) -> dict:
        return {"line": self.line, "text": self.text, "target": self.target, "verdict": self.verdict,
                "diagnosis": list(self.diagnosis), "expected": self.expected, "message": self.message}


@dataclass
class Report:
    model: str
    path: str
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)  # what the reader assumed or skipped, once each
    skipped: int = 0  # equations read and set aside as no claims (Jacobians)

    @property
    def summary(self) -> dict[str, int]:
        return {v: sum(1 for x in self.verdicts if x.verdict == v) for v in VERDICTS}

    @property
    def all_correct(self) -> bool:
        return all(v.verdict == "correct" for v in self.verdicts)

    def json(self) -> str:
        return json.dumps({"model": self.model, "claims": [v.as_dict() for v in self.verdicts],
                           "summary": self.summary, "notes": list(self.notes), "skipped": self.skipped},
                          indent=2, ensure_ascii=False)

    def text(self) -> str:
        counts = ", ".join(f"{n} {v}" for v, n in self.summary.items())
        lines = [f"{self.model}: {len(self.verdicts)} claim{'s' if len(self.verdicts) != 1 else ''} in "
                 f"{self.path}: {counts}"]
        if not self.verdicts:
            lines.append("no claims found: a claim is an equation whose left side is δX or ∂L/∂X "
                         "(in a .claims file, a line d(X) = ...)")
        lines.extend(f"note: {note}" for note in self.notes)
        for v in self.verdicts:
            lines.append("")
            lines.append(f"line {v.line}, column {v.col}: {v.text}")
            label = v.verdict + (f" ({', '.join(v.diagnosis)})" if v.diagnosis else "")
            lines.append(f"  {label}: {v.message}")
            if v.expected and v.verdict != "correct":
                lines.append(f"  correct form: {v.lhs} = {v.expected}")
        return "\n".join(lines) + "\n"


def verify(d: Derivation, reading: Reading) -> Report:
    """Judge every claim of ``reading`` against the derivation ``d``."""
    judge = Judge(d, reading)
    return Report(d.model.name, reading.path, [judge.judge(c) for c in reading.claims], list(reading.notes),
                  len(reading.skipped))


# ---------------------------------------------------------------------------------------
# Printing in the write-up's notation.


class WriteupPrinter(LatexPrinter):
    """LaTeX in the write-up's own spelling of each quantity (the model's where it has none)."""

    def __init__(self, model, spellings: dict, index: str | None = None):
        super().__init__(model)
        self.spellings = spellings
        if index is not None:
            self.index = index

    def name(self, name, step):
        spelling = self.spellings.get(name)
        return spelling.latex(step) if spelling is not None else super().name(name, step)

    def entry(self, e, indices: tuple) -> str:
        """One entry of ``e``: ``δh_{t,i} o_{t,j}`` for an outer product, else ``[e]_{i,j}``."""
        if isinstance(e, TimeSum):
            return self.timesum(self.entry(e.arg, indices))
        if len(indices) == 2 and isinstance(e, MatMul) and len(e.args) == 2 and isinstance(e.args[1], Transpose):
            left, right = self._leaf_entry(e.args[0], indices[0]), self._leaf_entry(e.args[1].arg, indices[1])
            if left and right:
                return f"{left} {right}"
        if len(indices) == 1 and (leaf := self._leaf_entry(e, indices[0])):
            return leaf
        return r"\left[" + self.doprint(e) + r"\right]_{" + ",".join(indices) + "}"

    def _leaf_entry(self, e, index: str) -> str | None:
        base, step = (e.base, e.offset) if isinstance(e, At) else (e, None)
        delta = isinstance(base, Delta)
        if delta:
            base = base.base
        if not isinstance(base, MatrixSymbol):
            return None
        where = index if step is None else f"{step_text(step, self.index)},{index}"
        text = self.name(base.name, where)
        return self.delta(text) if delta else text


# ---------------------------------------------------------------------------------------
# What a claim is compared with.


@dataclass
class Truth:
    """The true value of a claim's target, in the sense the claim makes."""

    name: str
    kind: str  # "sequence", "static", "per-step" or "local" (∂L_k/∂X, the loss of one step)
    expr: object  # for printing and for the symbolic check
    shape: tuple
    step: C.Step | None = None
    # fixed steps where the adjoint receives more than its generic form (h_T read by a static
    # equation): a claim at step t is compared at the other steps, δh_t for t < T
    fixed: tuple = ()
    expr_symbol: object = None  # the quantity's symbol, for δ at a computed state's step (δh_0)
    by_length: bool = False  # ∂L_t/∂X with L = (1/T) Σ_t L_t: T times the true value
    loss: C.Step | None = None  # for "local": the step of the loss, relative to the target's (or t)
    param: bool = False  # for "local": the target is a parameter

    def loss_step(self, probe, key) -> int:
        """The step k of L_k for the value at ``key``."""
        loss = self.loss or C.STEP_T
        if loss.base == "":
            return loss.offset
        if loss.base == "T":
            return (probe.T or 0) + loss.offset
        return (key or 0) + loss.offset

    def evaluator(self, probe, world: str, key):
        """Where a claim's value at ``key`` is computed: the world of L_k for a local truth."""
        if self.kind == "local":
            return probe.local(self.loss_step(probe, key))
        return getattr(probe, world)

    def keys(self, probe) -> list:
        """The steps at which values are compared (None: a static value)."""
        step = self.step
        if self.kind == "local" and (self.param or step is None):
            return [None] if (self.loss or C.STEP_T).base != "t" or not self.param else probe.steps
        if self.kind == "static":
            return [None]
        if self.kind == "per-step" and step is not None and step.base == "":
            return [step.offset]
        if self.kind == "per-step" or step is None or step.base == "t":
            steps = probe.steps
            if self.kind == "sequence" and step is not None and step.offset < 0:
                # δh_{t-1} = (step t's values): what cell t passes back, for t = 1..T, so h_{t-1}
                # up to step T - 1 (at T there is no step T + 1 to pass anything back)
                steps = [s for s in steps if s - step.offset <= (probe.T or 0)]
            if self.kind == "sequence" and self.fixed:
                skip = {probe.T + k if where == "end" else k for where, k in self.fixed}
                return [t for t in steps if t - (step.offset if step is not None else 0) not in skip]
            return steps
        at = probe.T + step.offset if step.base == "T" else step.offset
        return [at]

    def values(self, probe, world: str) -> dict:
        found = self._values(probe, world)
        if self.by_length and probe.T:
            return {k: None if v is None else v * probe.T for k, v in found.items()}
        return found

    def _values(self, probe, world: str) -> dict:
        if self.kind == "local":
            out = {}
            for k in self.keys(probe):
                values = self.evaluator(probe, world, k).values
                found = values.gradients[self.name] if self.param else values.adjoints[self.name]
                out[k] = np.asarray(found[k] if isinstance(found, dict) else found, dtype=float)
            return out
        ev = getattr(probe, world)
        if self.kind == "sequence":
            # lookup: δh_0 of a state computed from static values, as well as δh_t within 1..T
            base = Delta(self.expr_symbol) if self.expr_symbol is not None else None
            return {s: np.asarray(ev.values.adjoints[self.name][s] if base is None or 1 <= s <= probe.T
                                  else ev.lookup(base, s), dtype=float) for s in self.keys(probe)}
        if self.kind == "per-step":
            return {t: ev.value(self.expr, t) for t in self.keys(probe)}
        store = ev.values.gradients if self.name in ev.values.gradients else ev.values.adjoints
        return {None: np.asarray(store[self.name], dtype=float)}


@dataclass(frozen=True)
class Repair:
    """A changed claim, the slips it corrects, and a note for each.

    A note is a template and the claim pieces it names (``("{} needs a transpose", W)``),
    printed only for the repair that is reported: most candidates never are."""

    node: object
    kinds: tuple = ()
    notes: tuple = ()

    def then(self, kind: str, node, template: str, *pieces) -> Repair:
        return Repair(node, self.kinds + (kind,), self.notes + ((template, pieces),))


class Judge:
    """Judges the claims of one file against one derivation; holds what all claims share
    (the probes, the printer in the file's notation, the model's activation derivatives)."""

    def __init__(self, d: Derivation, reading: Reading):
        self.d = d
        self.model = d.model
        self.reading = reading
        self.probes = probes(d)
        self.printer = WriteupPrinter(self.model, reading.spellings)
        self.distributions = frozenset(q.name for q in self.model.data if q.distribution)
        self.recurrent = any(t.offset > 0 for a in d.adjoints.values() for t in a.closed_terms)
        self.factors = activation_factors(self.model)
        #: Adjoints a reader knows by name: the model's own quantities, and the pre-activations
        #: symderiv named that the file itself uses.
        self.known = {q.name for q in self.model.quantities.values() if not q.auxiliary} | reading.vocabulary
        self.folds = _forward_definitions(self.model)
        self.unspelled = {q.name: q for q in self.model.quantities.values()
                          if q.auxiliary and q.name not in reading.spellings}

    # --- one claim ----------------------------------------------------------------------

    def judge(self, claim: C.Claim) -> Verdict:
        base = Verdict(claim.line, claim.text, self._label(claim.target), "unreadable", col=claim.col)
        target = claim.target
        if target is not None:
            base.lhs = self._lhs(target)
            base.expected = self.expected(target, claim.rhs)
        if claim.problem is not None or target is None:  # the readers give a claim without a target a problem
            base.message = claim.problem if claim.problem is not None else "the claim names no target"
            return base
        stepwise = C.depends_on_step(claim.rhs)
        truth = self.truth(target, stepwise, claim.rhs)
        if truth is not None and target.scaled:
            truth = replace(truth, by_length=True)
        if truth is None:
            base.message = (f"step {(target.step or C.STEP_T).text()} is outside the sequences this checker uses "
                            f"(t = 1..{min(p.T or 0 for p in self.probes)}); write the claim at a general step t")
            return base
        check = _Check(self, truth, C.ClaimExpressionBuilder(self.d, stepwise, self.math))
        assumed = "".join(f"({a[0].upper()}{a[1:]}.) " for a in claim.assumed)
        if check.agrees(Repair(claim.rhs)):
            # ∂L_t/∂W is step t's term of the loss-term decomposition ∂L/∂W = Σ_t ∂L_t/∂W
            per_step = truth.kind == "per-step" or (truth.kind == "local" and truth.param)
            base.verdict = "per-step" if per_step else "correct"
            base.message = assumed + self._agreement(check, claim.rhs, truth)
            return base
        base.message = assumed
        base.verdict = "incorrect"
        found = check.diagnose(claim.rhs)
        if found is not None:
            base.diagnosis = sorted(set(found.kinds), key=CODES.index)
            notes = (template.format(*map(check.show, pieces)) if pieces else template
                     for template, pieces in found.notes)
            base.message += _sentence("; ".join(dict.fromkeys(notes)))
            return base
        mismatch = check.misfit(claim.rhs)
        if mismatch is not None:
            base.diagnosis = ["shape"]
            base.message += _sentence(f"the sizes do not fit ({mismatch})")
        else:
            base.message += ("It differs from the true value, and no usual slip (sign, transpose, a missing or "
                             "extra term or factor) explains the difference.")
        return base

    def _agreement(self, check: _Check, rhs, truth: Truth) -> str:
        if truth.kind == "local":
            loss = (truth.loss or C.STEP_T).text()
            return (f"Equal to the derivative of L_{loss}, the loss of step {loss} alone (numerically at "
                    f"{len(self.probes)} random sizes); the gradient of the whole loss sums these over the steps"
                    + (", so this is a per-step term." if truth.param else "."))
        how = "symbolically and " if check.symbolically_equal(rhs) else ""
        sizes = f"{how}numerically at {len(self.probes)} random sizes"
        if truth.kind == "per-step":
            step = truth.step.text() if truth.step is not None else "t"
            return f"The contribution of step {step} ({sizes}); the gradient is its sum over t = 1..T."
        return f"Equal to the true value ({sizes})."

    def math(self, e, step: C.Step | None = None) -> str:
        """An expression (written at step t, or moved to ``step``) as inline LaTeX for a message."""
        e, printer = self._placed(self.readable(e), step)
        return "$" + printer.doprint(e) + "$"

    def readable(self, e):
        """``e`` with the pre-activations symderiv named, and the write-up did not, written out
        (𝟙[W x + b > 0] rather than 𝟙[a_h > 0])."""
        unspelled = self.unspelled
        if not unspelled:
            return e

        def written_out(node):
            if isinstance(node, Delta) or (isinstance(node, At) and isinstance(node.base, Delta)):
                return node  # δa_h has no other name
            if isinstance(node, At) and node.base.name in unspelled:
                return shift(unspelled[node.base.name].expr, node.offset)
            if isinstance(node, MatrixSymbol):
                return unspelled[node.name].expr if node.name in unspelled else node
            if not getattr(node, "args", ()):
                return node
            args = [written_out(a) for a in node.args]
            return node if all(a is b for a, b in zip(args, node.args)) else node.func(*args)

        return written_out(e)

    def _label(self, target: C.Target | None) -> str:
        if target is None:
            return ""
        return target.label(self.model.time_index or "t", self._length)

    @property
    def _length(self) -> str:
        return self.model.length.name if self.model.length is not None else "T"

    def _lhs(self, target: C.Target) -> str:
        where = [] if target.step is None else [target.step.text(self.printer.index, self._length)]
        return self.printer.delta(self.printer.name(target.name, ",".join(where + list(target.indices)) or None))

    # --- the true value -----------------------------------------------------------------

    def truth(self, target: C.Target, stepwise: bool, rhs=None) -> Truth | None:
        q = self.model.quantities[target.name]
        shape = q.shape
        if target.local is not None and self.model.has_time:
            return self._local_truth(target, q)
        if q.role == "param":
            g = self.d.gradients[target.name]
            if stepwise and g.per_step is not None:
                return Truth(target.name, "per-step", g.per_step, shape)
            return Truth(target.name, "static", g.expr, shape)
        adj = self.d.adjoints[target.name]
        if not q.sequence:
            return Truth(target.name, "static", adj.closed, shape)
        step = target.step if target.step is not None else C.STEP_T  # claim_target gives every sequence one
        # (a sequence quantity means the model has time: the probes have T steps)
        computed = {key.step for n, key, _ in computed_states(self.model)
                    if n == target.name and isinstance(key, AtStep)}
        shortest = min(p.T or 0 for p in self.probes)
        if step.base == "" and not 1 <= step.offset <= shortest and step.offset not in computed:
            return None
        fixed = tuple(at if isinstance(at, tuple) else ("start", at)
                      for at in map(adj.fixed_step, adj.closed_fixed))
        if step.base == "" and step.offset in computed:  # δh_0 of a computed state
            key = AtStep(Delta(q.symbol), step.offset)
            return Truth(target.name, "sequence", state_adjoint(adj, key), shape, step, (), q.symbol)
        return Truth(target.name, "sequence", adj.closed, shape, step, fixed)

    def _local_truth(self, target: C.Target, q) -> Truth | None:
        """∂L_k/∂X, the derivative of the loss of one step k (``\\frac{\\partial L_t}{\\partial X}``)."""
        m = re.fullmatch(r"(\d+)|([A-Za-z]+)([+-]\d+)?", target.local or "")
        if m is None:
            return None
        if m.group(1):
            loss = C.Step("", int(m.group(1)))
        else:
            base = "T" if m.group(2) == self._length else "t"
            loss = C.Step(base, int(m.group(3) or 0))
        if q.role == "param":
            g = self.d.gradients[target.name]
            return Truth(target.name, "local", g.expr, q.shape, None, loss=loss, param=True)
        if not q.sequence:
            return Truth(target.name, "local", self.d.adjoints[target.name].closed, q.shape, None, loss=loss,
                         param=False)
        step = target.step or C.STEP_T
        if step.base == "" and not 1 <= step.offset <= min(p.T or 0 for p in self.probes):
            return None
        if loss.base == step.base and loss.base:  # ∂L_t/∂h_{t-1}: the loss one step after the target's
            loss = C.Step("t", loss.offset - step.offset)
        return Truth(target.name, "local", self.d.adjoints[target.name].closed, q.shape, step, loss=loss)

    def expected(self, target: C.Target, rhs=None) -> str:
        """The true value in the write-up's notation, in terms of adjoints its reader knows.

        A parameter's step-t term is often an adjoint of its own (δb_h is Σ_t δy_{h,t}); a
        claim that does not use that adjoint gets it written out, which says more."""
        q = self.model.quantities[target.name]
        g = self.d.gradients.get(target.name)
        if q.role == "param" and g is not None and g.per_step is not None and target.local is not None \
                and target.local.isdigit() and rhs is not None and _fixed_steps(rhs):
            e = at_step(g.per_step, int(target.local))  # ∂E_4/∂V: the term of step 4
        elif q.role == "param":
            e = self.d.gradients[target.name].expr
        elif q.sequence and target.step is not None and target.step.base == "T":  # terms through steps after T vanish
            adj = self.d.adjoints[target.name]
            key = AtEnd(Delta(q.symbol), target.step.offset)
            terms = [t.expr for t in adj.closed_terms if t.offset + target.step.offset <= 0]
            e = adj.at_fixed(key) if key in adj.closed_fixed else add(*terms) if terms else ZeroMatrix(*q.shape)
        elif q.sequence and target.step is not None and target.step.base == "" and any(
                n == target.name and key == AtStep(Delta(q.symbol), target.step.offset)
                for n, key, _ in computed_states(self.model)):  # δh_0 of a computed state, as it is
            e = state_adjoint(self.d.adjoints[target.name], AtStep(Delta(q.symbol), target.step.offset))
            known = self.known | {target.name}
            e = self.readable(tidy(self._in_vocabulary(e, known), self.distributions))
            return self.printer.entry(e, target.indices) if target.indices else self.printer.doprint(e)
        else:
            e = self.d.adjoints[target.name].closed
        known = self.known | {target.name}
        used = {n for kind, n in C.references(rhs)} if rhs is not None else set()
        stand_in = self._stand_in(target.name)
        if stand_in is not None and stand_in not in used:
            known = known - {stand_in}
        e = self.readable(tidy(self._in_vocabulary(e, known), self.distributions))
        e, printer = self._placed(e, target.step)
        return printer.entry(e, target.indices) if target.indices else printer.doprint(e)

    def _placed(self, e, step: C.Step | None):
        """``e``, written at step t, moved to ``step``; and the printer that spells that step."""
        if step is None or step == C.STEP_T:
            return e, self.printer
        if step.base == "":
            return at_step(e, step.offset), self.printer
        if step.base == "T":
            return shift(e, step.offset), WriteupPrinter(self.model, self.reading.spellings, index=self._length)
        return shift(e, step.offset), self.printer

    def _stand_in(self, name: str) -> str | None:
        """The adjoint that is a parameter's whole gradient or step-t term (y_h for b_h), if any."""
        g = self.d.gradients.get(name)
        if g is None:
            return None
        if isinstance(g.per_step, At) and isinstance(g.per_step.base, Delta) and g.per_step.offset == 0:
            return g.per_step.base.name
        if g.per_step is None and isinstance(g.static, Delta) and not g.initial:
            return g.static.name
        return None

    def _in_vocabulary(self, e, known: set):
        """Replace named adjoints not in ``known`` by their closed forms (a few levels)."""
        for _ in range(4):
            mapping = {}
            for node in sp.preorder_traversal(e):
                name, k = _adjoint_ref(node, self.model)
                if name is None or name in known or name not in self.d.adjoints or not self.d.adjoints[name].named:
                    continue
                closed = self.d.adjoints[name].closed
                mapping[node] = shift(closed, k) if k is not None else closed
            if not mapping:
                return e
            e = e.xreplace(mapping)
        return e

    # --- normal forms for the symbolic check --------------------------------------------

    def normal(self, e):
        """Inlined adjoints substituted, forward definitions folded to names, tidied, sorted."""
        for _ in range(6):
            mapping = {}
            for node in sp.preorder_traversal(e):
                name, k = _adjoint_ref(node, self.model)
                if name is not None and name in self.d.adjoints and not self.d.adjoints[name].named:
                    closed = self.d.adjoints[name].closed
                    mapping[node] = shift(closed, k) if k is not None else closed
            if not mapping:
                break
            e = e.xreplace(mapping)
        e = canonical(tidy(e, self.distributions))
        for _ in range(8):
            folded = canonical(e.xreplace(self.folds))
            if folded == e:
                break
            e = folded
        return e


class _Check:
    """Compares one claim (and its repairs) with its true value, at every probe."""

    def __init__(self, judge: Judge, truth: Truth, builder: C.ClaimExpressionBuilder):
        self.j = judge
        self.truth = truth
        self.builder = builder
        self._built: dict = {}
        self._values: dict = {}

    # --- numbers ------------------------------------------------------------------------

    def expression(self, node):
        """The claim side as SymPy, with the target's shape; None if it does not fit."""
        if node not in self._built:
            try:
                e = self.builder.expression(node, self.truth.shape)
                self._built[node] = e if same_shape(e, _Shaped(self.truth.shape)) else None
            except C.ShapeMismatch:
                self._built[node] = None
        return self._built[node]

    def misfit(self, node) -> str | None:
        """Why the claim does not fit together, or None if it does."""
        try:
            e = self.builder.expression(node, self.truth.shape)
        except C.ShapeMismatch as exc:
            return str(exc)
        if not same_shape(e, _Shaped(self.truth.shape)):
            return (f"the right side is {C.shape_text(e.shape)} but δ{self.truth.name} is "
                    f"{C.shape_text(self.truth.shape)}")
        return None

    def values(self, node, probe_index: int, world: str, over_time: bool = False):
        """The claim's values at the truth's steps (None where it cannot be evaluated)."""
        key = (node, probe_index, world, over_time)
        if key not in self._values:
            self._values[key] = self._evaluate(node, self.j.probes[probe_index], world, over_time)
        return self._values[key]

    def _evaluate(self, node, probe, world: str, over_time: bool):
        e = self.expression(node)
        if e is None:
            return None
        ev = getattr(probe, world)
        if over_time:
            return {None: _sum_or_none([ev.value(e, t) for t in probe.steps])}
        keys = self.truth.keys(probe)
        if keys == [None] and C.depends_on_step(node):
            return None  # a value that changes with t cannot be a static gradient
        return {k: self.truth.evaluator(probe, world, k).value(e, k) for k in keys}

    def agrees(self, repair: Repair, lens: str = "exact") -> bool:
        """Whether the repaired claim equals the truth, seen through ``lens``."""
        if lens == "recurrent" and not self.j.recurrent:
            return False
        if self.truth.kind == "local" and lens in ("recurrent", "sum"):
            return False  # the loss of one step: no later step to miss, no sum to make
        if lens == "sum" and not (self.truth.kind == "static" and C.depends_on_step(repair.node)
                                  and self.j.model.has_time):
            return False
        world = "truncated" if lens in ("recurrent", "local") else "exact"
        pairs = []
        differs = False
        for i, probe in enumerate(self.j.probes):
            mine = self.values(repair.node, i, world, over_time=lens == "sum")
            if mine is None:
                return False
            truth = self.truth.values(probe, world)
            for k, want in truth.items():
                got = mine.get(k)
                if got is None or want is None or got.shape != want.shape:
                    return False
                if lens in ("times-T", "over-T") and probe.T:  # a mean over steps where the loss is a sum
                    want = want * probe.T if lens == "times-T" else want / probe.T
                if lens != "factor" and not _close(got, want):
                    return False
                pairs.append((i, got, want))
            if lens == "recurrent" and not all(
                    _close(w, x) for w, x in zip(truth.values(), self.truth.values(probe, "exact").values())):
                differs = True
        if lens == "recurrent" and not differs:
            return False  # no path through a later step here: nothing can be missing
        return lens != "factor" or self.factor(pairs, length=False) is not None

    def factor(self, pairs, length: bool = True) -> tuple[str, object | None] | None:
        """The factor c with got = c · want at every probe, as (its text, a claim node): a
        constant other than 0 and ±1, or a simple fraction times or over a dim (or T, with
        ``length``): the 1/N of a mean.  ``pairs``: (probe index, got, want); None if there is
        none.  The node is None for a constant that is no simple fraction (no repair writes it)."""
        cs = []
        for i in range(len(self.j.probes)):
            c = _proportion([(g, w) for k, g, w in pairs if k == i])
            if c is None:
                return None
            cs.append(c)
        if _all_close(cs):
            c = cs[0]
            if min(abs(c), abs(c - 1), abs(c + 1)) < 1e-6:
                return None
            nice = Fraction(c).limit_denominator(12)
            return _number_text(c), C.Num(nice) if abs(float(nice) - c) < RTOL * max(1.0, abs(c)) else None
        for name, values, size in self._sizes(length):
            for over in (False, True):
                ks = [c * v if over else c / v for c, v in zip(cs, values)]
                k = Fraction(ks[0]).limit_denominator(12)
                if not (_all_close(ks) and k != 0 and abs(float(k) - ks[0]) < RTOL * max(1.0, abs(ks[0]))):
                    continue
                number = C.Num(k)
                if over:  # 1/N, 2/N, 1/(2 N)
                    text = f"{k.numerator}/{name}" if k.denominator == 1 else f"{k.numerator}/({k.denominator} {name})"
                    return text, C.Quotient(number, size)
                # N, −N, 2 N, N/2, 3 N/2
                lead = {1: "", -1: "-"}.get(k.numerator, f"{k.numerator} ")
                text = lead + name + (f"/{k.denominator}" if k.denominator != 1 else "")
                return text, C.Product((number, size))
        return None

    def _sizes(self, length: bool) -> list[tuple[str, list, object]]:
        """(name, its value at each probe, its claim node) of every dim, and of T with ``length``."""
        model = self.j.model
        out: list[tuple[str, list, object]] = [(name, [p.dims[name] for p in self.j.probes], C.Given(symbol))
                                               for name, symbol in model.dims.items()]
        if length and model.length is not None:
            out.append((model.length.name, [p.T or 0 for p in self.j.probes], C.Given(model.length)))
        return out

    # --- the diagnosis ------------------------------------------------------------------

    def diagnose(self, rhs) -> Repair | None:
        """The cheapest repair that makes the claim right, or None."""
        start = Repair(rhs)
        singles = list(islice(self.repairs(start), MAX_SINGLE_REPAIRS))
        pairs = list(islice((second for first in singles if first.kinds[0] in ("transpose", "sign")
                             for second in self.repairs(first) if second.node != rhs), MAX_PAIRED_REPAIRS))
        lenses = ("recurrent", "sum", "factor") + (("times-T", "over-T") if self.j.model.has_time else ())
        levels = [
            [(start, lens) for lens in lenses] + [(r, "exact") for r in singles],
            [(r, lens) for r in singles for lens in lenses] + [(r, "exact") for r in pairs],
            [(r, lens) for r in pairs for lens in lenses],
        ]
        for level in levels:
            fixes = [self._with_lens(r, lens) for r, lens in level if self.agrees(r, lens)]
            if fixes:
                return min(fixes, key=lambda r: sorted(CODES.index(k) for k in r.kinds))
        return None

    def _with_lens(self, repair: Repair, lens: str) -> Repair:
        if lens == "exact":
            return repair
        if lens == "recurrent":
            return repair.then("missing-recurrent-term", repair.node, self._recurrent_note())
        if lens == "sum":
            return repair.then("missing-sum-over-time", repair.node,
                               "the gradient sums this over t = 1..T (Σ_t is missing)")
        if lens in ("times-T", "over-T"):
            return repair.then("wrong-factor", repair.node, ("it is T" if lens == "times-T" else "it is 1/T")
                               + " times the true value (a mean over the steps where the loss is their sum, or "
                                 "the other way round)")
        pairs = [(i, self.values(repair.node, i, "exact")[k], v) for i, p in enumerate(self.j.probes)
                 for k, v in self.truth.values(p, "exact").items()]
        found = self.factor(pairs, length=False)
        if found is None:  # agrees(repair, "factor") found the factor on these very values
            raise RuntimeError("internal error: no constant factor where one was found")
        return repair.then("wrong-factor", repair.node, f"it is {found[0]} times the true value")

    def _recurrent_note(self) -> str:
        """Which terms through later steps are missing: the target's own, or the one recurrent adjoint's."""
        d = self.j.d
        recurrent = [a for a in d.backward_order if any(t.offset > 0 for t in a.closed_terms)]
        if self.truth.kind == "sequence" and self.truth.name in {a.name for a in recurrent}:
            owner = d.adjoints[self.truth.name]
        elif len(recurrent) == 1:
            owner = recurrent[0]
        else:
            return "the paths through later steps (backpropagation through time) are missing"
        step = self.truth.step if owner.name == self.truth.name else None
        terms = " + ".join(self.j.math(t.expr, step) for t in owner.closed_terms if t.offset > 0)
        where = "" if owner.name == self.truth.name else f" of {self.j.math(owner.symbol)}"
        return f"the path through the next step is missing (the term {terms}{where})"

    def repairs(self, r: Repair):
        """Every single slip-repair of a claim."""
        yield from self._signs(r)
        yield from self._transposes(r)
        yield from self._extra_terms(r)
        yield from self._term_factors(r)
        yield from self._activation_derivatives(r)
        yield from self._recurrent_terms(r)
        yield from self._jacobian_variables(r)
        yield from self._summands_at_a_fixed_step(r)
        yield from self._other_factors(r)
        # after the others: a long claim's bound on the repairs tried (MAX_SINGLE_REPAIRS) cuts these first
        yield from self._weights_on_the_other_side(r)
        yield from self._powers_off_by_one(r)

    def show(self, node) -> str:
        """A claim piece as inline LaTeX, for a note."""
        try:
            return self.j.math(self.builder.expression(node))
        except C.ShapeMismatch:
            return "a factor"

    def _signs(self, r: Repair):
        node = r.node
        yield r.then("sign", node.arg if isinstance(node, C.Neg) else C.Neg(node), "the sign is wrong")
        for path, n in C.positions(node):
            if isinstance(n, C.Terms) and len(n.terms) > 1:
                for i, term in enumerate(n.terms):
                    flipped = term.arg if isinstance(term, C.Neg) else C.Neg(term)
                    terms = n.terms[:i] + (flipped,) + n.terms[i + 1:]
                    yield r.then("sign", C.replace_at(node, path, C.Terms(terms)), "the sign of {} is wrong", term)

    def _transposes(self, r: Repair):
        node = r.node
        yield r.then("transpose", _toggle(node), "the whole right side needs transposing")
        for path, n in C.positions(node):
            if not isinstance(n, C.Product):
                continue
            for i, f in enumerate(n.factors):
                if isinstance(f, (C.Num, C.Ones)) or (isinstance(f, C.Transposed) and isinstance(f.arg, C.Ones)):
                    continue
                changed = C.replace_at(node, path + (i,), _toggle(f))
                if isinstance(f, C.Transposed):
                    yield r.then("transpose", changed, "{} should not be transposed", f.arg)
                else:
                    yield r.then("transpose", changed, "{} needs a transpose", f)

    def _weights_on_the_other_side(self, r: Repair):
        """``δs_4 (s_3 + W s_2 + W W s_1)``: an outer product whose weights act on the wrong
        vector.  The error signal u goes back through the transposed weights, Σ_k (M_kᵀ u) v_kᵀ,
        where the claim applies them to the other vector, u (Σ_k M_k v_k)ᵀ (in BPTT: W applied
        to the earlier state instead of Wᵀ to the error).  Where the claim writes the two
        vectors side by side with no transpose, the outer product is a ``transpose`` more
        (``(ŷ − y) s``, as a transpose alone repairs it), or ``shape`` where its weights cannot
        multiply the vector at all (``W x_3``, W of n_s × n_s and x of n_x); an error signal
        written as a row, ``(ŷ − y) V`` for Vᵀ(ŷ − y), is a ``transpose`` more too.  Never a
        reading of the claim: only a repair tried on a claim already found wrong."""
        for path, n in C.positions(r.node):
            if not isinstance(n, C.Product) or len(n.factors) < 2:
                continue
            *front, last = n.factors
            written_row = isinstance(last, C.Transposed)
            inner = last.arg if written_row else last
            moved = []
            for term in inner.terms if isinstance(inner, C.Terms) else (inner,):
                negative = isinstance(term, C.Neg)
                t = term.arg if negative else term
                mats, v = (tuple(t.factors[:-1]), t.factors[-1]) if isinstance(t, C.Product) else ((), t)
                if not self._is_vector(v) or any(isinstance(m, (C.Num, C.Ones)) for m in mats):
                    break
                moved.append((negative, mats, v))
            else:
                if not any(mats for _, mats, _ in moved):
                    continue
                u = front[0] if len(front) == 1 else C.Product(tuple(front))
                signals = [(u, False)]
                if len(front) > 1:  # (ŷ − y) V: the row (ŷ − y)ᵀ V, whose transpose is the column
                    signals.append((C.Transposed(C.Product((_toggle(front[0]),) + tuple(front[1:]))), True))
                for signal, as_row in signals:
                    if not self._is_vector(signal):
                        continue
                    terms = []
                    for negative, mats, v in moved:
                        t = C.Product(tuple(_toggle(m) for m in reversed(mats)) + (signal, _toggle(v)))
                        terms.append(C.Neg(t) if negative else t)
                    repaired = C.replace_at(r.node, path, terms[0] if len(terms) == 1 else C.Terms(tuple(terms)))
                    out = r
                    if as_row:
                        out = out.then("transpose", repaired, "{} needs a transpose (the error signal is {})",
                                       front[0], signal)
                    if not written_row:
                        outer = C.Product((signal, C.Transposed(inner)))
                        if self._fits(outer):
                            out = out.then("transpose", repaired, "{} needs a transpose (an outer product)", inner)
                        else:
                            out = out.then("shape", repaired, f"the sizes do not fit ({self._misfit_of(inner)})")
                    _, mats, v = next(m for m in moved if m[1])
                    weights = mats[0] if len(mats) == 1 else C.Product(mats)
                    carried = C.Product(tuple(_toggle(m) for m in reversed(mats)) + (signal,))
                    yield out.then("wrong-factor", repaired,
                                   "{} belongs on the error signal, transposed ({}), not on {}", weights, carried, v)

    def _powers_off_by_one(self, r: Repair):
        """``Σ_j W^{4-j-1} s_{j-1}``: every power of a matrix in a sum one too small (or too
        large), the off-by-one of a product of Jacobians over the steps."""
        for path, n in C.positions(r.node):
            if not isinstance(n, (C.Terms, C.MatrixPower)) or not C.contains(n, C.MatrixPower):
                continue
            if isinstance(n, C.Terms) and sum(1 for _, x in C.positions(n) if isinstance(x, C.MatrixPower)) < 2:
                continue  # a single power is tried by itself
            for k, how in ((1, "too small"), (-1, "too large")):
                shifted = C.transform(n, lambda x, k=k: replace(x, exponent=x.exponent + k)
                                      if isinstance(x, C.MatrixPower) else x)
                base = next(x.arg for _, x in C.positions(n) if isinstance(x, C.MatrixPower))
                what = "the power of {}" if isinstance(n, C.MatrixPower) else "every power of {} in the sum"
                yield r.then("wrong-factor", C.replace_at(r.node, path, shifted), what + " is one " + how, base)

    def _expression_or_misfit(self, node):
        """A claim piece as an expression, or the ShapeMismatch that says why its sizes do not fit."""
        try:
            return self.builder.expression(node)
        except C.ShapeMismatch as exc:
            return exc

    def _is_vector(self, node) -> bool:
        """Whether a claim piece is a column vector (of more than one entry)."""
        e = self._expression_or_misfit(node)
        return not isinstance(e, C.ShapeMismatch) and e.shape[1] == 1 and e.shape[0] != 1

    def _fits(self, node) -> bool:
        return not isinstance(self._expression_or_misfit(node), C.ShapeMismatch)

    def _misfit_of(self, node) -> str:
        e = self._expression_or_misfit(node)
        return str(e) if isinstance(e, C.ShapeMismatch) else "they do not fit"

    def _extra_terms(self, r: Repair):
        for path, n in C.positions(r.node):
            if isinstance(n, C.Terms) and len(n.terms) > 1:
                for i, term in enumerate(n.terms):
                    rest = n.terms[:i] + n.terms[i + 1:]
                    kept = rest[0] if len(rest) == 1 else C.Terms(rest)
                    yield r.then("extra-term", C.replace_at(r.node, path, kept), "the term {} does not belong", term)

    def _term_factors(self, r: Repair):
        """One term of a sum off by a factor: ``λ w`` for the ``2 λ w`` of ∂(λ wᵀw)/∂w, ``Xᵀ r``
        for the ``Xᵀ r / N`` of a mean.  The claim is linear in the term, so with the term left
        out (K) and in (C), the truth G is K + c (C − K) for the right factor c, read off the values."""
        for path, n in C.positions(r.node):
            if not isinstance(n, C.Terms) or len(n.terms) < 2 or not _linear_at(r.node, path):
                continue
            for i, term in enumerate(n.terms):
                rest = n.terms[:i] + n.terms[i + 1:]
                without = C.replace_at(r.node, path, rest[0] if len(rest) == 1 else C.Terms(rest))
                pairs = self._term_pairs(r.node, without)
                found = self.factor(pairs) if pairs is not None else None
                if found is None or found[1] is None:
                    continue
                text, factor = found
                scaled = C.Product((factor, term))
                yield r.then("wrong-factor", C.replace_at(r.node, path, C.Terms(rest[:i] + (scaled,) + rest[i:])),
                             "the term {} needs a factor " + text + " ({})", term, scaled)

    def _term_pairs(self, full, without) -> list | None:
        """(probe index, G − K, C − K) at every value compared, for the claim C and the claim K
        without one of its terms; None where either cannot be evaluated."""
        pairs = []
        for k, probe in enumerate(self.j.probes):
            claim, kept = self.values(full, k, "exact"), self.values(without, k, "exact")
            if claim is None or kept is None:
                return None
            for key, want in self.truth.values(probe, "exact").items():
                c, o = claim.get(key), kept.get(key)
                if c is None or o is None or want is None or not c.shape == o.shape == want.shape:
                    return None
                pairs.append((k, want - o, c - o))
        return pairs

    def _activation_derivatives(self, r: Repair):
        """f'(z) ⊙ (…) put in where an adjoint flows through an activation; or a factor of an
        elementwise product that should be f'(z): half of it (``a ⊙ Wᵀδ`` for ``a ⊙ (1 − a) ⊙ Wᵀδ``),
        or a slip in it (``(1 − g)²`` for ``1 − g²``)."""
        yield from self._derivative_factors(r)
        for path, n in C.positions(r.node):
            if not C.contains(n, C.Grad) or _inside_function(r.node, path):
                continue
            try:
                shape = self.builder.expression(n).shape
            except C.ShapeMismatch:
                continue
            offsets = {0} | {x.offset for _, x in C.positions(n) if isinstance(x, (C.Val, C.Grad))
                              and isinstance(x.offset, int)}
            for fname, factor in self.j.factors:
                if not same_shape(factor, _Shaped(shape)):
                    continue
                for k in sorted(offsets):
                    given = C.Given(shift(factor, k))
                    yield r.then("missing-activation-derivative", C.replace_at(r.node, path, C.Hadamard((given, n))),
                                 "the factor {} (the derivative of " + fname + ") is missing", given)

    def _derivative_factors(self, r: Repair):
        for path, n in C.positions(r.node):
            if not isinstance(n, C.Hadamard) or not any(C.contains(f, C.Grad) for f in n.factors):
                continue
            for i, f in enumerate(n.factors):
                if C.contains(f, C.Grad) or isinstance(f, (C.Num, C.Ones)) or _inside_function(r.node, path):
                    continue
                try:
                    shape = self.builder.expression(f).shape
                except C.ShapeMismatch:
                    continue
                offsets = {x.offset for _, x in C.positions(f) if isinstance(x, C.Val) and isinstance(x.offset, int)}
                for fname, factor in self.j.factors:
                    if not same_shape(factor, _Shaped(shape)):
                        continue
                    for k in sorted(offsets or {0}):
                        given = C.Given(shift(factor, k))
                        changed = C.replace_at(r.node, path + (i,), given)
                        if isinstance(f, C.Val) or (isinstance(f, C.Call) and f.fname == fname):
                            # σ(z) (or its name a) where σ'(z) = σ(z) ⊙ (1 − σ(z)) was meant
                            yield r.then("missing-activation-derivative", changed,
                                         "{} is only part of the derivative of " + fname + ", {}", f, given)
                        else:
                            yield r.then("wrong-factor", changed,
                                         "{} should be {} (the derivative of " + fname + ")", f, given)

    def _recurrent_terms(self, r: Repair):
        if self.truth.kind != "sequence":
            return
        for term in self.j.d.adjoints[self.truth.name].closed_terms:
            if term.offset > 0:
                given = C.Given(term.expr)
                yield r.then("missing-recurrent-term", C.Terms((r.node, given)),
                             "the term {} through step t+" + str(term.offset) + " is missing", given)

    def _summands_at_a_fixed_step(self, r: Repair):
        """``Σ_{j=1}^{t} δ_{o,t}``: a sum over the steps whose summand is written at one fixed step
        (T copies of the last step's term); the summand at the running step is the repair."""
        for path, n in C.positions(r.node):
            if not isinstance(n, C.OverTime) or C.depends_on_step(n.arg):
                continue
            fixed = [x for _, x in C.positions(n.arg)
                     if isinstance(x, (C.Val, C.Grad)) and isinstance(x.offset, C.Step)]
            if not fixed:
                continue

            def running(x):
                if isinstance(x, (C.Val, C.Grad)) and isinstance(x.offset, C.Step) and x.offset.base in ("T", ""):
                    return replace(x, offset=x.offset.offset if x.offset.base == "T" else 0)
                return x

            yield r.then("missing-sum-over-time", C.replace_at(r.node, path, C.OverTime(C.transform(n.arg, running),
                                                                                          n.start)),
                         "the summand is written at one step, {}: the sum over the steps needs it at each step",
                         n.arg)

    def _jacobian_variables(self, r: Repair):
        """A chain rule's last link taken in the wrong variable: ``∂net_c/∂W_fh`` (which is zero,
        net_c does not read W_fh) where the claim is about W_ch."""
        target = self.truth.name
        q = self.j.model.quantities[target]
        for path, n in C.positions(r.node):
            if not (isinstance(n, C.ChainRule) and n.links):
                continue
            last = n.links[-1]
            if last.wrt.name == target:
                continue
            wrt = C.Val(target, getattr(last.wrt, "offset", None) if q.sequence else None)
            links = n.links[:-1] + (C.Jacobian(last.of, wrt),)
            yield r.then("wrong-factor", C.replace_at(r.node, path, C.ChainRule(n.start, links)),
                         "the last factor is taken in the wrong variable: ∂" + last.of.name + "/∂" + last.wrt.name
                         + " where ∂" + last.of.name + "/∂" + target + " belongs")

    def _other_factors(self, r: Repair):
        """A quantity in place of another one of the same size (h_t for h_{t-1}, δy for δh, ...),
        values before adjoints (a wrong h_t is likelier than a shifted δ); or a factor too many."""
        candidates = _leaves_of(self.truth.expr, self.j.model)
        leaves = [(path, n) for path, n in C.positions(r.node) if isinstance(n, (C.Val, C.Grad))]
        leaves.sort(key=lambda pn: isinstance(pn[1], C.Grad))
        for path, leaf in leaves:
            alternatives = [x for x in candidates if type(x) is type(leaf) and x != leaf]
            q = self.j.model.quantities[leaf.name]
            if q.sequence and isinstance(leaf.offset, int):
                alternatives += [type(leaf)(leaf.name, leaf.offset + k) for k in (-1, 1)]
            elif q.sequence and isinstance(leaf.offset, C.Step) and leaf.offset.base == "":  # h_3 for h_4
                alternatives = [type(leaf)(leaf.name, C.Step("", leaf.offset.offset + k)) for k in (-1, 1)
                                if leaf.offset.offset + k >= 1] + alternatives
            for alt in dict.fromkeys(alternatives):
                if not same_shape(self.j.model.quantities[alt.name].symbol, q.symbol):
                    continue
                yield r.then("wrong-factor", C.replace_at(r.node, path, alt), "{} should be {}", leaf, alt)
        for path, n in C.positions(r.node):
            if isinstance(n, C.Product) and len(n.factors) > 1:
                for i, f in enumerate(n.factors):
                    rest = n.factors[:i] + n.factors[i + 1:]
                    kept = rest[0] if len(rest) == 1 else C.Product(rest)
                    yield r.then("wrong-factor", C.replace_at(r.node, path, kept), "the factor {} does not belong", f)

    # --- symbolic -----------------------------------------------------------------------

    def symbolically_equal(self, rhs) -> bool:
        """Equal in normal form, with the truth's named adjoints the claim does not use written out."""
        e = self.expression(rhs)
        if e is None:
            return False
        used = {n for kind, n in C.references(rhs) if kind == "grad"} | {self.truth.name}
        truth = self.j._in_vocabulary(self.truth.expr, used)
        return self.j.normal(e) == self.j.normal(truth)


# ---------------------------------------------------------------------------------------
# Helpers.


@dataclass(frozen=True)
class _Shaped:
    """Anything with a shape, for ``same_shape``."""

    shape: tuple


def _fixed_steps(node) -> set:
    """The fixed steps (δh_4, s_3) a claim names; empty if it names a step relative to t."""
    found = set()
    for _, n in C.positions(node):
        if isinstance(n, (C.Val, C.Grad)) and isinstance(n.offset, C.Step) and n.offset.base == "":
            found.add(n.offset.offset)
        elif isinstance(n, (C.Val, C.Grad)) and isinstance(n.offset, int):
            return set()
    return found


def _toggle(node):
    return node.arg if isinstance(node, C.Transposed) else C.Transposed(node)


def _inside_function(root, path: tuple) -> bool:
    node = root
    for i in path:
        if isinstance(node, (C.Call, C.Derivative)):
            return True
        node = C.children(node)[i]
    return False


def _close(a, b) -> bool:
    if a is None or b is None or np.shape(a) != np.shape(b):
        return False
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1.0)
    return bool(np.allclose(a, b, rtol=RTOL, atol=RTOL * scale))


def _sum_or_none(parts):
    if any(p is None for p in parts) or not parts:
        return None
    return sum(parts[1:], parts[0])


def _proportion(pairs) -> float | None:
    """c with got = c · want for every (got, want) of ``pairs``, if there is one."""
    got = np.concatenate([np.ravel(g) for g, _ in pairs]) if pairs else np.zeros(0)
    want = np.concatenate([np.ravel(w) for _, w in pairs]) if pairs else np.zeros(0)
    norm = float(want @ want)
    if norm == 0:
        return None
    c = float(got @ want) / norm
    scale = max(float(np.max(np.abs(want))), 1.0)
    return c if np.allclose(got, c * want, rtol=RTOL, atol=RTOL * scale * max(abs(c), 1.0)) else None


def _all_close(values: list) -> bool:
    return bool(values) and all(abs(v - values[0]) <= RTOL * max(1.0, abs(values[0])) for v in values)


def _linear_at(root, path: tuple) -> bool:
    """Whether the claim is linear in its piece at ``path`` (sums, signs, products, transposes,
    Σ_t, a numerator on the way; no function, power or denominator)."""
    node = root
    for i in path:
        if not (isinstance(node, (C.Terms, C.Neg, C.Product, C.Hadamard, C.Transposed, C.OverTime))
                or (isinstance(node, C.Quotient) and i == 0) or (isinstance(node, C.ChainRule) and i == 0)):
            return False
        node = C.children(node)[i]
    return True


def _number_text(c: float) -> str:
    f = Fraction(c).limit_denominator(12)
    if abs(float(f) - c) < 1e-9:
        return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    return f"{c:.4g}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _adjoint_ref(node, model) -> tuple[str | None, int | None]:
    """(quantity, step offset or None) if ``node`` is δ of a quantity, else (None, None)."""
    if isinstance(node, At) and isinstance(node.base, Delta):
        return node.base.name, node.offset
    if isinstance(node, Delta) and node.name in model.quantities and not model.quantities[node.name].sequence:
        return node.name, None
    return None, None


def _leaves_of(e, model) -> list:
    """The quantities (as claim leaves) that appear in a SymPy expression."""
    out: list[C.Grad | C.Val] = []
    for node in sp.preorder_traversal(e):
        name, k = _adjoint_ref(node, model)
        if name is not None:
            out.append(C.Grad(name, k))
        elif isinstance(node, At) and isinstance(node.base, MatrixSymbol):
            out.append(C.Val(node.base.name, node.offset))
        elif isinstance(node, MatrixSymbol) and node.name in model.quantities and \
                not model.quantities[node.name].sequence:
            out.append(C.Val(node.name, None))
    return [x for x in dict.fromkeys(out) if x.name in model.quantities]


def activation_factors(model) -> list[tuple[str, object]]:
    """(function, f'(z)) for every elementwise function in the model's equations, through the
    function's output where it has a name (o ⊙ (1 − o) for o = σ(y_o))."""
    found: dict[object, str] = {}  # f'(z) as a matrix expression → its function
    for q in model.equations:
        for node in sp.preorder_traversal(q.expr):
            if isinstance(node, Apply) and node.fname in ELEMENTWISE:
                out = model.ref(q.name) if node == q.expr else node
                factor = activation_derivative(node.fname, node.arg, out, node.params)
                found.setdefault(factor, node.fname)
    return [(fname, factor) for factor, fname in found.items()]


def _forward_definitions(model) -> dict:
    """Each quantity's defining expression (at nearby steps) → the quantity, for folding."""
    folds = {}
    for q in model.equations:
        if q.role != "intermediate":
            continue
        if q.sequence:
            for k in range(-2, 2):
                folds[canonical(shift(q.expr, k))] = At(q.symbol, k)
        else:
            folds[canonical(q.expr)] = q.symbol
    return folds


def canonical(e):
    """``e`` with the terms of every sum and the factors of every Hadamard product sorted,
    so two spellings of one expression compare equal."""
    if not getattr(e, "args", ()) or isinstance(e, (MatrixSymbol, At, Delta)):
        return e
    args = [canonical(a) for a in e.args]
    if isinstance(e, (MatAdd, HadamardProduct)):
        args.sort(key=sp.default_sort_key)
    if all(a is b for a, b in zip(args, e.args)):
        return e
    return e.func(*args)

