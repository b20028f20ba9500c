"""Derivation time, and the time of the whole derive command: python benchmarks/derive_scaling.py

1. ``symderiv.derive(symderiv.load(path))`` timed in a fresh Python process after ``import symderiv`` (the first
   derivation, the derivative cache cold), median of 3 processes, for the seed RNN, the LSTM tagger and static
   MLPs of depth 8 and 64. An MLP of depth D (written here, programmatically) has D weight layers:
   ``h1 = relu(W1 @ x + b1)``, ..., ``h{D-1} = relu(W{D-1} @ h{D-2} + b{D-1})``, ``y_hat = W{D} @ h{D-1} + b{D}``,
   and ``loss L = squared_error(y, y_hat)``; every layer has its own ``dim``.
2. Wall-clock time of the whole command ``python -m symderiv derive MODEL -o TMPDIR`` (all three outputs) against
   the import floor ``python -c "import sympy, numpy, jinja2"``, and ``python -c "import symderiv"`` for
   reference; median of 5 runs each (after one unmeasured round), the runs of the commands interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import ROOT, Target, child_env, print_targets, table

RUNS = 5
PROCESSES = 3
DEPTHS = (8, 64)

_DERIVE = ("import sys, time, symderiv\n"
           "start = time.perf_counter()\n"
           "symderiv.derive(symderiv.load(sys.argv[1]))\n"
           "print(time.perf_counter() - start)\n")


def mlp_source(depth: int) -> str:
    dims = ", ".join(f"n{i}" for i in range(depth + 1))
    lines = [f"# Static MLP of depth {depth} (benchmarks/derive_scaling.py)", f"model mlp_depth{depth}",
             f"dim {dims}", "", "input  x: n0", f"target y: n{depth}", ""]
    for i in range(1, depth + 1):
        lines += [f"param W{i}: (n{i}, n{i - 1})", f"param b{i}: n{i}"]
    lines.append("")
    previous = "x"
    for i in range(1, depth):
        lines.append(f"h{i} = relu(W{i} @ {previous} + b{i})")
        previous = f"h{i}"
    lines += [f"y_hat = W{depth} @ {previous} + b{depth}", "", "loss L = squared_error(y, y_hat)", ""]
    return "\n".join(lines)


def first_derive_seconds(path: Path, timeout: float = 120) -> float:
    times = []
    for _ in range(PROCESSES):
        out = subprocess.run([sys.executable, "-c", _DERIVE, str(path)], capture_output=True, text=True, check=True,
                             env=child_env(), cwd=ROOT, timeout=timeout)
        times.append(float(out.stdout))
    return statistics.median(times)


def command_times(models: dict[str, Path]) -> dict[str, float]:
    """Median wall-clock seconds of each command, the runs interleaved (round-robin)."""
    with tempfile.TemporaryDirectory(prefix="symderiv-bench-") as tmp:
        commands = {
            "import floor": [sys.executable, "-c", "import sympy, numpy, jinja2"],
            "import symderiv": [sys.executable, "-c", "import symderiv"],
        }
        for name, path in models.items():
            commands[name] = [sys.executable, "-m", "symderiv", "derive", str(path), "-o", None]
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(RUNS + 1):  # the first round warms the file cache and is not counted
            for name, cmd in commands.items():
                cmd = [c if c is not None else str(Path(tmp) / f"{run}-{len(samples[name])}-{name}") for c in cmd]
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=child_env(), cwd=ROOT)
                if run:
                    samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def measure() -> tuple[str, list[Target]]:
    targets = []
    with tempfile.TemporaryDirectory(prefix="symderiv-mlp-") as tmp:
        models = {"seed RNN": ROOT / "examples" / "seed_rnn.sdm", "LSTM": ROOT / "examples" / "lstm_tagger.sdm"}
        if not models["LSTM"].exists():
            models["LSTM"] = ROOT / "tests" / "models" / "lstm.sdm"
        for depth in DEPTHS:
            path = Path(tmp) / f"mlp_depth{depth}.sdm"
            path.write_text(mlp_source(depth))
            models[f"MLP depth {depth}"] = path
        derive = {name: first_derive_seconds(path) for name, path in models.items()}
        commands = command_times({k: models[k] for k in ("seed RNN", "LSTM")})

    floor = commands["import floor"]
    rows = [[name, f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}`", f"{derive[name]:.3f}"]
            for name, path in models.items()]
    part1 = table(["model", "file", "first derive after import (s)"], rows, "llr")
    deep, shallow = derive[f"MLP depth {DEPTHS[1]}"], derive[f"MLP depth {DEPTHS[0]}"]
    ratio = deep / shallow
    part1 += (f"\n\nMedian of {PROCESSES} fresh processes; `symderiv.derive(symderiv.load(path))`. "
              f"Depth {DEPTHS[1]} / depth {DEPTHS[0]}: **{ratio:.1f}×**.")
    targets.append(Target(f"MLP depth {DEPTHS[1]}: first derive", f"{deep:.2f} s", "< 20 s", deep < 20))
    targets.append(Target(f"MLP depth {DEPTHS[1]} / depth {DEPTHS[0]}: derive time", f"{ratio:.1f}×", "≤ 12×",
                          ratio <= 12))

    rows = [["`python -c \"import sympy, numpy, jinja2\"` (import floor)", f"{floor:.3f}", "1.00"],
            ["`python -c \"import symderiv\"`", f"{commands['import symderiv']:.3f}",
             f"{commands['import symderiv'] / floor:.2f}"]]
    for name, limit in (("seed RNN", 2.5), ("LSTM", 4.0)):
        r = commands[name] / floor
        rows.append([f"`python -m symderiv derive {models[name].relative_to(ROOT)} -o DIR` ({name})",
                     f"{commands[name]:.3f}", f"**{r:.2f}**"])
        targets.append(Target(f"{name}: derive command / import floor", f"{r:.2f}×", f"≤ {limit}×", r <= limit))
    part2 = table(["command", "wall clock (s)", "/ import floor"], rows, "lrr")
    part2 += f"\n\nMedian of {RUNS} runs each, after one unmeasured round; the commands' runs interleaved."
    return part1 + "\n\n" + part2, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    text, targets = measure()
    print("### Derivation time\n")
    print(text)
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
