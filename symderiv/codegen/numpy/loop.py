"""The NumPy module's lines around a time loop: what the loop reads made once before it, and one
rewrite of a recurrence through σ.

Before the loop: the matrices of the step products (``_T_W`` for x Wᵀ, ``_M_W`` for x W), each laid out
as the process's BLAS multiplies a step fastest (the module's ``_step_operand``: by rows, or by columns),
and the steps of every array the loop indexes, as lists of views (``codegen.loops``); after it, the lists
deleted, so that they keep no array alive longer than the code says (the workspace's arena is laid
out by when arrays die).

**A state through σ, in tanh units** (``tanh_units``).  A recurrence h_t = σ(z_t), z_t = a_t + M h_{t−1}
(the seed RNN's) costs a step one product and σ's four operations (``_sigmoid``: z/2, tanh, +1, /2).
With u_t = 2 h_t − 1 = tanh(z_t / 2) as the loop's state,

    z_t / 2 = a_t / 2 + (M/4) u_{t−1} + (M/4) 1,

so the loop computes s_t = z_t / 2 with one product (by M/4) and u_t = tanh(s_t) with one operation; the
affine parts are done once for all steps: s starts as a/2 + (M/4) 1, u_0 = 2 h_0 − 1 = −1, and after the
loop h = (u + 1)/2 and z = 2 s.  The same values up to rounding (the scalings by powers of two are exact;
the sum M 1 is added once instead of M h being summed with the ones), computed with two operations a step
instead of five.  Applied only where the loop reads the state in that one product and nowhere else, and
the state starts at zero.
"""

from __future__ import annotations

import re

from ..loops import step_operands, step_views, transposed
from ..schedule import Line, Phase


def around_loop(phase: Phase) -> tuple[list[str], list[str]]:
    """The lines before and after ``phase``'s time loop (its lines rewritten in place: views, and a σ
    state in tanh units where it applies).  Empty for a phase without a loop of its own."""
    if not phase.loop:
        return [], []
    operands = step_operands(phase)
    views = step_views(phase.loop, lists=True)
    units = tanh_units(phase)
    before = [f"{name} = {operand(m)}  # once, not at every step, laid out as BLAS multiplies fastest"
              for name, m in operands if not (units and name == transposed(units[2]))]
    if units:
        state, z, m = units
        before += [f"# the loop's state is u = 2 {state} − 1 = tanh({z} / 2), {z} halved (symderiv.codegen.numpy.loop)",
                   f"{transposed(m)} = {operand(m + '.T', 0.25)}  # ({m}/4)ᵀ",
                   f"{z} *= 0.5",
                   f"{z} += np.add.reduce({transposed(m)}, axis=0)",
                   f"{state}[0] = -1.0"]
    if views:
        before.append("# the steps the loop reads, as views made once (indexing an array at every step is a call each)")
        before += [f"{name} = list({source})" for name, source in views]
    after = []
    if views or operands:
        kept = [name for name, _ in views] + [name for name, _ in operands]
        after.append(f"del {', '.join(kept)}  # read by the loop only: nothing kept alive past it")
    if units:
        state, z, _ = units
        after += [f"{state} += 1.0  # back from tanh units: {state} = (u + 1) / 2, and {z} whole again",
                  f"{state} *= 0.5", f"{z} *= 2.0"]
    return before, after


def operand(matrix: str, scale: float | None = None) -> str:
    """The code of a step product's matrix (``W.T``, ``W``) laid out for the loop (the module's
    ``_step_operand``), times ``scale``."""
    return f"_step_operand({matrix}, B, _ws{'' if scale is None else f', {scale}'})"


_PRODUCT = re.compile(r"_s_(\w+)\[i\] \+= np\.dot\(_s_(\w+)\[i\], _T_(\w+)\)\Z")


def tanh_units(phase: Phase) -> tuple[str, str, str] | None:
    """Rewrite the loop of ``phase`` (views already made) to keep a σ state in tanh units, if it has one
    (see the module's docstring); return (the state's array, z's array, M), or None and change nothing.

    The loop must be, for some state h, z and matrix M: ``_s_z[i] += np.dot(_s_h[i], _T_M)`` and
    ``_sigmoid(_s_z[i], out=_s_h[i + 1])``, with no other line of the loop reading h, z or Mᵀ; and h
    allocated as zeros with one step in front (h_0 = 0), by no other line."""
    lines = [ln for st in phase.loop for ln in st.lines]
    outside = [ln for st in phase.before + phase.after for ln in st.lines] + phase.alloc
    for ln in lines:
        m = _PRODUCT.match(ln.text)
        if m is None:
            continue
        z, state, mat = m.groups()
        sig = f"_sigmoid(_s_{z}[i], out=_s_{state}[i + 1])"
        read = re.compile(rf"(?<![\w.])(?:_s\d*_)?(?:{z}|{state})\b|\b_T_{mat}\b")
        mine = [x for x in lines if read.search(x.text) or {z, state} & set(x.reads + x.writes)]
        if [x.text for x in mine] != [ln.text, sig]:
            continue
        # h and z are arrays of their own: not split off another (``a, z = np.split(s, …)``), which the loop
        # could read through its other name, nor split into views
        if any(re.search(rf"\b(?:{z}|{state})\b.*= np\.split\(|= np\.split\((?:{z}|{state})\b", x.text)
               for x in outside):
            continue
        alloc = [a.text for a in phase.alloc if re.search(rf"\b{state}\b", a.text)]
        if len(alloc) != 1 or not re.fullmatch(rf"{state} = np\.zeros\(\(T \+ 1, B, [^()]*\), dtype\)", alloc[0]):
            continue
        for st in phase.loop:
            if ln in st.lines:
                st.comment += f" (in tanh units: {z} / 2 += ({mat}/4) u_{{t−1}}, u = 2 {state} − 1)"
            if any(x.text == sig for x in st.lines):
                st.comment += f", kept as u_t = tanh({z} / 2)"
            st.lines = [Line(f"np.tanh(_s_{z}[i], out=_s_{state}[i + 1])", x.writes, x.reads) if x.text == sig else x
                        for x in st.lines]
        return state, z, mat
    return None
