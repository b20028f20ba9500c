"""The PyTorch back end: the printer of one expression (``printer``, a subclass of the NumPy
printer: the layout and the slicing are the same), the spelling of the elementwise functions
(``spelling``), the idioms the statements are written with (``idioms``: allocations on the
module's device and dtype, ``torch.tensor_split`` views, ``out=`` forms), and the emitter
(``emitter``: a schedule → the context of templates/module_torch.py.j2, with what the
``autograd.Function`` saves between its forward and backward).

Nothing here imports torch: this package writes PyTorch code, the generated module runs it.
"""

from __future__ import annotations

from ..numpy import Backend
from .idioms import TorchIdioms
from .printer import TorchPrinter

TORCH = Backend(TorchPrinter, TorchIdioms)

__all__ = ["TORCH", "TorchIdioms", "TorchPrinter"]
