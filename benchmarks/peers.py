"""The generated modules against their peers, issue 17: python benchmarks/peers.py [--quick]

Contenders, each ``loss_and_gradients`` (forward + backward, loss and every gradient) of the seed RNN and the LSTM
tagger on the same parameters and data:

- **generated**: generated/seed_rnn.py, generated/lstm_tagger.py;
- **careful NumPy**: the careful hand-written per-step BPTT of benchmarks/careful.py;
- **JAX jit**: ``jax.jit(jax.value_and_grad(loss))`` with ``lax.scan`` (benchmarks/jax_peer.py; float64 through
  x64), the result waited for with ``block_until_ready``;
- **torch eager**: PyTorch autograd, the ``hoisted`` variant of benchmarks/torch_models.py (only the recurrence
  in the per-step loop), if torch is importable;
- **generated JAX**: the JAX back end's module (generated/seed_rnn_jax.py, generated/lstm_tagger_jax.py), its jitted
  ``loss_and_gradients`` (closed-form backward, both loops ``lax.scan``), data in its own layout: what a user picks
  at the small size, where it is checked against JAX jit (≤ 1.0, issue 17's note), not against the NumPy module.

Sizes small (every dim 32, T = 20, one unbatched sequence) and large (every dim 256, T = 50, B = 32); float64 and
float32; 1 and 2 threads. **Each contender runs in its own process** (so that no contender inherits another's
allocator state, JIT or thread pools): the parent starts one worker per contender for a configuration, each worker
sets up the data, warms up (JAX compiles) and then waits; in every round the parent asks each worker in turn (the
order rotated from round to round) to time a batch of calls lasting at least ``--min-batch`` seconds and report
the time per call. A slow phase of the machine thus hits all contenders alike, and the ratio generated / peer is
taken **per round**; the table gives the median time of each contender and the **median of the per-round
ratios**. Before timing, the workers' losses are checked to agree (rtol 1e-9 in float64, 1e-4 in float32;
tests/test_benchmark_baselines.py checks every gradient against the generated modules).

Threads: NumPy's BLAS through threadpoolctl (and ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` in the worker's environment), ``torch.set_num_threads``, and for XLA
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` at one thread; and since XLA
does not keep to that, every worker is pinned (``sched_setaffinity``) to as many CPUs as threads. Every worker
reports its CPU time over wall time while timed (a check that the thread setting took: about 1.0 at one thread
on an idle machine) and its minor page faults per call (``getrusage`` ``ru_minflt``, over the timed calls, i.e.
calls after the first ones).

Also measured: the **FLOP floor**, the call's matrix-product FLOPs (counted analytically, the products the
equations need) at the machine's measured GEMM rate (the best of 5 products of two 2048 × 2048 matrices in that
dtype at that thread count, in a fresh process): a lower bound for any code issuing these products through NumPy's
BLAS (XLA multiplies with kernels of its own, and JAX jit can beat it where OpenBLAS runs older kernels than the
CPU has: the header says so, see ``benchutil.blas_core_note``);
and the **peak memory** of ``loss_and_gradients`` over ``forward`` of the generated modules at the large size,
float64, by tracemalloc (benchmarks/memory.py's measure), in a fresh process.

A full run took 38 minutes at load average 10 on two cores (not yet timed on a quiet one); ``--quick --threads 1``
(5 rounds, shorter batches) took 1.5 minutes at load average 1–3.
The numbers are only as good as the machine was quiet: the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchutil import ROOT, Target, blas_core_note, blas_description, child_env, cpu_model, print_targets, table

CONTENDERS = ("generated", "careful NumPy", "JAX jit", "torch eager", "generated JAX")
MODELS = {"seed RNN": "seed_rnn", "LSTM": "lstm_tagger"}
SIZES = {"small": (32, 20, None), "large": (256, 50, 32)}  # every dim, T, batch (None: one unbatched sequence)
DTYPES = ("float64", "float32")
ROUNDS, QUICK_ROUNDS = 21, 5
MIN_BATCH, QUICK_MIN_BATCH = 0.05, 0.02
GEMM_N = 2048


# ---- the matrix-product FLOPs of one call (the products the equations need) ----

def products(model: str, n: int, T: int, B: int) -> list[tuple[int, int, int, int]]:
    """(count, m, k, n) of every (m × k)·(k × n) product of one forward + backward pass, every dim n."""
    N = T * B
    if model == "seed_rnn":  # see benchmarks/matmul_rate.py: seed_rnn_products
        return ([(1, N, n, n)] * 4 + [(T - 1, B, n, n)]  # W_in x, U a, W h, W_out o; V h_{t-1} (h_0 = 0)
                + [(1, N, n, n)] * 3 + [(T - 1, B, n, n)]  # W_outᵀ δ, Wᵀ δ, Uᵀ δ; Vᵀ δ_{t+1}
                + [(1, n, N, n)] * 4 + [(1, n, N - B, n)])  # ∂W_in, ∂U, ∂W, ∂W_out; ∂V (h_0 = 0)
    # LSTM: gates (4 n_h) × [h; x] (2 n); read-out W_y (C × n_h)
    return [(1, N, n, 4 * n), (T - 1, B, n, 4 * n), (1, N, n, n),  # gates: x part, h part; W_y h
            (1, N, n, n), (T - 1, B, 4 * n, n),  # W_yᵀ δ; W_hᵀ δ_gates (the h part only: x is data)
            (1, 4 * n, N, n), (1, 4 * n, N - B, n), (1, n, N, n)]  # ∂W (x columns, h columns), ∂W_y


def flops(model: str, n: int, T: int, B: int) -> int:
    return sum(2 * c * m * k * q for c, m, k, q in products(model, n, T, B))


# ---- the worker: one contender, one configuration ----

def _limit_threads(threads: int, torch_too: bool):
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(threads)
    if torch_too:
        import torch

        torch.set_num_threads(threads)
    return limiter


def _setup(contender: str, model: str, size: str, dtype: str):
    """The function to time (no arguments, returns when the result is ready) and the loss it computes."""
    import numpy as np
    from benchutil import load_generated, sequence_data

    n, T, batch = SIZES[size]
    m = load_generated(model)
    dims = dict.fromkeys(m.DIMS, n)
    dt = np.dtype(dtype)
    params = {k: v.astype(dt) for k, v in m.init_params(dims, seed=0).items()}
    data = {k: v.astype(dt) for k, v in sequence_data(T, dims, m.INPUTS, batch, seed=1).items()}
    if contender == "generated":
        def fn():
            return m.loss_and_gradients(params, **data)
        return fn, lambda: float(fn()[0])
    if contender == "careful NumPy":
        import careful

        hand = careful.seed_rnn if model == "seed_rnn" else careful.lstm

        def fn():
            return hand(params, **data)
        return fn, lambda: float(fn()[0])
    if contender == "JAX jit":
        import jax
        import jax_peer as jax_models

        jax_models.enable_x64()
        vg = jax_models.value_and_grad_fn(model)
        jp = {k: jax.device_put(v) for k, v in params.items()}
        jx, jr = (jax.device_put(jax_models.rows(data[k], dt)) for k in ("x", "r"))

        def fn():
            return jax.block_until_ready(vg(jp, jx, jr))
        return fn, lambda: float(fn()[0])
    if contender == "generated JAX":  # the JAX back end's module (generated/NAME_jax.py), jitted, its own layout
        import jax
        import jax_peer as jax_models
        from benchutil import _import_file

        jax_models.enable_x64()
        g = _import_file(f"peer_{model}_jax", ROOT / "generated" / f"{model}_jax.py")
        jp = {k: jax.device_put(v) for k, v in params.items()}
        # time first and batch second, (T, n) for one sequence (the module's docstring)
        jd = {k: jax.device_put(np.ascontiguousarray(np.moveaxis(v, -1, 1) if batch else v)) for k, v in data.items()}

        def fn():
            return jax.block_until_ready(g._loss_and_gradients(jp, jd))
        return fn, lambda: float(fn()[0])
    if contender == "torch eager":
        import torch
        import torch_models

        tdt = getattr(torch, dtype)
        tp = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in params.items()}
        tx, tr = (torch_models.rows(data[k]).to(tdt) for k in ("x", "r"))
        variant = torch_models.VARIANTS["seed_rnn" if model == "seed_rnn" else "lstm"]["hoisted"]

        def fn():
            return variant(tp, tx, tr)
        return fn, lambda: float(fn()[0].item())
    raise SystemExit(f"unknown contender {contender!r}")


def worker(contender: str, model: str, size: str, dtype: str, threads: int, min_batch: float) -> None:
    """Set up, warm up, print ``ready``; then on every ``run`` line time a batch and print one JSON line."""
    limiter = _limit_threads(threads, contender == "torch eager")  # noqa: F841 (kept alive)
    if hasattr(os, "sched_setaffinity") and threads < len(os.sched_getaffinity(0)):
        # XLA's CPU runtime keeps using more than one core despite XLA_FLAGS (CPU / wall up to 1.8 measured at
        # "1 thread"): every worker is pinned to its first `threads` usable CPUs, before anything starts threads
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    fn, loss = _setup(contender, model, size, dtype)
    value = loss()
    for _ in range(2):
        fn()
    start = time.perf_counter()
    fn()
    k = max(1, int(min_batch / max(time.perf_counter() - start, 1e-9)))
    print(json.dumps({"ready": True, "loss": value, "batch": k}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(k):
            fn()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(json.dumps({"t": wall / k, "cpu": cpu / wall, "faults": faults / k}), flush=True)


def _thread_env(threads: int) -> dict:
    env = child_env()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    return env


def _available() -> list[str]:
    import importlib.util

    have = list(CONTENDERS[:2])
    if importlib.util.find_spec("jax") is not None:
        have.append("JAX jit")
    if importlib.util.find_spec("torch") is not None:
        have.append("torch eager")
    if importlib.util.find_spec("jax") is not None:
        have.append("generated JAX")
    return have


def measure_config(contenders, model, size, dtype, threads, rounds, min_batch) -> dict:
    """Start one worker per contender, check the losses agree, run the interleaved rounds."""
    procs = {}
    for c in contenders:
        cmd = [sys.executable, __file__, "--worker", c, model, size, dtype, str(threads), str(min_batch)]
        procs[c] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=_thread_env(threads), cwd=ROOT)
    try:
        ready = {}
        for c, p in procs.items():
            line = p.stdout.readline()
            if not line:
                raise SystemExit(f"{c} worker ({model} {size} {dtype}) failed to start")
            ready[c] = json.loads(line)
        ref = ready["generated"]["loss"]
        rtol = 1e-9 if dtype == "float64" else 1e-4
        for c, r in ready.items():
            if abs(r["loss"] - ref) > rtol * abs(ref):
                raise SystemExit(f"{model} {size} {dtype}: {c} loss {r['loss']!r} differs from generated {ref!r}")
        samples = {c: [] for c in contenders}
        order = list(contenders)
        for i in range(rounds):
            rot = order[i % len(order):] + order[:i % len(order)]
            for c in rot:
                procs[c].stdin.write("run\n")
                procs[c].stdin.flush()
                samples[c].append(json.loads(procs[c].stdout.readline()))
    finally:
        for p in procs.values():
            try:
                p.stdin.close()
            except OSError:
                pass
            p.wait(timeout=60)
    gen = [s["t"] for s in samples["generated"]]
    out = {"model": model, "size": size, "dtype": dtype, "threads": threads, "contenders": {}}
    for c, s in samples.items():
        ts = [x["t"] for x in s]
        out["contenders"][c] = {
            "median": statistics.median(ts), "best": min(ts),
            "ratio": statistics.median(g / t for g, t in zip(gen, ts)),  # generated / this, per round
            "cpu": statistics.median(x["cpu"] for x in s),
            "faults": statistics.median(x["faults"] for x in s),
            "times": ts,  # per round, for the ratio of two peers (``report``)
        }
    return out


def gemm_rate(dtype: str, threads: int) -> float:
    """GFLOP/s of a 2048² product in ``dtype`` at ``threads`` threads, best of 5, in a fresh process."""
    code = (f"import time, numpy as np\nfrom threadpoolctl import threadpool_limits\nthreadpool_limits({threads})\n"
            f"a = np.random.default_rng(0).normal(size=({GEMM_N}, {GEMM_N})).astype('{dtype}')\nb = a.T.copy()\n"
            "a @ b\nbest = 1e9\nfor _ in range(5):\n    s = time.perf_counter(); a @ b\n"
            "    best = min(best, time.perf_counter() - s)\n"
            f"print(2 * {GEMM_N}**3 / best / 1e9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=_thread_env(threads), cwd=ROOT)
    return float(out.stdout.strip())


_MEMORY_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from benchutil import load_generated, sequence_data
from memory import traced_peak
out = {}
for name in ("seed_rnn", "lstm_tagger"):
    m = load_generated(name)
    dims = dict.fromkeys(m.DIMS, 256)
    params = m.init_params(dims, seed=0)
    data = sequence_data(50, dims, m.INPUTS, 32, seed=1)
    for _ in range(3):  # the first call learns the workspace's layout, the second lays out its arena
        m.loss_and_gradients(params, **data)
    f = traced_peak(lambda: m.forward(params, **data))
    # what a call allocates, plus the workspace the module keeps between calls (its arena)
    g = traced_peak(lambda: m.loss_and_gradients(params, **data)) + m._workspace_bytes()
    out[name] = [f, g]
print(json.dumps(out))
"""


