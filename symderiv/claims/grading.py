"""A whole class at once: every submission judged against one model, in parallel processes,
and the results written as a CSV of counts or as Gradescope autograder results.

The model is derived once, in the parent, and the verifier's shared work (the activation
derivatives, the first probes) is done there too: a worker process forked from it starts
with all of that (where processes are not forked, each worker derives the model once).
Each worker then judges the submissions it is sent; the parent collects the results as they
come (the progress bar counts them) and returns them in the order the submissions were
named.  A submission that cannot be judged (not UTF-8, not a notebook, too large, a claim
nested too deeply, even an internal error) is a row with its reason, never a crash of the
whole class.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
import signal
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Position, SymderivError
from .reading import FORMATS

#: More submissions than this get a progress bar on standard error.
PROGRESS_FROM = 4
CSV_COLUMNS = ("submission", "claims", "correct", "per-step", "incorrect", "unreadable", "skipped", "diagnoses",
               "error")
VERDICTS = ("correct", "per-step", "incorrect", "unreadable")


@dataclass
class Graded:
    """One submission's result: its report as JSON-ready data, or the error that stopped it."""

    submission: str
    report: dict | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the time judging it took
    lhs: list[str] = field(default_factory=list)  # each claim's left side in the write-up's notation

    @property
    def claims(self) -> list[dict]:
        return self.report["claims"] if self.report else []

    def counts(self) -> dict[str, int]:
        summary = self.report["summary"] if self.report else {}
        return {v: summary.get(v, 0) for v in VERDICTS}

    def diagnoses(self) -> str:
        found = Counter(code for c in self.claims for code in c["diagnosis"])
        return " ".join(f"{code}:{n}" if n > 1 else code for code, n in sorted(found.items()))


def collect(paths: list[str]) -> tuple[list[str], list[str]]:
    """The files to judge, and the files of the named directories that are not write-ups.

    Each file named is judged whatever its suffix (an unknown one is a row that says so);
    inside a named directory, every write-up (``FORMATS``), sorted, hidden files and folders
    left out, and so is a link that leads outside the directory (a submission's link to the
    autograder's own files would otherwise have them read, and quoted in the report).  A file
    named twice is judged once.  A named directory without a write-up is itself a submission,
    whose row says so."""
    out: list[str] = []
    ignored: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found: list[str] = []
            other: list[str] = []
            inside = path.resolve()
            for f in sorted(path.rglob("*")):
                if not f.is_file() or any(part.startswith(".") for part in f.relative_to(path).parts):
                    continue
                if not f.resolve().is_relative_to(inside):
                    other.append(f"{f} (a link to outside the folder)")
                    continue
                (found if f.suffix.lower() in FORMATS else other).append(str(f))
            if not found:  # a row of its own that says so (in an autograder: a results.json that does)
                out.append(str(path))
                continue
            out.extend(found)
            ignored.extend(other)
        else:
            out.append(p)
    named = set(out)
    return list(dict.fromkeys(out)), [f for f in ignored if f not in named]


def submissions(paths: list[str]) -> list[str]:
    """The files to judge: each path named, and every write-up inside a named directory (sorted)."""
    return collect(paths)[0]


_STATE: dict = {}


def prepare(model_path: str, derivation=None) -> None:
    """Derive the model (unless ``derivation`` is given) and do once what every submission's
    judge shares, so that a worker forked from this process starts with it done."""
    from .reading import Reading
    from .verify import verify
    if derivation is None:
        from .. import derive, load
        derivation = derive(load(model_path))
    verify(derivation, Reading("<warm-up>", []))  # the activation derivatives, the probes' imports
    _STATE.update(path=model_path, d=derivation)


