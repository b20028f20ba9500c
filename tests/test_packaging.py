"""The wheel ships the templates, so a non-editable ``pip install .`` can render outputs."""

import subprocess
import sys
import zipfile

import pytest

from .helpers import ROOT


@pytest.mark.slow
def test_wheel_contains_the_templates(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("symderiv-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("module.py.j2", "writeup.tex.j2", "page.md.j2"):
        assert f"symderiv/templates/{template}" in names
    assert "symderiv/cli.py" in names
