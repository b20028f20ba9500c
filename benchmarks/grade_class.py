"""A whole class at once: N submissions built from the wild corpus (tests/data/wild/, real public
write-ups) with planted errors, graded by ``symderiv verify MODEL DIR --report grades.csv``.

    python benchmarks/grade_class.py [-n 200] [--seed 0] [--jobs 1,2] [--repeat 2] [--no-single]

1. ``tests/data/wild/plant.py`` writes two classes: copies of the corpus's write-ups, each with
   one to three of its right claims edited (a sign flipped, a transpose dropped, the term
   through step t+1 cut, the sum over t dropped, the activation's derivative dropped, a
   factor of 2).  "corpus": N submissions over every source, one folder per source with its
   model (a source is one exercise); "one exercise": N submissions of the LSTM write-up
   (wanesta_lstm, the largest model), one folder, as one homework of one class.
2. Each folder is graded with ``verify MODEL FOLDER --report F.csv --jobs J`` (a fresh process,
   as teaching staff run it: the start-up is counted) for every J of ``--jobs``, the runs
   interleaved and repeated ``--repeat`` times; the wall time and the CPU time (user + system
   of the process and its workers) of a class are the sums over its folders.
3. Every row of the corpus class's CSV is compared with the single-file run of the same file,
   ``verify MODEL FILE --json`` (a fresh process each; their total wall time is reported too):
   the number of claims, each verdict's count, the skipped equations, the diagnoses, and
   whether the file could be read (exit status 2).  Any difference fails the script (status 1).
4. For information, the rows whose counts equal the counts the planted errors and the hand
   verdicts predict (``expected.json``; the reader does not read every claim of the corpus yet,
   so these are not all equal, and nothing is asserted about them).

Timings on a shared machine are noisy: every run is printed, CPU time beside wall time (the
CPU time is what the load changes least), and one and two processes are measured side by side.
The test suite runs the same comparison on 12 submissions (tests/test_grading.py); this script
is the benchmark.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WILD = ROOT / "tests" / "data" / "wild"
for p in (str(ROOT), str(WILD), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import plant  # noqa: E402  (tests/data/wild/plant.py)
from benchutil import child_env, machine_description  # noqa: E402

VERDICTS = ("correct", "per-step", "incorrect", "unreadable")


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symderiv", "verify", *args], env=child_env(), cwd=ROOT,
                          capture_output=True, text=True, check=False)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grade_folder(folder: Path, jobs: int, report: Path) -> tuple[float, float, list[dict], int]:
    """One ``--report`` run: its wall time, its CPU time, the CSV's rows, the exit status."""
    start, cpu = time.perf_counter(), _children_cpu()
    done = verify(str(folder / "model.sdm"), str(folder), "--report", str(report), "--jobs", str(jobs))
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode not in (0, 1, 2) or not report.exists():
        raise SystemExit(f"verify --report failed on {folder} (status {done.returncode}):\n{done.stderr}")
    with report.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return elapsed, cpu, rows, done.returncode


def codes(text: str) -> list[str]:
    """The CSV's diagnoses cell (``sign transpose:2``) as a sorted list of codes."""
    out = []
    for item in text.split():
        code, _, n = item.partition(":")
        out += [code] * (int(n) if n else 1)
    return sorted(out)


def single(model: Path, path: str) -> dict:
    """What the single-file run says of one submission, in the CSV's terms."""
    done = verify(str(model), path, "--json")
    if done.returncode == 2:
        return {"error": True}
    report = json.loads(done.stdout)
    return {"error": False, "claims": len(report["claims"]), **report["summary"], "skipped": report["skipped"],
            "diagnoses": sorted(c for claim in report["claims"] for c in claim["diagnosis"])}


def from_row(row: dict) -> dict:
    if row["error"]:
        return {"error": True}
    return {"error": False, "claims": int(row["claims"]), **{v: int(row[v]) for v in VERDICTS},
            "skipped": int(row["skipped"]), "diagnoses": codes(row["diagnoses"])}


