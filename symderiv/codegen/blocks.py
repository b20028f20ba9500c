"""The plan of a module whose values need more than one time loop (``ir.blocks``): a
recurrence backwards in time (a bidirectional RNN's backward half), recurrences one after
the other (an encoder, then a decoder), or states computed from static values.

Each block is computed in turn: a static quantity once; a recurrence by a loop over its
steps in its direction; a sequence without recurrence for all steps at once.  The backward
pass visits the blocks in reverse, each recurrence's adjoint by a loop against its direction
(the adjoint of a recurrence backwards in time runs forward in time), then the gradients, each
one product over all steps.  The loops are statements of the schedule (a loop header line
from the back end's idioms, then the step's lines, indented), so the schedule keeps its
structure and a back end writes the same idioms it writes for the single-loop plan.
"""

from __future__ import annotations

from sympy import ZeroMatrix

from ..ad.derive import computed_states, state_adjoint
from ..ir.blocks import time_blocks
from .passes import terms_of
from .plan import ModulePlan
from .schedule import Accumulate, AssignAll, Line, Phase, Value


class BlockPlan(ModulePlan):
    """A ``ModulePlan`` whose passes are computed block by block (see the module docstring)."""

    def _forward(self):
        m, names, pr, out = self.model, self.names, self.printer, self.out
        phase = Phase()
        for block in time_blocks(m):
            if not block.sequence:
                for n in block.names:
                    phase.before += self._common([m[n].expr])
                    phase.before.append(self._assign(n, names.value(n), pr.code(m[n].expr)))
                continue
            plain = block.direction == 0 and all(self._extent(n) == (0, 0) for n in block.names)
            if plain:  # no recurrence and no states: every step at once
                for n in block.names:
                    phase.before.append(AssignAll(self.comment(m.ref(n), m[n].expr),
                                                  self._time_lines(n, names.value(n), m[n].expr)))
                continue
            lines: list[Line] = []
            for n in block.names:
                lines += self._allocate(n)
            lines.append(out.loop(backwards=block.direction < 0))
            for n in block.names:
                lines.append(out.comment(self.comment(m.ref(n), m[n].expr), indent=1))
                lines.append(out.update(pr.code(m.ref(n), "step"), "=", pr.code(m[n].expr, "step"), indent=1))
            what = {1: "forward in time", -1: "backwards in time", 0: "step by step"}[block.direction]
            refs = ", ".join(self.comment_text(m.ref(n)) for n in block.names)
            phase.before.append(AssignAll(f"{refs}: the recurrence, {what}", lines))
        phase.before += self._once_loss()  # the terms of the loss read once per call (the batch rule)
        return phase, []

    def _extent(self, n: str) -> tuple[int, int]:
        """Steps a sequence's array holds before step 1 and after step T (its states)."""
        return self.pads.get(n, 0), self.printer.tails.get(n, 0)

    def _allocate(self, n: str) -> list[Line]:
        """A sequence's array, zero outside the steps it computes, with its states written in."""
        m, out, pr = self.model, self.out, self.printer
        py = self.names.value(n)
        before, after = self._extent(n)
        lines = [out.alloc(py, m[n].shape[0], pad=before + after, zeros=True)]
        for k, value in sorted(m.states.get(n, {}).items()):
            if not isinstance(value, ZeroMatrix):
                lines.append(out.update(out.entry(py, before + k - 1), "=", pr.code(value)))
        for k, value in sorted(m.end_states.get(n, {}).items()):
            if not isinstance(value, ZeroMatrix):
                lines.append(out.update(out.entry(py, k - 1 - after), "=", pr.code(value)))
        return lines

    def _backward(self, forward_stacks):
        d, m, names, pr, out = self.d, self.model, self.names, self.printer, self.out
        phase = Phase()
        for block in reversed(time_blocks(m)):
            adjoints = [d.adjoints[n] for n in reversed(block.names)
                        if n in d.adjoints and d.adjoints[n].named and m[n].role != "loss"]
            if not block.sequence:
                for a in adjoints:
                    phase.before += self._common(self._static_adjoint_exprs(a))
                    phase.before.append(self._static_adjoint(a))
                continue
            if not adjoints:
                continue
            plain = block.direction == 0 and all(t.offset >= 0 for a in adjoints for t in a.closed_terms)
            if plain:  # every step at once
                for a in adjoints:
                    py = names.adjoint(a.name)
                    zeros = out.alloc(py, a.quantity.shape[0], zeros=True)
                    terms = [(t.offset, u) for t in a.closed_terms for u in terms_of(t.expr)]
                    phase.before.append(Accumulate(self.comment(a.symbol, a.closed),
                                                   self._accumulate(py, terms, zeros) + self._fixed_adjoint_lines(a)))
                continue
            lines: list[Line] = []
            for a in adjoints:
                lines.append(out.alloc(names.adjoint(a.name), a.quantity.shape[0], zeros=True))
                lines += self._fixed_adjoint_lines(a)
            if not any(a.closed_terms for a in adjoints):  # all zero (the loss reads none of them): no loop
                phase.before.append(Accumulate(", ".join(self.comment_text(a.symbol) for a in adjoints) + " = 0",
                                               lines))
                continue
            # against the recurrence's direction: δ of a forward recurrence from T down to 1
            lines.append(out.loop(backwards=block.direction >= 0))
            for a in adjoints:
                slot = out.slot(names.adjoint(a.name))
                lines.append(out.comment(self.comment(a.symbol, a.closed), indent=1))
                for term in a.closed_terms:
                    code = pr.code(term.expr, "step")
                    if term.offset:
                        lines.append(out.if_step_exists(term.offset, indent=1))
                    lines.append(out.update(slot, "+=", code, indent=2 if term.offset else 1))
            what = "backwards in time" if block.direction >= 0 else "forward in time"
            refs = ", ".join(self.comment_text(a.symbol) for a in adjoints)
            phase.before.append(Accumulate(f"{refs}: the adjoint recurrence, {what}", lines))
            phase.before += self._state_adjoints(block)
        for g in d.gradients.values():
            phase.after += self._common(self._gradient_exprs(g))
            phase.after.append(self._gradient(g))
        phase.after += self._once_statements()
        return phase

    def _state_adjoints(self, block) -> list[AssignAll]:
        """δh_0 of a state computed from static values (state h[0] = tanh(W_0 @ c)): its own array,
        which the adjoints of those static values read."""
        out, pr = [], self.printer
        states = {(name, key): value for name, key, value in computed_states(self.model) if name in block.names}
        for (name, key), _ in states.items():
            e = state_adjoint(self.d.adjoints[name], key)
            array = self.values.fresh(f"_{self.names.adjoint(name)}_state")
            out.append(AssignAll(self.comment(key, e), [self.out.update(self.out.array(array), "=", pr.code(e))]))
            self.values.add(Value(array, key, "state", batched=True, lookup=True))
        return out
