"""The NumPy emitter: a schedule → the context of templates/module.py.j2.

The schedule says what runs where (``forward``/``backward``: before, alloc, loop, after) and
what is freed; this module adds what only the NumPy module needs: how each size is read off
the arrays it is given, whether the batch size is needed, the parameters' shapes as NumPy
code, and the runtime helpers the printed code calls (``_erf``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import sympy as sp

from ...ad.derive import Derivation
from ...errors import SymderivError
from ...ir.blocks import needs_blocks
from ..blocks import BlockPlan
from ..loops import transposes_before_use
from ..passes import data_reach
from ..plan import ModulePlan
from ..schedule import Line, Phase, Schedule
from ..signature import dim_sources
from .loop import around_loop, operand
from .printer import NumpyPrinter
from .workspace import pooled


def module_context(d: Derivation, comment: Callable[..., str], comment_text: Callable[[sp.Basic], str]) -> dict:
    """The template context of the generated module of ``d`` (without the header's mark, version
    and source, which the caller adds).  ``comment(lhs, rhs, label=None)`` and ``comment_text(e)``
    print the equations the code's comments show."""
    plan = (BlockPlan if needs_blocks(d.model) else ModulePlan)(d, comment, comment_text)
    schedule = plan.schedule()
    out = context(d, schedule, plan.printer) | loop_context(schedule)
    sizes = frozenset(["T", "B"] + [py for _, py in out["dims"]])
    out["forward"], out["backward"] = _pooled(out["forward"], sizes), _pooled(out["backward"], sizes)
    return out


def loop_context(schedule: Schedule) -> dict:
    """What the template writes around each pass's time loop (``numpy/loop.py``): the lines before and
    after it.  Rewrites the loops' lines (views, a σ state in tanh units) in place; in a pass whose loops
    are statements of their own, adds the transposes its steps read to those statements."""
    transposes_before_use((schedule.forward, schedule.backward),
                          lambda name, m: f"{name} = {operand(m)}  # once, laid out as BLAS multiplies fastest")
    out = {}
    for name, phase in (("forward", schedule.forward), ("backward", schedule.backward)):
        out[f"{name}_before_loop"], out[f"{name}_after_loop"] = around_loop(phase)
    return out


def _pooled(phase: Phase, sizes: frozenset[str]) -> Phase:
    """``phase`` with its lines outside the time loops writing into the module's workspace
    (``workspace.pooled``; ``sizes``: the names of sizes); the loop's own lines are as they were."""
    def lines(lns: list[Line]) -> list[Line]:
        out, looping = [], False
        for ln in lns:
            if ln.text.startswith("for "):  # a time loop of its own (``blocks``): its products' threads
                out.append(Line("with _threads:"))
                looping = True
            elif not ln.text[:1].isspace():
                looping = False
            out.append(replace(ln, text="    " + ln.text) if looping else replace(ln, text=pooled(ln.text, sizes)))
        return out

    return Phase([type(st)(st.comment, lines(st.lines)) for st in phase.before], lines(phase.alloc),
                 phase.loop, [type(st)(st.comment, lines(st.lines)) for st in phase.after])


