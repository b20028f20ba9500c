"""Shared helpers of the benchmark scripts: loading generated modules, robust timing, tables, the machine."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

def child_env() -> dict:
    """The environment of a child process: ours (as it is now), with the repository's symderiv first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


# ---- generated modules ----

def _import_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_generated(name: str, fallback_model: str | None = None):
    """generated/NAME.py; when it does not exist, derive ``fallback_model`` (a path under the repository) into a
    temporary directory with the command line and import the module written there."""
    path = ROOT / "generated" / f"{name}.py"
    if path.exists():
        return _import_file(f"bench_{name}", path)
    if fallback_model is None:
        raise FileNotFoundError(path)
    with tempfile.TemporaryDirectory(prefix="symderiv-bench-") as out:
        subprocess.run([sys.executable, "-m", "symderiv", "derive", str(ROOT / fallback_model), "-o", out,
                        "--format", "py"], check=True, capture_output=True, env=child_env(), cwd=ROOT)
        (generated,) = Path(out).glob("*.py")
        return _import_file(f"bench_{generated.stem}", generated)


def sequence_data(T: int, dims: dict, inputs: dict, batch: int | None, seed: int = 0) -> dict:
    """Random data in the generated modules' public layout: normal inputs (T, n[, B]) and one-hot targets for
    every input whose name is ``r`` (the distribution targets of the models benchmarked here)."""
    rng = np.random.default_rng(seed)
    tail = (batch,) if batch else ()
    data = {}
    for name, (_, size) in inputs.items():
        n = dims[size]
        if name == "r":
            data[name] = np.moveaxis(np.eye(n)[rng.integers(0, n, (T,) + tail)], -1, 1)
        else:
            data[name] = rng.normal(size=(T, n) + tail)
    return data


# ---- timing ----

@dataclass
class Timing:
    best: float
    median: float

    def ms(self) -> str:
        return f"{self.best * 1e3:.3g} / {self.median * 1e3:.3g}"


def time_interleaved(fns: dict, rounds: int = 15, min_batch: float = 0.02, warmup: int = 2) -> dict[str, Timing]:
    """Seconds per call of every function, measured in interleaved rounds (so that a slow phase of the machine
    hits all of them alike): each round times a batch of calls of each function, the batch as long as needed to
    last ``min_batch`` seconds. Returns the best and the median per-call time over the rounds."""
    batch = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        batch[name] = max(1, int(min_batch / max(once, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            k = batch[name]
            start = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - start) / k)
    return {name: Timing(min(s), statistics.median(s)) for name, s in samples.items()}


def median_wall(cmd: list[str], runs: int = 5, **kwargs) -> tuple[float, list[float]]:
    """Median wall-clock seconds of a command over ``runs`` runs (after one unmeasured run to warm the caches)."""
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# ---- output ----

def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column, l or r (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Target:
    """One target of issue 7: what, the measured value (as text), the target (as text), met or not."""
    name: str
    value: str
    target: str
    ok: bool

    def row(self) -> list[str]:
        return [self.name, self.value, self.target, "PASS" if self.ok else "**FAIL**"]


def targets_table(targets: list[Target]) -> str:
    return table(["target", "measured", "required", "verdict"], [t.row() for t in targets], "lrrl")


#: run_all.py sets this to a file; every script appends its targets to it, one JSON object a line
TARGETS_FILE = "SYMDERIV_BENCH_TARGETS"


def print_targets(targets: list[Target]) -> None:
    """Print the targets table, and record the targets for run_all.py when it is the caller."""
    print(targets_table(targets))
    path = os.environ.get(TARGETS_FILE)
    if path:
        with open(path, "a") as f:
            for t in targets:
                f.write(json.dumps(t.__dict__) + "\n")


def read_targets(path: str) -> list[Target]:
    with open(path) as f:
        return [Target(**json.loads(line)) for line in f if line.strip()]


def run_script(name: str, *args: str) -> None:
    """Run benchmarks/NAME.py in a fresh process (its output goes straight to ours). A fresh process per script
    keeps one script's allocations from changing another's: glibc raises its mmap and trim thresholds after
    freeing a large block, which decides whether big NumPy temporaries cost page faults."""
    sys.stdout.flush()
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args], check=True, env=child_env(),
                   cwd=ROOT)


def threads_tag(n: int | None) -> str:
    return "" if n is None else f" [{n} thread{'s' if n != 1 else ''}]"


# ---- the machine ----

