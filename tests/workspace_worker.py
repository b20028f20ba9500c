"""A fresh process of tests/test_workspace.py: ``python -m tests.workspace_worker IN.npz OUT.npz``.

IN.npz holds, for each generated NumPy module, its parameters and data (keys ``path|param|name`` and
``path|data|name``); this process imports each module, calls ``loss_and_gradients`` and ``forward`` once
on them, and saves the results in OUT.npz (``path|loss``, ``path|grad|name``, ``path|value|name``).

Without the workspace: every array NumPy's own (the module's path for calls too small for one, which
tests/test_generated.py and the others hold to independent references), so that a wrong reuse of an
array in the workspace cannot give the same wrong answer here."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np


def main(argv: list[str]) -> int:
    source, target = argv
    given = np.load(source)
    by_path: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for key in given.files:
        path, kind, name = key.split("|")
        by_path.setdefault(path, {"param": {}, "data": {}})[kind][name] = given[key]
    out = {}
    for k, (path, args) in enumerate(sorted(by_path.items())):
        spec = importlib.util.spec_from_file_location(f"workspace_worker_{k}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module._Workspace.SMALL = float("inf")  # no call is large enough for the workspace
        loss, grads = module.loss_and_gradients(args["param"], **args["data"])
        out[f"{path}|loss|"] = np.asarray(loss)
        out.update({f"{path}|grad|{n}": np.asarray(g) for n, g in grads.items()})
        values = module.forward(args["param"], **args["data"])
        out.update({f"{path}|value|{n}": np.asarray(v) for n, v in values.items()})
    np.savez(target, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
