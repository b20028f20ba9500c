"""What the generated module accepts: every argument's name, role and shape, as data.

Each back end's template checks its arguments against this description on every call (names,
dtypes, shapes against ``DIMS`` and each other) with a small helper of its own; the
description is computed once, here, from the model, so that every back end checks the same
thing.  A shape is a tuple of axes; an axis is the tuple of the dims (by name) and numbers
whose sum it is: ``(n_h, n_h + n_x)`` is ``(("n_h",), ("n_h", "n_x"))``.  A sequence has the
axis ``T`` in front and any datum but a shared input may carry one batch axis (where, is the
back end's layout: last in NumPy's, second in torch's and JAX's).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ir.batch import is_shared_input
from ..ir.model import Model, Quantity

Axis = tuple[str | int, ...]


@dataclass(frozen=True)
class Argument:
    """One argument of the module: a param (in ``params``) or a datum (a keyword)."""

    name: str
    role: str  # "param", "input" or "target"
    axes: tuple[Axis, ...]  # the shape of one example (a param's shape), without T or a batch axis
    sequence: bool = False  # T steps in front
    shared: bool = False  # a scalar input: one value for the whole batch, never a batch axis

    @property
    def spelled(self) -> str:
        """The shape in dims, as a message prints it: ``(T, n_x)``, ``(n_h, n_h + n_x)``, ``()``."""
        parts = (["T"] if self.sequence else []) + [" + ".join(str(x) for x in axis) for axis in self.axes]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def axis(size: sp.Expr) -> Axis:
    """A size (a dim, a positive integer or a sum of these) as the terms of its sum."""
    terms: list[str | int] = []
    for t in sp.Add.make_args(sp.expand(size)):
        c, rest = t.as_coeff_Mul()
        if rest == 1:
            terms.append(int(c))
        else:
            terms += [rest.name] * int(c)
    return tuple(terms)


def core_axes(q: Quantity) -> tuple[Axis, ...]:
    """One example's shape: a scalar ``()``, a vector ``(n,)``, a matrix ``(rows, cols)``."""
    rows, cols = q.shape
    if q.is_scalar:
        return ()
    if q.is_vector:
        return (axis(rows),)
    return (axis(rows), axis(cols))


def arguments(model: Model) -> list[Argument]:
    """Every param, then every datum, in the model's order."""
    out = [Argument(p.name, "param", core_axes(p)) for p in model.params]
    out += [Argument(q.name, q.role, core_axes(q), q.sequence, is_shared_input(q)) for q in model.data]
    return out


def dim_sources(args: list[Argument]) -> dict[str, tuple[str, int, Axis, int]]:
    """Where each dim is read off the arguments: dim → (argument, axis of one example, the other
    terms of that axis, how many times the dim is in it); its size is (the axis's length − the
    other terms) / that count, the other terms' dims being read before it.

    The params first, then the data, so that a wrong datum is the datum's error: a dim alone on
    an axis of a matrix, then of a vector (a wrong (1,) bias is then the bias's error, not its
    matrix's), then solved from a sum whose other dims are known (n_x from W_f's n_h + n_x
    columns: an LSTM's x of the wrong size is x's error).  A dim found nowhere is absent (its
    axes are not checked)."""
    found: dict[str, tuple[str, int, Axis, int]] = {}

    def read(group: list[Argument]) -> None:
        for a in group:  # a dim alone on an axis
            for i, ax in enumerate(a.axes):
                if len(ax) == 1 and isinstance(ax[0], str) and ax[0] not in found:
                    found[ax[0]] = (a.name, i, (), 1)
        progress = True
        while progress:  # a sum with one dim unknown: solved for it
            progress = False
            for a in group:
                for i, ax in enumerate(a.axes):
                    unknown = {d for d in ax if isinstance(d, str) and d not in found}
                    if len(unknown) == 1:
                        d = unknown.pop()
                        found[d] = (a.name, i, tuple(t for t in ax if t != d), ax.count(d))
                        progress = True

    params = [a for a in args if a.role == "param"]
    read(sorted(params, key=lambda a: -len(a.axes)))
    read([a for a in args if a.role != "param"])
    return found
