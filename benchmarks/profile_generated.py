"""Where a generated module spends its time: python benchmarks/profile_generated.py [MODEL] [--small]

Loads generated/MODEL.py (default seed_rnn; lstm_tagger also works) with its source rewritten (``ast``) so that

- every simple statement of ``_run`` (loop bodies included) adds its wall-clock time, and the minor page faults
  of the process during it, to per-line totals;
- every matrix product (``a @ b``, ``np.dot(a, b)``, ``np.matmul(a, b)``) anywhere in the module goes through a
  timed wrapper that also counts its floating-point operations from the operand shapes: 2 · (size of the result)
  · (inner dimension).

The rewritten module computes exactly what the original does. The instrumentation costs about a microsecond per
statement and half of one per product, which matters only at small sizes (compare the plain time in the header).

Page faults matter because a NumPy array of more than 128 KiB is a fresh ``mmap`` from glibc's allocator, given
back at ``free``: every page of every such array a call allocates is faulted in again on first touch. The header
gives the machine's cost of one fault (time to fill a fresh array minus time to fill a reused one, per 4 KiB page).
"""

from __future__ import annotations

import argparse
import ast
import mmap
import resource
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from benchutil import (
    ROOT,
    blas_limit,
    blas_threads,
    load_generated,
    sequence_data,
    table,
    threads_tag,
    time_interleaved,
)

_COMPOUND = (ast.For, ast.While, ast.If, ast.With, ast.Try)


@dataclass
class Stats:
    lines: dict = field(default_factory=lambda: defaultdict(float))  # line number → seconds
    hits: dict = field(default_factory=lambda: defaultdict(int))  # line number → executions
    faults: dict = field(default_factory=lambda: defaultdict(int))  # line number → minor page faults
    mm_seconds: float = 0.0
    mm_flops: int = 0
    mm_calls: int = 0
    mm_shapes: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0.0, 0]))  # (a, b) → calls, s, flops

    def reset(self):
        self.__init__()


class _MatMul(ast.NodeTransformer):
    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.MatMult):
            call = ast.Call(func=ast.Name("_bench_mm", ast.Load()), args=[ast.Constant(None), node.left, node.right],
                            keywords=[])
            return ast.copy_location(call, node)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in ("dot", "matmul") and isinstance(func.value, ast.Name)
                and func.value.id == "np" and len(node.args) == 2):  # np.dot(a, b[, out=…]) is a product too
            call = ast.Call(func=ast.Name("_bench_mm", ast.Load()), args=[func, *node.args], keywords=node.keywords)
            return ast.copy_location(call, node)
        return node

    def visit_AugAssign(self, node):
        if isinstance(node.op, ast.MatMult):
            raise NotImplementedError("@= is not instrumented")
        return self.generic_visit(node)


def _timed(stmts: list[ast.stmt]) -> list[ast.stmt]:
    out = []
    for s in stmts:
        if isinstance(s, _COMPOUND):
            for name in ("body", "orelse", "finalbody"):
                if getattr(s, name, None):
                    setattr(s, name, _timed(getattr(s, name)))
            out.append(s)
        elif isinstance(s, ast.Return):
            out.append(s)
        else:
            out += ast.parse("_bench_f0 = _bench_faults(); _bench_t0 = _bench_clock()").body
            out.append(s)
            out += ast.parse(f"_bench_line({s.lineno}, _bench_clock() - _bench_t0, _bench_faults() - _bench_f0)").body
    return out


