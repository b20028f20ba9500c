"""The JAX emitter: a schedule → the context of templates/module_jax.py.j2.

The schedule is the NumPy module's (``plan.ModulePlan`` with the JAX printer and idioms); what
only the JAX module needs is how a time loop becomes ``jax.lax.scan``: the arrays the loop
writes are its carry (read off the statements' data, ``Line.writes``), the rest of what it
reads is closed over, and the members of a stack the loop filled are split off it again after
the scan (NumPy's views saw the writes; JAX's values do not).  ``Free`` statements are dropped.
"""

from __future__ import annotations

from ...ad.derive import Derivation
from ..numpy import Backend
from ..numpy.emitter import context as numpy_context
from ..plan import ModulePlan
from ..schedule import Free, Phase
from .idioms import JaxIdioms
from .printer import JaxPrinter

JAX = Backend(JaxPrinter, JaxIdioms)


def module_context(d: Derivation, comment, comment_text) -> dict:
    """The template context of the generated JAX module of ``d`` (without the header's mark,
    version and source, which the caller adds)."""
    plan = ModulePlan(d, comment, comment_text, backend=JAX)
    schedule = plan.schedule()
    out = numpy_context(d, schedule, plan.printer)
    out["forward"] = _phase(schedule.forward, plan.out)
    out["backward"] = _phase(schedule.backward, plan.out)
    out["scipy"] = "jax.scipy.special" in plan.printer.helpers
    out["uses_batch"] = True  # every allocation reads B
    return out


def _phase(phase: Phase, idioms: JaxIdioms) -> dict:
    """A pass for the template: before, the loop as a scan (alloc, carry, body, the members split
    off again), after."""
    carry: list[str] = []
    for st in phase.loop:
        for ln in st.lines:
            carry += [n for n in ln.writes if n not in carry]
    resplit = [split for stack, split in idioms.view_groups.items() if stack in carry]
    return {
        "before": [st for st in phase.before if not isinstance(st, Free)],
        "alloc": phase.alloc,
        "loop": phase.loop,
        "carry": f"({carry[0]},)" if len(carry) == 1 else "(" + ", ".join(carry) + ")",
        "resplit": resplit,
        "after": [st for st in phase.after if not isinstance(st, Free)],
    }
