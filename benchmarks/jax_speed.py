"""Forward + backward time of the generated JAX modules against JAX's own autodiff: python benchmarks/jax_speed.py

For the seed RNN (generated/seed_rnn_jax.py) and the LSTM tagger (generated/lstm_tagger_jax.py), on the CPU, in
float64 and float32, at a small size (every dim 32, T = 20, one unbatched sequence) and a large one (every dim
256, T = 50, B = 32), times one call of

- the generated module's ``loss_and_gradients`` (jitted; the closed-form backward, both time loops ``lax.scan``);
- ``jax.jit(jax.value_and_grad(loss))`` of the same forward pass written by hand with ``lax.scan``
  (benchmarks/jax_models.py: only the recurrence in the scan, the LSTM's gates one matrix per step).

Before timing, the two are checked against each other (loss and every gradient: rtol 1e-9 in float64, 1e-3 in
float32). Compile time (``.lower(...).compile()`` of each, first call) is reported separately and kept out of the
run times. Times are per call (``block_until_ready``).

Each contender runs in its own process (benchmarks/paired.py): at ``--threads 1`` (the default) on one XLA thread
(``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``) and, since XLA keeps more than
one core busy despite them, pinned to one CPU (the same for every worker; ``--threads 0``: XLA's own threads, not
pinned). ``--rounds`` interleaved rounds; the ratio generated / autodiff is taken per round and its median
reported; the whole run is repeated ``--repeats`` times with fresh processes, and the table gives the median of the
repeats and their range. ``--generated DIR`` times the modules of another directory, ``--baseline DIR`` adds those
of DIR (``--ab``: only the two). Target (issue 13): generated ≤ 1.0 × jitted JAX autodiff.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import paired
from benchutil import ROOT, Target, child_env, print_targets, table

SIZES = {"small": (32, 20, None), "large": (256, 50, 32)}
MODELS = {"seed RNN": "seed_rnn", "LSTM": "lstm_tagger"}
DTYPES = ("float64", "float32")
RTOL = {"float64": 1e-9, "float32": 1e-3}
ROUNDS = 15
MIN_BATCH = {"small": 0.05, "large": 0.25}  # seconds per contender per round
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _data(T, dims, batch, dtype, seed=1):
    """Normal inputs x and one-hot targets r, time first and batch second."""
    rng = np.random.default_rng(seed)
    lead = (T,) if batch is None else (T, batch)
    C = dims["C"]
    return {"x": rng.normal(size=lead + (dims["n_x"],)).astype(dtype),
            "r": np.eye(C)[rng.integers(0, C, lead)].astype(dtype)}


def worker(contender: str, model: str, size: str, dtype: str, threads: int, generated: str) -> None:
    """One contender ("generated" or "autodiff") of one configuration, served to the parent (benchmarks/paired.py).
    The generated worker checks its loss and every gradient against autodiff first."""
    if threads == 1:
        paired.pin()
    import jax
    jax.config.update("jax_enable_x64", True)  # this benchmark process only: float64 needs it
    import jax_models
    from benchutil import _import_file

    name = MODELS[model]
    m = _import_file(f"bench_{name}_jax", Path(generated) / f"{name}_jax.py")
    n, T, batch = SIZES[size]
    dims = dict.fromkeys(m.DIMS, n)
    params = {k: jax.device_put(np.asarray(v, dtype)) for k, v in m.init_params(dims, seed=0).items()}
    data = {k: jax.device_put(v) for k, v in _data(T, dims, batch, dtype).items()}
    autodiff = jax.jit(jax.value_and_grad(jax_models.LOSSES[name]))
    start = time.perf_counter()
    if contender == "generated":
        compiled = m._loss_and_gradients.lower(params, data).compile()  # loss_and_gradients' jitted body
    else:
        compiled = autodiff.lower(params, data["x"], data["r"]).compile()
    compile_time = time.perf_counter() - start

    def fn():
        if contender == "generated":
            return jax.block_until_ready(compiled(params, data))
        return jax.block_until_ready(compiled(params, data["x"], data["r"]))

    loss, grads = fn()
    assert loss.dtype == dtype and all(g.dtype == dtype for g in grads.values())
    if contender == "generated":
        their_loss, their_grads = autodiff(params, data["x"], data["r"])
        np.testing.assert_allclose(float(their_loss), float(loss), rtol=RTOL[dtype], err_msg=f"{model} loss")
        for k, g in grads.items():
            g, t = np.asarray(g, float), np.asarray(their_grads[k], float)
            scale = max(float(np.abs(t).max()), 1e-300)
            np.testing.assert_allclose(g, t, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=f"{model} ∂{k}")
    paired.serve(fn, {"compile": compile_time, "jax": jax.__version__, "devices": str(jax.devices())},
                 MIN_BATCH[size])


def _env(threads: int) -> dict:
    env = child_env()
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_THREAD).strip()
    return env


def measure_one(model: str, size: str, dtype: str, threads: int, rounds: int, generated: str,
                baseline: str | None = None, ab: bool = False) -> dict:
    """One run of one configuration: each contender in its own process, interleaved rounds."""
    def cmd(c, where):
        return [sys.executable, __file__, "--worker", c, model, size, dtype, str(threads), where]
    commands = {"generated": cmd("generated", generated)}
    if not ab:
        commands["autodiff"] = cmd("autodiff", generated)
    if baseline:
        commands["baseline"] = cmd("generated", baseline)
    ready, samples = paired.run_rounds(commands, rounds, _env(threads), ROOT)
    out = {"model": model, "size": size, "dtype": dtype, "jax": ready["generated"]["jax"],
           "devices": ready["generated"]["devices"],
           "median ms": {c: paired.median_time(s) * 1e3 for c, s in samples.items()},
           "compile": {c: r["compile"] for c, r in ready.items()},
           "cpu": {c: statistics.median(x["cpu"] for x in s) for c, s in samples.items()}}
    if not ab:
        out["ratio"] = paired.per_round_ratio(samples["generated"], [samples["autodiff"]])
    if baseline:
        out["ratio new / baseline"] = paired.per_round_ratio(samples["generated"], [samples["baseline"]])
    return out


def measure(threads: int = 1, rounds: int = ROUNDS, repeats: int = 3, generated: str | None = None,
            baseline: str | None = None, models=None, sizes=None, dtypes=None, ab: bool = False) -> list[list[dict]]:
    """``repeats`` runs of every configuration (one list per configuration)."""
    generated = generated or str(ROOT / "generated")
    results = []
    for model in models or MODELS:
        for size in sizes or SIZES:
            for dtype in dtypes or DTYPES:
                runs = []
                for _ in range(repeats):
                    runs.append(measure_one(model, size, dtype, threads, rounds, generated, baseline, ab))
                    print(f"{model} {size} {dtype}: " + ", ".join(
                        f"{k} {v:.3f}" for k, v in runs[-1].items() if k.startswith("ratio")),
                        file=sys.stderr, flush=True)
                results.append(runs)
    return results


def report(results: list[list[dict]], rounds: int, tag: str = "") -> tuple[str, list[Target]]:
    headers = ["model", "size", "dtype", "generated (ms)", "jit(value_and_grad) (ms)", "generated / autodiff",
               "compile: generated / autodiff (s)"]
    rows, targets = [], []
    for runs in results:
        r = runs[0]
        n, T, batch = SIZES[r["size"]]
        ms = {c: statistics.median(run["median ms"][c] for run in runs) for c in ("generated", "autodiff")}
        ratios = [run["ratio"] for run in runs]
        compiles = {c: [run["compile"][c] for run in runs] for c in ("generated", "autodiff")}
        rows.append([r["model"], f"{r['size']}: n={n}, T={T}, B={batch or 1}", r["dtype"],
                     f"{ms['generated']:.3g}", f"{ms['autodiff']:.3g}", f"**{paired.spread(ratios)}**",
                     " / ".join(f"{min(v):.1f}–{max(v):.1f}" for v in compiles.values())])
        targets.append(Target(f"{r['model']} {r['size']} {r['dtype']}: generated JAX / jit(value_and_grad){tag}",
                              paired.spread(ratios), "≤ 1", statistics.median(ratios) <= 1.0))
    note = (f"CPU ({results[0][0]['devices']}), JAX {results[0][0]['jax']}; `loss_and_gradients` (forward + "
            f"backward) per call; each contender in its own process, {rounds} interleaved rounds; times: medians (ms); "
            f"ratios: the median over the rounds of generated / autodiff, then the median of {len(results[0])} runs "
            "(fresh processes) and their range; compile time (lower + compile, once per process) apart, its range.")
    return table(headers, rows, "lllrrrr") + "\n\n" + note, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="1: XLA on one thread, pinned (default); 0: XLA's own")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--repeats", type=int, default=3, help="runs with fresh processes (default: 3)")
    parser.add_argument("--generated", help="the directory of the modules timed (default: generated/)")
    parser.add_argument("--baseline", help="a directory of modules to time against the generated ones too")
    parser.add_argument("--ab", action="store_true", help="with --baseline: time only the two generated modules")
    parser.add_argument("--models", nargs="+", choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES))
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        c, model, size, dtype, threads, generated = args.worker
        worker(c, model, size, dtype, int(threads), generated)
        return []
    if args.threads not in (0, 1):
        raise SystemExit("--threads: 1, or 0 for XLA's default")
    ab = args.ab and bool(args.baseline)
    before = paired.load()
    results = measure(args.threads, args.rounds, args.repeats, args.generated, args.baseline, args.models,
                      args.sizes, args.dtypes, ab)
    if ab:
        return []
    tag = " [1 thread]" if args.threads == 1 else ""
    text, targets = report(results, args.rounds, tag)
    if os.environ.get("XLA_FLAGS") and args.threads != 1:
        text += f" XLA_FLAGS: {os.environ['XLA_FLAGS']}."
    print(f"### Forward + backward: generated JAX vs jax.jit(jax.value_and_grad(...)){tag}\n")
    print(text + f" Load average before / after: {before}; {paired.load()}.")
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
