"""Forward + backward time of the generated JAX modules against JAX's own autodiff: python benchmarks/jax_speed.py

For the seed RNN (generated/seed_rnn_jax.py) and the LSTM tagger (generated/lstm_tagger_jax.py), on the CPU, in
float64 and float32, at a small size (every dim 32, T = 20, one unbatched sequence) and a large one (every dim
256, T = 50, B = 32), times one call of

- the generated module's ``loss_and_gradients`` (jitted; the closed-form backward, both time loops ``lax.scan``);
- ``jax.jit(jax.value_and_grad(loss))`` of the same forward pass written by hand with ``lax.scan``
  (benchmarks/jax_models.py: only the recurrence in the scan, the LSTM's gates one matrix per step).

Before timing, the two are checked against each other (loss and every gradient: rtol 1e-9 in float64, 1e-3 in
float32). Compile time (``.lower(...).compile()`` of each, first call) is reported separately and kept out of the
run times. Times are per call (``block_until_ready``), in 15 interleaved rounds after a warm-up; best / median in
ms, ratios of the best times (of the medians in parentheses). Each model and size runs in a fresh process.
``--threads 1`` runs XLA on one thread (``XLA_FLAGS``): on a shared machine a descheduled worker thread swings the
multi-threaded times, the one-thread ones much less. Target (issue 13): generated ≤ 1.0 × jitted JAX autodiff.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from benchutil import ROOT, Target, Timing, child_env, print_targets, table, time_interleaved

SIZES = {"small": (32, 20, None), "large": (256, 50, 32)}
MODELS = {"seed RNN": "seed_rnn", "LSTM": "lstm_tagger"}
DTYPES = ("float64", "float32")
RTOL = {"float64": 1e-9, "float32": 1e-3}
ROUNDS = 15


def _data(T, dims, batch, dtype, seed=1):
    """Normal inputs x and one-hot targets r, time first and batch second."""
    rng = np.random.default_rng(seed)
    lead = (T,) if batch is None else (T, batch)
    C = dims["C"]
    return {"x": rng.normal(size=lead + (dims["n_x"],)).astype(dtype),
            "r": np.eye(C)[rng.integers(0, C, lead)].astype(dtype)}


def measure_one(model: str, size: str, rounds: int = ROUNDS) -> dict:
    import jax
    jax.config.update("jax_enable_x64", True)  # this benchmark process only: float64 needs it
    import jax_models
    from benchutil import _import_file

    name = MODELS[model]
    m = _import_file(f"bench_{name}_jax", ROOT / "generated" / f"{name}_jax.py")
    n, T, batch = SIZES[size]
    dims = dict.fromkeys(m.DIMS, n)
    result = {"model": model, "size": size, "n": n, "T": T, "B": batch or 1, "times": {}, "compile": {},
              "devices": str(jax.devices()), "jax": jax.__version__}
    autodiff = jax.jit(jax.value_and_grad(jax_models.LOSSES[name]))
    for dtype in DTYPES:
        params = {k: np.asarray(v, dtype) for k, v in m.init_params(dims, seed=0).items()}
        params = {k: jax.device_put(v) for k, v in params.items()}
        data = {k: jax.device_put(v) for k, v in _data(T, dims, batch, dtype).items()}
        start = time.perf_counter()
        compiled_ours = m._loss_and_gradients.lower(params, data).compile()  # loss_and_gradients' jitted body
        compile_ours = time.perf_counter() - start
        start = time.perf_counter()
        compiled_theirs = autodiff.lower(params, data["x"], data["r"]).compile()
        compile_theirs = time.perf_counter() - start

        def ours(f=compiled_ours, p=params, d=data):
            return jax.block_until_ready(f(p, d))

        def theirs(f=compiled_theirs, p=params, d=data):
            return jax.block_until_ready(f(p, d["x"], d["r"]))

        loss, grads = ours()
        their_loss, their_grads = theirs()
        assert loss.dtype == dtype and all(g.dtype == dtype for g in grads.values())
        np.testing.assert_allclose(float(their_loss), float(loss), rtol=RTOL[dtype], err_msg=f"{model} loss")
        for k, g in grads.items():
            g, t = np.asarray(g, float), np.asarray(their_grads[k], float)
            scale = max(float(np.abs(t).max()), 1e-300)
            np.testing.assert_allclose(g, t, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=f"{model} ∂{k}")
        timings = time_interleaved({"generated": ours, "autodiff": theirs}, rounds=rounds)
        result["times"][dtype] = {k: [v.best, v.median] for k, v in timings.items()}
        result["compile"][dtype] = {"generated": compile_ours, "autodiff": compile_theirs}
    return result


ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def measure(threads: int | None = None) -> list[dict]:
    env = child_env()
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_THREAD).strip()
    elif threads is not None:
        raise SystemExit("--threads: 1, or leave it out for XLA's default")
    results = []
    for model in MODELS:
        for size in SIZES:
            out = subprocess.run([sys.executable, __file__, "--child", model, size], check=True, capture_output=True,
                                 text=True, env=env, cwd=ROOT)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def report(results: list[dict], tag: str = "") -> tuple[str, list[Target]]:
    headers = ["model", "size", "dtype", "generated (ms)", "jit(value_and_grad) (ms)", "generated / autodiff",
               "compile: generated / autodiff (s)"]
    rows, targets = [], []
    for r in results:
        for dtype in DTYPES:
            t = {k: Timing(*v) for k, v in r["times"][dtype].items()}
            c = r["compile"][dtype]
            ratio = t["generated"].best / t["autodiff"].best
            median = t["generated"].median / t["autodiff"].median
            rows.append([r["model"], f"{r['size']}: n={r['n']}, T={r['T']}, B={r['B']}", dtype, t["generated"].ms(),
                         t["autodiff"].ms(), f"**{ratio:.2f}** ({median:.2f})",
                         f"{c['generated']:.2f} / {c['autodiff']:.2f}"])
            targets.append(Target(f"{r['model']} {r['size']} {dtype}: generated JAX / jit(value_and_grad){tag}",
                                  f"{ratio:.2f}", "≤ 1", ratio <= 1.0))
    note = (f"CPU ({results[0]['devices']}), JAX {results[0]['jax']}; `loss_and_gradients` (forward + backward) "
            f"per call, best / median of {ROUNDS} interleaved rounds, one fresh process per model and size; "
            "compile time (lower + compile, once) apart.")
    return table(headers, rows, "lllrrrr") + "\n\n" + note, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="1: XLA on one thread (default: XLA's own)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(*args.child)))
        return []
    tag = " [1 thread]" if args.threads == 1 else ""
    text, targets = report(measure(args.threads), tag)
    if os.environ.get("XLA_FLAGS") and args.threads is None:
        text += f" XLA_FLAGS: {os.environ['XLA_FLAGS']}."
    print(f"### Forward + backward: generated JAX vs jax.jit(jax.value_and_grad(...)){tag}\n")
    print(text)
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
