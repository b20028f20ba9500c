"""The architecture zoo as a Markdown table: python benchmarks/zoo_table.py

For each model in examples/ that has a hand-written reference in tests/reference/:
- parameters: the number of parameter arrays, and of scalars at the sizes stated;
- derive time: seconds spent in ``symderiv.derive`` for the first derivation in a fresh
  Python process, after ``import symderiv`` and parsing the model (median of 3 processes);
- worst relative error of the generated module against the reference, over the loss and
  every gradient (max |ours − ref| / max |ref| per array), at the sizes stated, T = 25,
  unbatched and with a batch of 4 (normal inputs; a distribution target is one-hot).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import symderiv  # noqa: E402

#: (example, architecture, sizes)
ZOO = [
    ("char_rnn", "character-level Elman RNN (min-char-rnn)", dict(n_v=65, n_h=100)),
    ("lstm_tagger", "LSTM, gates over [h_{t−1}; x_t], softmax tagger", dict(n_x=50, n_h=128, C=10)),
    ("gru_regressor", "GRU, linear read-out, squared error", dict(n_x=8, n_h=64, n_y=2)),
    ("stacked_rnn", "two-layer stacked tanh RNN, softmax", dict(n_x=32, n_1=64, n_2=64, C=10)),
    ("mlp", "static MLP: relu, softplus, linear, squared error", dict(n_x=784, n_1=256, n_2=128, n_y=10)),
    ("output_feedback", "output fed back (Jordan), learned y_0", dict(n_x=8, n_h=64, n_y=4)),
    ("second_order_rnn", "second-order recurrence h_{t−1}, h_{t−2}", dict(n_x=16, n_h=64, C=10)),
]
T = 25
B = 4
RUNS = 3


def first_derive_seconds(path: Path) -> float:
    code = ("import sys, time, symderiv; m = symderiv.load(sys.argv[1]); s = time.perf_counter(); "
            "symderiv.derive(m); print(time.perf_counter() - s)")
    times = []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(float(out.stdout))
    return statistics.median(times)


def load_generated(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_generated", ROOT / "generated" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_for(model, m, dims, batch, rng):
    distributions = {q.name for q in model.data if q.distribution}
    data = {}
    for name, (sequence, size) in m.INPUTS.items():
        n = dims[size]
        lead = (T,) if sequence else ()
        tail = (batch,) if batch else ()
        if name in distributions:
            data[name] = np.moveaxis(np.eye(n)[rng.integers(0, n, lead + tail)], -1, len(lead))
        else:
            data[name] = rng.normal(size=lead + (n,) + tail)
    return data


def worst_error(name: str, model, dims) -> float:
    m = load_generated(name)
    ref = importlib.import_module(f"tests.reference.{name}")
    params = m.init_params(dims, seed=0)
    rng = np.random.default_rng(1)
    worst = 0.0
    for batch in (None, B):
        data = data_for(model, m, dims, batch, rng)
        loss, grads = m.loss_and_gradients(params, **data)
        ref_loss, ref_grads = ref.loss_and_grads(params, **data)
        pairs = [(loss, ref_loss)] + [(grads[k], ref_grads[k]) for k in params]
        for ours, theirs in pairs:
            ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
            worst = max(worst, float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300)))
    return worst


def main() -> None:
    print("| architecture | example | sizes | param arrays | scalars | derive (s) | worst rel. error vs reference |")
    print("|---|---|---|--:|--:|--:|--:|")
    for name, title, dims in ZOO:
        path = ROOT / "examples" / f"{name}.sdm"
        model = symderiv.load(path)
        m = load_generated(name)
        params = m.init_params(dims)
        scalars = sum(int(np.size(v)) for v in params.values())
        seconds = first_derive_seconds(path)
        err = worst_error(name, model, dims)
        sizes = ", ".join(f"{k}={v}" for k, v in dims.items())
        print(f"| {title} | `{name}.sdm` | {sizes} | {len(params)} | {scalars:,} | {seconds:.2f} | {err:.1e} |")


if __name__ == "__main__":
    main()