def blas_threads() -> int | None:
    """The thread count of NumPy's BLAS (threadpoolctl if installed), else None."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return counts[0] if counts else None


@contextlib.contextmanager
def blas_limit(n: int | None):
    """NumPy's BLAS limited to n threads (None: unchanged)."""
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise SystemExit("--threads needs threadpoolctl (pip install threadpoolctl)") from None
    with threadpool_limits(n, user_api="blas"):
        yield


def blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libs:
            return "; ".join(f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
                             f"{i['num_threads']} threads, {i.get('threading_layer')})" for i in libs)
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (thread count unknown: threadpoolctl not installed)"
    except Exception:  # older NumPy: no dict mode
        return "unknown (see numpy.show_config())"


def _openblas_cores(env: dict | None = None) -> set[str]:
    """The cores of the OpenBLAS libraries NumPy loads (threadpoolctl's "architecture"): in this process, or
    (``env``) in a fresh one with that environment."""
    if env is None:
        from threadpoolctl import threadpool_info

        return {str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"}
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import benchutil; "
            "print(' '.join(benchutil._openblas_cores()))")  # this function, in that process
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return set(out.stdout.split()) if out.returncode == 0 else set()


def _cpu_flags() -> list[str]:
    try:
        return next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")), [])
    except OSError:
        return []


def blas_core_note(flags: list[str] | None = None, cores: set[str] | None = None, env: dict | None = None) -> str:
    """A warning where OpenBLAS runs kernels older than the CPU's vector unit (its AVX2 "Haswell" kernels, which
    it also runs on AMD's Zen, on a CPU with AVX-512), empty otherwise: every NumPy product, the FLOP floor's GEMM
    rate included, is then slower than the machine allows, and peers with kernels of their own (XLA) are not.
    Says whether ``OPENBLAS_CORETYPE`` chose them, and what OpenBLAS picks without it.  (``flags``, ``cores``,
    ``env``: the CPU's flags, OpenBLAS's cores and the environment, by default this machine's and process's.)"""
    flags = _cpu_flags() if flags is None else flags
    env = dict(os.environ) if env is None else env
    if cores is None:
        try:
            cores = _openblas_cores()
        except ImportError:
            return ""
    if "avx512f" not in flags or not cores or not cores <= {"Haswell", "Zen"}:
        return ""
    kernels = f"OpenBLAS runs its {'/'.join(sorted(cores))} kernels (AVX2) on this CPU, which has AVX-512"
    coretype = env.get("OPENBLAS_CORETYPE")
    if coretype is None:
        return (f"{kernels}: it does not recognise the CPU (OpenMathLib/OpenBLAS#6029 reports so for AMD's Zen 5); "
                "OPENBLAS_CORETYPE=SkylakeX in the environment selects its AVX-512 kernels for every NumPy contender "
                "(JAX's XLA has kernels of its own).")
    unset = _openblas_cores({k: v for k, v in env.items() if k != "OPENBLAS_CORETYPE"})
    found = "/".join(sorted(unset)) if unset else "unknown"
    return (f"{kernels}, because the environment sets OPENBLAS_CORETYPE={coretype} (without it OpenBLAS picks "
            f"{found} here). Every NumPy contender runs them; JAX's XLA has kernels of its own.")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_description() -> str:
    """What was measured: the repository's commit, whether the code generator or the generated modules differ from
    it, and a hash of each generated module the benchmarks load."""
    def git(*args):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.rstrip() if out.returncode == 0 else None

    commit = git("log", "-1", "--format=%h %s")
    dirty = git("status", "--porcelain", "--", "symderiv", "templates", "generated")
    rows = [["commit", commit or "unknown (not a git checkout)"],
            ["symderiv/, templates/, generated/ vs the commit",
             "unknown" if dirty is None else ("modified: " + ", ".join(line[3:] for line in dirty.splitlines())
                                               if dirty else "unmodified")]]
    for name in ("seed_rnn", "lstm_tagger"):
        path = ROOT / "generated" / f"{name}.py"
        if path.exists():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
            rows.append([f"generated/{name}.py", f"sha256 {digest}…, modified {stamp}"])
    return table(["code under test", ""], rows, "ll")


def machine_description() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    rows = [
        ["CPU", cpu_model()],
        ["logical CPUs (usable by this process)", f"{os.cpu_count()} ({usable})"],
        ["OS", platform.platform()],
        ["Python", f"{platform.python_implementation()} {platform.python_version()}"],
        ["NumPy", np.__version__],
        ["BLAS", blas_description()],
    ]
    try:
        import torch

        rows.append(["PyTorch", f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)"])
    except ImportError:
        rows.append(["PyTorch", "not installed (torch columns skipped)"])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            rows.append([var, os.environ[var]])
    return table(["machine", ""], rows, "ll")
