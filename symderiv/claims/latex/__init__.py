"""Claims in a LaTeX or Markdown write-up, read in stages.

``tokens``: the LaTeX vocabulary and the tokenizer.  ``displays``: where the displayed
equations are and how each is cut into chains ``A = B = C``.  ``names``: how a symbol as
written maps to a quantity of the model (the ``Glossary``), ignoring fonts (bold or not,
``\\text``/``\\mathrm``/``\\texttt``).  ``parser``: one member of a chain → a claim tree.
``writeup``: the whole write-up → its claims (``read_writeup``).

Nothing in a write-up is evaluated.  A claim that cannot be read is kept, with the place
and the reason, so the rest of the write-up is still judged.
"""

from .displays import displayed_spans
from .writeup import WriteupReading, read_writeup

__all__ = ["WriteupReading", "displayed_spans", "read_writeup"]
