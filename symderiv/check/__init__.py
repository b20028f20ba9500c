"""Numbers that check a derivation: exact evaluation of the closed forms, certification
against an independent scalar differentiation, the generated module against central
differences."""

import sys as _sys
import types as _types


class _CallablePackage(_types.ModuleType):
    """``symderiv.check`` is this package and the function of the API at once:
    ``symderiv.check(d)`` checks a derivation (``symderiv.api.check``), and
    ``symderiv.check.certify`` is still the module."""

    def __call__(self, d, seed: int = 0):
        from ..api import check

        return check(d, seed=seed)


_sys.modules[__name__].__class__ = _CallablePackage
