"""Achieved matrix-product rate of the generated seed RNN against the machine's: python benchmarks/matmul_rate.py

1. The machine's float64 matrix-multiply rate: the best of 5 products of two 2048 × 2048 matrices (after a warm-up),
   measured in a child process before and after the rest (freeing those 32 MiB matrices would raise glibc's mmap
   and trim thresholds and so spare the measured code its page faults); the higher of the two counts.
2. The matrix products of one forward + backward pass of the seed RNN at the large size (every dim 256, T = 50,
   B = 32; N = T·B rows), counted analytically at 2·m·n·k flops each and listed; the count is checked against the
   one benchmarks/profile_generated.py takes from the operand shapes of every product the generated code executes.
3. Rates, as fractions of (1):
   - *whole call*: the analytic flops over the time of one ``loss_and_gradients`` call (best of 15);
   - *inside matrix products only*: the flops over the time spent inside ``@`` alone, measured by the
     instrumented copy of the module (benchmarks/profile_generated.py);
   - *attainable for these shapes*: the flops over the time the same products take one by one in isolation (each
     shape timed alone, best of many), i.e. the best any code issuing these products could do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import profile_generated
from benchutil import (
    ROOT,
    Target,
    blas_limit,
    blas_threads,
    child_env,
    load_generated,
    print_targets,
    sequence_data,
    table,
    threads_tag,
    time_interleaved,
)

DIMS = dict(n_x=256, n_a=256, n_h=256, n_o=256, C=256)
T, B = 50, 32
PEAK_N = 2048
TARGET = 0.75


def peak_gflops(n: int = PEAK_N, repeat: int = 5) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    a @ b
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def peak_in_child(n_threads: int | None) -> float:
    cmd = [sys.executable, __file__, "--peak"] + ([] if n_threads is None else ["--threads", str(n_threads)])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env(), cwd=ROOT)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def seed_rnn_products(d: dict, T: int, B: int) -> list[tuple[str, str, int, int, int, int]]:
    """The products of the generated seed RNN's forward + backward pass: (what, where, count, m, k, n), each
    product an (m × k)·(k × n). The recurrence runs one (B × n_h)·(n_h × n_h) product per step: T forward (the
    first one with h_0 = 0), T − 1 backward; everything else is one product over all N = T·B rows."""
    N = T * B
    n_x, n_a, n_h, n_o, C = (d[k] for k in ("n_x", "n_a", "n_h", "n_o", "C"))
    return [
        ("W^(in) x_t", "forward", 1, N, n_x, n_a),
        ("U a_t", "forward", 1, N, n_a, n_h),
        ("V h_{t−1}", "forward, per step", T, B, n_h, n_h),
        ("W h_t", "forward", 1, N, n_h, n_o),
        ("W^(out) o_t", "forward", 1, N, n_o, C),
        ("W^(out)ᵀ δh^(out)_t", "backward", 1, N, C, n_o),
        ("Wᵀ δy_{o,t}", "backward", 1, N, n_o, n_h),
        ("Vᵀ δy_{h,t+1}", "backward, per step", T - 1, B, n_h, n_h),
        ("Uᵀ δy_{h,t}", "backward", 1, N, n_h, n_a),
        ("∂W^(in) = Σ δy_a xᵀ", "gradient", 1, n_a, N, n_x),
        ("∂U = Σ δy_h aᵀ", "gradient", 1, n_h, N, n_a),
        ("∂V = Σ δy_h h_{t−1}ᵀ", "gradient", 1, n_h, N, n_h),
        ("∂W = Σ δy_o hᵀ", "gradient", 1, n_o, N, n_h),
        ("∂W^(out) = Σ δh^(out) oᵀ", "gradient", 1, C, N, n_o),
    ]


def _isolated_seconds(m: int, k: int, n: int, transposed_b: bool, left_transposed: bool) -> float:
    """Best time of one (m × k)·(k × n) product with the operand layouts the generated code uses."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(k, m)).T if left_transposed else rng.normal(size=(m, k))
    b = rng.normal(size=(n, k)).T if transposed_b else rng.normal(size=(k, n))
    fn = {"p": lambda: a @ b}
    return time_interleaved(fn, rounds=7, min_batch=0.01)["p"].best


