"""The plan of the generated module: the passes applied in order, into a schedule.

The plan decides what is computed, where (before, inside or after the time loop, in the
forward or the backward pass) and into which arrays; which arrays are views of one (stacked
gates), written in place, or freed.  It computes everything that does not feed the
recurrence for all steps at once, before or after the time loop, so that only the
recurrence itself loops over t, and each parameter gradient is one product over all steps
and examples (Σ_t δ_t h_tᵀ = Δᵀ H).  How a value is laid out in arrays, and how a line is
spelt, is the back end's: see ``numpy/printer.py`` for the NumPy layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose, ZeroMatrix

from ..ad.derive import Derivation, derive
from ..ad.simplify import tidy
from ..ir.batch import split_loss, with_loss
from ..ir.blocks import depends_on
from ..ir.expr import (
    Apply,
    At,
    AtStep,
    Concat,
    Delta,
    Softmax,
    TimeSum,
    coeff_and_rest,
    hadamard,
    is_zero,
    matmul,
    scale,
    shift,
)
from .names import ArrayNames
from .numpy import NUMPY, Backend
from .passes import (
    Stack,
    StackFacts,
    adjoint_references,
    applied_counts,
    batched_quantities,
    data_reach,
    dead_after,
    find_stacks,
    hoistable_factors,
    in_place_order,
    in_place_step,
    inline_sliced_adjoints,
    names_value,
    params_of,
    recurrent,
    references,
    shared_applications,
    split_by_recurrence,
    split_concat_products,
    sum_of,
    terms_of,
    unused_by,
)
from .schedule import Accumulate, AssignAll, AssignStep, Code, Free, Line, Phase, Schedule, Value, ValueTable
from .signature import arguments


class ModulePlan:
    """The statements of the generated module's forward and backward passes."""

    def __init__(self, d: Derivation, comment: Callable[..., str],
                 comment_text: Callable[[sp.Basic], str] | None = None, backend: Backend = NUMPY):
        # The batch rule (``ir.batch``): the terms of the loss that read data count once per
        # example, the others (a penalty) once per call.  Where there are both, the code is
        # planned from the derivation of the first kind, and the second kind's value and
        # gradients are added once (``_once_statements``).
        each, once = split_loss(d.model)
        self.per_example = bool(each)  # the loss's own adjoint (its seed, 1) is one per example
        self.once = None
        if each and once:
            self.once = derive(with_loss(d.model, once))
            d = derive(with_loss(d.model, each))
        self.once_terms = once if each else []
        self.d, self.model, self.comment = d, d.model, comment
        self.comment_text = comment_text or str
        self.names = ArrayNames.for_model(d)
        self.pads = {q: self.model.max_lag(q) for q in self.model.quantities}
        # Sequence data read at other steps is padded with zero steps: in front (its pad) and after T.
        self.data_pads = data_reach(d)
        self.pads.update({name: before for name, (before, _) in self.data_pads.items()})
        self.batched = batched_quantities(self.model)
        # Every array the code computes once and reads again (see ``schedule.ValueTable``).
        self.values = ValueTable(self.names.table, reach=1 + max(self.pads.values(), default=0))
        # The back end: how an expression is printed, and how a statement is written.
        self.printer = backend.printer(d, self.names, self.pads, self.batched, self.values)
        self.printer.tails = {name: after for name, (_, after) in self.data_pads.items() if after}
        # a recurrence backwards in time: its array holds its states after step T at the end
        self.printer.tails.update({name: self.model.max_lead(name) for name in self.model.end_states})
        self.out = backend.idioms(self.printer)
        self.repeated = self._repeated() if not self.model.has_time else {}
        # The backward pass reads what the forward pass left: its stacks (whose δ it stacks too) and
        # the values it kept (in ``values``), so the order is forward, then backward.
        self.forward, self.stacks = self._forward()
        self.backward = self._backward(self.stacks)
        self.free_before_backward = self.unused_by_backward()

    def schedule(self) -> Schedule:
        """The finished schedule: both passes, the value table, the frees between them."""
        return Schedule(self.names, self.pads, self.forward, self.backward, self.values, self.stacks,
                        self.free_before_backward, arguments(self.model), self.loss_once)

    # --- common subexpressions of a model without time ---------------------------------------

    def _static_adjoint_exprs(self, a) -> list:
        return [e for e in (a.closed_per_step, a.closed_static) if e is not None]

    def _gradient_exprs(self, g) -> list:
        return [e for e in (g.per_step, g.static) if e is not None] + [e for _, _, e in g.initial]

    def _repeated(self) -> dict:
        """Subexpressions a model without time computes more than once, forward and backward: the
        loss written in one line, L = ½‖W2 tanh(W1 x + b1) + b2 − y‖², reads tanh(W1 x + b1) and
        the residual in several gradients.  Each gets an array of its own, computed once.

        Found in rounds, largest first: a part of a repeated expression counts once for the array
        that computes it, so it gets an array of its own only if it is also read elsewhere."""
        m, d, pr = self.model, self.d, self.printer
        exprs = [q.expr for q in m.equations if not q.sequence and q.expr is not None]
        exprs += [e for a in d.backward_order if a.named and not a.sequence for e in self._static_adjoint_exprs(a)]
        exprs += [e for g in d.gradients.values() for e in self._gradient_exprs(g)]
        repeated: dict = {}
        refused: set = set()

        def walk(roots, stop):
            """Every node under ``roots``, not below a node in ``stop`` (a root is always entered)."""
            stack = [(r, True) for r in roots]
            while stack:
                node, root = stack.pop()
                yield node
                if root or node not in stop:
                    stack.extend((a, False) for a in node.args if isinstance(a, sp.Basic))

        def eligible(node) -> bool:
            if node in refused:
                return False
            ok = isinstance(node, (Apply, MatAdd, HadamardProduct, HadamardPower, Softmax)) or (
                isinstance(node, MatMul) and isinstance(coeff_and_rest(node)[1], MatMul))
            if ok:
                try:
                    code = pr.code(node)
                    ok = code.batched and not code.summed and code.form == "expr"
                except (NotImplementedError, ValueError):
                    ok = False
            if not ok:
                refused.add(node)
            return ok

        for _ in range(50):  # rounds: at most the depth to which repeated expressions nest
            roots = exprs + list(repeated)
            counts: dict = {}
            for node in walk(roots, repeated):
                if node not in repeated:
                    counts[node] = counts.get(node, 0) + 1
            new = {node for node, c in counts.items() if c >= 2 and eligible(node)}
            if not new:
                break
            for node in walk(roots, new | set(repeated)):  # the largest of them: none inside another
                if node in new and node not in repeated:
                    repeated[node] = f"_v{len(repeated)}"
        return repeated

    def _common(self, exprs) -> list[AssignAll]:
        """Statements computing the repeated subexpressions of ``exprs`` not computed yet, innermost
        first; from then on the printer reads their arrays."""
        pr, out = self.printer, []
        for e in exprs:
            for node in sp.postorder_traversal(e):
                name = self.repeated.get(node)
                if name is None or name in self.values.arrays:
                    continue
                code = pr.code(node)
                out.append(AssignAll(f"{self.comment_text(node)}, read more than once",
                                     [self.out.update(self.out.array(name), "=", code)]))
                # From here on the printer reads the array wherever the expression appears.
                self.values.add(Value(name, node, "repeated", batched=code.batched, timed=code.timed,
                                      summed=code.summed, lookup=True))
        return out

    # --- forward ------------------------------------------------------------------------

    def _forward(self) -> tuple[Phase, list[Stack]]:
        """The forward pass: every value in it is each example's (and each step's) own, so an outer
        product in it (E_t = Z_t − 1 μ_tᵀ) is never summed over the batch or the steps, as one in a
        gradient is."""
        with self.printer.outer_products_per_example():
            return self._forward_pass()

    def _forward_pass(self) -> tuple[Phase, list[Stack]]:
        m, names, pr = self.model, self.names, self.printer
        seq = [q.name for q in m.equations if q.sequence]
        concats = {n: m[n].expr for n in seq if isinstance(m[n].expr, Concat)}
        code_expr = {n: split_concat_products(m[n].expr, concats) for n in seq}
        reads = {n: references(code_expr[n]) & set(seq) for n in seq}
        loop = recurrent(reads)
        stacks = self._stacks(seq, code_expr, loop)
        for s in stacks:  # before any line is printed: a member may be read before its stack is split
            self.out.declare_split([names.value(n) for n in s.members], s.name, s.sizes)
        stacked = {n: s for s in stacks for n in s.members}
        activated = {n: (s, run) for s in stacks for run in s.activations for n in run[1]}
        inline = self._inline_values(seq, concats)
        phase = Phase()
        statics_before, statics_after = self._static_split()
        for n in statics_before:
            phase.before += self._common([m[n].expr])
            phase.before.append(self._assign(n, names.value(n), pr.code(m[n].expr)))
        for n in seq:
            q, py, pad, expr = m[n], names.value(n), self.pads[n], code_expr[n]
            comment = self.comment(m.ref(n), q.expr)
            if n in inline:
                expr = self._keep_inline_values(n, expr, inline[n], loop, reads, phase)
            if n not in loop and not depends_on(reads, n, loop):
                if pad:
                    code = pr.code(expr, 'time')
                    phase.before.append(AssignAll(comment, self._padded(n) + [
                        self.out.update(self.out.from_entry(py, pad), "=", code)]))
                else:
                    phase.before.append(AssignAll(comment, self._time_lines(n, py, expr)))
            elif n in stacked:  # one array with the others that multiply the same vector in the loop
                stack = stacked[n]
                order = sorted(stack.members, key=seq.index)
                if n == order[-1]:  # after everything the members' parts outside the loop read
                    phase.before.append(self._stack_before(stack, phase))
                if n == order[0]:  # before any member is read; the vector is known by then
                    phase.loop.append(self._stack_loop(stack))
            elif n in activated:  # one call for the activations of consecutive members of a stack
                stack, run = activated[n]
                if n == min(run[1], key=seq.index):  # after the stack's product, before any is read
                    phase.loop.append(self._stack_activation(stack, run, phase))
            elif n in loop:
                # The part of a sum that does not read the recurrence is computed for all steps first.
                outside, inside = split_by_recurrence(terms_of(expr), loop)
                target = pr.code(m.ref(n), "step")
                # Only worth it where the part reads a sequence (a projection of the inputs).
                if outside and inside and pr.code(sum_of(outside), "time").timed:
                    code = pr.code(sum_of(outside), 'time')
                    phase.before.append(AssignAll(f"{comment}: the part that does not depend on the recurrence",
                                                  self._padded(n) + [
                        self.out.update(self.out.from_entry(py, pad), "=", code)] if pad else
                        self._assign_time(py, sum_of(outside))))
                    code = pr.code(sum_of(inside), 'step')
                    phase.loop.append(AssignStep(comment, [self.out.update(target, "+=", code)]))
                else:
                    phase.alloc.extend(self._padded(n, empty=True))
                    phase.loop.append(AssignStep(comment, self._assign_step(target, expr)))
            else:
                code = pr.code(expr, 'time') if pad else None
                lines = [self.out.update(self.out.from_entry(py, pad), "=", code)] if pad else \
                    self._time_lines(n, py, expr)
                phase.after.append(AssignAll(comment, (self._padded(n) if pad else []) + lines))
        for n in statics_after:
            phase.after += self._common([m[n].expr])
            phase.after.append(self._assign(n, names.value(n), pr.code(m[n].expr)))
        phase.after += self._once_loss()
        return phase, stacks

    def _once_loss(self) -> list[AssignAll]:
        """The terms of the loss that read no data, computed once per call (``self.loss_once``)."""
        m, pr = self.model, self.printer
        self.loss_once = None
        if not self.once_terms:
            return []
        once = sum_of(self.once_terms)
        self.loss_once = self.values.fresh(f"_{self.names.value(m.loss).rstrip('_')}_once")
        self.values.add(Value(self.loss_once, None, "once", batched=False))
        return [AssignAll(f"{self.comment_text(once)}: the terms of {m.unicode(m.loss)} that read no "
                          "data, counted once per call", [
                              self.out.update(self.out.array(self.loss_once), "=", pr.code(once))])]

    # --- values inside an equation that the backward pass reads too -------------------------

    def _inline_values(self, seq, concats) -> dict[str, list]:
        """f(…) written inside a sequence equation, c_t = f_t ⊙ c_{t−1} + tanh(W x_t + U h_{t−1}),
        whose value the backward pass reads too (as 1 − tanh²(…)): kept in an array of its own.

        Maps a quantity to its [(f(…) as derived, as the code computes it, the array's symbol)],
        innermost first."""
        pr = self.printer
        reach = 1 + max(self.pads.values(), default=0)  # the backward pass reads forward values up to t + lag
        backward = [a.closed for a in self.d.adjoints.values() if a.named and a.closed is not None]
        backward += [g.expr for g in self.d.gradients.values()]
        wanted = {node for e in backward for node in sp.preorder_traversal(e) if isinstance(node, Apply)}
        found: dict[str, list] = {}
        for n in seq:
            e = self.model[n].expr
            for node in sp.postorder_traversal(e):
                if (node is e or not isinstance(node, Apply) or node.fname == "log"
                        or isinstance(node.arg, (At, AtStep, MatrixSymbol))
                        or any(node == a for a, _, _ in found.get(n, []))
                        or not any(shift(node, k) in wanted for k in range(reach + 1))):
                    continue
                name = self.values.reserve(self.values.fresh(f"_{node.fname}_in_{self.names.value(n).rstrip('_')}"))
                found.setdefault(n, []).append((node, split_concat_products(node, concats),
                                                MatrixSymbol(name, *node.shape)))
        return {n: kept for n, kept in found.items() if any(pr.code(a, "time").timed for a, _, _ in kept)}

    def _keep_inline_values(self, n, expr, kept, loop, reads, phase: Phase):
        """Statements computing the kept values of ``n``'s equation just before it; ``expr`` reading them."""
        m, pr = self.model, self.printer
        subs = {}
        for a, code_a, sym in kept:
            done = self.values.get(a)
            if done is not None:  # kept for an earlier equation already
                subs[code_a] = At(MatrixSymbol(done.array, *a.shape), 0)
                continue
            value = code_a.xreplace(subs)  # an inner kept value is read, not computed again
            comment = (f"{self.comment_text(a)}, in the equation of {self.comment_text(m.ref(n))}: "
                       "kept for the backward pass")
            if n in loop and references(value) & loop:  # computed step by step
                phase.alloc.append(self.out.alloc(sym.name, a.shape[0]))
                phase.loop.append(AssignStep(comment, self._inline_step(sym, value, loop, phase)))
                loop.add(sym.name)
            elif pr.code(value, "time").timed:  # for all steps at once: before the loop if it can be
                early = not any(r in loop or depends_on(reads, r, loop) for r in references(value) & set(reads))
                code = pr.code(value, 'time')
                (phase.before if early else phase.after).append(AssignAll(comment, [
                    self.out.update(self.out.array(sym.name), "=", code)]))
            else:
                continue
            subs[code_a] = At(sym, 0)
            # From here on f(…) at t + k reads the array (the backward pass's 1 − tanh²(…) above all).
            self.values.add(Value(sym.name, a, "kept", per_step=True, timed=True, lookup=True))
        return expr.xreplace(subs)

    def _inline_step(self, sym, value, loop, phase: Phase) -> list[Line]:
        """f(u + v) into ``sym[i]``, where the part u of the argument that does not read the
        recurrence (an input projection) is computed for all steps before the loop."""
        pr = self.printer
        outside, inside = split_by_recurrence(terms_of(value.arg), loop)
        if not (outside and inside and pr.code(sum_of(outside), "time").timed):
            return self._assign_step(self.out.slot(sym.name), value)
        pre = f"{sym.name}_arg"
        self.values.add(Value(pre, sum_of(outside), "argument", per_step=True, timed=True))
        phase.before.append(AssignAll(f"{self.comment_text(value.arg)}, the argument of {self.comment_text(value)}: "
                                      "the part that does not depend on the recurrence",
                                      self._assign_time(pre, sum_of(outside))))
        code = pr.code(sum_of(inside), 'step')
        arg, slot = self.out.slot(pre), self.out.slot(sym.name)
        lines = [self.out.update(arg, "+=", code)]
        lines.append(self.out.apply_into(value.fname, arg, slot, params_of(value))
                     if self.out.has_out(value) else
                     self.out.update(slot, "=", self.out.apply(value, arg)))
        return lines

    # --- stacking: one matrix product per step for the pre-activations that share a vector ---

    def _stacks(self, seq, code_expr, loop) -> list[Stack]:
        """The gates that become views of one array (``passes.find_stacks``); the printer supplies
        what a term is (timed, batched) and the order of the vectors."""
        pr = self.printer
        facts = StackFacts(
            static_product=self._static_product,
            key=lambda v, mode: pr.code(v, mode).text,
            timed=lambda t: pr.code(t, "time").timed,
            batched=lambda t: pr.code(t, "time").batched,
            has_out=self.out.has_out)
        return find_stacks(seq, code_expr, loop, self.pads, {n: self.model[n].shape[0] for n in seq}, facts)

    def _static_product(self, t):
        """(A, v) when the term ``t`` is A v with A a matrix the same for every step and example, else None."""
        c, rest = coeff_and_rest(t)
        if c != 1 or not isinstance(rest, MatMul) or len(rest.args) != 2:
            return None
        a, v = rest.args
        if 1 in a.shape or v.shape[1] != 1 or a.has(At, AtStep, Delta) or self.printer.code(a).batched:
            return None
        return a, v

    def _stack_before(self, stack: Stack, phase: Phase) -> AssignAll:
        """Before the loop: the stacked matrices, and the parts outside the loop (or the array)."""
        pr, m = self.printer, self.model
        lines = []
        for _, mats, matrix in stack.inside:
            self.values.add(Value(matrix, None, "stack", batched=False))  # [W_1j; W_2j; …]
            codes = [pr.code(a) for a in mats]
            lines.append(self.out.update(self.out.array(matrix), "=", self.out.concat(codes)))
        consts = None
        if any(stack.consts):
            consts = self.out.concat([pr.code(sum_of(c)) if c else self.out.zeros(size)
                                      for c, size in zip(stack.consts, stack.sizes)])
        split = self.out.split([self.names.value(n) for n in stack.members], stack.name, stack.sizes)
        if stack.outside:
            products = []
            for u, mats in stack.outside:
                products.append(self.out.all_steps_product(self.out.concat([pr.code(a) for a in mats]),
                                                           pr.code(u, 'time')))
            lines.append(self.out.update(self.out.array(stack.name), "=", self.out.plus(products)))
            if consts:
                lines.append(self.out.update(self.out.array(stack.name), "+=", consts))
            lines.append(split)
            what = "first the parts that do not depend on the recurrence"
        else:  # all in the loop: the array is filled there, the constants added there
            if consts:
                lines.append(self.out.update(self.out.array(f"{stack.name}_b"), "=", consts))
            phase.alloc += [self.out.alloc(stack.name, sum(stack.sizes)), split]
            what = "first the stacked matrices"
        refs = ", ".join(self.comment_text(m.ref(n)) for n in stack.members)
        equations = [self.out.comment(self.comment(m.ref(n), m[n].expr)) for n in stack.members]
        return AssignAll(f"{refs} as views of one array, so that one product per step serves them all; {what}",
                         equations + lines)

    def _stack_loop(self, stack: Stack) -> AssignStep:
        m = self.model
        refs = ", ".join(self.comment_text(m.ref(n)) for n in stack.members)
        products = []
        for v, _, matrix in stack.inside:
            products.append(self.out.step_product(self.printer.code(v, 'step'), matrix))
        vectors = ", ".join(self.comment_text(v) for v, _, _ in stack.inside)
        if stack.outside:
            each = " each" if len(stack.inside) > 1 else ""
            return AssignStep(f"{refs}: the parts that multiply {vectors}, one product{each}",
                              [self.out.update(self.out.slot(stack.name), "+=", self.out.plus(products))])
        if any(stack.consts):
            products.append(self.out.array(f"{stack.name}_b"))
        return AssignStep(f"{refs}: one product with {vectors} each",
                          [self.out.update(self.out.slot(stack.name), "=", self.out.plus(products))])

    def _stack_activation(self, stack: Stack, run, phase: Phase) -> AssignStep:
        fname, outputs, lo, hi, array = run
        m = self.model
        self.values.add(Value(array, None, "stack", per_step=True, timed=True))  # the members' activations
        start, stop = (sp.expand(sum(stack.sizes[:k], sp.Integer(0))) for k in (lo, hi))
        phase.alloc += [self.out.alloc(array, sp.expand(sum(stack.sizes[lo:hi]))),
                        self.out.split([self.names.value(n) for n in outputs], array, stack.sizes[lo:hi])]
        comment = ", ".join(self.comment(m.ref(n), m[n].expr) for n in outputs)
        return AssignStep(f"{comment}: one call", [
            self.out.apply_into(fname, self.out.block(stack.name, start, stop), self.out.slot(array))])

    def _static_split(self):
        m = self.model
        seq = {q.name for q in m.equations if q.sequence}
        before, after, later = [], [], set(seq)
        for q in m.equations:
            if q.sequence:
                continue
            if q.expr.has(TimeSum) or references(q.expr) & later:
                after.append(q.name)
                later.add(q.name)
            else:
                before.append(q.name)
        return before, after

    def _padded(self, n: str, empty: bool = False) -> list[Line]:
        """Allocate a sequence array (padded in front by its lag) and write its initial states."""
        q, py, pad = self.model[n], self.names.value(n), self.pads[n]
        if not pad and not empty:
            return []
        # The padding holds the states (zeros unless a state is a param); the rest is written in full.
        lines = [self.out.alloc(py, q.shape[0], pad=pad, zeros=bool(pad))]
        for k, value in sorted(self.model.states.get(n, {}).items()):
            if not isinstance(value, ZeroMatrix):
                lines.append(self.out.state(py, pad + k - 1, self.names.value(value.name),
                                            self.model.unicode(n, str(k))))
        return lines

    def _assign(self, n: str, target: str, code: Code) -> AssignAll:
        m = self.model
        return AssignAll(self.comment(m.ref(n), m[n].expr), [self.out.update(self.out.array(target), "=", code)])

    # --- backward -----------------------------------------------------------------------

    def _backward(self, forward_stacks: list[Stack]) -> Phase:
        d, names, pr = self.d, self.names, self.printer
        named = [a for a in d.backward_order if a.named]
        statics = [a for a in named if not a.sequence]
        outside_reads = set().union(*(adjoint_references(g.expr) for g in d.gradients.values()),
                                    *(adjoint_references(a.closed) for a in statics))
        terms, dropped = inline_sliced_adjoints(
            {a.name: [(term.offset, t) for term in a.closed_terms for t in terms_of(term.expr)]
             for a in named if a.sequence},
            lambda z: z not in outside_reads and not d.adjoints[z].closed_fixed)
        terms = {n: [(o, u) for o, t in ts for u in terms_of(t)] for n, ts in terms.items()}
        seq = [a.name for a in named if a.sequence and a.name not in dropped]
        reads = {n: set().union(*(adjoint_references(t) for _, t in terms[n])) & set(seq) for n in seq}
        loop = recurrent(reads)
        stacks = self._adjoint_stacks(forward_stacks, terms, seq, loop)
        stacked = {n: s for s in stacks for n in s.members}
        self.applied_counts = applied_counts(t for n in loop & set(terms) for _, t in terms[n])
        phase = Phase()
        seq_dependent_static = set(self._static_split()[1])  # they read the sequence: their δ comes first
        early = set()  # the adjoints complete before the loop
        for a in statics:
            if a.name in seq_dependent_static:  # consumers of the sequence: before the loop
                phase.before += self._common(self._static_adjoint_exprs(a))
                phase.before.append(self._static_adjoint(a))
                early.add(a.name)
        # δ of a sequence quantity is each step's and each example's own: an outer product in it
        # (the 1 δμ_tᵀ of δZ_t = δE_t + 1/d 1 δμ_tᵀ) is never summed, as one in a gradient is
        with pr.outer_products_per_example():
            for n in seq:
                a = d.adjoints[n]
                py = names.adjoint(n)
                comment = self.comment(a.symbol, a.closed)
                zeros = self.out.alloc(py, a.quantity.shape[0], zeros=True)
                fixed = self._fixed_adjoint_lines(a)  # δh_T += what a static equation reading h_T gives
                if n in loop:
                    outside, inside = split_by_recurrence(terms[n], loop, lambda term: adjoint_references(term[1]))
                    inside.sort(key=lambda term: term[0])  # the terms that always exist first, then by offset
                    assign = not outside and not fixed and inside[0][0] == 0  # the first term sets the value
                    if outside or fixed:
                        phase.before.append(Accumulate(comment + ": the part outside the recurrence",
                                                       self._accumulate(py, outside, zeros) + fixed))
                    elif n not in stacked:
                        phase.alloc.append(self.out.alloc(py, a.quantity.shape[0]) if assign else zeros)
                    elif n == min(stacked[n].members, key=seq.index):  # the δ of a stack: views of one array
                        stack = stacked[n]
                        phase.alloc += [self.out.alloc(stack.adjoint, sum(stack.sizes)),
                                        self.out.split([names.adjoint(m) for m in stack.members], stack.adjoint,
                                                    stack.sizes)]
                    loop_lines, guard = [], None
                    slot = self.out.slot(py)
                    for k, (offset, t) in enumerate(inside):
                        t = self._hoist_forward_factors(t, offset, f"_{py}_{k}", phase)
                        code = pr.code(self._share_applied(t, phase), "step")
                        if offset:  # the terms that read δ at t + offset exist for the first T − offset steps
                            if offset != guard:
                                loop_lines.append(self.out.if_step_exists(offset))
                                guard = offset
                            loop_lines.append(self.out.update(slot, "+=", code, indent=1))
                        elif assign and k == 0:
                            loop_lines += self._assign_step(slot, t)
                        else:
                            loop_lines.append(self.out.update(slot, "+=", code))
                    phase.loop.append(Accumulate(comment, loop_lines))
                else:
                    target = phase.before if not depends_on(reads, n, loop) else phase.after
                    target.append(Accumulate(comment, self._accumulate(py, terms[n], zeros) + fixed))
                    if target is phase.before:
                        early.add(n)
        for a in statics:
            if a.name not in seq_dependent_static:
                phase.after += self._common(self._static_adjoint_exprs(a))
                phase.after.append(self._static_adjoint(a))
        stacked_grads = self._stacked_gradients(stacks)
        for g in d.gradients.values():
            if g.name not in stacked_grads:
                # A gradient of adjoints known before the loop is computed there, so that they can be freed.
                target = phase.before if adjoint_references(g.expr) <= early else phase.after
                target += self._common(self._gradient_exprs(g))
                target.append(self._gradient(g))
            elif stacked_grads[g.name] is not None:
                phase.after.append(stacked_grads[g.name])
        phase.after += self._once_statements()
        if phase.loop or phase.after:
            dead = self._dead_after_before(phase)
            if dead:
                phase.before.append(Free("not read from here on: freed, so the loop reuses their memory",
                                         [self.out.free(dead)]))
        return phase

    def _once_statements(self) -> list[AssignAll]:
        """Each gradient of the terms read once per call (``self.once``'s), added to the gradient
        of the terms read per example: written out in params and forward values (its adjoints,
        of quantities that read no data, substituted), so it needs no arrays of its own."""
        if self.once is None:
            return []
        m, pr, out = self.model, self.printer, []
        closed = {a.symbol: a.closed for a in self.once.adjoints.values() if not a.sequence}
        for g in self.once.gradients.values():
            e = g.expr
            for _ in range(len(closed) + 1):  # inner adjoints first: at most one round per adjoint
                if not e.has(Delta):
                    break
                e = e.xreplace(closed)
            if e.has(Delta, At, AtStep):
                raise NotImplementedError(f"no NumPy form for the once-per-call part of ∂/∂{g.name} without adjoints")
            e = tidy(e)  # δpen = 1 substituted: W ⊙ 1 1 1ᵀ is W
            if is_zero(e):
                continue
            grad = self.out.array(self.names.grad(g.name))
            label = f"∂{m.unicode(m.loss)}/∂{m.unicode(g.name)} += {self.comment_text(e)}"
            # a rule that reads its output (∂‖A‖₂/∂A = A / ‖A‖₂) reads the loss of these terms: their
            # array, not the loss array of the terms read per example
            if self.loss_once is not None:
                e = e.xreplace({self.once.model[m.loss].symbol: MatrixSymbol(self.loss_once, 1, 1)})
            out.append(AssignAll(f"{label}: from the terms read once per call", [
                self.out.update(grad, "=", self.out.plus([grad, pr.code(e)]))]))
        return out

    def _fixed_adjoint_lines(self, a) -> list[Line]:
        """δq at the fixed steps a static equation reads (δh_T += W_pᵀ δp), after its other terms."""
        lines = []
        for key, e in a.closed_fixed.items():
            code = self._total(self.printer.code(e), True)
            lines.append(self.out.update(self.printer.code(key), "+=", code))
        return lines

    def _dead_after_before(self, phase: Phase) -> list[str]:
        """Arrays the backward pass's statements before the loop read or write and nothing after does."""
        later = self.used_names([Phase(loop=phase.loop, after=phase.after, alloc=phase.alloc)])
        keep = {self.names.value(p.name) for p in self.model.params} | set(self.names.grads.values())
        arrays = ({self.names.value(q.name) for q in self.model.quantities.values() if q.role != "param"}
                  | set(self.names.adjoints.values()) | set(self.values.arrays) | self.values.reserved)
        return dead_after(phase.before, later, arrays, keep)

    def _adjoint_stacks(self, forward_stacks: list[Stack], terms: dict, seq: list[str], loop: set[str]) -> list[Stack]:
        """The stacks whose members' δ the loop fills: δ_k become views of one array, and the terms
        W_kᵀ δ_{k,t+o} of every member, wherever they appear together, one product [W_1; W_2; …]ᵀ δ_{t+o}.

        ``terms`` is rewritten in place; returns the stacks so handled.
        """
        done = []
        for stack in forward_stacks:
            ok = all(n in loop and terms.get(n) and min(o for o, _ in terms[n]) == 0 and
                     not self.d.adjoints[n].closed_fixed and
                     all(adjoint_references(t) & loop for _, t in terms[n]) for n in stack.members)
            if not ok:
                continue
            stack.adjoint = "_d" + stack.name
            # The stacked δ is the adjoint of a name of its own, so the loop sees what it reads.
            self.names.adjoints[stack.name] = stack.adjoint
            self.batched.add(stack.name)
            loop.add(stack.name)
            deltas = [Delta(self.model[n].symbol) for n in stack.members]
            whole = Delta(MatrixSymbol(stack.name, sp.expand(sum(stack.sizes)), 1))
            for v, mats, name in stack.inside:
                matrix = MatrixSymbol(name, sp.expand(sum(stack.sizes)), v.shape[0])
                for n in terms:
                    for offset in sorted({o for o, _ in terms[n]}):
                        wanted = [(offset, matmul(Transpose(w), At(dk, offset))) for w, dk in zip(mats, deltas)]
                        rest = list(terms[n])
                        for w in wanted:  # one of each, once
                            if w not in rest:
                                break
                            rest.remove(w)
                        else:
                            terms[n] = rest + [(offset, matmul(Transpose(matrix), At(whole, offset)))]
            done.append(stack)
        return done

    def _stacked_gradients(self, stacks: list[Stack]) -> dict:
        """Gradients Σ_t δ_{k,t} u_tᵀ (or Σ_t δ_{k,t}) of every member of a stack with the same u: one
        product with the stacked δ, split by rows.  Maps each such parameter to the statement that
        computes it (for the first of a stack) or None."""
        pr, m = self.printer, self.model
        out: dict = {}
        for stack in stacks:
            whole = Delta(MatrixSymbol(stack.name, sp.expand(sum(stack.sizes)), 1))
            by_key: dict = {}
            for g in self.d.gradients.values():
                if g.static is not None or g.initial or g.per_step is None:
                    continue
                e = g.per_step
                if isinstance(e, At) and isinstance(e.base, Delta) and e.offset == 0:
                    delta, u = e.base, None
                elif (isinstance(e, MatMul) and len(e.args) == 2 and isinstance(e.args[0], At)
                      and isinstance(e.args[0].base, Delta) and e.args[0].offset == 0):
                    delta, u = e.args[0].base, e.args[1]
                else:
                    continue
                if delta.name in stack.members:
                    by_key.setdefault(u, {}).setdefault(delta.name, []).append(g)
            for k, (u, found) in enumerate(by_key.items()):
                if set(found) != set(stack.members) or any(len(gs) != 1 for gs in found.values()):
                    continue
                grads = [found[n][0] for n in stack.members]
                target = f"_g{stack.name}_{k}"
                expr = At(whole, 0) if u is None else matmul(At(whole, 0), u)
                code = pr.code(expr, "time")
                label = {g.name: f"∂{m.unicode(m.loss)}/∂{m.unicode(g.name)}" for g in grads}
                labels = ", ".join(label.values())
                lines = [self.out.comment(self.comment(None, g.expr, label=label[g.name])) for g in grads]
                lines += [self.out.update(self.out.array(target), "=", self._total(code, False)),
                          self.out.split([self.names.grad(g.name) for g in grads], target, stack.sizes,
                                         last_axis=False)]
                how = "one sum of the stacked δ" if u is None else "one product with the stacked δ"
                out[grads[0].name] = AssignAll(f"{labels}: {how}, split by rows", lines)
                out.update({g.name: None for g in grads[1:]})
        return out

    def _assign_step(self, slot: Code, e) -> list[Line]:
        """``slot = e`` inside the loop, written into the slot: f(x, out=slot), np.multiply(a, b,
        out=slot), then slot += the other terms; no new array for the result and no copy of it."""
        pr, lines = self.printer, []
        for op in in_place_step(e, self.out.has_out):
            if op[0] == "f":  # f(x, out=slot)
                lines.append(self.out.apply_into(op[1].fname, pr.code(op[1].arg, "step"), slot, params_of(op[1])))
            elif op[0] == "*":
                lines.append(self.out.multiply_into(pr.code(op[1], "step"), pr.code(op[2], "step"), slot))
            else:
                lines.append(self.out.update(slot, op[0], pr.code(op[1], "step")))
        return lines

    def _time_lines(self, n: str, py: str, e) -> list[Line]:
        """``py = e`` for all steps; a softmax whose log is read too (by a cross-entropy) with that
        log, by one call: p, log p = _softmax_and_log(z)."""
        m = self.model
        if type(e) is Softmax and e.shape[1] == 1 and any(
                isinstance(node, Apply) and node.fname == "log" and names_value(node.arg, n)
                for q in m.equations if q.name != n and q.expr is not None for node in sp.preorder_traversal(q.expr)):
            log = self.values.fresh(f"_log_{py.rstrip('_')}")
            # From here on log(p_t) (a cross-entropy's) reads the array.
            self.values.add(Value(log, Apply("log", m.ref(n)), "log", per_step=True, timed=True, lookup=True))
            code = self.printer.code(e.arg, 'time')
            return [self.out.softmax_and_log(py, log, code)]
        return self._assign_time(py, e)

    def _assign_time(self, py: str, e, window: int = 0) -> list[Line]:
        """``py = e`` for all steps at once, with one new array, updated in place (``passes.in_place_order``).

        W x + b is ``py = _matvec(W, x)`` then ``py += b``; (Wᵀ δ) ⊙ s ⊙ (1 − s) is
        ``py = _matvec(W.T, δ)``, ``py *= s``, ``py *= 1 - s``.
        """
        pr, printed = self.printer, {}

        def code(x):  # each operand printed once
            if x not in printed:
                printed[x] = pr.code(x, "time", window)
            return printed[x]

        def fresh(a):  # a new array of every step anyway: a product over all steps, or not an array kept
            c = code(a)
            return c.form == "product" and c.timed if isinstance(a, MatMul) else \
                c.timed and c.batched and c.form == "expr"

        def full(a):  # every step and example
            return code(a).timed and code(a).batched

        ops = in_place_order(e, fresh, full) if code(e).timed else None
        target = self.out.array(py)
        if ops is None:
            return [self.out.update(target, "=", code(e))]
        return [self.out.update(target, "=", self.out.times(code(op[1]), code(op[2]))) if op[0] == "=*" else
                self.out.update(target, op[0], code(op[1])) for op in ops]

    def _share_applied(self, e, phase: Phase):
        """f(q_{t+k}) read by more than one loop term (tanh(c_t) in an LSTM's δc and δy_o): computed
        once for all steps, before the arrays that read it (``passes.shared_applications``)."""
        for node in shared_applications(e, self.applied_counts):
            whole = Apply(node.fname, At(node.arg.base, 0), *node.params)
            shared = self.values.get(whole)
            if shared is None:
                name = self.values.fresh(f"_{node.fname}_{self.names.value(node.arg.base.name).rstrip('_')}")
                code = self.printer.code(whole, 'time')
                phase.before.append(AssignAll(f"{self.comment_text(whole)}, for every step at once, read below",
                                              [self.out.update(self.out.array(name), "=", code)]))
                shared = self.values.add(Value(name, whole, "shared", per_step=True, timed=True))
            e = e.xreplace({node: At(MatrixSymbol(shared.array, *node.shape), node.arg.offset)})
        return e

    def _hoist_forward_factors(self, t, offset: int, name: str, phase: Phase):
        """Compute the factors of a loop term that only read forward values for all steps first
        (``passes.hoistable_factors``); the loop multiplies by their array."""
        found = hoistable_factors(t)
        if found is None:
            return t
        c, values, adjoint_factors = found
        factor = hadamard(*values)
        self.values.add(Value(name, factor, "factor", per_step=True, timed=True))
        comment = f"{self.comment_text(factor)}, for every step at once"
        phase.before.append(AssignAll(comment, self._assign_time(name, self._share_applied(factor, phase), offset)))
        return scale(c, hadamard(At(MatrixSymbol(name, *factor.shape), 0), *adjoint_factors))

    def _accumulate(self, py: str, terms, zeros: Line) -> list[Line]:
        """δ = its terms, each over the steps where the δ it reads (at t + offset) exists."""
        by_offset: dict[int, list] = {}
        for offset, t in terms:
            by_offset.setdefault(offset, []).append(t)
        # a sum of terms the same at every step (δh_t = ½ δc, from c = Σ_t h_t / 2) has no time
        # axis of its own: it is added to every step of the zeros, not assigned
        code0 = self.printer.code(sum_of(by_offset[0]), "time") if 0 in by_offset else None
        same_everywhere = code0 is not None and not (code0.timed and code0.batched)
        lines = [zeros] if 0 not in by_offset or same_everywhere else []
        for offset, ts in sorted(by_offset.items()):
            if offset == 0 and same_everywhere:
                # the same at every step or for every example (δh_t = 1 of Σ_t 1ᵀ h_t, ½ δc of c = Σ_t h_t / 2):
                # spread to every row and added to the zeros
                size = next(t.shape[0] for t in ts)
                lines.append(self.out.update(self.out.array(py), "+=", self.out.spread(code0, size, timed=True)))
            elif offset == 0:
                lines += self._assign_time(py, sum_of(ts))
            else:
                code = self.printer.code(sum_of(ts), 'time', offset)
                lines.append(self.out.update(self.out.before_last(py, offset), "+=", code))
        return lines

    def _static_adjoint(self, a) -> AssignAll:
        pr = self.printer
        parts = []
        batched = a.name in self.batched
        rows, cols = a.quantity.shape
        # δ of a per-example value is each example's own: an outer product in it is not summed (the
        # 1 √sᵀ of a vector δs, as well as the outer products of a matrix δZ)
        with pr.outer_products_per_example(batched):
            if a.closed_per_step is not None:
                e = TimeSum(a.closed_per_step)
                parts.append(self._total(pr.code(e), batched, e))
            if a.closed_static is not None:
                parts.append(self._total(pr.code(a.closed_static), batched, a.closed_static))
            parts = parts or [pr.code(ZeroMatrix(*a.quantity.shape))]
        value = self.out.plus(parts)
        if batched and not any(c.batched for c in parts):  # the same for every example: one each
            # a row vector (b = aᵀ) is held as its column: a row of cols; a matrix is (B, rows, cols)
            value = self.out.spread(value, cols) if rows == 1 else self.out.spread(value, rows, cols=cols)
        target = self.names.adjoint(a.name)
        return AssignAll(self.comment(a.symbol, a.closed), [self.out.update(self.out.array(target), "=", value)])

    def _seed_part(self, e):
        """The part of the contribution ``e`` that comes straight from the loss's own adjoint (1) and
        reads no adjoint (its value with every δ zero: ``e`` is linear in them), or None.

        Where the loss has terms that read data, that part is one per example, and so counts once
        for every example even where its value is the same for all of them: ∂/∂b of
        sum(tanh(W x) + b) is B 1, not 1.  The rest reads adjoints, and is as many as their arrays
        hold (per example, or already the batch's total for a quantity that reads no data)."""
        if not self.per_example:
            return None
        deltas = {x for x in e.atoms(Delta)}
        seed = tidy(e.xreplace({x: ZeroMatrix(*x.shape) for x in deltas})) if deltas else e
        return None if is_zero(seed) else seed

    def _total(self, code: Code, keep_batch: bool, e=None, matrix: bool = False) -> Code:
        """``code`` (of the contribution ``e``) as a contribution to a value without a batch axis:
        summed over the examples (and steps); its part from the loss's own adjoint that is the same
        for every example (``_seed_part``) counted B times.  ``matrix``: the value is a matrix,
        (…, rows, cols) per example."""
        if code.summed or keep_batch:
            return code
        if code.batched or code.timed:
            return self.out.sum_examples(code, matrix) if matrix else self.out.sum_examples(code)
        seed = None if e is None else self._seed_part(e)
        if seed is None:
            return code
        if seed is e:
            return self.out.times_examples(code)
        # e = its seed part + a part reading the batch's total of some adjoint: B − 1 more of the first
        return self.out.plus([code, self.out.times_examples(self.printer.code(seed), but_one=True)])

    def _gradient(self, g) -> AssignAll:
        pr, m = self.printer, self.model
        parts = []
        matrix = g.param.kind == "matrix"
        if g.per_step is not None:
            code = pr.code(g.per_step, "time")
            if not (code.timed or code.summed):
                code = self.out.times_length(code)
            parts.append(self._total(code, False, TimeSum(g.per_step), matrix=matrix))
        if g.static is not None:
            parts.append(self._total(pr.code(g.static), False, g.static, matrix=matrix))
        # Through an initial state: a term reading δ at step s exists only when T >= s.
        guarded: dict[int, list] = {}
        for _, _, e in g.initial:
            for t in terms_of(e):
                steps = [n.step for n in sp.preorder_traversal(t) if isinstance(n, AtStep) and
                         isinstance(n.base, Delta)]
                s = max(steps, default=1)
                if s <= 1:
                    parts.append(self._total(pr.code(t), False, t))
                else:
                    guarded.setdefault(s, []).append(t)
        if not parts:
            parts.append(pr.code(ZeroMatrix(*g.param.shape)))
        target = self.names.grad(g.name)
        grad = self.out.array(target)
        lines = [self.out.update(grad, "=", self.out.plus(parts))]
        for s, ts in sorted(guarded.items()):
            total = self.out.plus([grad, self._total(pr.code(sum_of(ts)), False, sum_of(ts))])
            lines += [self.out.if_length_reaches(s), self.out.update(grad, "=", total, indent=1)]
        label = f"∂{m.unicode(m.loss)}/∂{m.unicode(g.name)}"
        return AssignAll(self.comment(None, g.expr, label=label), lines)

    def used_names(self, phases: Iterable[Phase] | None = None) -> set[str]:
        """The arrays and sizes the code of ``phases`` (default: both passes) touches."""
        phases = phases or (self.forward, self.backward)
        return set().union(*(ph.names() for ph in phases))

    def unused_by_backward(self) -> list[str]:
        """Forward arrays the backward pass never reads: freed before it starts, to keep the peak low."""
        used = self.used_names([self.backward])
        # The array the members of a stack are views of goes once none of them is read.
        free = unused_by([self.names.value(q.name) for q in self.model.equations if q.role != "loss"], used,
                         [(s.name, [self.names.value(n) for n in s.members]) for s in self.stacks])
        return free + unused_by([v.array for v in self.values.of_kind("log")], used) + \
            unused_by([v.array for v in self.values.of_kind("repeated", "argument")], used)
