"""What ``symderiv show`` prints: the forward equations and every closed form, in Unicode."""

from __future__ import annotations

from ..ad.derive import Derivation
from .printing import UnicodePrinter


def show_text(d: Derivation) -> str:
    model = d.model
    p = UnicodePrinter(model)
    n_params = len(d.gradients)
    lines = [f"{model.name}: {n_params} parameter{'s' if n_params != 1 else ''}, derived in {d.seconds:.2f} s", ""]
    axis = f" (t = 1..{model.length})" if model.has_time else ""
    lines.append(f"Forward{axis}")
    for q in model.equations:
        lines.append(f"  {p.doprint(model.ref(q.name))} = {p.doprint(q.expr)}")
    for qname, steps in model.states.items():
        for k, value in sorted(steps.items(), reverse=True):
            lines.append(f"  {model.unicode(qname, str(k))} = {p.doprint(value)}")
    for qname, steps in model.end_states.items():
        for k, value in sorted(steps.items()):
            lines.append(f"  {model.unicode(qname, f'{model.length}+{k}')} = {p.doprint(value)}")
    outside = "; δ at steps before 1 and after T is 0)" if model.end_states else "; δ at steps after T is 0)"
    lines += ["", "Backward (δX = ∂L/∂X" + (outside if model.has_time else ")")]
    from .emit import _state_adjoints

    pending = _state_adjoints(d)
    for adj in d.backward_order:
        for key, e, reads in list(pending):
            if adj.name in reads:  # δh_0 of a computed state, before the adjoints it feeds
                lines.append(f"  {p.doprint(key)} = {p.doprint(e)}")
                pending.remove((key, e, reads))
        when = ""
        if adj.closed_fixed:  # δh_T = W_pᵀ δp first, then δh_t at the other steps
            from .emit import other_steps

            for key in adj.closed_fixed:
                lines.append(f"  {p.doprint(key)} = {p.doprint(adj.at_fixed(key))}")
            when = f"   ({other_steps(model, adj, '≠')})"
        lines.append(f"  {p.doprint(adj.symbol)} = {p.doprint(adj.closed)}{when}")
    lines += ["", "Gradients"]
    loss = model.unicode(model.loss)
    for g in d.gradients.values():
        lines.append(f"  ∂{loss}/∂{model.unicode(g.name)} = {p.doprint(g.expr)}")
    return "\n".join(lines) + "\n"
