"""The code back ends, one registration each: the ``--format`` name, the file it writes, its
template, and its emitter.  Nothing here imports a framework: a back end writes PyTorch or JAX
code, the generated module imports it.

``symderiv derive --format``, ``symderiv check --backend``, ``render/emit.py`` (what a format
renders and which file it writes) and ``regenerate.py`` (what ``generated/`` holds) read this
table and keep no list of their own.  A new back end is a folder ``codegen/NAME/`` (printer,
idioms, spelling, emitter: see ``codegen/__init__.py``), its template, and one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .jax.emitter import module_context as jax_context
from .numpy.emitter import module_context as numpy_context
from .torch.emitter import module_context as torch_context


class CodeBackend(NamedTuple):
    name: str  # ``symderiv check --backend NAME``
    format: str  # ``symderiv derive --format FORMAT``
    suffix: str  # the file written: NAME of the model + suffix
    template: str  # in templates/
    module_context: Callable[..., dict]  # (derivation, comment, comment_text) → the template's context
    package: str  # what the generated module imports (and ``check`` needs installed)
    # why the back end cannot generate this derivation's module yet (None: it can)
    unsupported: Callable[..., str | None] = lambda d: None


BACKENDS: dict[str, CodeBackend] = {}


def register(backend: CodeBackend) -> CodeBackend:
    """Add ``backend`` to the table (by its format name)."""
    BACKENDS[backend.format] = backend
    return backend


register(CodeBackend("numpy", "py", ".py", "module.py.j2", numpy_context, "numpy"))
register(CodeBackend("torch", "torch", "_torch.py", "module_torch.py.j2", torch_context, "torch"))
register(CodeBackend("jax", "jax", "_jax.py", "module_jax.py.j2", jax_context, "jax"))


def by_name(name: str) -> CodeBackend:
    """The back end called ``name`` (``numpy``, ``torch``, …); KeyError if there is none."""
    for backend in BACKENDS.values():
        if backend.name == name:
            return backend
    raise KeyError(name)