def time_classes(classes: dict[str, tuple[Path, list[Path]]], jobs_list: list[int], repeat: int,
                 work: Path) -> tuple[dict, dict]:
    """Every class graded at every worker count, ``repeat`` times, interleaved: the (wall, CPU)
    of each run by (class, jobs), and the CSV rows by submission (checked equal between runs)."""
    times: dict[tuple[str, int], list[tuple[float, float]]] = {(c, j): [] for c in classes for j in jobs_list}
    csv_rows: dict[str, dict] = {}
    for r in range(repeat):
        for j in (jobs_list if r % 2 == 0 else list(reversed(jobs_list))):  # interleaved, order alternated
            for name, (root, folders) in classes.items():
                wall = cpu = 0.0
                for folder in folders:
                    report = work / f"{name}.{folder.name}.j{j}.csv"
                    elapsed, used, got, _ = grade_folder(folder, j, report)
                    wall, cpu = wall + elapsed, cpu + used
                    for row in got:
                        key = f"{name}/{Path(row['submission']).relative_to(root)}"
                        if csv_rows.setdefault(key, row) != row:
                            raise SystemExit(f"the CSV row of {key} differs between runs: {csv_rows[key]} vs {row}")
                times[name, j].append((wall, cpu))
    return times, csv_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="submissions in each class (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="the seed of the planted errors (default 0)")
    ap.add_argument("--jobs", default="1,2", help="comma-separated worker counts to time (default 1,2)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each worker count (default 2)")
    ap.add_argument("--no-single", action="store_true", help="skip the single-file runs (and the comparison)")
    ap.add_argument("--keep", type=Path, default=None, help="write the classes and the reports here, and keep them")
    args = ap.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="grade_class_"))
    try:
        rows = plant.plant(work / "corpus", args.n, args.seed)
        one = plant.plant(work / "one", args.n, args.seed, only=["wanesta_lstm"])
        classes = {"corpus": (work / "corpus", sorted({work / "corpus" / r["source"] for r in rows})),
                   "one exercise": (work / "one", [work / "one" / "wanesta_lstm"])}
        print(machine_description())
        for name, made in (("corpus", rows), ("one exercise", one)):
            kinds = Counter(p["kind"] for r in made for p in r["planted"])
            print(f"class '{name}': {len(made)} submissions from {len({r['source'] for r in made})} source(s) of the "
                  f"wild corpus (seed {args.seed}); planted: " + ", ".join(f"{k} {kinds[k]}" for k in plant.KINDS))
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        times, csv_rows = time_classes(classes, jobs_list, args.repeat, work)
        n = len(rows)
        print("\n| class | verify runs | processes | wall time (s), each run | CPU time (s), each run "
              "| median wall per submission (ms) |")
        print("|---|---|---|---|---|---|")
        for name, (_, folders) in classes.items():
            for j in jobs_list:
                runs = times[name, j]
                med = statistics.median(w for w, _ in runs)
                print(f"| {name} | {len(folders)} | {j} | {', '.join(f'{w:.1f}' for w, _ in runs)} "
                      f"| {', '.join(f'{c:.1f}' for _, c in runs)} | {1000 * med / n:.0f} |")
        if len(jobs_list) == 2:
            for name in classes:
                ratios = [a[0] / b[0] for a, b in zip(times[name, jobs_list[0]], times[name, jobs_list[1]])]
                print(f"{name}: wall time {jobs_list[0]} process(es) / {jobs_list[1]}, per repeat: "
                      + ", ".join(f"{x:.2f}" for x in ratios))

        corpus_rows = {k.split("/", 1)[1]: v for k, v in csv_rows.items() if k.startswith("corpus/")}
        if len(corpus_rows) != n:
            print(f"the reports have {len(corpus_rows)} rows for {n} submissions")
            return 1
        expected = {r["submission"]: r["counts"] for r in rows}
        as_planted = sum(all(int(corpus_rows[s][v]) == c[v] for v in ("correct", "per-step", "incorrect"))
                         for s, c in expected.items())
        read_rows = [row for row in corpus_rows.values() if not row["error"]]
        claims = sum(int(row["claims"]) for row in read_rows)
        counted = {v: sum(int(row[v]) for row in read_rows) for v in VERDICTS}
        print(f"\nthe corpus class's CSV: {claims} claims: " + ", ".join(f"{counted[v]} {v}" for v in VERDICTS)
              + f"; {n - len(read_rows)} submissions could not be read")
        print(f"rows whose counts equal the planted expectation (information; the reader is the limit): "
              f"{as_planted}/{n}")

        if args.no_single:
            print(f"load average after: {os.getloadavg()[0]:.2f}")
            return 0
        start = time.perf_counter()
        differ = []
        for s, row in sorted(corpus_rows.items()):
            folder = work / "corpus" / Path(s).parts[0]
            got = single(folder / "model.sdm", row["submission"])
            if got != from_row(row):
                differ.append((s, from_row(row), got))
        singles = time.perf_counter() - start
        print(f"\nsingle-file runs (verify MODEL FILE --json, one process each): {n} in {singles:.1f} s "
              f"({1000 * singles / n:.0f} ms a submission)")
        print(f"corpus class: CSV rows differing from the single-file runs: {len(differ)} of {n}")
        for s, a, b in differ[:10]:
            print(f"  {s}: CSV {a}, single {b}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 1 if differ else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
