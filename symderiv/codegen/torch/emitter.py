"""The PyTorch emitter: a schedule → the context of templates/module_torch.py.j2.

The NumPy emitter's context (sizes, params, inputs, both passes), plus what an
``autograd.Function`` needs: the values the backward pass reads from the forward pass, which
``Function.forward`` saves and ``Function.backward`` starts from.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sympy as sp

from ...ad.derive import Derivation
from ...ir.blocks import needs_blocks
from ..blocks import BlockPlan
from ..numpy.emitter import context
from ..plan import ModulePlan
from ..schedule import Line, Schedule
from . import TORCH
from .printer import TRANSPOSED


def module_context(d: Derivation, comment: Callable[..., str], comment_text: Callable[[sp.Basic], str]) -> dict:
    """The template context of the PyTorch module of ``d`` (see ``numpy.emitter.module_context``)."""
    plan = (BlockPlan if needs_blocks(d.model) else ModulePlan)(d, comment, comment_text, backend=TORCH)
    schedule = plan.schedule()
    out = context(d, schedule, plan.printer)
    biases = {p["py"] for p in out["params"] if p["kind"] == "vector"}
    for phase in (schedule.forward, schedule.backward):
        for st in phase.statements():
            st.lines = fuse_bias(st.lines, biases)
    out["shared_inputs"] = repr(tuple(name for name, _, _, shared in out["data_axes"] if shared))
    out["saved"] = saved_names(d, schedule, out)
    out["forward_transposes"] = _transposed(schedule.forward)
    out["backward_transposes"] = _transposed(schedule.backward)
    # The backward pass's allocations name the module's dtype and device (not arrays, so not in the
    # lines' reads): saved when its code names them.
    backward, forward = _words(schedule.backward), _words(schedule.forward)
    out["saved"] += [w for w in ("dtype", "device") if w in backward]
    out["forward_needs"] = [w for w in ("dtype", "device") if w in forward or w in out["saved"]]
    return out


_MATVEC = re.compile(r"(\w+) = _matvec\((.*)\)\Z")
_ADD = re.compile(r"(\w+) \+= (.*)\Z")


def _is_bias(text: str, biases: set[str]) -> bool:
    """A vector parameter, or a concatenation of them (a stack's biases): 1-D, as F.linear's bias must be."""
    if text in biases:
        return True
    inner = re.fullmatch(r"torch\.cat\(\[(.*)\]\)", text)
    return inner is not None and all(part in biases for part in inner.group(1).split(", "))


def fuse_bias(lines: list[Line], biases: set[str]) -> list[Line]:
    """``y = _matvec(W, x)`` then ``y += b`` as one ``y = _matvec(W, x, b)`` (``F.linear`` with its bias:
    one pass over the result instead of two), when b is a vector parameter (or a stack of them)."""
    out: list[Line] = []
    for ln in lines:
        prev = _MATVEC.match(out[-1].text) if out else None
        add = _ADD.match(ln.text)
        if prev and add and add.group(1) == prev.group(1) and _is_bias(add.group(2), biases):
            out[-1] = Line(f"{prev.group(1)} = _matvec({prev.group(2)}, {add.group(2)})", out[-1].writes,
                           tuple(dict.fromkeys(out[-1].reads + ln.reads)))
        else:
            out.append(ln)
    return out


def _transposed(phase) -> list[str]:
    """The matrices the code of ``phase`` reads transposed (``_T_W``: its time loops), in order of
    appearance: each is transposed once, before the phase (``_T_W = W.T``)."""
    found = (m.group(1) for st in phase.statements() for ln in st.lines for m in _TRANSPOSE.finditer(ln.text))
    return list(dict.fromkeys(found))


_TRANSPOSE = re.compile(rf"(?<!\w){TRANSPOSED}(\w+)")


def _words(phase) -> set[str]:
    """The identifiers the code of ``phase`` names."""
    lines = [ln for st in phase.statements() for ln in st.lines] + list(phase.alloc)
    return {w for ln in lines for w in re.findall(r"\w+", ln.text)}


def saved_names(d: Derivation, schedule: Schedule, ctx: dict) -> list[str]:
    """What the backward pass reads that the forward pass (or the preamble) defined, in the order of
    the preamble then the forward pass: the tensors ``Function.forward`` saves."""
    model = d.model
    preamble = [p["py"] for p in ctx["params"]] + [py for _, py, *_ in ctx["inputs"]]
    preamble += (["T"] if model.has_time else []) + (["B"] if ctx["uses_batch"] else [])
    preamble += [py for py, _, _ in ctx["dim_reads"]]
    forward = [n for st in schedule.forward.statements() for n in st.names]
    forward += [n for ln in schedule.forward.alloc for n in ln.names]
    read = schedule.names_used(schedule.backward) | {"T"}  # the loop's guards read T too
    freed = set(schedule.free_before_backward)
    return [n for n in dict.fromkeys(preamble + forward) if n in read and n not in freed]
