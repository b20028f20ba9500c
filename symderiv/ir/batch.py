"""The batch rule (MODEL_LANGUAGE.md, Version 2, "A batch").

The loss of a batch is the sum, over its examples, of every term that reads data, plus, once,
the terms that read only params and scalar inputs: a penalty ``lam / 2 * sum(W ** 2)`` counts
once per call, not once per example.  Gradients follow the same rule.

A *term* is a top-level summand of the loss's equation, as written (``loss L = ce + pen``
has two; ``loss L = sum(tanh(W @ x) + b)`` one, which reads data).  A term *reads data* when
it reads, directly or through the quantities it reads, an input or a target that is not a
scalar input, or any sequence.  A scalar input (``input lam: scalar``) is one value shared
by every example.

Every stage that batches reads the rule here: the code generator (which computes the two
kinds of terms apart) and ``check`` (whose reference for a batch is built from it).
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp
from sympy import MatAdd, MatrixSymbol

from .expr import add, coeff_and_rest, scale
from .model import Model, Quantity


def is_shared_input(q: Quantity) -> bool:
    """A scalar input: one value for every example of a batch, never with a batch axis."""
    return q.role == "input" and q.is_scalar


def _reads(e: sp.Basic) -> set[str]:
    return {s.name for s in e.atoms(MatrixSymbol)}


def per_example_names(model: Model) -> set[str]:
    """The data and quantities whose value differs from one example of a batch to the next:
    every datum but a scalar input, every sequence quantity, and whatever reads one of them."""
    found = {q.name for q in model.data if not is_shared_input(q)}
    found |= {q.name for q in model.quantities.values() if q.sequence and q.role != "param"}
    changed = True
    while changed:
        changed = False
        for q in model.quantities.values():
            if q.name not in found and q.expr is not None and _reads(q.expr) & found:
                found.add(q.name)
                changed = True
    return found


def loss_terms(model: Model) -> list[sp.Basic]:
    """The top-level summands of the loss's equation (a number times a sum is distributed)."""
    e = model[model.loss].expr
    c, rest = coeff_and_rest(e)
    if isinstance(rest, MatAdd):
        return [scale(c, t) for t in rest.args]
    return [e]


def split_loss(model: Model) -> tuple[list[sp.Basic], list[sp.Basic]]:
    """(the terms counted once per example, the terms counted once per call)."""
    varying = per_example_names(model)
    each: list[sp.Basic] = []
    once: list[sp.Basic] = []
    for t in loss_terms(model):
        (each if _reads(t) & varying else once).append(t)
    return each, once


def with_loss(model: Model, terms: list[sp.Basic]) -> Model:
    """``model`` with its loss's equation made of ``terms`` only (the same name, shape and place)."""
    loss = model[model.loss]
    quantities = dict(model.quantities)
    quantities[loss.name] = replace(loss, expr=add(*terms))
    return replace(model, quantities=quantities)
