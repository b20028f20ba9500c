"""The old home of the operation table, kept only for ``codegen/plan.py``'s import until it
reads ``symderiv.ops`` (the integrator switches it and deletes this module)."""

from . import ELEMENTWISE, FUNCTIONS, activation_derivative, vjp

__all__ = ["ELEMENTWISE", "FUNCTIONS", "activation_derivative", "vjp"]
