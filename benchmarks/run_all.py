"""All the benchmarks of issue 7, their tables and a PASS/FAIL summary: python benchmarks/run_all.py [--threads N]

Prints, as Markdown:

- the machine (CPU, cores, NumPy and its BLAS, PyTorch, Python);
- benchmarks/matmul_rate.py: achieved matrix-product rate of the generated seed RNN against the machine's;
- benchmarks/speed.py: generated vs hand-written NumPy vs PyTorch eager, seed RNN and LSTM, small and large;
- benchmarks/torch_backend.py: the generated PyTorch module vs PyTorch eager autograd, float64 and float32;
- benchmarks/jax_speed.py (when JAX is installed): the generated JAX modules vs jax.jit(jax.value_and_grad(...)),
  float64 and float32, compile time apart;
- benchmarks/memory.py: peak memory of gradients vs forward;
- benchmarks/derive_scaling.py: derivation time and the derive command against the import floor;
- benchmarks/profile_generated.py: where the generated seed RNN and LSTM spend their time at the large size;
- the summary of every target, and the load average before and after (the ratios are only as good as the
  machine was quiet).

Every script runs in a fresh process, so that no measurement inherits another's allocator state. The
matrix-product rate, the speed comparison and the profiles run at NumPy's default BLAS thread count (PyTorch given
as many) and again at one thread (both): on a machine that other work shares, multi-threaded BLAS and OpenMP can
lose most of their speed to a descheduled worker thread, and the one-thread numbers show what the code itself
does. ``--threads N`` runs them at N threads only. Takes about four minutes on two cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from benchutil import (
    TARGETS_FILE,
    blas_threads,
    code_description,
    machine_description,
    read_targets,
    run_script,
    table,
    targets_table,
)


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="only this BLAS and torch thread count (default: NumPy's default, then 1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    load_before = _load()
    if args.threads is not None:
        settings = [["--threads", str(args.threads)]]
    elif blas_threads() in (None, 1):  # None: threadpoolctl missing, the thread count cannot be set
        settings = [[]]
    else:
        settings = [[], ["--threads", "1"]]

    with tempfile.TemporaryDirectory(prefix="symderiv-bench-") as tmp:
        record = str(Path(tmp) / "targets.jsonl")
        os.environ[TARGETS_FILE] = record  # the scripts append their targets here
        print("## Benchmarks (issue 7)\n")
        print(machine_description())
        print()
        print(code_description())
        print()
        for threads in settings:
            run_script("matmul_rate", *threads)
            print()
            run_script("speed", *threads)
            print()
        try:
            import torch  # noqa: F401  (only whether it is installed)
        except ImportError:
            print("PyTorch is not installed: benchmarks/torch_backend.py skipped.\n")
        else:
            run_script("torch_backend")  # one intra-op thread (see its docstring)
            print()
        if importlib.util.find_spec("jax") is not None:  # the JAX back end (issue 13), when JAX is installed
            for threads in (["--threads", "0"], ["--threads", "1"]):
                run_script("jax_speed", *threads)
                print()
        else:
            print("JAX is not installed: benchmarks/jax_speed.py skipped.\n")
        run_script("memory")
        print()
        run_script("derive_scaling")
        print()
        print("### Where the generated code spends its time (instrumented, line level)\n")
        for threads in settings:
            for model in ("seed_rnn", "lstm_tagger"):
                run_script("profile_generated", model, "--calls", "5", *threads)
                print()
        targets = read_targets(record)

    print("### Summary\n")
    print(targets_table(targets))
    print()
    print(table(["run", ""], [
        ["targets met", f"{sum(t.ok for t in targets)} of {len(targets)}"],
        ["load average (1 / 5 / 15 min) before", load_before],
        ["load average (1 / 5 / 15 min) after", _load()],
        ["wall clock of run_all", f"{time.perf_counter() - start:.0f} s"],
    ], "ll"))


if __name__ == "__main__":
    main()
