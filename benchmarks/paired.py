"""Contenders timed side by side, each in its own process, in interleaved rounds (benchmarks/torch_backend.py,
benchmarks/jax_speed.py).

On a shared machine a ratio of two best times compares two lucky moments. Here every contender runs in a worker
process of its own (no contender inherits another's allocator state, compiled code or thread pools), pinned to one
CPU, the same for all, before anything starts threads. In every round the parent asks each worker in turn (the
order rotated from round to round) to time a batch of calls lasting at least ``min_batch`` seconds; a slow phase of
the machine thus hits the contenders of a round alike, and a ratio is taken **per round**, then its median over the
rounds. ``repeats`` runs the whole thing again with fresh processes, so that the spread between runs is measured
rather than guessed.

A worker script calls ``pin()`` first, sets up its function, then ``serve(fn, info)``: it prints one JSON line
(``info`` with ``"ready": true``) and then answers every ``run`` line on stdin with ``{"t": seconds per call,
"cpu": CPU time / wall time}``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

PIN_VARIABLE = "SYMDERIV_BENCH_CPU"  # the CPU the workers are pinned to (default: the first one allowed)


def pin() -> int | None:
    """Pin this process to one CPU (``SYMDERIV_BENCH_CPU``, else the first allowed): every worker of a run on the
    same one. XLA's CPU runtime keeps more than one thread busy despite its flags; pinned, it cannot."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = int(os.environ.get(PIN_VARIABLE, allowed[0]))
    os.sched_setaffinity(0, [cpu])
    return cpu


def serve(fn: Callable[[], object], info: dict, min_batch: float) -> None:
    """Warm ``fn`` up, report ``info`` (ready), then time a batch of calls for every ``run`` line on stdin."""
    for _ in range(3):
        fn()
    start = time.perf_counter()
    fn()
    k = max(1, int(min_batch / max(time.perf_counter() - start, 1e-9)))
    print(json.dumps({"ready": True, "batch": k, **info}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(k):
            fn()
        wall = time.perf_counter() - start
        print(json.dumps({"t": wall / k, "cpu": (time.process_time() - cpu) / wall}), flush=True)


def run_rounds(commands: dict[str, Sequence[str]], rounds: int, env: dict, cwd) -> tuple[dict, dict]:
    """Start one worker per contender (``commands``: its command line), run ``rounds`` interleaved rounds.

    Returns (each contender's ready line, each contender's per-round samples)."""
    procs = {c: subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                 cwd=cwd) for c, cmd in commands.items()}
    try:
        ready = {}
        for c, p in procs.items():
            line = p.stdout.readline()
            if not line:
                p.wait(timeout=60)
                raise SystemExit(f"the {c!r} worker failed to start (exit status {p.returncode})")
            ready[c] = json.loads(line)
        samples: dict[str, list[dict]] = {c: [] for c in commands}
        order = list(commands)
        for i in range(rounds):
            for c in order[i % len(order):] + order[:i % len(order)]:
                procs[c].stdin.write("run\n")
                procs[c].stdin.flush()
                samples[c].append(json.loads(procs[c].stdout.readline()))
    finally:
        for p in procs.values():
            try:
                p.stdin.close()
            except OSError:
                pass
            p.wait(timeout=120)
    return ready, samples


def per_round_ratio(numerator: list[dict], denominators: Sequence[list[dict]]) -> float:
    """The median over the rounds of numerator / (the fastest of ``denominators`` in that round)."""
    return statistics.median(a["t"] / min(d[i]["t"] for d in denominators) for i, a in enumerate(numerator))


def median_time(samples: list[dict]) -> float:
    return statistics.median(s["t"] for s in samples)


def spread(values: Sequence[float]) -> str:
    """The median of ``values`` and their range: ``0.62 (0.60–0.65)``."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def load() -> str:
    """The load average (1 / 5 / 15 minutes)."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