def _start(model_path: str) -> None:
    """A worker's start: ^C is the parent's to handle; the model derived once (inherited if forked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _STATE.get("path") != model_path:
        prepare(model_path)


def one_line(err: SymderivError, path: str) -> str:
    """The reason on one line (a CSV cell): ``line 3, column 115: MESSAGE``, without the
    quoted source line and without the file (the row names it)."""
    message = " ".join(err.message.split())
    pos = err.pos
    if message.startswith(f"cannot read {path}: "):
        message = "cannot read the file: " + message[len(f"cannot read {path}: "):]
    elif message.startswith(f"{path}:"):  # a message that names the file itself (path:3:4: error: ...)
        rest = message[len(path) + 1:].strip()
        m = re.match(r"(\d+):(\d+):\s*(.*)", rest)
        if m and pos is None:
            pos, rest = Position(path, int(m.group(1)), int(m.group(2))), m.group(3)
        message = rest.removeprefix("error:").strip()
    if pos is None or pos.file != path:
        return message if pos is None else f"{pos}: {message}"
    return f"line {pos.line}, column {pos.col}: {message}"


def no_writeup(path: str) -> str:
    """Why the folder ``path`` is no submission, and what is in it."""
    there = sorted(f.name for f in Path(path).rglob("*") if f.is_file())
    shown = ", ".join(there[:5]) + (f" and {len(there) - 5} more" if len(there) > 5 else "")
    return (f"no write-up in this folder ({'its files: ' + shown if there else 'it is empty'}); a write-up is a "
            f"{', '.join(sorted(FORMATS))} file")


def _judge(path: str) -> Graded:
    from .reading import read_claims
    from .verify import verify
    start = time.perf_counter()
    if Path(path).is_dir():
        return Graded(path, error=no_writeup(path))
    try:
        report = verify(_STATE["d"], read_claims(path, _STATE["d"]))
        data = json.loads(report.json())
    except SymderivError as err:
        return Graded(path, error=one_line(err, path), seconds=time.perf_counter() - start)
    except RecursionError:
        return Graded(path, error="a claim is nested too deeply to judge", seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one submission's internal error must not stop the class
        return Graded(path, error="internal error while judging this submission "
                                  f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); please report it",
                      seconds=time.perf_counter() - start)
    return Graded(path, data, notes=list(report.notes), seconds=time.perf_counter() - start,
                  lhs=[v.lhs or "" for v in report.verdicts])


def grade(model_path: str, paths: list[str], jobs: int | None = None, progress=None,
          derivation=None) -> list[Graded]:
    """Judge every submission (in ``jobs`` processes; one: in this process), in order.

    ``derivation``: the model's, if the caller has derived it already."""
    files = submissions(paths)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(files)))
    bar = _Progress(len(files), progress) if progress is not None and len(files) >= PROGRESS_FROM else None
    prepare(model_path, derivation)
    results: list[Graded | None] = [None] * len(files)
    if jobs == 1:
        for k, f in enumerate(files):
            results[k] = _judge(f)
            if bar:
                bar.step()
    else:
        _in_workers(model_path, files, jobs, results, bar)
    if bar:
        bar.done()
    return [g for g in results if g is not None]


