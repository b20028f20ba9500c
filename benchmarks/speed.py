"""Forward + backward time of the generated modules against hand-written NumPy and PyTorch: python benchmarks/speed.py

For the seed RNN (generated/seed_rnn.py) and the LSTM tagger (generated/lstm_tagger.py, else derived from
tests/models/lstm.sdm), float64, at a small size (every dim 32, T = 20, one unbatched sequence) and a large one
(every dim 256, T = 50, B = 32), times one ``loss_and_gradients`` call of

- the generated module;
- the hand-written per-step NumPy BPTT of benchmarks/handwritten.py;
- PyTorch eager autograd (forward + ``loss.backward()``), written two ways (benchmarks/torch_models.py): every layer
  inside the per-step loop, and only the recurrence in the loop; the faster of the two is the one compared with.

Before timing, the hand-written and the PyTorch results are checked against the generated module's (loss and every
gradient, ``assert_allclose`` with rtol 1e-9), so that all compute the same thing. Times are per call, measured in
15 interleaved rounds after a warm-up; the tables show best / median in ms, and the ratios are of the best times.
Each model and size is measured in a fresh process (all the implementations of it in that one process,
interleaved), so that the allocator state one measurement leaves behind does not flatter or penalise the next.
PyTorch gets as many intra-op threads as NumPy's BLAS has (``--threads N`` sets both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys

import handwritten
import numpy as np
from benchutil import (
    ROOT,
    Target,
    Timing,
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

try:
    import torch
    import torch_models
except ImportError:
    torch = None

MODELS = {
    # name: (generated module, fallback model file, hand-written function, torch variants key)
    "seed RNN": ("seed_rnn", "examples/seed_rnn.sdm", handwritten.seed_rnn, "seed_rnn"),
    "LSTM": ("lstm_tagger", "tests/models/lstm.sdm", handwritten.lstm, "lstm"),
}
SIZES = {
    # label: (every dim, T, batch or None for one unbatched sequence)
    "small": (32, 20, None),
    "large": (256, 50, 32),
}
RTOL = 1e-9
ROUNDS = 15


def _check(label, ours, theirs):
    loss, grads = ours
    their_loss, their_grads = theirs
    np.testing.assert_allclose(float(their_loss), loss, rtol=RTOL, err_msg=f"{label}: loss")
    for k, g in grads.items():
        scale = max(float(np.abs(g).max()), 1e-300)
        np.testing.assert_allclose(np.asarray(their_grads[k]), g, rtol=RTOL, atol=RTOL * scale,
                                   err_msg=f"{label}: gradient of {k}")


@contextlib.contextmanager
def threads(n: int | None):
    """NumPy's BLAS and PyTorch limited to n threads (None: NumPy's default, PyTorch set to the same count)."""
    with blas_limit(n):
        if torch is not None:
            torch.set_num_threads(n or blas_threads() or torch.get_num_threads())
        yield


def measure_one(model: str, size: str, rounds: int = ROUNDS) -> dict:
    """Check and time every implementation of one model at one size, in this process."""
    module_name, fallback, hand, torch_key = MODELS[model]
    m = load_generated(module_name, fallback)
    n, T, batch = SIZES[size]
    dims = dict.fromkeys(m.DIMS, n)
    params = m.init_params(dims, seed=0)
    data = sequence_data(T, dims, m.INPUTS, batch, seed=1)
    ours = m.loss_and_gradients(params, **data)
    _check(f"{model} {size}: hand-written", ours, hand(params, **data))
    fns = {
        "generated": lambda: m.loss_and_gradients(params, **data),
        "hand-written": lambda: hand(params, **data),
    }
    if torch is not None:
        tp = torch_models.leaf_params(params)
        tx, tr = torch_models.rows(data["x"]), torch_models.rows(data["r"])
        for variant, fn in torch_models.VARIANTS[torch_key].items():
            loss, grads = fn(tp, tx, tr)
            _check(f"{model} {size}: torch {variant}", ours, (loss.item(), {k: g.numpy() for k, g in grads.items()}))
            fns[f"torch {variant}"] = lambda fn=fn: fn(tp, tx, tr)
    timings = time_interleaved(fns, rounds=rounds)
    return {"model": model, "size": size, "n": n, "T": T, "B": batch or 1,
            "times": {k: [v.best, v.median] for k, v in timings.items()},
            "blas_threads": blas_threads(), "torch_threads": torch.get_num_threads() if torch is not None else None}


def measure(n_threads: int | None) -> list[dict]:
    """Every model and size, each in a fresh process."""
    results = []
    for model in MODELS:
        for size in SIZES:
            cmd = [sys.executable, __file__, "--child", model, size]
            if n_threads is not None:
                cmd += ["--threads", str(n_threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env(), cwd=ROOT)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["times"] = {k: Timing(*v) for k, v in result["times"].items()}
            results.append(result)
    return results


def report(results: list[dict]) -> tuple[str, list[Target]]:
    with_torch = "torch per step" in results[0]["times"]
    headers = ["model", "size", "generated (ms)", "hand-written (ms)"]
    if with_torch:
        headers += ["torch per step (ms)", "torch hoisted (ms)"]
    headers += ["generated / hand-written"]
    if with_torch:
        headers += ["generated / torch (faster variant)"]
    rows, targets = [], []
    threads = results[0]["blas_threads"]
    tag = threads_tag(threads)
    for r in results:
        t = r["times"]
        gen = t["generated"]
        row = [r["model"], f"{r['size']}: n={r['n']}, T={r['T']}, B={r['B']}", gen.ms(), t["hand-written"].ms()]
        vs_hand = gen.best / t["hand-written"].best
        vs_hand_median = gen.median / t["hand-written"].median
        limit = 0.4 if r["size"] == "small" else 0.9
        targets.append(Target(f"{r['model']} {r['size']}: generated / hand-written{tag}", f"{vs_hand:.2f}",
                              f"≤ {limit}", vs_hand <= limit))
        if with_torch:
            row += [t["torch per step"].ms(), t["torch hoisted"].ms()]
        row.append(f"**{vs_hand:.2f}** ({vs_hand_median:.2f})")
        if with_torch:
            best_torch = min(t["torch per step"].best, t["torch hoisted"].best)
            best_torch_median = min(t["torch per step"].median, t["torch hoisted"].median)
            vs_torch = gen.best / best_torch
            row.append(f"**{vs_torch:.2f}** ({gen.median / best_torch_median:.2f})")
            targets.append(Target(f"{r['model']} {r['size']}: generated / torch eager{tag}", f"{vs_torch:.2f}",
                                  "≤ 1", vs_torch <= 1.0))
        rows.append(row)
    torch_threads = results[0]["torch_threads"]
    note = (f"float64, `loss_and_gradients` (forward + backward) per call; times best / median of {ROUNDS} "
            f"interleaved rounds, one fresh process per row; ratios of the best times (of the medians in "
            f"parentheses). NumPy BLAS threads: {threads if threads is not None else 'unknown'}"
            + (f"; torch threads: {torch_threads}." if with_torch else "; torch not installed: its columns skipped."))
    return table(headers, rows, "ll" + "r" * (len(headers) - 2)) + "\n\n" + note, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: NumPy's)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with threads(args.threads):
            print(json.dumps(measure_one(*args.child)))
        return []
    results = measure(args.threads)
    text, targets = report(results)
    tag = threads_tag(results[0]["blas_threads"])
    print(f"### Forward + backward: generated vs hand-written NumPy vs PyTorch eager{tag}\n")
    print(text)
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
