"""Every elementwise function, one record each (the public ones are the language's).

To add a function, add one record here: the parser, the sweep (its derivative, derived by
SymPy from ``scalar`` and written through the output where it can be), the evaluator, the
certification, the claim reader and the printers all read it from here.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .base import Elementwise, register


def _f(name: str):
    """Another record's function inside a derivative: sign(z), Φ(z), 𝟙[z > 0]."""
    return sp.Function(name)


for _record in [
    Elementwise("sigmoid", lambda z: 1 / (1 + sp.exp(-z)), r"\sigma", "σ", words=("sigmoid",), commands=("sigma",),
                positive=True, float64=lambda x: 0.5 * (1 + np.tanh(0.5 * x))),  # through tanh: no overflow
    Elementwise("tanh", sp.tanh, r"\tanh", "tanh", words=("tanh",), commands=("tanh",)),
    # relu' = 𝟙[z > 0], given: SymPy's Heaviside(z) is ½ at 0, and proving it equals step
    # everywhere else is slow.
    Elementwise("relu", lambda z: sp.Max(0, z), r"\operatorname{relu}", "relu", words=("relu", "ReLU"),
                derivative=lambda z: _f("step")(z), float64=lambda x: np.maximum(x, 0)),
    # softplus' = σ is given: SymPy finds it by matching against the other records, which takes half a second.
    Elementwise("softplus", lambda z: sp.log(1 + sp.exp(z)), r"\operatorname{softplus}", "softplus",
                words=("softplus",), positive=True, float64=lambda x: np.logaddexp(0, x),
                derivative=lambda z: _f("sigmoid")(z)),
    Elementwise("exp", sp.exp, r"\exp", "exp", words=("exp",), commands=("exp",), positive=True),
    # log' = 1/z and |z|' = sign(z) are given: finding them from the meaning takes SymPy a second.
    Elementwise("log", sp.log, r"\log", "log", words=("log",), commands=("log", "ln"), domain="positive",
                derivative=lambda z: 1 / z),
    Elementwise("sqrt", sp.sqrt, r"\sqrt", "√", words=("sqrt",), commands=("sqrt",), domain="positive",
                latex_form=r"\sqrt{$x}", unicode_form="√($x)"),
    Elementwise("abs", sp.Abs, r"\operatorname{abs}", "abs", words=("abs",), derivative=lambda z: _f("sign")(z),
                latex_form=r"\left|$x\right|", unicode_form="|$x|"),
    Elementwise("sin", sp.sin, r"\sin", "sin", words=("sin",), commands=("sin",)),
    Elementwise("cos", sp.cos, r"\cos", "cos", words=("cos",), commands=("cos",)),
    # The exact gelu, z Φ(z); its derivative Φ(z) + z φ(z) is given, SymPy cannot find it by name
    # (an unevaluated sum keeps the order written).
    Elementwise("gelu", lambda z: z * (1 + sp.erf(z / sp.sqrt(2))) / 2, r"\operatorname{gelu}", "gelu",
                words=("gelu", "GELU"),
                derivative=lambda z: sp.Add(_f("normal_cdf")(z), z * _f("normal_pdf")(z), evaluate=False)),
    # The slope alpha is a constant of the model file; relu's 𝟙[z > 0] and α 𝟙[z ≤ 0] are its derivative.
    Elementwise("leaky_relu", lambda z, alpha: sp.Piecewise((z, z > 0), (alpha * z, True)),
                r"\operatorname{leaky\_relu}", "leaky_relu", params=("alpha",),
                latex_form=r"\operatorname{leaky\_relu}_{$alpha}\left($x\right)", unicode_form="leaky_relu($x, $alpha)",
                derivative=lambda z, alpha: sp.Add(_f("step")(z), alpha * _f("step_nonpositive")(z), evaluate=False)),
    # Helpers that only appear in derivatives.
    # 𝟙[z > 0], the derivative of relu (0 at 0, as the generated code computes it); in LaTeX \mathbb{I}[z > 0],
    # which pdflatex, KaTeX and MathJax all print (none has a double-struck 1).
    Elementwise("step", lambda z: sp.Heaviside(z, 0), r"\mathbb{I}", "𝟙", public=False,
                latex_form=r"\mathbb{I}\left[$x > 0\right]", unicode_form="𝟙[$x > 0]",
                float64=lambda x: (x > 0).astype(x.dtype)),
    Elementwise("step_nonpositive", lambda z: sp.Piecewise((0, z > 0), (1, True)), r"\mathbb{I}", "𝟙", public=False,
                latex_form=r"\mathbb{I}\left[$x \le 0\right]", unicode_form="𝟙[$x ≤ 0]",
                float64=lambda x: (x <= 0).astype(x.dtype)),
    Elementwise("sign", sp.sign, r"\operatorname{sign}", "sign", public=False),
    Elementwise("normal_cdf", lambda z: (1 + sp.erf(z / sp.sqrt(2))) / 2, r"\Phi", "Φ", public=False, positive=True),
    Elementwise("normal_pdf", lambda z: sp.exp(-z ** 2 / 2) / sp.sqrt(2 * sp.pi), r"\phi", "φ", public=False,
                positive=True),
]:
    register(_record)
