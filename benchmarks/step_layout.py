"""How a time step's product runs fastest on this BLAS: python benchmarks/step_layout.py [--threads N]

A step of a time loop multiplies B rows by a weight matrix, x M (x: B × k, M: k × m). BLAS reads M either
stored by rows (C order: ``np.dot(x, M)`` with M C-contiguous, "NN") or stored by columns (Fortran order, as
Wᵀ of a matrix W stored by rows is: ``np.dot(x, W.T)``, "NT"), and which of the two is faster depends on its
kernels. The generated NumPy module picks one per call (``_step_operand``, made once before the loop); this
benchmark measures both, for the step shapes of the example models and a few more, so that the choice rests on
numbers: per shape and dtype, the best of 21 interleaved batches of each layout, and their ratio
columns ÷ rows (below 1: by columns is faster).

Run it once as it is and once with ``OPENBLAS_CORETYPE=SkylakeX`` (or another core OpenBLAS has; the variable
is read when OpenBLAS loads) to compare kernels on one machine: the BLAS line of the header says which ran.
"""

from __future__ import annotations

import argparse

import numpy as np
from benchutil import blas_limit, blas_threads, machine_description, table, threads_tag, time_interleaved

BATCHES = (1, 2, 4, 8, 32, 64)
# (k, m): x (B × k) times M (k × m); sizes other than powers of two too, where OpenBLAS's kernels behave otherwise
SHAPES = ((32, 32), (64, 64), (100, 100), (128, 128), (130, 130), (200, 200), (256, 100), (255, 256), (256, 256),
          (257, 256), (300, 300), (500, 500), (512, 512), (256, 1024), (1024, 256), (1000, 250))


def measure(dtype: str, batch: int, k: int, m: int) -> tuple[float, float]:
    """Seconds per product x M with M stored by rows, and by columns: the best of 21 interleaved batches of each."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, k)).astype(dtype)
    rows = rng.normal(size=(k, m)).astype(dtype)
    columns = np.asfortranarray(rows)
    out = np.empty((batch, m), dtype)
    t = time_interleaved({"rows": lambda: np.dot(x, rows, out=out), "columns": lambda: np.dot(x, columns, out=out)},
                         rounds=21, min_batch=0.002)
    return t["rows"].best, t["columns"].best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    args = parser.parse_args(argv)
    with blas_limit(args.threads):
        print(f"#### A step's product x M: M stored by rows or by columns{threads_tag(blas_threads())}\n")
        print(machine_description())
        print()
        rows = []
        for dtype in args.dtypes:
            for batch in BATCHES:
                for k, m in SHAPES:
                    r, c = measure(dtype, batch, k, m)
                    flops = 2 * batch * k * m
                    rows.append([dtype, batch, f"{k} × {m}", f"{r * 1e6:.2f}", f"{c * 1e6:.2f}",
                                 f"{flops / r / 1e9:.1f}", f"{flops / c / 1e9:.1f}", f"{c / r:.2f}"])
        print(table(["dtype", "B", "M", "by rows (µs)", "by columns (µs)", "rows GFLOP/s", "columns GFLOP/s",
                     "columns ÷ rows"], rows, "lrlrrrrr"))


if __name__ == "__main__":
    main()
