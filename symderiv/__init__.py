"""symderiv: symbolic derivation of neural-network gradients in closed matrix form.

>>> import symderiv
>>> model = symderiv.load("examples/seed_rnn.sdm")
>>> d = symderiv.derive(model)
>>> d.gradient("V")   # Σ_t δy_{h,t} h_{t-1}ᵀ
"""

from .ad.derive import Derivation, derive
from .errors import ClaimError, ModelError, SymderivError
from .frontend.language import load, parse
from .ir.model import Model

__all__ = ["ClaimError", "Derivation", "Model", "ModelError", "SymderivError", "derive", "load", "parse"]
__version__ = "0.1.0"
