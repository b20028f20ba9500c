"""symderiv: symbolic derivation of neural-network gradients in closed matrix form.

>>> import symderiv
>>> model = symderiv.load("examples/seed_rnn.sdm")
>>> d = symderiv.derive(model)
>>> d.gradient("V")
∂L/∂V = Σ_t δz_{h,t} h_{t−1}ᵀ
"""

# symderiv.check is the package of the checks and, called, the API's check (symderiv.api.check):
# a function of that name would be replaced by the package when it is first imported.
from . import check
from .ad.derive import Derivation, Formula, derive
from .api import CheckReport, verify, write
from .errors import ClaimError, ModelError, SymderivError, UnknownNameError
from .frontend.language import load, parse
from .ir.model import Model

__all__ = ["CheckReport", "ClaimError", "Derivation", "Formula", "Model", "ModelError", "SymderivError",
           "UnknownNameError", "check", "derive", "load", "parse", "verify", "write"]
__version__ = "0.1.0"
