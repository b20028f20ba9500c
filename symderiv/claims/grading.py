"""A whole class at once: every submission judged against one model, in parallel processes,
and the results written as a CSV of counts or as Gradescope autograder results.

Each worker process derives the model once and judges the submissions it is given; the
parent collects the reports in the order the submissions were named.  A submission that
cannot be read at all (not UTF-8, not a notebook) is a row with its error, not a crash.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SymderivError
from .reading import FORMATS

#: More submissions than this get a progress bar on standard error.
PROGRESS_FROM = 4
CSV_COLUMNS = ("submission", "claims", "correct", "per-step", "incorrect", "unreadable", "skipped", "diagnoses",
               "error")


@dataclass
class Graded:
    """One submission's result: its report as JSON-ready data, or the error that stopped it."""

    submission: str
    report: dict | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the time judging it took

    @property
    def claims(self) -> list[dict]:
        return self.report["claims"] if self.report else []

    def counts(self) -> dict[str, int]:
        summary = self.report["summary"] if self.report else {}
        return {v: summary.get(v, 0) for v in ("correct", "per-step", "incorrect", "unreadable")}

    def diagnoses(self) -> str:
        found = Counter(code for c in self.claims for code in c["diagnosis"])
        return " ".join(f"{code}:{n}" if n > 1 else code for code, n in sorted(found.items()))


def submissions(paths: list[str]) -> list[str]:
    """The files to judge: each path named, and every write-up inside a named directory (sorted)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower() in FORMATS
                           and not any(part.startswith(".") for part in f.relative_to(path).parts))
            if not found:
                raise SymderivError(f"{path}: no write-ups in this directory ({', '.join(sorted(FORMATS))})")
            out.extend(found)
        else:
            out.append(p)
    return out


_STATE: dict = {}


def _start(model_path: str) -> None:
    from .. import derive, load
    _STATE["d"] = derive(load(model_path))


def _judge(path: str) -> Graded:
    from .reading import read_claims
    from .verify import verify
    start = time.perf_counter()
    try:
        report = verify(_STATE["d"], read_claims(path, _STATE["d"]))
    except SymderivError as err:
        return Graded(path, error=err.format().replace("\n", " "), seconds=time.perf_counter() - start)
    data = json.loads(report.json())
    return Graded(path, data, notes=list(report.notes), seconds=time.perf_counter() - start)


def grade(model_path: str, paths: list[str], jobs: int | None = None, progress=None) -> list[Graded]:
    """Judge every submission (in ``jobs`` processes; one: in this process), in order."""
    files = submissions(paths)
    jobs = jobs or min(len(files), os.cpu_count() or 1)
    bar = _Progress(len(files), progress) if progress is not None and len(files) >= PROGRESS_FROM else None
    results: list[Graded] = []
    if jobs <= 1 or len(files) == 1:
        _start(model_path)
        for f in files:
            results.append(_judge(f))
            if bar:
                bar.step()
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_start, initargs=(model_path,)) as pool:
            for result in pool.map(_judge, files, chunksize=max(1, len(files) // (jobs * 8))):
                results.append(result)
                if bar:
                    bar.step()
    if bar:
        bar.done()
    return results


class _Progress:
    """``judged 37/200 [#####.....]`` on one line of standard error, redrawn in place."""

    def __init__(self, total: int, stream) -> None:
        self.total, self.n, self.stream = total, 0, stream
        self.tty = getattr(stream, "isatty", lambda: False)()

    def step(self) -> None:
        self.n += 1
        if self.tty or self.n == self.total or self.n % max(1, self.total // 10) == 0:
            width = 30
            filled = width * self.n // self.total
            end = "\r" if self.tty else "\n"
            self.stream.write(f"judged {self.n}/{self.total} [{'#' * filled}{'.' * (width - filled)}]{end}")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def csv_text(results: list[Graded]) -> str:
    """One row a submission: its counts and its diagnoses (``sign transpose:2``)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for g in results:
        c = g.counts()
        skipped = g.report.get("skipped", 0) if g.report else 0
        w.writerow([g.submission, len(g.claims), c["correct"], c["per-step"], c["incorrect"], c["unreadable"],
                    skipped, g.diagnoses(), g.error])
    return out.getvalue()


def gradescope(g: Graded) -> dict:
    """Gradescope's autograder ``results.json`` for one submission: one test per claim, one
    point for a correct or per-step claim, its message (and the correct form) as the output.

    The format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output
    format"): a top-level ``score``, ``execution_time``, ``output``, ``visibility``,
    ``stdout_visibility`` and ``tests``, each test with ``score``, ``max_score``, ``status``
    (``passed``/``failed``), ``name``, ``number``, ``output`` and ``visibility``."""
    tests: list[dict] = []
    for k, c in enumerate(g.claims, start=1):
        ok = c["verdict"] in ("correct", "per-step")
        label = c["verdict"] + (f" ({', '.join(c['diagnosis'])})" if c["diagnosis"] else "")
        output = f"{c['text']}\n{label}: {c['message']}"
        if c["expected"] and c["verdict"] != "correct":
            output += f"\ncorrect form: {c['expected']}"
        tests.append({"name": f"line {c['line']}: δ{c['target']}" if c["target"] else f"line {c['line']}",
                      "number": str(k), "score": 1.0 if ok else 0.0, "max_score": 1.0,
                      "status": "passed" if ok else "failed", "output": output, "visibility": "visible"})
    score = sum(t["score"] for t in tests)
    lines = [g.error] if g.error else []
    if g.report is not None and not tests:
        lines.append("no claims found: a claim is an equation whose left side is δX or ∂L/∂X")
    lines.extend(f"note: {n}" for n in g.notes)
    return {"score": score, "execution_time": round(g.seconds, 3), "output": "\n".join(lines), "tests": tests,
            "visibility": "visible", "stdout_visibility": "hidden"}


def write_report(results: list[Graded], path: str, form: str) -> list[str]:
    """Write the CSV, or the results.json of each submission; returns the files written."""
    if form == "csv":
        _atomic(Path(path), csv_text(results))
        return [path]
    if len(results) == 1:
        _atomic(Path(path), json.dumps(gradescope(results[0]), indent=2, ensure_ascii=False) + "\n")
        return [path]
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    stems = Counter(Path(g.submission).stem for g in results)
    names = Counter(Path(g.submission).name for g in results)
    for g in results:
        source = Path(g.submission)
        name = source.stem if stems[source.stem] == 1 else source.name if names[source.name] == 1 else \
            str(source).replace(os.sep, "_").strip("_.")
        target = root / name / "results.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic(target, json.dumps(gradescope(g), indent=2, ensure_ascii=False) + "\n")
        written.append(str(target))
    return written


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def exit_status(results: list[Graded], strict: bool) -> int:
    """0 if every claim of every submission is correct, 1 if not, 2 if a submission could not be read.
    ``strict``: a submission without claims, or with skipped equations, is not a pass either."""
    if any(g.error for g in results):
        return 2
    bad = any(c["verdict"] != "correct" for g in results for c in g.claims)
    if strict:
        bad = bad or any(not g.claims or bool((g.report or {}).get("skipped")) for g in results)
    return 1 if bad else 0


def progress_stream():
    return sys.stderr
