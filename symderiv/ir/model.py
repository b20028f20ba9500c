"""The intermediate representation of a model: dims, quantities, equations, one loss.

Dims are positive integer SymPy symbols.  Every quantity is a ``MatrixSymbol`` (a scalar is
1x1); a sequence quantity is referred to at a step through ``At(symbol, offset)``.  The
equations are SymPy matrix expressions over those symbols, already shape-checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..errors import Position
from .expr import At
from .names import latex_name, unicode_name

ROLES = ("input", "target", "param", "intermediate", "loss")


@dataclass
class Quantity:
    name: str
    role: str
    symbol: MatrixSymbol
    sequence: bool
    pos: Position
    expr: sp.Basic | None = None  # the defining expression, for intermediates and the loss
    distribution: bool = False  # a target whose vectors sum to one
    auxiliary: bool = False  # a name symderiv introduced (a pre-activation)
    # the shape as written in the file, for params and data: "scalar", "n" or ("n", "m")
    declared_shape: str | tuple[str, str] | None = None

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.symbol.shape

    @property
    def is_scalar(self) -> bool:
        return self.shape == (1, 1)

    @property
    def is_vector(self) -> bool:
        return self.shape[1] == 1 and not self.is_scalar

    @property
    def kind(self) -> str:
        return "scalar" if self.is_scalar else "vector" if self.is_vector else "matrix"


@dataclass
class Model:
    name: str
    path: str
    dims: dict[str, sp.Symbol]
    quantities: dict[str, Quantity]
    loss: str
    time_index: str | None = None
    length: sp.Symbol | None = None
    states: dict[str, dict[int, sp.Basic]] = field(default_factory=dict)
    latex_overrides: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # intermediates, dependencies first
    # states after the sequence, for recurrences backwards in time: name → {k: value at step T + k}
    end_states: dict[str, dict[int, sp.Basic]] = field(default_factory=dict)

    # --- lookups ------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Quantity:
        return self.quantities[name]

    def by_role(self, role: str) -> list[Quantity]:
        return [q for q in self.quantities.values() if q.role == role]

    @property
    def params(self) -> list[Quantity]:
        return self.by_role("param")

    @property
    def data(self) -> list[Quantity]:
        return [q for q in self.quantities.values() if q.role in ("input", "target")]

    @property
    def equations(self) -> list[Quantity]:
        """Every defined quantity (intermediates, then the loss), dependencies first."""
        return [self.quantities[n] for n in self.order]

    @property
    def has_time(self) -> bool:
        return self.time_index is not None

    def ref(self, name: str, offset: int | None = None) -> MatrixExpr:
        """The expression for a quantity: ``At(sym, offset)`` for a sequence, else ``sym``."""
        q = self.quantities[name]
        return At(q.symbol, offset or 0) if q.sequence else q.symbol

    def max_lag(self, name: str) -> int:
        """How many steps back the recurrence of ``name`` reaches (0 if it is not recurrent)."""
        return 1 - min(self.states[name]) if name in self.states else 0

    def max_lead(self, name: str) -> int:
        """How many steps forward a recurrence backwards in time reaches (g[t+1]: 1; else 0)."""
        return max(self.end_states[name]) if name in self.end_states else 0

    # --- spelling -----------------------------------------------------------------------

    def latex(self, name: str, step: str | None = None) -> str:
        q = self.quantities.get(name)
        bold = q is None or not q.is_scalar
        return latex_name(name, bold=bold, step=step, override=self.latex_overrides.get(name),
                          calligraphic=q is not None and q.role == "loss")

    def unicode(self, name: str, step: str | None = None) -> str:
        return unicode_name(name, step=step)