def context(d: Derivation, schedule: Schedule, printer: NumpyPrinter) -> dict:
    """The template context of ``schedule``, ``printer`` being the NumPy printer that wrote its lines."""
    model, names = d.model, schedule.names
    used = schedule.names_used()
    # Where each dim can be read off an array (internally: data (T, B, n) / (B, n), params as given).
    dim_reads = {}
    for q in list(model.params) + list(model.data):
        for axis, x in enumerate(q.shape):
            if x.is_Symbol and x.name in model.dims and x.name not in dim_reads:
                if q.role == "param":
                    index = axis if q.kind == "matrix" else 0
                elif q.kind == "matrix":
                    index = axis - 2  # a matrix of data is (…, B, rows, cols) in the internal layout
                else:
                    index = -1  # the vector axis of data, last in the internal layout
                dim_reads[x.name] = (names.value(q.name), index)
    for dim in model.dims:
        if dim not in dim_reads and names.value(dim) in used:
            raise SymderivError(f"cannot generate NumPy code: the size '{dim}' is not the size of any parameter "
                                "or input, so it cannot be read off the arrays")
    if model.has_time and not any(q.sequence for q in model.data):
        raise SymderivError("cannot generate NumPy code: the model has a time axis but no input or target is a "
                            "sequence, so the module cannot read T off its arguments; make a datum a sequence "
                            "(input x[t]: n) or drop the time line")
    loss = model[model.loss]
    return {
        "model": model,
        "dims": [(dim, names.value(dim)) for dim in model.dims],
        # the dims init_params reads: those of the params' shapes (a dim of the data only is not)
        "param_dims": {x.name for p in model.params for s in p.shape for x in sp.sympify(s, strict=True).free_symbols},
        "dim_reads": [(names.value(dim), src, index) for dim, (src, index) in dim_reads.items()
                      if names.value(dim) in used],
        "params": [_param_info(p, names, printer) for p in model.params],
        # What each argument must be, as Python literals (``codegen.signature``).
        "param_axes": [(a.name, repr(a.axes)) for a in schedule.arguments if a.role == "param"],
        "data_axes": [(a.name, a.sequence, repr(a.axes), a.shared) for a in schedule.arguments
                      if a.role != "param"],
        "dim_sources": [(dim, name, axis, repr(rest), count)
                        for dim, (name, axis, rest, count) in dim_sources(schedule.arguments).items()],
        "inputs": [(q.name, names.value(q.name), q.sequence,
                    (str(q.shape[0]), str(q.shape[1])) if q.kind == "matrix" else str(q.shape[0]), q.is_scalar)
                   for q in model.data],
        "matrices": any(q.kind == "matrix" and q.role != "param" for q in model.quantities.values()),
        "has_time": model.has_time,
        "length_from": next((names.value(q.name) for q in model.data if q.sequence), None),
        "forward": schedule.forward,
        "backward": schedule.backward,
        "loss_name": names.value(loss.name),
        # The batch's loss: the terms read per example summed over the batch, plus once the others.
        "loss_total": f"{names.value(loss.name)}.sum()" + (f" + {schedule.loss_once}.sum()"
                                                           if schedule.loss_once else ""),
        # (name, array, is a sequence, the slice of its steps, is a scalar, carries the batch axis)
        "outputs": [(q.name, names.value(q.name) if q.role != "loss" or not schedule.loss_once else
                     f"{names.value(q.name)} + {schedule.loss_once}", q.sequence,
                     _steps_slice(schedule.pads.get(q.name, 0), printer.tails.get(q.name, 0)),
                     ("row" if q.shape[0] == 1 else "matrix") if q.kind == "matrix" else q.is_scalar,
                     q.name in printer.batched_names)
                    for q in model.quantities.values() if q.role in ("intermediate", "loss")],
        "uses_batch": "B" in used,
        "free_before_backward": schedule.free_before_backward,
        "helpers": sorted(printer.helpers),
        "padded_inputs": [(names.value(name), before, after) for name, (before, after) in data_reach(d).items()],
    }


def _steps_slice(before: int, after: int) -> str:
    """The steps 1..T of a sequence's array, padded by its states before and after them."""
    if not before and not after:
        return ""
    return f"[{before or ''}:{-after if after else ''}]"


def _param_info(p, names, pr) -> dict:
    rows, cols = p.shape
    kind = "scalar" if p.is_scalar else "vector" if cols == 1 else "matrix"
    declared = (str(rows), str(cols)) if kind == "matrix" else (str(rows),) if kind == "vector" else ()
    fan_in = pr.size(cols) if kind == "matrix" else None
    shape = (rows, cols) if kind == "matrix" else (rows,) if kind == "vector" else ()
    return {"name": p.name, "py": names.value(p.name), "grad": names.grad(p.name), "kind": kind, "declared": declared,
            "shape_code": ", ".join(pr.size(x) for x in shape), "fan_in": fan_in}
