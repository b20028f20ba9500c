"""The code back ends by ``--format`` name: which emitter prints a module, through which template,
into which file.

One entry per back end; the command line (``--format``), ``render/emit.py`` (``render``,
``write_outputs``) and ``regenerate.py`` read this table and keep no list of their own.  The
emitter is named, not imported, so that loading the table imports no back end (and no back end
imports its framework: the generated modules do, symderiv never does).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class CodeBackend:
    """A back end: the generated module ``NAME + suffix``, printed by ``emitter.module_context``
    (``(derivation, comment, comment_text) → context``) through ``template``."""

    format: str  # the --format name
    backend: str  # the name ``symderiv check --backend`` takes
    suffix: str  # the file is the model's name followed by this
    template: str  # in templates/
    emitter: str  # the module holding ``module_context``
    description: str  # for --help

    def module_context(self, d, comment, comment_text) -> dict:
        """The emitter's template context for the derivation ``d``."""
        return importlib.import_module(self.emitter).module_context(d, comment, comment_text)


BACKENDS: dict[str, CodeBackend] = {b.format: b for b in (
    CodeBackend("py", "numpy", ".py", "module.py.j2", "symderiv.codegen.numpy.emitter", "NumPy"),
    CodeBackend("jax", "jax", "_jax.py", "module_jax.py.j2", "symderiv.codegen.jax.emitter", "JAX"),
)}


def by_backend(name: str) -> CodeBackend:
    """The back end ``symderiv check --backend NAME`` means."""
    return next(b for b in BACKENDS.values() if b.backend == name)


def file_name(model_name: str, fmt: str) -> str:
    """The file a format writes for a model: ``NAME.py``, ``NAME_jax.py``, ``NAME.tex``, ``NAME.md``."""
    backend = BACKENDS.get(fmt)
    return model_name + (backend.suffix if backend else f".{fmt}")
