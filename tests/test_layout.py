"""The layout of the package and of the tests: every package ships, every test file stands
on its own (shared helpers come from ``tests/helpers.py``, fixtures from ``conftest``)."""

import ast

import pytest

from .helpers import ROOT


def test_every_package_directory_is_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "symderiv").rglob("__init__.py")}
    assert "symderiv.claims.latex" in packages
    assert packages <= set(config["packages"]), packages - set(config["packages"])


def test_no_test_file_imports_from_another_or_from_conftest():
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                local = node.level > 0 or module.startswith("tests.")
                name = module.removeprefix("tests.")
                if local and (name.startswith("test_") or name == "conftest"):
                    offenders.append(f"{path.name}:{node.lineno} from {module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                              if a.name.startswith(("tests.test_", "tests.conftest"))]
    assert offenders == []


#: The stages of the package and what each may import at module level: down the pipeline of
#: ARCHITECTURE.md, never up.  (Derivation._repr_latex_ reaches the printers from inside a
#: method, for Jupyter; a module-level import would make ad depend on render.)
STAGE_IMPORTS = {
    "errors": set(),
    "ir": {"errors"},
    "ops": {"errors", "ir"},
    "frontend": {"errors", "ir", "ops"},
    "ad": {"errors", "ir", "ops"},
    "codegen": {"errors", "ir", "ops", "ad"},
    "render": {"errors", "ir", "ops", "ad", "codegen", "__init__"},
    "check": {"errors", "ir", "ops", "ad", "codegen", "render"},
    "claims": {"errors", "ir", "ops", "frontend", "ad", "render", "check"},
}


def _stage_imports(path):
    """(line, stage imported) for the module-level relative imports of one module."""
    rel = path.relative_to(ROOT / "symderiv")
    package = list(rel.parent.parts)
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[:len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # from .. import __version__
                yield node.lineno, "__init__"
            elif target[0] != rel.parts[0]:
                yield node.lineno, target[0]


def test_stages_import_only_what_comes_before_them():
    offenders = []
    for path in sorted((ROOT / "symderiv").rglob("*.py")):
        stage = path.relative_to(ROOT / "symderiv").parts[0].removesuffix(".py")
        if stage not in STAGE_IMPORTS:  # cli, regenerate, __init__: the top
            continue
        offenders += [f"{path.relative_to(ROOT)}:{line} imports {target}" for line, target in _stage_imports(path)
                      if target not in STAGE_IMPORTS[stage]]
    assert offenders == []


def test_no_test_reads_a_path_outside_the_repository():
    """What a test reads ships in tests/data (or elsewhere in the repository): an absolute
    path of one machine makes a test that is skipped everywhere else."""
    import re

    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(
                    r"(/(work|home|tmp|mnt|srv|opt|Users|root|data)(/|$)|[A-Za-z]:\\)", node.value):
                offenders.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert offenders == []
