"""How a model name is spelled in LaTeX and in Unicode, the way a homework writes it.

``W_in`` → W^(in) (a longer suffix becomes an upright superscript), ``b_h`` → b_h (a
one-letter suffix is a subscript), ``r_hat`` → r̂, and the step joins the subscript:
``y_o`` at step t is y_{o,t}, and a trailing number is a subscript too (``W1`` is W₁).
Matrices and vectors are bold, scalars are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .texsafe import braces_come_off

#: The Greek letters a model name may be: each name is also its LaTeX command (``lambda`` is
#: ``\lambda``), mapped to its Unicode character (λ).
GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ",
    "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ",
    "Omega": "Ω",
}
ACCENTS = {"hat": ("\\hat", "\u0302"), "bar": ("\\bar", "\u0304"), "tilde": ("\\tilde", "\u0303")}


@dataclass(frozen=True)
class NameParts:
    body: str
    subscripts: tuple[str, ...] = ()
    superscripts: tuple[str, ...] = ()
    accent: str | None = None


def split_name(name: str) -> NameParts:
    """``a_in`` → body a, superscript in; ``y_o`` → subscript o; ``r_hat`` → accent hat."""
    body, *rest = name.split("_")
    if not body:  # a name like ``_x``: keep it whole
        return NameParts(name)
    subs, sups, accent = [], [], None
    for part in rest:
        if not part:
            continue
        if part in ACCENTS and accent is None:
            accent = part
        elif len(part) == 1 or part.isdigit():
            subs.append(part)
        else:
            sups.append(part)
    return NameParts(body, tuple(subs), tuple(sups), accent)


def _latex_body(body: str, bold: bool) -> str:
    if body in GREEK:
        core = "\\" + body
        return f"\\boldsymbol{{{core}}}" if bold else core
    if len(body) > 1:
        body = body.replace("_", "\\_")  # a name kept whole (_x_y): its underscores are not subscripts
        core = f"\\mathrm{{{body}}}"
        return f"\\mathbf{{{body}}}" if bold else core
    return f"\\mathbf{{{body}}}" if bold else body


def _latex_word(word: str) -> str:
    if word.isdigit() or len(word) == 1:
        return word
    if word in GREEK:
        return "\\" + word
    return "\\mathrm{" + word.replace("_", "\\_") + "}"


def latex_name(name: str, *, bold: bool, step: str | None = None, override: str | None = None,
               calligraphic: bool = False) -> str:
    """The LaTeX spelling of ``name``, optionally at a step such as ``t-1``."""
    if override is not None:
        if braces_come_off(override):  # \hat{y}_o: TeX would take the braces off {\hat{y}_o}_{t}
            override += "{}"
        return override if step is None else f"{{{override}}}_{{{step}}}"
    parts = _layer_subscript(split_name(name))
    if calligraphic and len(parts.body) == 1 and parts.body.isupper():
        core = f"\\mathcal{{{parts.body}}}"
    else:
        core = _latex_body(parts.body, bold)
    if parts.accent:
        core = f"{ACCENTS[parts.accent][0]}{{{core}}}"
    subs = [_latex_word(s) for s in parts.subscripts]
    if step is not None:
        subs.append(step)
    text = core
    if parts.superscripts:
        text += "^{(" + ",".join(_latex_word(s) for s in parts.superscripts) + ")}"
    if subs:
        sub = ",".join(subs)
        text += f"_{{{sub}}}" if len(sub) > 1 else f"_{sub}"
    if parts.accent and parts.superscripts:
        # One accent with a superscript: TeX drops the braces of {\hat{h}^{(out)}}^{\top} (its rule for a
        # group of one accent), a double superscript; an empty group after it keeps them.
        text += "{}"
    return text


#: Letters of the pre-activations symderiv names, in order of preference: z_h (the letter
#: courses use: z = W x + b, h = f(z)), else one that no name of the model starts with (a GRU
#: whose update gate is z gets a_h).  Never y, which a reader takes for an output or a target.
PREACTIVATION_LETTERS = ("z", "a", "u", "s", "v")


def preactivation_of(name: str, quantities: Iterable[str]) -> str | None:
    """The quantity whose pre-activation ``name`` may be (``h`` for ``z_h``, ``h1`` for ``z_h_1``),
    or None: a ``latex`` line may spell a pre-activation before symderiv has named it."""
    m = re.fullmatch("(" + "|".join(PREACTIVATION_LETTERS) + r")_(.+)", name)
    if m is None:
        return None
    rest = m.group(2)
    for q in quantities:
        parts = split_name(q)
        layer = re.fullmatch(r"([A-Za-z]+?)(\d+)", parts.body)
        forms = {q, parts.body} | ({f"{layer.group(1)}_{layer.group(2)}", f"{layer.group(1)}_{layer.group(2)}"
                                     + q[len(parts.body):]} if layer else set())
        if rest in forms:
            return q
    return None


def _layer_subscript(parts: NameParts) -> NameParts:
    """``W1`` is W₁: a body of one letter (or a Greek name) followed by digits takes the digits
    as its first subscript, the rule of a one-letter suffix (``W1`` as ``W_1``, ``h1[t]`` as h_{1,t})."""
    m = re.fullmatch(r"([A-Za-z]|" + "|".join(GREEK) + r")(\d+)", parts.body)
    if m is None:
        return parts
    return NameParts(m.group(1), (m.group(2),) + parts.subscripts, parts.superscripts, parts.accent)


def unicode_name(name: str, *, step: str | None = None) -> str:
    """The terminal spelling: ``h_out`` at ``t`` is ``h^(out)_t``, ``r_hat`` is ``r̂``."""
    parts = split_name(name)
    core = GREEK.get(parts.body, parts.body)
    if parts.accent:
        core += ACCENTS[parts.accent][1]
    text = core
    if parts.superscripts:
        text += "^(" + ",".join(parts.superscripts) + ")"
    subs = list(parts.subscripts) + ([step] if step is not None else [])
    if subs:
        sub = ",".join(subs)
        text += f"_{{{sub}}}" if len(sub) > 1 else f"_{sub}"
    return text
