"""The Python API beside ``load``, ``parse`` and ``derive``: what the command line does, as functions.

>>> import symderiv
>>> d = symderiv.derive(symderiv.load("examples/seed_rnn.sdm"))
>>> d.adjoint("h")
δh_t = Wᵀ δz_{o,t} + Vᵀ δz_{h,t+1}
>>> symderiv.check(d).ok
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .ad.derive import Derivation
from .errors import SymderivError


def output_formats() -> tuple[str, ...]:
    """The names ``symderiv derive --format`` accepts, and so ``write(formats=…)``: one registry,
    the command line's (the write-ups, then every code back end's; ``all`` is every one of them)."""
    from .render.emit import formats

    return formats()


def write(d: Derivation, directory: str | os.PathLike = ".", formats: str | Iterable[str] | None = None,
          force: bool = False) -> list[Path]:
    """Write the outputs of ``symderiv derive``: ``NAME.tex``, ``NAME.md``, ``NAME.py`` in ``directory``.

    ``formats`` is a list of format names or one comma-separated string (``"md,py"``), the
    names ``symderiv derive --format`` takes (``torch``, ``jax`` and ``all`` too); by default
    its default, ``tex,md,py``.  With ``all``, every format the model can be written in.  The
    files are written all or none, and a file symderiv did not write is kept unless ``force``.
    Returns the paths written.

    >>> import symderiv, tempfile
    >>> d = symderiv.derive(symderiv.load("examples/mlp.sdm"))
    >>> [p.name for p in symderiv.write(d, tempfile.mkdtemp(), formats="md,py")]
    ['mlp.md', 'mlp.py']
    >>> [p.name for p in symderiv.write(d, tempfile.mkdtemp(), formats="torch")]
    ['mlp_torch.py']
    >>> symderiv.write(d, tempfile.mkdtemp(), formats=["pdf"])
    Traceback (most recent call last):
    ...
    symderiv.errors.SymderivError: error: unknown format pdf; choose from tex, md, py, torch, jax, or all
    """
    from .cli import FORMATS
    from .render.emit import formats_for, write_outputs

    known = output_formats()
    if formats is None:
        chosen = list(FORMATS)
    else:
        items = formats.split(",") if isinstance(formats, str) else list(formats)
        chosen = [f.strip() for f in items if isinstance(f, str) and f.strip()]
        unknown = [str(f) for f in items if not isinstance(f, str) or (f.strip() and f.strip() not in (*known, "all"))]
        if unknown or not chosen:
            raise SymderivError(f"unknown format {', '.join(unknown) or '(none)'}; "
                                f"choose from {', '.join(known)}, or all")
    if "all" in chosen:  # every format this model can be written in, as `derive --format all`
        chosen = formats_for(d, [g for f in chosen for g in (known if f == "all" else (f,))])[0]
    return write_outputs(d, directory, list(dict.fromkeys(chosen)), force=force)


@dataclass
class CheckReport:
    """What ``symderiv check`` prints: for each parameter, the largest relative error of the
    closed form against SymPy's own differentiation of the scalar unrolling (40 digits), and
    of the generated NumPy module against central differences."""

    model: str
    sizes: dict[str, int]
    T: int | None
    exact: dict[str, float]
    numeric: dict[str, float]
    problems: list[str] = field(default_factory=list)
    ok: bool = True

    def text(self) -> str:
        """The report as the command line prints it."""
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) + (f", T={self.T}" if self.T else "")
        lines = [f"{self.model}: gradients checked at {sizes}",
                 f"  {'parameter':<16} {'closed form vs SymPy (40 digits)':>34} {'NumPy vs central differences':>30}"]
        lines += [f"  {name:<16} {err:>34.2e} {self.numeric.get(name, float('nan')):>30.2e}"
                  for name, err in self.exact.items()]
        lines += [f"  disagreement: {p}" for p in self.problems]
        lines.append("all agree" if self.ok else "DISAGREEMENT: some gradients are wrong")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<CheckReport of {self.model}: {'all agree' if self.ok else 'DISAGREEMENT'}>"


def check(d: Derivation, seed: int = 0) -> CheckReport:
    """Check every gradient of ``d`` as ``symderiv check`` does: the closed forms against an
    independent scalar unrolling differentiated by SymPy (exact, 40 digits), and the generated
    NumPy module against central differences and its own entry points, at a random point of
    small sizes drawn from ``seed``.

    >>> import symderiv
    >>> report = symderiv.check(symderiv.derive(symderiv.load("examples/mlp.sdm")))
    >>> report.ok, sorted(report.exact) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    (True, True)
    """
    from .check.certify import DEFAULT_T, TooLargeToCertify, certify, default_dims
    from .check.numcheck import finite_difference_check
    from .ops.numeric import ExactOverflow

    model = d.model
    try:
        exact = certify(model, d, seed=seed)
    except ExactOverflow as exc:  # as `symderiv check` says it
        return CheckReport(model.name, {}, None, {}, {}, [f"cannot check the gradients: at the point drawn, {exc}"],
                           False)
    except TooLargeToCertify as exc:  # the module alone, against central differences
        dims, T = default_dims(model), DEFAULT_T if model.has_time else None
        numeric = finite_difference_check(d, dims, T, seed=seed)
        return CheckReport(model.name, dict(dims), T, {}, dict(numeric.errors),
                           [f"the exact check is skipped: {exc}"] + list(numeric.problems), bool(numeric.ok))
    numeric = finite_difference_check(d, exact.dims, exact.T, seed=seed)
    return CheckReport(d.model.name, dict(exact.dims), exact.T, dict(exact.param_errors), dict(numeric.errors),
                       list(numeric.problems), bool(exact.ok and numeric.ok))


def verify(d: Derivation, path: str | os.PathLike):
    """Judge a hand derivation of ``d``'s model claim by claim, as ``symderiv verify`` does.

    ``path`` is a claims file (``.claims``) or a LaTeX or Markdown write-up (``.tex``, ``.md``,
    ``.txt``).  Returns a :class:`symderiv.claims.verify.Report` (``.verdicts``,
    ``.all_correct``, ``.text()``, ``.json()``).  A file that cannot be read raises
    :class:`symderiv.ClaimError`.

    >>> import symderiv, pathlib, tempfile
    >>> d = symderiv.derive(symderiv.load("examples/seed_rnn.sdm"))
    >>> claims = pathlib.Path(tempfile.mkdtemp()) / "mine.claims"
    >>> _ = claims.write_text("d(V) = Sum(d(z_h[t]) @ h[t-1].T, (t, 1, T))\\n")
    >>> [(v.target, v.verdict) for v in symderiv.verify(d, claims).verdicts]
    [('V', 'correct')]
    """
    from .claims.reading import read_claims
    from .claims.verify import verify as judge

    return judge(d, read_claims(str(path), d))


__all__ = ["CheckReport", "check", "output_formats", "verify", "write"]