def _in_workers(model_path: str, files: list[str], jobs: int, results: list, bar) -> None:
    """Judge ``files`` in ``jobs`` processes, each result put at its file's place as it arrives."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start, initargs=(model_path,))
    try:
        pending = {pool.submit(_judge, f): k for k, f in enumerate(files)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                k = pending.pop(future)
                try:
                    results[k] = future.result()
                except BrokenProcessPool:
                    results[k] = Graded(files[k], error="the process judging it stopped (out of memory?); "
                                                        "judge this file alone to see why")
                if bar:
                    bar.step()
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):  # ^C: stop the workers now
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


class _Progress:
    """``judged 37/200 [#####.....] 12 s, about 50 s left`` on standard error: one line redrawn
    in place on a terminal, a line every tenth of the class in a log."""

    def __init__(self, total: int, stream) -> None:
        self.total, self.n, self.stream = total, 0, stream
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.start = time.perf_counter()

    def step(self) -> None:
        self.n += 1
        if self.tty or self.n == self.total or self.n % max(1, self.total // 10) == 0:
            width = 30
            filled = width * self.n // self.total
            elapsed = time.perf_counter() - self.start
            left = elapsed / self.n * (self.total - self.n)
            timing = f" {elapsed:.0f} s" + (f", about {left:.0f} s left" if self.n < self.total else "")
            end = "\r" if self.tty else "\n"
            self.stream.write(f"judged {self.n}/{self.total} [{'#' * filled}{'.' * (width - filled)}]{timing}"
                              + ("\x1b[K" if self.tty else "") + end)  # (erase what a longer line left)
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


#: Gradescope's autograder results format, from https://gradescope-autograders.readthedocs.io/en/latest/specs/
#: ("Output format"): the values of ``visibility`` and of a test's ``status``.
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
STATUSES = ("passed", "failed")
UNREAD_NOTE = "the checker could not read this claim, so it scores 0 until a grader looks at it"


def _tests(g: Graded, prefix: str = "") -> list[dict]:
    """One Gradescope test per claim: a point for a correct or per-step claim, its message (and
    the correct form) as the output, the verdict and the diagnoses as tags."""
    tests = []
    for k, c in enumerate(g.claims):
        ok = c["verdict"] in ("correct", "per-step")
        label = c["verdict"] + (f" ({', '.join(c['diagnosis'])})" if c["diagnosis"] else "")
        output = f"{c['text']}\n{label}: {c['message']}"
        if c["verdict"] == "unreadable":
            output += f"\n({UNREAD_NOTE})"
        if c["expected"] and c["verdict"] != "correct":
            lhs = g.lhs[k] if k < len(g.lhs) else ""
            output += f"\ncorrect form: {lhs + ' = ' if lhs else ''}{c['expected']}"
        name = f"line {c['line']}: δ{c['target']}" if c["target"] else f"line {c['line']}"
        tests.append({"name": prefix + name, "score": 1.0 if ok else 0.0, "max_score": 1.0,
                      "status": "passed" if ok else "failed", "output": output, "tags": [c["verdict"], *c["diagnosis"]],
                      "visibility": "visible", "extra_data": {"verdict": c["verdict"], "diagnosis": c["diagnosis"]}})
    return tests


def _overall(g: Graded, prefix: str = "") -> list[str]:
    """The lines of the submission-wide output about ``g``."""
    if g.error:
        return [f"{prefix}not judged: {g.error}"]
    lines = []
    if not g.claims:
        lines.append(f"{prefix}no claims found: a claim is an equation whose left side is δX or ∂L/∂X "
                     "(in a .claims file, a line d(X) = ...)")
    unread = g.counts()["unreadable"]
    if unread:
        lines.append(f"{prefix}{unread} of {len(g.claims)} claims could not be read by the checker; "
                     f"{'it scores' if unread == 1 else 'they score'} 0 until a grader looks at "
                     f"{'it' if unread == 1 else 'them'}")
    lines.extend(f"{prefix}note: {n}" for n in g.notes)
    return lines


def gradescope(results: list[Graded] | Graded) -> dict:
    """Gradescope's autograder ``results.json`` for one submission (one file, or every file of
    one student's submission together): one test per claim.

    The format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output
    format"): a top-level ``score``, ``execution_time`` (seconds), ``output``, its formats,
    ``visibility``, ``stdout_visibility`` and ``tests``, each test with ``score``,
    ``max_score``, ``status`` (``passed``/``failed``), ``name``, ``number``, ``output``,
    ``tags``, ``visibility`` and ``extra_data``."""
    group = [results] if isinstance(results, Graded) else results
    several = len(group) > 1
    tests, lines = [], []
    for g in group:
        prefix = f"{Path(g.submission).name}: " if several else ""
        tests.extend(_tests(g, prefix))
        lines.extend(_overall(g, prefix))
    for k, t in enumerate(tests, start=1):
        t["number"] = str(k)
    return {"score": float(sum(t["score"] for t in tests)), "execution_time": round(sum(g.seconds for g in group), 3),
            "output": "\n".join(lines), "output_format": "text", "test_output_format": "text",
            "test_name_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def _folders(results: list[Graded]) -> list[str]:
    """A folder name for each submission's results.json: its path below the submissions'
    common folder, without the suffix unless two submissions differ only by it."""
    paths = [Path(os.path.abspath(g.submission)) for g in results]
    common = Path(os.path.commonpath([p.parent for p in paths])) if paths else Path()
    rel = [p.relative_to(common) for p in paths]
    bare = Counter(r.with_suffix("") for r in rel)
    return [str(r.with_suffix("") if bare[r.with_suffix("")] == 1 else r) for r in rel]


def check_report_path(path: str, form: str, count: int) -> None:
    """Refuse, before any submission is judged, a report that could not be written there."""
    target = Path(path)
    one_file = form == "csv" or path.lower().endswith(".json") or count == 1
    if one_file and target.is_dir():
        raise SymderivError(f"--report {path}: is a folder; name the file to write")
    if not one_file and target.exists() and not target.is_dir():
        raise SymderivError(f"{target}: exists and is not a folder; name a folder for one results.json a "
                            "submission, or a file ending in .json for one results.json")
    if one_file and not target.parent.is_dir():  # (a folder of results.json files is made, parents too)
        raise SymderivError(f"--report {path}: the folder {target.parent} does not exist")


def write_report(results: list[Graded], path: str, form: str) -> list[str]:
    """Write the CSV, or Gradescope results: ``PATH`` ending in ``.json`` (or a single
    submission) is one results.json for everything judged, one student's submission (what
    an autograder's ``run_autograder`` writes to /autograder/results/results.json); any other
    ``PATH`` is a folder with ``SUBMISSION/results.json`` for each submission.  Returns the
    files written."""
    if form == "csv":
        _atomic(Path(path), csv_text(results))
        return [path]
    if path.lower().endswith(".json") or len(results) == 1:
        _atomic(Path(path), json.dumps(gradescope(results), indent=2, ensure_ascii=False) + "\n")
        return [path]
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise SymderivError(f"{root}: exists and is not a folder; name a folder for one results.json a "
                            "submission, or a file ending in .json for one results.json")
    written = []
    for g, name in zip(results, _folders(results)):
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
