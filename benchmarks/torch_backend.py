"""The generated PyTorch module against PyTorch eager autograd of the same forward: python benchmarks/torch_backend.py

For the seed RNN (generated/seed_rnn_torch.py) and the LSTM tagger (generated/lstm_tagger_torch.py), on the CPU,
in float64 and float32, at the sizes of benchmarks/speed.py (small: every dim 32, T = 20, one sequence; large:
every dim 256, T = 50, B = 32), times forward + backward of

- the generated module the way a training loop calls it: ``loss(params, **data).backward()`` (its
  ``autograd.Function``: the closed-form backward fills ``.grad``);
- the same, without autograd: ``loss_and_gradients(params, **data)``;
- PyTorch eager autograd (forward + ``loss.backward()``) of the same network, written two ways
  (benchmarks/torch_models.py: every layer inside the per-step loop, or only the recurrence in it, as the generated
  module computes it); in every round the faster of the two is the one compared with.

Each contender runs in its own process with one intra-op thread (``torch.set_num_threads``; ``--threads N`` for
more), every worker pinned to the same CPU (``SYMDERIV_BENCH_CPU=k`` chooses it; ``--no-pin`` leaves the workers to
the scheduler, which on a loaded machine can keep one of them on a busier core for a whole run and bias every round
of it), in ``--rounds`` interleaved rounds (benchmarks/paired.py);
the ratio generated / eager is taken per round and its median reported, and the whole run is repeated
``--repeats`` times with fresh processes: the table gives the median of the repeats and their range. Before timing,
the generated worker checks its loss and every gradient against eager autograd (rtol 1e-9 in float64, 1e-4 in
float32). ``--generated DIR`` times the modules of another directory (default generated/), and ``--baseline DIR``
adds those of DIR as a contender (the ratio new / old per round: for changing the code generator).
Target (issue 13): generated ``loss(...).backward()`` ≤ 0.7 × the faster eager variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import paired
from benchutil import ROOT, Target, child_env, print_targets, table

MODELS = {"seed RNN": ("seed_rnn", "seed_rnn"), "LSTM": ("lstm_tagger", "lstm")}  # generated module, eager variants
SIZES = {"small": (32, 20, None), "large": (256, 50, 32)}  # every dim, T, batch (None: one sequence)
DTYPES = {"float64": 1e-9, "float32": 1e-4}  # the tolerance of the check
TARGET = 0.7
ROUNDS = 15
MIN_BATCH = {"small": 0.05, "large": 0.25}  # seconds per contender per round
CONTENDERS = ("generated", "generated loss_and_gradients", "eager per step", "eager hoisted")
EAGER = ("eager per step", "eager hoisted")


def _check(label, ours, theirs, rtol):
    (l1, g1), (l2, g2) = ours, theirs
    assert abs(float(l1.detach()) - float(l2.detach())) <= rtol * abs(float(l2.detach())), label
    for k in g2:
        scale = float(g2[k].abs().max())
        err = float((g1[k].double() - g2[k].double()).abs().max())
        assert err <= rtol * max(scale, 1e-30), (label, k, err, scale)


def worker(contender: str, model: str, size: str, dtype_name: str, threads: int, generated: str) -> None:
    """One contender of one configuration, served to the parent (benchmarks/paired.py)."""
    if os.environ.get("SYMDERIV_BENCH_NO_PIN") != "1":
        paired.pin()
    import torch
    import torch_models
    from benchutil import _import_file, sequence_data

    torch.set_num_threads(threads)
    module_name, variants = MODELS[model]
    m = _import_file(f"bench_{module_name}_torch", Path(generated) / f"{module_name}_torch.py")
    n, T, batch = SIZES[size]
    dims = dict.fromkeys(m.DIMS, n)
    init = m.init_params(dims, seed=0)
    data = sequence_data(T, dims, {k: (seq, sz) for k, (seq, sz) in m.INPUTS.items()}, batch, seed=1)
    dtype, rtol = getattr(torch, dtype_name), DTYPES[dtype_name]
    x = torch_models.rows(data["x"]).to(dtype)
    r = torch_models.rows(data["r"]).to(dtype)
    leaves = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
    plain = {k: v.to(dtype).clone() for k, v in init.items()}

    def generated_fn():
        for p in leaves.values():
            p.grad = None
        loss = m.loss(leaves, x=x, r=r)
        loss.backward()
        return loss, {k: p.grad for k, p in leaves.items()}

    eager = torch_models.VARIANTS[variants]
    fns = {"generated": generated_fn,
           "generated loss_and_gradients": lambda: m.loss_and_gradients(plain, x=x, r=r),
           "eager per step": lambda: eager["per step"](leaves, x, r),
           "eager hoisted": lambda: eager["hoisted"](leaves, x, r)}
    fn = fns[contender]
    reference = eager["hoisted"](leaves, x, r)
    reference = (reference[0].detach(), {k: g.clone() for k, g in reference[1].items()})
    _check(f"{model} {size} {dtype_name}: {contender}", fn(), reference, rtol)
    paired.serve(fn, {"torch": torch.__version__, "threads": torch.get_num_threads()}, MIN_BATCH[size])


def measure_one(model: str, size: str, dtype: str, threads: int, rounds: int, generated: str,
                baseline: str | None, ab: bool = False) -> dict:
    """One run of one configuration: every contender in its own process, interleaved rounds (``ab``: only the
    generated module and the baseline)."""
    commands = {c: [sys.executable, __file__, "--worker", c, model, size, dtype, str(threads), generated]
                for c in (CONTENDERS[:1] if ab else CONTENDERS)}
    if baseline:
        commands["baseline"] = [sys.executable, __file__, "--worker", "generated", model, size, dtype, str(threads),
                                baseline]
    ready, samples = paired.run_rounds(commands, rounds, child_env(), ROOT)
    if ab:
        return {"model": model, "size": size, "dtype": dtype,
                "ratio new / baseline": paired.per_round_ratio(samples["generated"], [samples["baseline"]])}
    eager = [samples[c] for c in EAGER]
    out = {"model": model, "size": size, "dtype": dtype, "torch": ready["generated"]["torch"],
           "threads": ready["generated"]["threads"],
           "median ms": {c: paired.median_time(s) * 1e3 for c, s in samples.items()},
           "ratio": paired.per_round_ratio(samples["generated"], eager),
           "ratio loss_and_gradients": paired.per_round_ratio(samples["generated loss_and_gradients"], eager),
           "cpu": {c: statistics.median(x["cpu"] for x in s) for c, s in samples.items()}}
    if baseline:
        out["ratio new / baseline"] = paired.per_round_ratio(samples["generated"], [samples["baseline"]])
    return out


def measure(n_threads: int, rounds: int = ROUNDS, repeats: int = 3, generated: str | None = None,
            baseline: str | None = None, models=None, sizes=None, dtypes=None, ab: bool = False) -> list[list[dict]]:
    """``repeats`` runs of every configuration (one list per configuration)."""
    generated = generated or str(ROOT / "generated")
    results = []
    for model in models or MODELS:
        for size in sizes or SIZES:
            for dtype in dtypes or DTYPES:
                runs = []
                for _ in range(repeats):
                    runs.append(measure_one(model, size, dtype, n_threads, rounds, generated, baseline, ab))
                    print(f"{model} {size} {dtype}: " + ", ".join(
                        f"{k} {v:.3f}" for k, v in runs[-1].items() if k.startswith("ratio")),
                        file=sys.stderr, flush=True)
                results.append(runs)
    return results


def report(results: list[list[dict]], rounds: int) -> tuple[str, list[Target]]:
    headers = ["model", "size", "dtype", "generated `loss().backward()` (ms)", "generated `loss_and_gradients` (ms)",
               "eager per step (ms)", "eager hoisted (ms)", "generated / eager", "`loss_and_gradients` / eager"]
    rows, targets = [], []
    for runs in results:
        r = runs[0]
        n, T, batch = SIZES[r["size"]]
        ms = {c: statistics.median(run["median ms"][c] for run in runs) for c in CONTENDERS}
        ratios = [run["ratio"] for run in runs]
        rows.append([r["model"], f"{r['size']}: n={n}, T={T}, B={batch or 1}", r["dtype"]]
                    + [f"{ms[c]:.3g}" for c in CONTENDERS]
                    + [f"**{paired.spread(ratios)}**",
                       paired.spread([run["ratio loss_and_gradients"] for run in runs])])
        if "ratio new / baseline" in r:
            rows[-1].append(paired.spread([run["ratio new / baseline"] for run in runs]))
        ratio = statistics.median(ratios)
        targets.append(Target(f"{r['model']} {r['size']} {r['dtype']}: generated torch / torch eager autograd",
                              paired.spread(ratios), f"≤ {TARGET}", ratio <= TARGET))
    if "ratio new / baseline" in results[0][0]:
        headers.append("new / baseline")
    note = (f"CPU, forward + backward per call; each contender in its own process (all pinned to one CPU), {rounds} "
            f"interleaved rounds; times: medians (ms); ratios: the median over the rounds of generated / the faster "
            f"eager variant of that round, then the median of {len(results[0])} runs (fresh processes) and their "
            f"range. torch {results[0][0]['torch']}, {results[0][0]['threads']} intra-op thread(s).")
    return table(headers, rows, "lll" + "r" * (len(headers) - 3)) + "\n\n" + note, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads (default: 1)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--repeats", type=int, default=3, help="runs with fresh processes (default: 3)")
    parser.add_argument("--generated", help="the directory of the modules timed (default: generated/)")
    parser.add_argument("--baseline", help="a directory of modules to time against the generated ones too")
    parser.add_argument("--ab", action="store_true", help="with --baseline: time only the two generated modules")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the workers to one CPU")
    parser.add_argument("--models", nargs="+", choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES))
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        c, model, size, dtype, threads, generated = args.worker
        worker(c, model, size, dtype, int(threads), generated)
        return []
    if args.no_pin:
        os.environ["SYMDERIV_BENCH_NO_PIN"] = "1"  # read by the workers (child_env copies the environment)
    before = paired.load()
    results = measure(args.threads, args.rounds, args.repeats, args.generated, args.baseline, args.models,
                      args.sizes, args.dtypes, args.ab and bool(args.baseline))
    if args.ab and args.baseline:
        return []
    text, targets = report(results, args.rounds)
    print(f"### Forward + backward: generated PyTorch module vs PyTorch eager autograd ({args.threads} thread)\n")
    print(text + f" Load average before / after: {before}; {paired.load()}.")
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
