"""The registry of operations: one record per operation, in one place.

- ``base``: the record types (``Elementwise``, ``Node``, ``LanguageFunction``) and the registry;
- ``elementwise``: every elementwise function, one record each;
- ``structural``: every node class of the IR (vector-Jacobian rule, evaluation, tidy rule,
  scalar meaning) and the language's structural functions;
- ``derivatives``: f' of an elementwise function, through its output where possible;
- ``numeric``: float64 and mpmath versions of the elementwise functions.
"""

from __future__ import annotations

from sympy.matrices.expressions.matexpr import MatrixExpr

from . import elementwise as _elementwise  # noqa: F401  (registers the records)
from . import structural as _structural  # noqa: F401
from .base import (
    ELEMENTWISE,
    FUNCTIONS,
    LANGUAGE,
    NODES,
    BuildContext,
    Elementwise,
    LanguageFunction,
    Node,
    node_record,
    register,
    unregister,
)
from .derivatives import ScalarDerivative, activation_derivative, derivative, scalar_to_matrix
from .numeric import elementwise_function
from .structural import apply_function, log_of

__all__ = [
    "ELEMENTWISE", "FUNCTIONS", "LANGUAGE", "NODES", "BuildContext", "Elementwise", "LanguageFunction", "Node",
    "apply_function",
    "ScalarDerivative", "activation_derivative", "derivative", "elementwise_function", "log_of", "node_record",
    "scalar_to_matrix",
    "register", "unregister", "vjp",
]


def vjp(node: MatrixExpr, g: MatrixExpr, out: MatrixExpr) -> list[MatrixExpr | None]:
    """Contributions to the children of ``node`` given its adjoint ``g`` and value ``out``."""
    rule = node_record(node).vjp
    if rule is None:
        raise TypeError(f"no vector-Jacobian rule for {type(node).__name__}")
    return rule(node, g, out)
