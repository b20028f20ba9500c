"""The core is typed: every public function of the pipeline's stages has annotations.

mypy (run by .ci/run) checks what the annotations say; this test makes sure they are there
to check, so that a new public function of frontend, ir, ops, ad or codegen cannot land
without them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import symderiv

CORE = ("frontend", "ir", "ops", "ad", "codegen")

def _modules():
    for stage in CORE:
        package = importlib.import_module(f"symderiv.{stage}")
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            yield importlib.import_module(info.name)


def _public_functions(module):
    """(qualified name, function) for the public functions and methods defined in ``module``."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if inspect.isfunction(func):
                    yield f"{module.__name__}.{name}.{attr}", func


def _missing(func) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    missing = [p.name for p in params if p.name not in func.__annotations__]
    if "return" not in func.__annotations__ and func.__name__ != "__init__":
        missing.append("return")
    return missing


@pytest.mark.parametrize("module", list(_modules()), ids=lambda m: m.__name__)
def test_public_functions_of_the_core_are_annotated(module):
    unannotated = {name: gaps for name, f in _public_functions(module) if (gaps := _missing(f))}
    assert not unannotated, f"public functions without type hints in {module.__name__}: {unannotated}"


def test_the_check_sees_the_stages():
    names = {m.__name__ for m in _modules()}
    assert {"symderiv.ir.expr", "symderiv.ad.derive", "symderiv.frontend.language"} <= names
    assert symderiv.__name__ == "symderiv"
