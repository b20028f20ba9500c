"""The table of operations (see ``registry``)."""

from .registry import ELEMENTWISE

__all__ = ["ELEMENTWISE"]
