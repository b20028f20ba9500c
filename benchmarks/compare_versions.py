"""This checkout against an earlier revision, side by side in one run: python benchmarks/compare_versions.py REV

For a refactor that must not cost speed. For every model of examples/ that both versions have:

- ``loss_and_gradients`` of the generated module of REV (its committed generated/NAME.py) and of this checkout,
  float64, at a small size (every dim 32, T = 20, one unbatched sequence) and a large one (every dim 128, T = 30,
  B = 16), both modules in one fresh process per model and size, checked equal first (rtol 1e-9), then timed in
  interleaved rounds;
- ``derive`` of the model in a fresh process, of REV's package and of this checkout's, alternately (which goes
  first alternates from round to round): the first derive after import, and the best of ``WARM`` derives after it
  in the same process (what a derivation costs once SymPy's caches hold the model). Each round gives a ratio
  new / old of each; the table shows the medians and the spread (lowest–highest) of the per-round ratios.

REV's files are taken with ``git archive`` into a temporary directory; nothing of the checkout changes. The ratios
are new / old: below 1 is faster now.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from benchutil import ROOT, _import_file, blas_limit, machine_description, table, time_interleaved

SIZES = {"small": (32, 20, None), "large": (128, 30, 16)}
RTOL = 1e-9
WARM = 5
DERIVE = ("import sys, time, symderiv\n"
          "m = symderiv.load(sys.argv[1])\n"
          "t = time.perf_counter(); symderiv.derive(m); first = time.perf_counter() - t\n"
          "warm = []\n"
          f"for _ in range({WARM}):\n"
          "    t = time.perf_counter(); symderiv.derive(m); warm.append(time.perf_counter() - t)\n"
          "print(first, min(warm))")


def export(rev: str, into: Path) -> None:
    """REV's package, templates, examples and generated files, unpacked under ``into``."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "symderiv", "templates", "examples", "generated"],
                             cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def _size(spec: str, n: int) -> int:
    """The size a dim expression of ``INPUTS`` spells (dims and numbers, sums and products of them: ``n_x + 1``,
    ``2*n_h``) when every dim is n."""
    return sum(math.prod(int(f) if f.strip().isdigit() else n for f in term.split("*")) for term in spec.split("+"))


def data_for(module, n: int, T: int, batch: int | None, seed: int = 1) -> dict:
    """Random data in the generated module's public layout, every dim n: a vector (n,), a matrix (rows, cols), per
    step with the time axis first (T, ...), then the batch axis last (..., B); a scalar () shared by the batch."""
    rng = np.random.default_rng(seed)
    tail = (batch,) if batch else ()
    data = {}
    for name, (sequence, size) in module.INPUTS.items():
        if size == "scalar":
            example: tuple[int, ...] = ()
        else:
            example = tuple(_size(s, n) for s in ((size,) if isinstance(size, str) else size))
        shape = ((T,) if sequence else ()) + example + (tail if example else ())
        data[name] = rng.uniform(0.1, 1.0, shape)  # positive: a valid target of every loss of the examples
    return data


def measure_one(old_dir: str, name: str, size: str, rounds: int) -> dict:
    old = _import_file(f"old_{name}", Path(old_dir) / "generated" / f"{name}.py")
    new = _import_file(f"new_{name}", ROOT / "generated" / f"{name}.py")
    n, T, batch = SIZES[size]
    dims = dict.fromkeys(new.DIMS, n)
    params = new.init_params(dims, seed=0)
    data = data_for(new, n, T, batch)
    loss_old, grads_old = old.loss_and_gradients(params, **data)
    loss_new, grads_new = new.loss_and_gradients(params, **data)
    np.testing.assert_allclose(loss_new, loss_old, rtol=RTOL, err_msg=f"{name} {size}: loss")
    for k, g in grads_old.items():
        np.testing.assert_allclose(grads_new[k], g, rtol=RTOL, atol=RTOL * max(float(np.abs(g).max()), 1e-300),
                                   err_msg=f"{name} {size}: gradient of {k}")
    with blas_limit(1):
        t = time_interleaved({"old": lambda: old.loss_and_gradients(params, **data),
                              "new": lambda: new.loss_and_gradients(params, **data)}, rounds=rounds)
    return {"old": t["old"].best, "new": t["new"].best}


def derive_times(old_dir: Path, model: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of the first derive of ``model`` and of the best warm one, REV's package and ours in fresh
    processes, alternately: {"first"|"warm": {"old"|"new": one value a round}}."""
    times: dict[str, dict[str, list[float]]] = {"first": {"old": [], "new": []}, "warm": {"old": [], "new": []}}
    runs = (("old", old_dir), ("new", ROOT))
    for i in range(rounds):
        for label, path in runs if i % 2 == 0 else runs[::-1]:
            env = {**os.environ, "PYTHONPATH": str(path)}
            out = subprocess.run([sys.executable, "-c", DERIVE, str(model)], env=env, check=True, capture_output=True,
                                 text=True, cwd=path)
            first, warm = map(float, out.stdout.strip().splitlines()[-1].split())
            times["first"][label].append(first)
            times["warm"][label].append(warm)
    return times


def derive_rows(name: str, times: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    """One row a kind (first, warm): the medians of old and new, and the median and spread of new / old a round."""
    rows = []
    for kind, t in times.items():
        ratios = [n / o for o, n in zip(t["old"], t["new"])]
        rows.append([name, kind, f"{statistics.median(t['old']) * 1e3:.2f}", f"{statistics.median(t['new']) * 1e3:.2f}",
                     f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}–{max(ratios):.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--derive-runs", type=int, default=5, help="rounds of the derive comparison")
    parser.add_argument("--derive-only", action="store_true", help="only the derive comparison")
    parser.add_argument("--models", nargs="+", help="these models of examples/ only")
    parser.add_argument("--child", nargs=3, metavar=("OLD_DIR", "NAME", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(*args.child, rounds=args.rounds)))
        return
    if args.rev is None:
        parser.error("name the earlier revision")
    with tempfile.TemporaryDirectory(prefix="symderiv-compare-") as tmp:
        old_dir = Path(tmp)
        export(args.rev, old_dir)
        names = sorted(p.stem for p in (ROOT / "examples").glob("*.sdm")
                       if (old_dir / "generated" / f"{p.stem}.py").exists()
                       and (args.models is None or p.stem in args.models))
        if not args.derive_only:
            rows = []
            for name in names:
                for size in SIZES:
                    out = subprocess.run([sys.executable, __file__, "--child", str(old_dir), name, size,
                                          "--rounds", str(args.rounds)], capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(f"{name} {size}: {out.stderr.strip()}")
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    old, new = r["old"], r["new"]
                    rows.append([name, size, f"{old * 1e3:.3g}", f"{new * 1e3:.3g}", f"{new / old:.2f}"])
            print(f"## Generated modules, {args.rev} against this checkout (best of {args.rounds} rounds, "
                  "1 BLAS thread)\n")
            print(table(["model", "size", "old (ms)", "new (ms)", "new / old"], rows))
        rows = []
        for name in names:
            rows += derive_rows(name, derive_times(old_dir, ROOT / "examples" / f"{name}.sdm", args.derive_runs))
        print(f"\n## derive, {args.rev} against this checkout: {args.derive_runs} rounds, a fresh process each; "
              f"first derive after import, and warm (the best of {WARM} more in that process)\n")
        print(table(["model", "derive", "old (ms)", "new (ms)", "new / old (median)", "new / old (spread)"], rows))
        print(f"\n{machine_description()}")


if __name__ == "__main__":
    main()
