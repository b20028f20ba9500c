"""Time to derive each example after import (best of several runs): python benchmarks/derive_time.py"""

import time
from pathlib import Path

import symderiv

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    print(f"{'model':<20} {'first derive (s)':>17} {'best of 5 (s)':>14}")
    for path in sorted((ROOT / "examples").glob("*.sdm")):
        model = symderiv.load(path)
        start = time.perf_counter()
        symderiv.derive(model)  # the first one pays for the activation derivatives (cached after)
        first = time.perf_counter() - start
        print(f"{model.name:<20} {first:>17.3f} {best_of(lambda m=model: symderiv.derive(m)):>14.3f}")


if __name__ == "__main__":
    main()
