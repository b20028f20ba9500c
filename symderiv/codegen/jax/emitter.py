"""The JAX emitter: a schedule → the context of templates/module_jax.py.j2.

The schedule is the NumPy module's (``plan.ModulePlan`` with the JAX printer and idioms); what
only the JAX module needs is how a time loop becomes ``jax.lax.scan``: the arrays the loop
writes are its carry (read off the statements' data, ``Line.writes``), the rest of what it
reads is closed over, and the members of a stack the loop filled are split off it again after
the scan (NumPy's views saw the writes; JAX's values do not).  ``Free`` statements are dropped.

A model that needs more than one time loop (``ir.blocks.needs_blocks``: a recurrence backwards
in time, an encoder then a decoder, a state computed from static values) gets
``blocks.BlockPlan``'s schedule, whose loops are statements: each becomes a step function and
its own scan (``_scanned``), in the recurrence's direction (its adjoint's, against it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sympy as sp

from ...ad.derive import Derivation
from ...ir.blocks import needs_blocks
from ..blocks import BlockPlan
from ..numpy import Backend
from ..numpy.emitter import context as numpy_context
from ..plan import ModulePlan
from ..schedule import Free, Line, Phase, Scheduled
from .idioms import JaxIdioms, Loop
from .printer import JaxPrinter

JAX = Backend(JaxPrinter, JaxIdioms)


def module_context(d: Derivation, comment: Callable[..., str], comment_text: Callable[[sp.Basic], str]) -> dict:
    """The template context of the generated JAX module of ``d`` (without the header's mark,
    version and source, which the caller adds)."""
    plan = (BlockPlan if needs_blocks(d.model) else ModulePlan)(d, comment, comment_text, backend=JAX)
    schedule = plan.schedule()
    out = numpy_context(d, schedule, plan.printer)
    outputs = {py for _, py, *_ in out["outputs"]}
    count = [0]  # the loops written as statements (``blocks.BlockPlan``), numbered in order
    out["forward"] = _phase(schedule.forward, plan.out, _reads(schedule.forward.after, schedule.backward) | outputs,
                            count)
    out["backward"] = _phase(schedule.backward, plan.out, _reads(schedule.backward.after), count)
    out["scipy"] = "jax.scipy.special" in plan.printer.helpers
    # the sizes ``_random_params`` is given, by name where a param's shape reads them
    out["size_names"] = ", ".join(py if dim in out["param_dims"] else "_" for dim, py in out["dims"])
    out["shared_inputs"] = repr(tuple(name for name, _, _, shared in out["data_axes"] if shared))
    return out


def _scanned(st: Scheduled, count: list[int]) -> Scheduled:
    """A statement holding a loop over the steps (``blocks.BlockPlan``'s: a ``Loop`` line, then the
    step's lines, indented once) with that loop as a ``jax.lax.scan``: the step becomes a function
    of the carry (the arrays the step writes) and the index; what it reads otherwise is closed over."""
    at = next((k for k, ln in enumerate(st.lines) if isinstance(ln, Loop)), None)
    if at is None:
        return st
    header, body = st.lines[at], st.lines[at + 1:]
    assert isinstance(header, Loop)
    count[0] += 1
    step = f"_step_{count[0]}"
    writes = tuple(dict.fromkeys(n for ln in body for n in ln.writes))
    reads = tuple(dict.fromkeys(n for ln in body for n in ln.reads))
    carry = f"({writes[0]},)" if len(writes) == 1 else "(" + ", ".join(writes) + ")"
    order = ", reverse=True" if header.backwards else ""
    lines = [*st.lines[:at], Line(f"def {step}(_carry, i):"), Line(f"    {carry} = _carry"), *body,
             Line(f"    return {carry}, None"),
             Line(f"{carry}, _ = jax.lax.scan({step}, {carry}, jnp.arange(T){order})", writes, reads + writes)]
    return type(st)(st.comment, lines)


def _reads(statements, *phases: Phase) -> set[str]:
    """Every name the ``statements`` and the ``phases`` read."""
    lines = [ln for st in statements for ln in st.lines]
    lines += [ln for ph in phases for ln in ph.alloc + [ln for st in ph.statements() for ln in st.lines]]
    return {n for ln in lines for n in ln.reads}


def _phase(phase: Phase, idioms: JaxIdioms, read_later: set[str], count: list[int]) -> dict:
    """A pass for the template: before, the loop as a scan (alloc, carry, body), the members of
    the stacks it filled split off them after it (those ``read_later``; ``_`` for the others),
    after."""
    carry: list[str] = []
    for st in phase.loop:
        for ln in st.lines:
            carry += [n for n in ln.writes if n not in carry]
    # The split of a stack the loop fills moves after the loop: before it, its members would be
    # its zeros (inside the loop they are read from the stack itself, see JaxPrinter.at).
    moved = {id(split): split for stack, split in idioms.view_groups.items() if stack in carry}
    resplit = []
    for split in moved.values():
        members = [n if n in read_later else "_" for n in split.writes]
        if set(members) != {"_"}:
            resplit.append(", ".join(members) + " = " + split.text.split(" = ", 1)[1])

    def kept(statements):
        out = []
        for st in statements:
            if isinstance(st, Free):
                continue
            lines = [ln for ln in st.lines if id(ln) not in moved]
            out.append(_scanned(type(st)(st.comment, lines) if len(lines) != len(st.lines) else st, count))
        return out

    for st in phase.loop:
        st.lines = merge_step_writes(st.lines)
    return {
        "before": kept(phase.before),
        "alloc": [ln for ln in phase.alloc if id(ln) not in moved],
        "loop": phase.loop,
        "carry": f"({carry[0]},)" if len(carry) == 1 else "(" + ", ".join(carry) + ")",
        "resplit": resplit,
        "after": kept(phase.after),
    }


# One write of the loop's step: ``a = _put(a, i + 1, value)`` (the index: the step, or the step and an offset).
_PUT = re.compile(r"(\s*)(\w+) = _put\(\2, (i(?: [+-] \d+)?), (.*)\)\Z")


def merge_step_writes(lines: list[Line]) -> list[Line]:
    """A step's slot written and then updated by the next line (``c = _put(c, i + 1, f * c[i])``,
    ``c = _put(c, i + 1, c[i + 1] + u * g)``) as one write of the whole value
    (``c = _put(c, i + 1, (f * c[i]) + u * g)``).

    Each write makes a new version of the carried array; reading the slot of one version while
    writing the next made XLA copy the whole array (T, B, n) at every step (two copies of h and c
    per step in an LSTM, most of its forward pass).  One write per slot leaves nothing to copy."""
    out: list[Line] = []
    for ln in lines:
        new = _PUT.fullmatch(ln.text)
        # the previous write, past the comments (a guard's) between the two
        j = len(out) - 1
        while new and j >= 0 and out[j].text.lstrip().startswith("#"):
            j -= 1
        old = _PUT.fullmatch(out[j].text) if new and j >= 0 else None
        if old and new and old.group(1) == new.group(1) and old.group(2, 3) == new.group(2, 3):
            slot = f"{new.group(2)}[{new.group(3)}]"
            first = f"({old.group(4)})"
            value = re.sub(rf"(?<![\w.\])]){re.escape(slot)}", lambda _, first=first: first, new.group(4))
            text = f"{new.group(1)}{new.group(2)} = _put({new.group(2)}, {new.group(3)}, {value})"
            prev = out.pop(j)
            out.append(Line(text, tuple(dict.fromkeys(prev.writes + ln.writes)),
                            tuple(dict.fromkeys(prev.reads + ln.reads))))
        else:
            out.append(ln)
    return out