def peak_memory() -> dict:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(ROOT / "benchmarks")], capture_output=True,
                         text=True, check=True, env=child_env(), cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def report(results: list[dict], rates: dict, memory: dict, contenders: list[str]) -> tuple[str, list[Target]]:
    peers = [c for c in contenders if c != "generated"]
    headers = (["model", "size", "dtype", "threads"] + [f"{c} (ms)" for c in contenders]
               + [f"gen ÷ {c}" for c in peers] + ["FLOP floor (ms)", "gen ÷ floor", "gen faults / call",
                                                   "CPU / wall: " + ", ".join(contenders)])
    rows, targets = [], []
    for r in results:
        cs = r["contenders"]
        n, T, batch = SIZES[r["size"]]
        floor = flops(r["model"], n, T, batch or 1) / (rates[(r["dtype"], r["threads"])] * 1e9)
        gen = cs["generated"]["median"]
        rows.append([r["label"], r["size"], r["dtype"], r["threads"]]
                    + [f"{cs[c]['median'] * 1e3:.3g}" for c in contenders]
                    + [f"{cs[c]['ratio']:.2f}" for c in peers]
                    + [f"{floor * 1e3:.3g}", f"{gen / floor:.2f}", f"{cs['generated']['faults']:.0f}",
                       ", ".join(f"{cs[c]['cpu']:.2f}" for c in contenders)])
        where = f"{r['label']} {r['size']} {r['dtype']} [{r['threads']} thread{'s' if r['threads'] > 1 else ''}]"
        if r["threads"] != 1:
            continue
        if r["size"] == "large" and r["dtype"] == "float64" and "careful NumPy" in cs:
            v = cs["careful NumPy"]["ratio"]
            targets.append(Target(f"{where}: generated / careful NumPy", f"{v:.2f}", "≤ 0.8", v <= 0.8))
        if "JAX jit" in cs:
            v = cs["JAX jit"]["ratio"]
            limit = 1.0 if r["size"] == "large" else 1.5
            targets.append(Target(f"{where}: generated / JAX jit", f"{v:.2f}", f"≤ {limit}", v <= limit))
        if r["size"] == "small" and "JAX jit" in cs and "generated JAX" in cs:
            # the note: the JAX back end is what a user picks for ≤ 1.0× JAX jit at the small size
            v = statistics.median(a / b for a, b in zip(cs["generated JAX"]["times"], cs["JAX jit"]["times"]))
            targets.append(Target(f"{where}: generated JAX module / JAX jit", f"{v:.2f}", "≤ 1.0", v <= 1.0))
        if r["size"] == "large":
            v = gen / floor
            targets.append(Target(f"{where}: generated / FLOP floor", f"{v:.2f}", "≤ 1.3", v <= 1.3))
            if r["dtype"] == "float64":
                v = cs["generated"]["faults"]
                targets.append(Target(f"{where}: generated page faults per call", f"{v:.0f}", "< 100", v < 100))
    for name, (f, g) in memory.items():
        v = g / f
        targets.append(Target(f"{name} large float64: peak memory loss_and_gradients / forward (tracemalloc)",
                              f"{v:.2f}", "≤ 1.2", v <= 1.2))
    text = table(headers, rows, "llll" + "r" * (len(headers) - 4))
    text += "\n\nGEMM rate (2048², best of 5, GFLOP/s): " + ", ".join(
        f"{dt} {th} thread{'s' if th > 1 else ''}: {v:.1f}" for (dt, th), v in sorted(rates.items()))
    text += "\n\nPeak memory (tracemalloc, MiB, forward / loss_and_gradients): " + ", ".join(
        f"{name} {f / 2**20:.1f} / {g / 2**20:.1f}" for name, (f, g) in memory.items())
    return text, targets