def measure(n_threads: int | None, n: int = 256) -> tuple[str, list[Target]]:
    dims = dict.fromkeys(DIMS, n)
    m = load_generated("seed_rnn", "examples/seed_rnn.sdm")
    params = m.init_params(dims, seed=0)
    data = sequence_data(T, dims, m.INPUTS, B, seed=1)
    peak = peak_in_child(n_threads)

    products = seed_rnn_products(dims, T, B)
    flops = sum(2 * count * mm * k * n for _, _, count, mm, k, n in products)
    call = time_interleaved({"call": lambda: m.loss_and_gradients(params, **data)})["call"]
    peak_after = peak_in_child(n_threads)

    # time inside the products: the instrumented module
    ns, stats, _ = profile_generated.instrumented(ROOT / "generated" / "seed_rnn.py")
    run = ns["loss_and_gradients"]
    run(params, **data)
    in_mm = float("inf")
    for _ in range(7):
        stats.reset()
        run(params, **data)
        in_mm = min(in_mm, stats.mm_seconds)
    counted = stats.mm_flops

    # the same products in isolation (gradient products: left operand transposed, as in ``_outer``)
    isolated = 0.0
    for _, where, count, mm, k, n in products:
        grad = where == "gradient"
        isolated += count * _isolated_seconds(mm, k, n, transposed_b=not grad, left_transposed=grad)

    rows = [[what, where, count, f"({mm} × {k})·({k} × {n})", f"{2 * count * mm * k * n / 1e6:.1f}"]
            for what, where, count, mm, k, n in products]
    rows.append(["**total**", "", sum(p[2] for p in products), "", f"**{flops / 1e6:.1f}**"])
    listing = table(["product", "where", "count", "shape", "MFLOP"], rows, "llrlr")

    best_peak = max(peak, peak_after)
    whole = flops / call.best / 1e9
    inside = flops / in_mm / 1e9
    attainable = flops / isolated / 1e9
    rates = table(
        ["measure", "time (ms)", "GFLOP/s", "fraction of peak"],
        [
            [f"machine peak: {PEAK_N}² float64 matmul (best of 5, before / after: {peak:.1f} / {peak_after:.1f})",
             "", f"{best_peak:.1f}", "1.00"],
            ["**whole `loss_and_gradients` call** (best / median of 15)", call.ms(), f"{whole:.1f}",
             f"**{whole / best_peak:.2f}**"],
            ["inside matrix products only (instrumented, best of 7 calls)", f"{in_mm * 1e3:.3g}", f"{inside:.1f}",
             f"{inside / best_peak:.2f}"],
            ["attainable for these product shapes (each timed alone)", f"{isolated * 1e3:.3g}",
             f"{attainable:.1f}", f"{attainable / best_peak:.2f}"],
        ], "lrrr")
    check = ("agrees with" if counted == flops else f"DIFFERS from ({counted / 1e6:.1f} MFLOP)")
    text = (f"Seed RNN at every dim {n}, T = {T}, B = {B}: the matrix products of one forward + backward "
            f"pass (the count {check} the instrumented count from operand shapes).\n\n{listing}\n\n{rates}")
    tag = threads_tag(blas_threads())
    size = "large" if n == DIMS["n_h"] else f"every dim {n}"
    targets = [Target(f"seed RNN {size}: matrix-product rate of the whole call / peak{tag}",
                      f"{whole / best_peak:.2f}", f"≥ {TARGET}", whole / best_peak >= TARGET)]
    return text, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: NumPy's)")
    parser.add_argument("--n", type=int, default=DIMS["n_h"], help="every dim of the seed RNN (default 256)")
    parser.add_argument("--peak", action="store_true", help="print the machine's matmul rate only (GFLOP/s)")
    args = parser.parse_args(argv)
    with blas_limit(args.threads):
        if args.peak:
            print(json.dumps(peak_gflops()))
            return []
        text, targets = measure(args.threads, args.n)
        tag = threads_tag(blas_threads())
    print(f"### Matrix-product rate of the generated seed RNN{tag}\n")
    print(text)
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
