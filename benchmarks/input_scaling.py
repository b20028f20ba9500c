"""Time of parse + derive + render (write-up, Markdown, module) against the size of the input:
python benchmarks/input_scaling.py [--sizes 50,100,200,400,800]

Two families of models, each grown to the sizes given, each size in a fresh process (median
of 3): a chain of N equations (``h_k = tanh(W_k @ h_{k-1} + b_k)``, every layer its own
weights), and one concat of N arguments. The last column is the slope of log(time) against
log(size) between consecutive sizes: 1 is linear. The bounds of ``frontend/bounds.py``
(1,000 equations, 2,000 parts an expression) sit at the top of the range measured here.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys

from benchutil import ROOT, child_env, table

RUNS = 3

_TIMED = """
import sys, time, symderiv
from symderiv.render.emit import render
text = sys.stdin.read()
start = time.perf_counter()
d = symderiv.derive(symderiv.parse(text, "scaling.sdm"))
for fmt in ("tex", "md", "py"):
    render(d, fmt, "scaling.sdm")
print(time.perf_counter() - start)
"""


def chain(n: int) -> str:
    lines = ["model chain", "dim n", "input x: n", "target y: n"]
    lines += [f"param W{k}: (n, n)\nparam b{k}: n" for k in range(n)]
    lines += ["h0 = tanh(W0 @ x + b0)"] + [f"h{k} = tanh(W{k} @ h{k - 1} + b{k})" for k in range(1, n)]
    lines.append(f"loss L = squared_error(y, h{n - 1})")
    return "\n".join(lines) + "\n"


def concat(n: int) -> str:
    return ("model wide\ndim n\ninput x: n\nparam W: (n, n)\nparam b: n\nh = tanh(W @ x + b)\n"
            "c = concat(" + ", ".join(["h"] * n) + ")\nloss L = sum(c)\n")


def seconds(text: str) -> float:
    times = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, "-c", _TIMED], input=text, capture_output=True, text=True,
                              env=child_env(), cwd=ROOT, check=True)
        times.append(float(done.stdout))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100,200,400,800", help="comma-separated sizes")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for family, make in (("chain of equations", chain), ("concat arguments", concat)):
        previous = None
        for n in sizes:
            t = seconds(make(n))
            slope = "" if previous is None else f"{math.log(t / previous[1]) / math.log(n / previous[0]):.2f}"
            rows.append([family, f"{n:,}", f"{t:.2f}", f"{1000 * t / n:.1f}", slope])
            previous = (n, t)
    print(table(["input", "size (equations or arguments)", "seconds", "ms per unit", "slope"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