def instrumented(path: Path, function: str = "_run"):
    """The generated module at ``path``, rewritten as described above; returns (module namespace, Stats, source
    lines)."""
    source = path.read_text()
    tree = _MatMul().visit(ast.parse(source))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            node.body = _timed(node.body)
    ast.fix_missing_locations(tree)
    stats = Stats()
    clock = time.perf_counter

    def line(n, dt, faults):
        stats.lines[n] += dt
        stats.hits[n] += 1
        stats.faults[n] += faults

    def mm(f, a, b, **kw):
        """f(a, b, **kw), timed: ``a @ b`` where f is None, else the product the module called (np.dot, np.matmul)."""
        start = clock()
        out = a @ b if f is None else f(a, b, **kw)
        dt = clock() - start
        flops = 2 * out.size * a.shape[-1]
        stats.mm_seconds += dt
        stats.mm_flops += flops
        stats.mm_calls += 1
        entry = stats.mm_shapes[(a.shape, b.shape)]
        entry[0] += 1
        entry[1] += dt
        entry[2] += flops
        return out

    namespace = {"__name__": f"profiled_{path.stem}", "_bench_clock": clock, "_bench_line": line, "_bench_mm": mm,
                 "_bench_faults": minor_faults}
    exec(compile(tree, str(path), "exec"), namespace)
    return namespace, stats, source.splitlines()


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def fault_cost(mib: int = 3, repeat: int = 20) -> float:
    """Seconds per minor page fault: filling a fresh anonymous mapping (as glibc gives a large array) minus filling
    one already faulted in, over the faults counted; the median of ``repeat`` tries."""
    size = mib * 2**20
    warm = np.ones(size // 8)
    costs = []
    for _ in range(repeat):
        with mmap.mmap(-1, size) as region:
            a = np.frombuffer(region, dtype=np.float64)
            f0 = minor_faults()
            start = time.perf_counter()
            a.fill(1.0)
            fresh = time.perf_counter() - start
            faults = minor_faults() - f0
            del a
        start = time.perf_counter()
        warm.fill(1.0)
        reuse = time.perf_counter() - start
        if faults:
            costs.append(max(fresh - reuse, 0.0) / faults)
    return statistics.median(costs) if costs else 0.0


def profile(name: str, dims: dict, T: int, batch: int | None, calls: int = 10, top: int = 14) -> tuple[str, Stats]:
    """Line table of ``loss_and_gradients`` of generated/NAME.py (accumulated over ``calls`` calls, after a warm-up,
    reported per call) and the matrix-product totals."""
    ns, stats, lines = instrumented(ROOT / "generated" / f"{name}.py")
    params = ns["init_params"](dims, seed=0)
    data = sequence_data(T, dims, ns["INPUTS"], batch)
    run = ns["loss_and_gradients"]
    for _ in range(2):
        run(params, **data)
    stats.reset()
    start = time.perf_counter()
    for _ in range(calls):
        run(params, **data)
    total = (time.perf_counter() - start) / calls
    plain = time_interleaved({"plain": lambda: _plain(name)(params, **data)}, rounds=5)["plain"].best

    rows = []
    ranked = sorted(stats.lines.items(), key=lambda kv: -kv[1])
    for n, seconds in ranked[:top]:
        text = lines[n - 1].strip()
        rows.append([f"{n}", f"`{text[:90]}`", f"{stats.hits[n] // calls}", f"{seconds / calls * 1e3:.3f}",
                     f"{100 * seconds / calls / total:.1f}", f"{stats.faults[n] // calls}"])
    rest = sum(s for _, s in ranked[top:])
    rest_faults = sum(stats.faults[n] for n, _ in ranked[top:])
    rows.append(["", f"*{len(ranked) - top} other lines*", "", f"{rest / calls * 1e3:.3f}",
                 f"{100 * rest / calls / total:.1f}", f"{rest_faults // calls}"])
    accounted = sum(stats.lines.values()) / calls
    rows.append(["", "*outside the timed lines (call, `_prepare`, loop control, returns)*", "",
                 f"{(total - accounted) * 1e3:.3f}", f"{100 * (total - accounted) / total:.1f}", ""])
    faults = sum(stats.faults.values()) / calls
    cost = fault_cost()
    head = (f"`{name}.loss_and_gradients`, sizes {_sizes(dims, T, batch)}: {total * 1e3:.2f} ms per call "
            f"instrumented, {plain * 1e3:.2f} ms plain (best of 5). Matrix products: {stats.mm_calls // calls} "
            f"per call, {stats.mm_seconds / calls * 1e3:.2f} ms = {100 * stats.mm_seconds / calls / total:.0f}% "
            f"of the instrumented time, {stats.mm_flops / calls / 1e9:.3f} GFLOP, "
            f"{stats.mm_flops / stats.mm_seconds / 1e9:.1f} GFLOP/s while in them. Minor page faults: "
            f"{faults:.0f} per call; at {cost * 1e6:.2f} µs each (measured) about {faults * cost * 1e3:.1f} ms "
            f"= {100 * faults * cost / total:.0f}% of the call.\n\n")
    headers = ["line", "statement", "runs/call", "ms/call", "% of call", "page faults/call"]
    return head + table(headers, rows, "rlrrrr"), stats


def matmul_shapes_table(stats: Stats, calls: int = 10) -> str:
    rows = []
    for (a, b), (n, seconds, flops) in sorted(stats.mm_shapes.items(), key=lambda kv: -kv[1][1]):
        rows.append([f"{a} @ {b}", n // calls, f"{seconds / calls * 1e3:.3f}", f"{flops / calls / 1e6:.1f}",
                     f"{flops / seconds / 1e9:.1f}"])
    return table(["operands", "calls/call", "ms/call", "MFLOP/call", "GFLOP/s"], rows, "lrrrr")


_PLAIN = {}


def _plain(name):
    if name not in _PLAIN:
        _PLAIN[name] = load_generated(name).loss_and_gradients
    return _PLAIN[name]


def _sizes(dims, T, batch):
    sizes = ", ".join(f"{k}={v}" for k, v in dims.items())
    return f"{sizes}, T={T}, B={batch or 1}{'' if batch else ' (unbatched)'}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="seed_rnn")
    parser.add_argument("--small", action="store_true", help="every dim 32, T=20, unbatched (default: 256, 50, 32)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: NumPy's)")
    parser.add_argument("--calls", type=int, default=10, help="calls profiled (default 10)")
    args = parser.parse_args(argv)
    dim_names = load_generated(args.model).DIMS
    n, T, batch = (32, 20, None) if args.small else (256, 50, 32)
    with blas_limit(args.threads):
        text, stats = profile(args.model, dict.fromkeys(dim_names, n), T, batch, calls=args.calls)
        tag = threads_tag(blas_threads())
    print(f"#### Profile of generated/{args.model}.py{tag}\n")
    print(text)
    print()
    print(matmul_shapes_table(stats, calls=args.calls))


if __name__ == "__main__":
    main()
