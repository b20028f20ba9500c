"""symderiv: symbolic derivation of neural-network gradients in closed matrix form.

>>> import symderiv
>>> model = symderiv.load("examples/seed_rnn.sdm")
>>> d = symderiv.derive(model)
>>> d.gradient("V")
∂L/∂V = Σ_t δz_{h,t} h_{t−1}ᵀ
"""

# The package symderiv.check is imported first, so that the function check below keeps the
# name: Python binds a subpackage to its parent's attribute only when it first imports it.
from . import check as _check_package  # noqa: F401
from .ad.derive import Derivation, Formula, derive
from .api import CheckReport, check, verify, write
from .errors import ClaimError, ModelError, SymderivError, UnknownNameError
from .frontend.language import load, parse
from .ir.model import Model

__all__ = ["CheckReport", "ClaimError", "Derivation", "Formula", "Model", "ModelError", "SymderivError",
           "UnknownNameError", "check", "derive", "load", "parse", "verify", "write"]
__version__ = "0.1.0"
