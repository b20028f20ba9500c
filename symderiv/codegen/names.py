"""Python identifiers for the model's names in the generated code."""

from __future__ import annotations

import keyword
from dataclasses import dataclass

from ..ad.derive import Derivation

RESERVED = set(keyword.kwlist) | {
    # what the generated module itself defines or uses
    "np", "params", "data", "grads", "out", "i", "T", "B", "lr", "dims", "seed", "rng", "dtype", "loss", "values",
    "want",
    "jax", "jnp", "torch", "keys", "partial", "sizes",  # the other back ends' modules and names
    "forward", "gradients", "sgd_step", "init_params", "loss_and_gradients",
    "v", "a", "k", "e", "s", "z", "x", "p", "width", "parts", "lead",
    # builtins it calls
    "range", "sum", "float", "dict", "len", "max", "min", "abs", "tuple", "int", "str", "zip", "list", "reversed",
    "iter", "next",
}


@dataclass
class ArrayNames:
    """Python identifiers for the model's names, avoiding what the module itself uses.

    A value keeps the model's name where it can (``h``, ``W_in``); its adjoint is ``d_`` and
    its gradient ``g_`` in front, unless the model itself uses that name.
    """

    table: dict[str, str]
    adjoints: dict[str, str]
    grads: dict[str, str]

    @classmethod
    def for_model(cls, d: Derivation) -> ArrayNames:
        """The names of every quantity, dim, adjoint and gradient of ``d``."""
        used = set(RESERVED)

        def fresh(py: str) -> str:
            if py.startswith("_"):  # the module's own helpers and temporaries start with "_"
                py = "v" + py
            while py in used:
                py = py + "_"
            used.add(py)
            return py

        names = list(d.model.quantities) + list(d.model.dims)
        table = {name: fresh(name) for name in names}
        adjoints = {name: fresh("d_" + table[name]) for name in d.model.quantities}
        grads = {name: fresh("g_" + table[name]) for name in d.model.quantities}
        return cls(table, adjoints, grads)

    def value(self, name: str) -> str:
        """The identifier of a model value (or dim)."""
        return self.table[name]

    def adjoint(self, name: str) -> str:
        """The identifier of δ of a quantity."""
        return self.adjoints[name]

    def grad(self, name: str) -> str:
        """The identifier of the gradient of a parameter."""
        return self.grads[name]
