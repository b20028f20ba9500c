"""NumPy operations per step of the generated modules' time loops: python benchmarks/calls_per_step.py [NAME ...]

At small sizes a call's time is mostly Python dispatching NumPy operations, about a microsecond each, and
the loops over the steps dispatch theirs T times; so the count per step is what to keep down (issue 17).
Counted from the generated source (generated/NAME.py, its syntax tree), in ``_run``: every call (a NumPy
function, a ufunc, a module helper, which counts the operations of its own body: ``_sigmoid`` is four),
every operator on arrays (``a @ b``, ``a * b``: one each; arithmetic of sizes and the step index, ``i + 1``,
is none), every in-place update (``a += b``: one) and every write into a slot (``a[i] = …``: one copy).
The per-step count of a loop is its body's; the rest of ``_run`` is "outside", run once per call
(``_prepare``, the arguments' checks and layout, and ``_step_operand``, counted as one each).  A module with
several loops (a backward recurrence) lists each.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from benchutil import ROOT

SIZES = {"T", "B", "i"}  # names of sizes: with constants, their arithmetic is not NumPy's
# counted as one: the arguments' checks and layouts; a step product's matrix laid out (at most one copy; whether
# to lay it out by columns is asked of threadpoolctl once per process)
ONE = {"_prepare", "_external", "_external_matrix", "_step_operand"}


def _helpers(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("_")}


class Counter:
    def __init__(self, tree: ast.Module, sizes: set[str]):
        self.helpers = _helpers(tree)
        self.sizes = SIZES | sizes
        self._cost: dict[str, int] = {}

    def helper(self, name: str) -> int:
        """The operations of a helper's body on its path for large arrays (early returns skipped)."""
        if name not in self._cost:
            self._cost[name] = 1  # a recursion's guard
            body = [s for s in self.helpers[name].body if not (isinstance(s, ast.If) and any(
                isinstance(x, ast.Return) for x in s.body))]
            self._cost[name] = max(1, sum(self.ops(s) for s in body))
        return self._cost[name]

    def is_size(self, node: ast.AST) -> bool:
        return all(isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Load))
                   or (isinstance(n, ast.Name) and n.id in self.sizes) for n in ast.walk(node))

    def ops(self, node: ast.AST) -> int:
        count = 0
        for n in ast.walk(node):
            if isinstance(n, ast.Call):
                name = ast.unparse(n.func)
                if name in self.helpers and name not in ONE:
                    count += self.helper(name)
                elif name.startswith("_ws.op") and isinstance(n.args[0], ast.Name) and n.args[0].id in self.helpers:
                    count += self.helper(n.args[0].id)  # a helper written into the workspace: its operations
                elif name in ("range", "reversed", "len", "int", "float", "dtype", "isinstance", "type"):
                    continue
                elif not name.endswith((".shape", ".reshape", "__enter__")):
                    count += 1
            elif isinstance(n, ast.BinOp) and not self.is_size(n):
                count += 1
            elif isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and not self.is_size(n):
                count += 1
            elif isinstance(n, ast.AugAssign):
                count += 1
            elif isinstance(n, ast.Assign) and any(isinstance(t, ast.Subscript) for t in n.targets):
                count += 1
        return count


def count(name: str, root=ROOT) -> dict:
    """{"loops": [(direction, per step)], "outside": operations once per call} of generated/NAME.py."""
    tree = ast.parse((root / "generated" / f"{name}.py").read_text(encoding="utf-8"))
    run = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "_run")
    sizes = {t.id for s in ast.walk(run) if isinstance(s, ast.Assign) and isinstance(s.value, ast.Subscript)
             and isinstance(s.value.value, ast.Attribute) and s.value.value.attr == "shape"
             for t in s.targets if isinstance(t, ast.Name)}
    c = Counter(tree, sizes)
    loops, inside = [], set()
    for node in ast.walk(run):
        if isinstance(node, ast.For):
            backwards = "reversed" in ast.unparse(node.iter)
            loops.append(("backward in t" if backwards else "forward in t", sum(c.ops(s) for s in node.body)))
            inside |= {id(n) for s in node.body for n in ast.walk(s)}
    total = 0
    for node in ast.walk(run):  # every statement outside the loops, once
        if isinstance(node, ast.stmt) and id(node) not in inside and not isinstance(
                node, (ast.For, ast.If, ast.With, ast.FunctionDef, ast.Return)):
            total += c.ops(node)
    return {"loops": loops, "outside": total}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="generated modules (default: every NumPy module with a time loop)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose generated/ to count")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.stem for p in (args.root / "generated").glob("*.py")
                                 if not p.stem.endswith(("_torch", "_jax")))
    rows = []
    for name in names:
        found = count(name, args.root)
        if not found["loops"] and not args.names:
            continue
        steps = ", ".join(f"{n} ({d})" for d, n in found["loops"]) or "no loop"
        rows.append(f"| {name} | {steps} | {found['outside']} |")
    text = "| model | NumPy operations per step, each loop | outside the loops, per call |\n|---|---|--:|\n"
    text += "\n".join(rows)
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(main() and 0)
