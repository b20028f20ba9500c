"""The PyTorch emitter: a schedule → the context of templates/module_torch.py.j2.

The NumPy emitter's context (sizes, params, inputs, both passes), plus what an
``autograd.Function`` needs: the values the backward pass reads from the forward pass, which
``Function.forward`` saves and ``Function.backward`` starts from.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import sympy as sp

from ...ad.derive import Derivation
from ...ir.blocks import needs_blocks
from ..blocks import BlockPlan
from ..loops import step_views, transposed_in, transposes_before_use
from ..numpy.emitter import context
from ..plan import ModulePlan
from ..schedule import Line, Phase, Schedule
from . import TORCH


def module_context(d: Derivation, comment: Callable[..., str], comment_text: Callable[[sp.Basic], str]) -> dict:
    """The template context of the PyTorch module of ``d`` (see ``numpy.emitter.module_context``)."""
    plan = (BlockPlan if needs_blocks(d.model) else ModulePlan)(d, comment, comment_text, backend=TORCH)
    schedule = plan.schedule()
    transposes_before_use((schedule.forward, schedule.backward),
                          lambda name, m: f"{name} = {m}  # once, not at every step")
    out = context(d, schedule, plan.printer)
    biases = {p["py"] for p in out["params"] if p["kind"] == "vector"}
    for phase in (schedule.forward, schedule.backward):
        for st in phase.statements():
            st.lines = fuse_bias(st.lines, biases)
        for st in phase.before + phase.after:
            st.lines = fuse_derivatives(st.lines)
    out["scratch"] = scratch(schedule.forward) + scratch(schedule.backward)
    out["shared_inputs"] = repr(tuple(name for name, _, _, shared in out["data_axes"] if shared))
    out["saved"] = saved_names(d, schedule, out)
    out["forward_transposes"] = transposed_in(schedule.forward)
    out["backward_transposes"] = transposed_in(schedule.backward)
    out["forward_views"] = step_views(schedule.forward.loop)
    out["backward_views"] = step_views(schedule.backward.loop)
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


_ASSIGN = re.compile(r"(\w+) = (.+)\Z")
_TIMES = re.compile(r"(\w+) \*= (.+)\Z")
# An operand printed whole: a name, a name's slice or step (``h[1:]``), or a group in parentheses.
_ATOM = r"(?:[A-Za-z_]\w*(?:\[[^\[\]]*\])?|\((?:[^()]|\([^()]*\))*\))"
_ONE_MINUS = re.compile(rf"\(?1 - ({_ATOM})\)?")
_ONE_MINUS_SQUARE = re.compile(rf"\(?1 - \(({_ATOM}) \*\* 2\)\)?")


def fuse_derivatives(lines: list[Line]) -> list[Line]:
    """An array computed for all steps as a product of factors (``y = f_0``, ``y *= f_1``, …) where two
    of them are s and 1 − s, or one is 1 − s², as one pass: ``_sigmoid_grad(g, s)`` = g ⊙ s ⊙ (1 − s)
    and ``_tanh_grad(g, s)`` = g ⊙ (1 − s ⊙ s) (PyTorch's own fused kernels, the ones its autograd
    runs), in place where the array is already there; s − s ⊙ s alone is ``torch.addcmul(s, s, s,
    value=-1)``.  The same values (a product's factors in another order), without the passes over the
    array and the temporaries (1 − s) each ``*=`` made.  The derivatives of σ and tanh are these
    factors wherever they occur, so these are the weight of a backward pass off the recurrence."""
    out: list[Line] = []
    k = 0
    while k < len(lines):
        first = _ASSIGN.match(lines[k].text)
        end, factors = k + 1, [first.group(2)] if first else []
        while first and end < len(lines) and (m := _TIMES.match(lines[end].text)) and m.group(1) == first.group(1):
            factors.append(m.group(2))
            end += 1
        fused = _fuse_chain(first.group(1), factors) if first else None
        if fused is None:
            out.append(lines[k])
            k += 1
            continue
        chain = lines[k:end]
        writes = tuple(dict.fromkeys(n for ln in chain for n in ln.writes))
        reads = tuple(dict.fromkeys(n for ln in chain for n in ln.reads))
        out += [Line(text, writes, reads) for text in fused]
        k = end
    return out


def _fuse_chain(y: str, factors: list[str]) -> list[str] | None:
    """The lines computing ``y`` = the product of ``factors`` (the first assigned) with a fused
    derivative, or None when there is none to fuse."""
    for j, f in enumerate(factors):
        m = _ONE_MINUS_SQUARE.fullmatch(f)
        if m:
            fn, s, used = "_tanh_grad", m.group(1), {j}
            break
        m = _ONE_MINUS.fullmatch(f)
        if m and m.group(1) in factors:
            fn, s, used = "_sigmoid_grad", m.group(1), {j, factors.index(m.group(1))}
            break
    else:
        return None
    rest = [f for j, f in enumerate(factors) if j not in used]
    if 0 not in used:  # y is already there: fused into it, in place
        return [f"{y} = {factors[0]}", f"{fn}({y}, {s}, out={y})"] + [f"{y} *= {f}" for f in rest[1:]]
    if rest:
        return [f"{y} = {fn}({rest[0]}, {s})"] + [f"{y} *= {f}" for f in rest[1:]]
    if fn == "_sigmoid_grad":
        return [f"{y} = torch.addcmul({s}, {s}, {s}, value=-1)"]
    return None


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


# --- the large arrays of both passes, kept between calls ----------------------------------------

SCRATCH = "_scratch"  # ``_scratch("d_c", shape, dtype, device)``: the module's buffer of that array
# f(…) of a line that can write into a given tensor (of the broadcast shape of its arguments).
_INTO = {"_sigmoid_grad", "_tanh_grad", "torch.addcmul", "torch.tanh", "torch.sigmoid", "torch.sub", "torch.add",
         "torch.mul", "_matvec", "_softmax_and_log"}
# The module's helpers that take the names of their buffers (``into=``) and find them themselves.
_INTO_NAMED = {"_matvec", "_softmax_and_log"}
_BINARY = {ast.Sub: "torch.sub", ast.Add: "torch.add", ast.Mult: "torch.mul"}
_ALLOC = re.compile(r"(\w+) = torch\.(empty|zeros)\((.*), dtype=dtype, device=device\)\Z")


def _simple(node: ast.expr) -> bool:
    """An operand that is an array (a name, or a slice or step of one), not an expression to compute."""
    return isinstance(node, ast.Name) or (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name))


def _into(text: str) -> tuple[list[str], str, ast.Call] | None:
    """(names, call's name, call) when the line ``name = f(…)`` computes a new tensor by a call that can
    write into a given one (``_INTO``; ``a - b`` of two arrays as ``torch.sub(a, b)``; ``p, s =
    _softmax_and_log(z)`` two), else None."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    st = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(st, ast.Assign) or len(st.targets) != 1:
        return None
    target = st.targets[0]
    names = [target.id] if isinstance(target, ast.Name) else \
        [t.id for t in target.elts if isinstance(t, ast.Name)] if isinstance(target, ast.Tuple) else []
    value = st.value
    if isinstance(value, ast.BinOp) and type(value.op) in _BINARY and _simple(value.left) and _simple(value.right):
        value = ast.Call(ast.parse(_BINARY[type(value.op)], mode="eval").body, [value.left, value.right], [])
    if not names or not isinstance(value, ast.Call) or any(k.arg == "out" for k in value.keywords):
        return None
    fn = ast.unparse(value.func)
    if fn not in _INTO or not value.args or any(isinstance(a, ast.Starred) for a in value.args):
        return None
    if len(names) != (2 if fn == "_softmax_and_log" else 1) or (fn == "_matvec" and len(value.args) > 3):
        return None
    if fn not in _INTO_NAMED and not all(_simple(a) for a in value.args):  # read twice: arrays, not expressions
        return None
    return names, fn, value


def scratch(phase: Phase) -> list[str]:
    """The arrays of ``phase`` written into buffers the module keeps between calls (``_scratch`` in
    the template: per thread, shape and dtype, on the CPU, from 256 KiB; a buffer serves any array
    of its shape once the last one held in it has died, as the allocator's memory would, so that the
    buffers come to about the call's peak and the memory reused is the memory last touched: a buffer
    per array name held more, colder memory and made the seed RNN large 5–8% slower).

    A fresh tensor of that size is fresh memory from the C allocator, which on the CPU comes from the
    kernel page by page, zeroed, whenever the allocator gave the memory back at the end of the last
    call (a page fault per 4 KiB, about 1 µs: a (T, B, n_h) float64 array of the seed RNN at the large
    size costs 0.8 ms before anything is computed).  The arrays: the loop's allocations
    (``torch.empty`` → ``_scratch``; ``torch.zeros`` → the buffer zeroed), and top-level lines ``x =
    f(…)`` whose f can write into a given tensor (``out=``: the activations, the derivative factors
    ``_sigmoid_grad``, ``_tanh_grad``, ``torch.addcmul``, a product ``_matvec(W, x, b)``, the softmax
    and its log, ``a - b`` of two arrays; the operands read twice are arrays, never expressions),
    each assigned once.  A buffer is handed out only when nothing else holds its memory (its
    storage's use count: no tensor of this call not yet freed, of an earlier call saved for a
    backward pass not run yet, returned, or a view of one, is ever overwritten), else the array is a
    new tensor as before.  Rewrites the lines in place; returns the names kept."""
    statements = phase.statements()
    counts: dict[str, int] = {}
    for ln in [ln for st in statements for ln in st.lines] + list(phase.alloc):
        for m in re.finditer(r"^([\w, ]+?) = ", ln.text):
            for n in m.group(1).split(", "):
                counts[n] = counts.get(n, 0) + 1
    kept: list[str] = []

    def once(names: list[str]) -> bool:
        return all(counts.get(n) == 1 for n in names)

    alloc = []
    for ln in phase.alloc:
        made = _ALLOC.match(ln.text)
        if made and once([made.group(1)]):
            zero = ", zero=True" if made.group(2) == "zeros" else ""
            ln = Line(f'{made.group(1)} = {SCRATCH}("{made.group(1)}", {made.group(3)}, dtype, device{zero})',
                      ln.writes, ln.reads)
            kept.append(made.group(1))
        alloc.append(ln)
    phase.alloc = alloc
    for st in phase.before + phase.after:
        lines = []
        for ln in st.lines:
            found = _into(ln.text)
            if found is not None and once(found[0]):
                ln = _scratch_into(ln, found)
                kept += found[0]
            lines.append(ln)
        st.lines = lines
    return kept


def _scratch_into(ln: Line, found: tuple[list[str], str, ast.Call]) -> Line:
    names, fn, call = found
    args = [ast.unparse(a) for a in call.args]
    keywords = "".join(f", {ast.unparse(k)}" for k in call.keywords)
    if fn in _INTO_NAMED:
        into = f'"{names[0]}"' if len(names) == 1 else "(" + ", ".join(f'"{n}"' for n in names) + ")"
        return Line(f"{', '.join(names)} = {fn}({', '.join(args)}{keywords}, into={into})", ln.writes, ln.reads)
    out = f'{SCRATCH}_for("{names[0]}", {", ".join(args)})'
    return Line(f"{', '.join(names)} = {fn}({', '.join(args)}{keywords}, out={out})", ln.writes, ln.reads)
