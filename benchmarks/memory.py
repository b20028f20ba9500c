"""Peak memory of ``gradients`` against ``forward``, seed RNN at the large size: python benchmarks/memory.py

Every dim 256, T = 50, B = 32, float64. Two measures:

- **tracemalloc** (the one the target is judged on): NumPy reports every array buffer it allocates to
  ``tracemalloc``, so the peak of traced memory during one call, minus what was traced before it (parameters and
  data), is the largest total of array buffers (and Python objects) alive at once during the call, the returned
  results included. Exact and deterministic, and blind to the allocator's caching. The module's workspace (the
  arena it keeps from call to call) is added to the peak of a call that uses it.
- **RSS** (a cross-check): in a fresh process per function, the growth of the peak resident set size
  (``VmHWM`` of /proc/self/status; ``ru_maxrss`` elsewhere) over one call, after parameters and data are set up
  and one call at a tiny size has loaded the code. It includes the allocator's behaviour (memory not returned
  to the system, page granularity).

For scale, the table also gives the size of what ``forward`` returns (every forward quantity, T·B·n each) and
the size of one (T, B, n) array.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tracemalloc

from benchutil import ROOT, Target, child_env, load_generated, print_targets, sequence_data, table

DIMS = dict(n_x=256, n_a=256, n_h=256, n_o=256, C=256)
T, B = 50, 32
LIMIT = 1.5

_RSS_CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[1])


def peak_rss():
    # VmHWM: this process's own high-water mark (ru_maxrss can be inherited from the parent across exec)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


from benchutil import load_generated, sequence_data
m = load_generated("seed_rnn", "examples/seed_rnn.sdm")
dims = dict(n_x=256, n_a=256, n_h=256, n_o=256, C=256)
small = dict.fromkeys(dims, 8)
getattr(m, sys.argv[2])(m.init_params(small), **sequence_data(3, small, m.INPUTS, 2))
params = m.init_params(dims, seed=0)
data = sequence_data(int(sys.argv[3]), dims, m.INPUTS, int(sys.argv[4]), seed=1)
before = peak_rss()
result = getattr(m, sys.argv[2])(params, **data)
print(peak_rss() - before)
"""


def traced_peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def rss_growth(function: str, runs: int = 3) -> int:
    """Median over fresh processes of the peak-RSS growth over one call, bytes."""
    values = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(ROOT / "benchmarks"), function, str(T), str(B)],
                             capture_output=True, text=True, check=True, env=child_env(), cwd=ROOT)
        values.append(int(out.stdout))
    return sorted(values)[len(values) // 2]


def measure() -> tuple[str, list[Target]]:
    m = load_generated("seed_rnn", "examples/seed_rnn.sdm")
    params = m.init_params(DIMS, seed=0)
    data = sequence_data(T, DIMS, m.INPUTS, B, seed=1)
    m.gradients(params, **data)  # warm-up
    functions = ("forward", "gradients", "loss_and_gradients")
    for f in functions:  # a workspace (issue 17) learns its layout on a first call, lays out its arena on a second
        getattr(m, f)(params, **data)
    held = getattr(m, "_workspace_bytes", lambda: 0)
    # what a call allocates, plus the arenas the module keeps between calls (``forward`` keeps none)
    traced = {f: traced_peak(lambda f=f: getattr(m, f)(params, **data)) + (held() if f != "forward" else 0)
              for f in functions}
    rss = {f: rss_growth(f) for f in ("forward", "gradients")}
    returned = sum(v.nbytes for v in m.forward(params, **data).values())
    one = T * B * DIMS["n_h"] * 8

    def mb(x):
        return f"{x / 2**20:.1f}"

    rows = [[f"`{f}`", mb(traced[f]), f"{traced[f] / one:.1f}", mb(rss[f]) if f in rss else "",
             f"{traced[f] / traced['forward']:.2f}"] for f in functions]
    text = table(["function", "tracemalloc peak (MiB)", "÷ one (T, B, n) array", "peak RSS growth (MiB)",
                  "tracemalloc / forward"], rows, "lrrrr")
    ratio = traced["gradients"] / traced["forward"]
    rss_ratio = rss["gradients"] / max(rss["forward"], 1)
    text += (f"\n\nEvery dim {DIMS['n_h']}, T = {T}, B = {B}, float64. One (T, B, n) array is {mb(one)} MiB; "
             f"`forward` returns {mb(returned)} MiB ({returned / one:.0f} of them). "
             f"gradients / forward: **{ratio:.2f}** by tracemalloc, {rss_ratio:.2f} by peak RSS growth "
             f"(median of 3 fresh processes).")
    return text, [Target("seed RNN large: peak memory of gradients / forward (tracemalloc)", f"{ratio:.2f}",
                         f"≤ {LIMIT}", ratio <= LIMIT)]


def main(argv=None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    text, targets = measure()
    print("### Peak memory: gradients vs forward\n")
    print(text)
    print()
    print_targets(targets)
    return targets


if __name__ == "__main__":
    main()
