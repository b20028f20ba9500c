"""The generated PyTorch module against PyTorch eager autograd of the same forward: python benchmarks/torch_backend.py

For the seed RNN (generated/seed_rnn_torch.py) and the LSTM tagger (generated/lstm_tagger_torch.py), on the CPU,
in float64 and float32, at the sizes of benchmarks/speed.py (small: every dim 32, T = 20, one sequence; large:
every dim 256, T = 50, B = 32), times forward + backward of

- the generated module the way a training loop calls it: ``loss(params, **data).backward()`` (its
  ``autograd.Function``: the closed-form backward fills ``.grad``);
- the same, without autograd: ``loss_and_gradients(params, **data)``;
- PyTorch eager autograd (forward + ``loss.backward()``) of the same network, written two ways
  (benchmarks/torch_models.py: every layer inside the per-step loop, or only the recurrence in it, as the generated
  module computes it); the faster of the two is the one compared with.

Before timing, each result is checked against the eager one (loss and every gradient: rtol 1e-9 in float64, 1e-4
in float32). Times are per call, in 40 (small) or 12 (large) interleaved rounds after a warm-up (best / median,
ms); the ratios are of the best times (of the medians in parentheses). Each model and size runs in a fresh
process. PyTorch runs on one intra-op thread by default (``--threads N``): on a shared machine more threads mostly
measure the other work.
Target: generated ``loss(...).backward()`` ≤ 0.7 × the faster eager variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import torch
import torch_models
from benchutil import (
    ROOT,
    Target,
    Timing,
    _import_file,
    child_env,
    print_targets,
    sequence_data,
    table,
    time_interleaved,
)

MODELS = {"seed RNN": ("seed_rnn", "seed_rnn"), "LSTM": ("lstm_tagger", "lstm")}  # generated module, eager variants
SIZES = {"small": (32, 20, None), "large": (256, 50, 32)}  # every dim, T, batch (None: one sequence)
DTYPES = {"float64": (torch.float64, 1e-9), "float32": (torch.float32, 1e-4)}
TARGET = 0.7
ROUNDS = {"small": 40, "large": 12}  # many short rounds: on a shared machine the best of them is a quiet one


def _check(label, ours, theirs, rtol):
    (l1, g1), (l2, g2) = ours, theirs
    np.testing.assert_allclose(float(l1.detach()), float(l2.detach()), rtol=rtol, err_msg=label)
    for k in g2:
        scale = float(g2[k].abs().max())
        err = float((g1[k].double() - g2[k].double()).abs().max())
        assert err <= rtol * max(scale, 1e-30), (label, k, err, scale)


def measure_one(model: str, size: str) -> dict:
    module_name, variants = MODELS[model]
    m = _import_file(f"bench_{module_name}_torch", ROOT / "generated" / f"{module_name}_torch.py")
    n, T, batch = SIZES[size]
    dims = dict.fromkeys(m.DIMS, n)
    init = m.init_params(dims, seed=0)
    data = sequence_data(T, dims, {k: (seq, size) for k, (seq, size) in m.INPUTS.items()}, batch, seed=1)
    times = {}
    for dname, (dtype, rtol) in DTYPES.items():
        x = torch_models.rows(data["x"]).to(dtype)
        r = torch_models.rows(data["r"]).to(dtype)
        leaves = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
        plain = {k: v.to(dtype).clone() for k, v in init.items()}

        def generated(leaves=leaves, x=x, r=r):
            for p in leaves.values():
                p.grad = None
            loss = m.loss(leaves, x=x, r=r)
            loss.backward()
            return loss, {k: p.grad for k, p in leaves.items()}

        fns = {"generated": generated,
               "generated loss_and_gradients": lambda plain=plain, x=x, r=r: m.loss_and_gradients(plain, x=x, r=r)}
        eager = {}
        for variant, fn in torch_models.VARIANTS[variants].items():
            eager[variant] = lambda fn=fn, leaves=leaves, x=x, r=r: fn(leaves, x, r)
        reference = eager["hoisted"]()
        reference = (reference[0].detach(), {k: g.clone() for k, g in reference[1].items()})
        _check(f"{model} {size} {dname}: generated", generated(), reference, rtol)
        _check(f"{model} {size} {dname}: loss_and_gradients", fns["generated loss_and_gradients"](), reference, rtol)
        _check(f"{model} {size} {dname}: eager per step", eager["per step"](), reference, rtol)
        fns.update({f"eager {k}": v for k, v in eager.items()})
        timings = time_interleaved(fns, rounds=ROUNDS[size], min_batch=0.005)
        times[dname] = {k: [v.best, v.median] for k, v in timings.items()}
    return {"model": model, "size": size, "n": n, "T": T, "B": batch or 1, "times": times,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def measure(n_threads: int) -> list[dict]:
    results = []
    for model in MODELS:
        for size in SIZES:
            cmd = [sys.executable, __file__, "--child", model, size, "--threads", str(n_threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env(), cwd=ROOT)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def report(results: list[dict]) -> tuple[str, list[Target]]:
    headers = ["model", "size", "dtype", "generated `loss().backward()` (ms)", "generated `loss_and_gradients` (ms)",
               "eager per step (ms)", "eager hoisted (ms)", "generated / eager (faster)"]
    rows, targets = [], []
    for r in results:
        for dname, t in r["times"].items():
            t = {k: Timing(*v) for k, v in t.items()}
            gen = t["generated"]
            best = min(t["eager per step"].best, t["eager hoisted"].best)
            best_median = min(t["eager per step"].median, t["eager hoisted"].median)
            ratio = gen.best / best
            rows.append([r["model"], f"{r['size']}: n={r['n']}, T={r['T']}, B={r['B']}", dname, gen.ms(),
                         t["generated loss_and_gradients"].ms(), t["eager per step"].ms(), t["eager hoisted"].ms(),
                         f"**{ratio:.2f}** ({gen.median / best_median:.2f})"])
            targets.append(Target(f"{r['model']} {r['size']} {dname}: generated torch / torch eager autograd",
                                  f"{ratio:.2f}", f"≤ {TARGET}", ratio <= TARGET))
    note = (f"CPU, forward + backward per call; best / median of {ROUNDS['small']} (small) or {ROUNDS['large']} "
            f"(large) interleaved rounds, one fresh process per "
            f"model and size; ratios of the best times (of the medians in parentheses). torch "
            f"{results[0]['torch']}, {results[0]['torch_threads']} intra-op thread(s).")
    return table(headers, rows, "lll" + "r" * (len(headers) - 3)) + "\n\n" + note, targets


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads (default: 1)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure_one(*args.child)))
        return []
    results = measure(args.threads)
    text, targets = report(results)
    print(f"### Forward + backward: generated PyTorch module vs PyTorch eager autograd ({args.threads} thread)\n")
    print(text)
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