def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds, shorter batches")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        c, model, size, dtype, threads, min_batch = args.worker
        worker(c, model, size, dtype, int(threads), float(min_batch))
        return []
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    min_batch = QUICK_MIN_BATCH if args.quick else MIN_BATCH
    contenders = _available()
    start, load_before = time.perf_counter(), _load()
    rates = {(dt, th): gemm_rate(dt, th) for th in args.threads for dt in args.dtypes}
    results = []
    for threads in args.threads:
        for label in args.models:
            for size in args.sizes:
                for dtype in args.dtypes:
                    r = measure_config(contenders, MODELS[label], size, dtype, threads, rounds, min_batch)
                    r["label"] = label
                    results.append(r)
                    print(f"measured {label} {size} {dtype} {threads}: " + ", ".join(
                        f"{c} {v['median'] * 1e3:.3g} ms" for c, v in r["contenders"].items()),
                        file=sys.stderr, flush=True)
    for (dt, th) in list(rates):  # again after: the higher of the two counts
        rates[(dt, th)] = max(rates[(dt, th)], gemm_rate(dt, th))
    memory = peak_memory()
    text, targets = report(results, rates, memory, contenders)
    print("### Generated vs careful NumPy, JAX jit and PyTorch eager (issue 17)\n")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs. Times: median ms per `loss_and_gradients` call over "
          f"{rounds} interleaved rounds, each contender in its own process; `gen ÷ X`: median of the per-round "
          "ratios generated / X.\n")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    print(f"NumPy's BLAS (in this process): {blas_description()}"
          + ("" if coretype is None else f", from OPENBLAS_CORETYPE={coretype}") + ".")
    note = blas_core_note()
    if note:
        print(f"\n**Note.** {note}")
    print()
    print(text)
    print()
    print(table(["run", ""], [["load average (1 / 5 / 15 min) before", load_before],
                              ["load average (1 / 5 / 15 min) after", _load()],
                              ["wall clock", f"{time.perf_counter() - start:.0f} s"]], "ll"))
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
