"""Sphinx configuration of the symderiv documentation (``sphinx-build -W --keep-going docs docs/_build/html``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))

import symderiv  # noqa: E402

project = "symderiv"
author = "the symderiv developers"
copyright = "the symderiv developers"
release = version = symderiv.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",  # only its HTML visitors: the renderer is KaTeX (symderiv_docs)
    "sphinx_copybutton",
    "symderiv_docs",
]
html_math_renderer = "katex"

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "gallery/pdf", "examples"]

html_theme = "furo"
html_title = f"symderiv {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
# Nothing is fetched when the site is built or read: no intersphinx, KaTeX shipped locally.
html_theme_options = {"navigation_with_keys": True}

autodoc_member_order = "bysource"
autodoc_typehints = "description"

# The doctests run from the repository root, where examples/ is.
doctest_global_setup = f"""
import os
os.chdir({str(ROOT)!r})
"""
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True
