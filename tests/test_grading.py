"""``symderiv verify MODEL DIR_OR_FILES... --report``: a whole class at once (issue 14).

The class is built from the wild corpus (tests/data/wild/, real public write-ups) by its
plant.py: copies with planted slips.  Every CSV row must say what the single-file
``verify MODEL FILE --json`` run of the same file says; the Gradescope results must follow
Gradescope's documented format (tests/data/gradescope/results.schema.json, transcribed from
its specification); and a folder as teaching staff have it (mixed formats, empty, binary and
huge files, files that are no write-ups) must give a row for every submission, with its
reason, and the exit statuses of INTERFACES.md.  benchmarks/grade_class.py is the same
comparison on 200 submissions, timed.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

import symderiv
from symderiv.claims import grading
from symderiv.cli import main

from .helpers import EXAMPLES, ROOT

WILD = ROOT / "tests" / "data" / "wild"
SCHEMA = json.loads((ROOT / "tests" / "data" / "gradescope" / "results.schema.json").read_text(encoding="utf-8"))
VERDICTS = ("correct", "per-step", "incorrect", "unreadable")


def _plant():
    sys.path.insert(0, str(WILD))
    try:
        import plant
    finally:
        sys.path.remove(str(WILD))
    return plant


def cli(capsys, *args):
    status = main(["verify", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def single(capsys, model, path) -> dict:
    """The single-file run, ``verify MODEL FILE --json``, in the CSV's terms."""
    status, out, err = cli(capsys, model, path, "--json")
    if status == 2:
        return {"error": True}
    report = json.loads(out)
    return {"error": False, "claims": len(report["claims"]), **report["summary"], "skipped": report["skipped"],
            "diagnoses": sorted(c for claim in report["claims"] for c in claim["diagnosis"])}


def row_terms(row: dict) -> dict:
    if row["error"]:
        return {"error": True}
    codes = []
    for item in row["diagnoses"].split():
        code, _, n = item.partition(":")
        codes += [code] * (int(n) if n else 1)
    return {"error": False, "claims": int(row["claims"]), **{v: int(row[v]) for v in VERDICTS},
            "skipped": int(row["skipped"]), "diagnoses": sorted(codes)}


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(set(r) == set(grading.CSV_COLUMNS) and None not in r.values() for r in rows)
    return rows


# ---------------------------------------------------------------------------------------
# A class from the wild corpus, with planted errors.


@pytest.fixture(scope="module")
def planted_class(tmp_path_factory):
    plant = _plant()
    root = tmp_path_factory.mktemp("planted") / "class"
    rows = plant.plant(root, 12, seed=0)
    return plant, root, rows


def test_every_csv_row_equals_the_single_file_run(planted_class, tmp_path, capsys):
    plant, root, rows = planted_class
    folders = sorted({r["source"] for r in rows})
    assert len(rows) == 12 and len(folders) >= 8  # most exercises of the corpus, each with its own model
    seen = 0
    for name in folders:
        folder = root / name
        report = tmp_path / f"{name}.csv"
        status, out, err = cli(capsys, folder / "model.sdm", folder, "--report", report, "--jobs", "2")
        got = read_csv(report)
        subs = sorted(str(p) for p in folder.iterdir() if p.name.startswith("sub_"))
        assert [r["submission"] for r in got] == subs  # one row a submission, in order
        assert "model.sdm" in err and "not judged" in err  # the model beside them is said, not judged
        for row in got:
            assert row_terms(row) == single(capsys, folder / "model.sdm", row["submission"]), row["submission"]
            seen += 1
        want = 2 if any(r["error"] for r in got) else 1 if any(
            int(r[v]) for r in got for v in ("per-step", "incorrect", "unreadable")) else 0
        assert status == want
    assert seen == 12


def test_a_planted_slip_never_passes(planted_class, capsys):
    """Each planted claim that the unedited source's run calls correct is, in the copy, no
    longer correct (the sum over t dropped: per-step; the others: not correct)."""
    plant, root, rows = planted_class
    source_verdicts: dict[str, dict] = {}
    checked = Counter()
    for r in rows:
        model = root / r["source"] / "model.sdm"
        if r["source"] not in source_verdicts:
            spec = json.loads((WILD / r["source"] / "expected.json").read_text(encoding="utf-8"))
            cli(capsys, model, WILD / r["source"] / spec["file"], "--json")  # (warm)
            _, out, _ = cli(capsys, model, WILD / r["source"] / spec["file"], "--json")
            source_verdicts[r["source"]] = {(c["line"], c["target"]): c["verdict"] for c in json.loads(out)["claims"]}
        _, out, _ = cli(capsys, model, root / r["submission"], "--json")
        copy = {}
        for c in json.loads(out)["claims"]:
            copy.setdefault((c["line"], c["target"]), []).append(c["verdict"])
        for p in r["planted"]:
            hits = [key for key, v in source_verdicts[r["source"]].items()
                    if key[0] == p["line"] and v == "correct"]
            for key in hits:
                assert "correct" not in copy.get(key, []), (r["submission"], p, copy.get(key))
                if p["kind"] == "sum":
                    assert copy[key] == ["per-step"]
                checked[p["kind"]] += 1
    assert sum(checked.values()) >= 5, checked


# ---------------------------------------------------------------------------------------
# Gradescope's results.json.


def conforms(value, schema, where="results") -> list[str]:
    """What in ``value`` breaks ``schema`` (the subset of JSON Schema the file uses)."""
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "number": (int, float)}
    if kind and (not isinstance(value, types[kind]) or isinstance(value, bool)):
        return problems + [f"{where}: {value!r} is not a {kind}"]
    if kind == "number" and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{where}: {value} < {schema['minimum']}")
    if kind == "object":
        props = schema.get("properties", {})
        problems += [f"{where}: no {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            problems += [f"{where}: {k} is not a key of the format" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                problems += conforms(v, props[k], f"{where}.{k}")
    if kind == "array" and "items" in schema:
        for i, v in enumerate(value):
            problems += conforms(v, schema["items"], f"{where}[{i}]")
    return problems


def test_the_schema_checker_can_say_no():
    good = {"score": 1.0, "tests": [{"score": 1.0, "status": "passed", "visibility": "visible", "tags": ["a"]}]}
    assert conforms(good, SCHEMA) == []
    assert conforms({"tests": []}, SCHEMA) == ["results: no score"]
    assert conforms({"score": "1"}, SCHEMA)
    assert conforms({"score": 1, "tests": [{"status": "ok"}]}, SCHEMA)
    assert conforms({"score": 1, "tests": [{"visibility": "students"}]}, SCHEMA)
    assert conforms({"score": 1, "tests": [{"tags": [1]}]}, SCHEMA)
    assert conforms({"score": 1, "points": 3}, SCHEMA)
    assert conforms({"score": 1, "output_format": "latex"}, SCHEMA)


def test_gradescope_results_follow_the_documented_format(planted_class, tmp_path, capsys):
    plant, root, rows = planted_class
    folder = root / "d2l_mlp"
    d = symderiv.derive(symderiv.load(folder / "model.sdm"))
    extra = folder / "zz_broken.ipynb"
    extra.write_text("{not json", encoding="utf-8")
    try:
        out = tmp_path / "gs"
        status, _, _ = cli(capsys, folder / "model.sdm", folder, "--report", out, "--report-format", "gradescope")
        assert status == 2  # the broken notebook
        files = sorted(p for p in folder.iterdir() if p.suffix != ".sdm")
        written = {p.parent.name: p for p in out.rglob("results.json")}
        assert sorted(written) == sorted(p.stem for p in files)
        for source in files:
            results = json.loads(written[source.stem].read_text(encoding="utf-8"))
            assert conforms(results, SCHEMA) == [], source
            if source == extra:
                assert results["tests"] == [] and results["score"] == 0
                assert "not a Jupyter notebook" in results["output"]
                continue
            report = symderiv.verify(d, source)
            assert len(results["tests"]) == len(report.verdicts)
            for t, v in zip(results["tests"], report.verdicts):
                passed = v.verdict in ("correct", "per-step")
                assert (t["status"], t["score"], t["max_score"]) == (("passed", 1.0, 1.0) if passed else
                                                                      ("failed", 0.0, 1.0))
                assert v.message in t["output"] and t["tags"][0] == v.verdict and t["tags"][1:] == v.diagnosis
                if v.expected and v.verdict != "correct":  # the correct form, as the text report writes it
                    assert f"correct form: {v.lhs} = {v.expected}" in t["output"]
            assert [t["number"] for t in results["tests"]] == [str(k + 1) for k in range(len(report.verdicts))]
            assert results["score"] == sum(v.verdict in ("correct", "per-step") for v in report.verdicts)
        # one student's files together: PATH ending in .json is one results.json
        one = tmp_path / "results.json"
        subs = [p for p in files if p != extra][:2]
        cli(capsys, folder / "model.sdm", *subs, "--report", one, "--report-format", "gradescope")
        together = json.loads(one.read_text(encoding="utf-8"))
        assert conforms(together, SCHEMA) == []
        parts = [json.loads(written[p.stem].read_text(encoding="utf-8")) for p in subs]
        assert len(together["tests"]) == sum(len(p["tests"]) for p in parts)
        assert together["score"] == sum(p["score"] for p in parts)
        assert all(t["name"].startswith(subs[0].name + ": ") for t in together["tests"][:len(parts[0]["tests"])])
        assert len({t["number"] for t in together["tests"]}) == len(together["tests"])
    finally:
        extra.unlink()


def test_gradescope_folders_for_students_with_the_same_file_name(tmp_path, capsys):
    # a Gradescope export: one folder a student, each with answer.md (and one with answer.tex too)
    right = r"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + "\n"
    for who in ("ann", "ben"):
        (tmp_path / "subs" / who).mkdir(parents=True)
        (tmp_path / "subs" / who / "answer.md").write_text(right, encoding="utf-8")
    (tmp_path / "subs" / "ben" / "answer.tex").write_text(right.replace("$$", "\\[", 1).replace("$$", "\\]"),
                                                         encoding="utf-8")
    out = tmp_path / "gs"
    status, _, _ = cli(capsys, EXAMPLES / "seed_rnn.sdm", tmp_path / "subs", "--report", out,
                       "--report-format", "gradescope", "--jobs", "1")
    assert status == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("results.json")) == [
        "ann/answer/results.json", "ben/answer.md/results.json", "ben/answer.tex/results.json"]
    report = tmp_path / "not_a_folder"
    report.write_text("x")
    status, _, err = cli(capsys, EXAMPLES / "seed_rnn.sdm", tmp_path / "subs", "--report", report,
                         "--report-format", "gradescope")
    assert status == 2 and "not a folder" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------
# A folder as teaching staff have it.


def _staff_folder(root: Path) -> Path:
    text = (WILD / "d2l_mlp" / "source.md").read_text(encoding="utf-8")
    root.mkdir()
    (root / "alice.md").write_text(text, encoding="utf-8")
    (root / "bob.tex").write_text(text, encoding="utf-8")
    (root / "carol.txt").write_text(text.replace(r"\odot \phi'", r"\odot 2 \phi'"), encoding="utf-8")
    (root / "dave.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)}]}), encoding="utf-8")
    (root / "erin.html").write_text(
        r"<html><body><p>\[\frac{\partial J}{\partial \mathbf{o}} = \frac{\partial L}{\partial \mathbf{o}}\]</p>"
        "</body></html>", encoding="utf-8")
    (root / "empty.md").write_text("", encoding="utf-8")
    (root / "binary.md").write_bytes(bytes(range(256)) * 8)
    (root / "huge.md").write_text(text * 300, encoding="utf-8")  # over the 2 MB bound of one derivation
    (root / "notes.pdf").write_bytes(b"%PDF-1.4 not a write-up")
    (root / ".hidden.md").write_text("never judged", encoding="utf-8")
    secret = root.parent / "solution.md"  # the grader's own file, outside the folder
    secret.write_text(r"$$\frac{\partial J}{\partial \mathbf{o}} = \frac{\partial L}{\partial \mathbf{o}}$$" + "\n",
                      encoding="utf-8")
    (root / "mallory.md").symlink_to(secret)
    return root


def test_a_folder_as_teaching_staff_have_it(tmp_path, capsys):
    root = _staff_folder(tmp_path / "hw3")
    model = WILD / "d2l_mlp" / "model.sdm"
    out_csv = tmp_path / "grades.csv"
    status, out, err = cli(capsys, model, root, "--report", out_csv, "--jobs", "2")
    assert "Traceback" not in out + err
    rows = {Path(r["submission"]).name: r for r in read_csv(out_csv)}
    assert sorted(rows) == ["alice.md", "binary.md", "bob.tex", "carol.txt", "dave.ipynb", "empty.md", "erin.html",
                            "huge.md"]
    assert "notes.pdf" in err and "not judged" in err and ".hidden" not in err
    assert "mallory.md (a link to outside the folder)" in err  # never read, never quoted
    assert status == 2  # two files could not be read; the report is written all the same
    assert "not valid UTF-8" in rows["binary.md"]["error"] and rows["binary.md"]["error"].isprintable()
    assert "bytes" in rows["huge.md"]["error"] and "2,000,000" in rows["huge.md"]["error"]
    assert rows["empty.md"]["claims"] == "0" and rows["empty.md"]["error"] == ""
    for name in ("alice.md", "bob.tex", "dave.ipynb"):
        assert rows[name]["correct"] == rows["alice.md"]["correct"] != "0" and rows[name]["incorrect"] == "0"
    assert rows["carol.txt"]["incorrect"] == "1" and rows["carol.txt"]["diagnoses"] == "wrong-factor"
    assert rows["erin.html"]["correct"] == "1"
    # one line a submission on standard output, the errors as errors
    lines = {Path(line.split(": ", 1)[0]).name: line for line in out.splitlines()}
    assert "error: line 1, column" in lines["huge.md"] and "error:" in lines["binary.md"]
    assert "0 claims" in lines["empty.md"] and "1 claim:" in lines["erin.html"]
    assert err.count("judged 8/8") == 1
    # --strict: a submission without claims fails it too; the readable ones alone
    readable = [root / n for n in ("alice.md", "bob.tex", "dave.ipynb")]
    assert cli(capsys, model, *readable, "--report", out_csv)[0] == 1  # d2l's prod(...) claim is unreadable
    assert cli(capsys, model, root / "erin.html", root / "empty.md", "--report", out_csv)[0] == 0
    assert cli(capsys, model, root / "erin.html", root / "empty.md", "--report", out_csv, "--strict")[0] == 1


def test_exit_statuses(tmp_path, capsys):
    right = r"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + "\n"
    files = []
    for k in range(5):
        files.append(tmp_path / f"s{k}.md")
        files[-1].write_text(right, encoding="utf-8")
    report = tmp_path / "g.csv"
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", *files, "--report", report)[0] == 0
    files[2].write_text(right.replace("= ", "= -"), encoding="utf-8")
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", *files, "--report", report)[0] == 1
    files[3].write_bytes(b"\xff\xfe")
    assert cli(capsys, EXAMPLES / "seed_rnn.sdm", *files, "--report", report)[0] == 2
    bad_model = tmp_path / "bad.sdm"
    bad_model.write_text("model x\nparam W: (n\n", encoding="utf-8")
    status, _, err = cli(capsys, bad_model, *files, "--report", report)
    assert status == 2 and "bad.sdm:" in err and "Traceback" not in err
    status, _, err = cli(capsys, EXAMPLES / "seed_rnn.sdm", *files, "--jobs", "0")
    assert status == 2 and "--jobs" in err
    status, out, _ = cli(capsys, EXAMPLES / "seed_rnn.sdm", tmp_path / "nothing_here.md", "--report", report)
    assert status == 2 and "nothing_here.md: error: cannot read the file: No such file" in out
    assert "No such file" in read_csv(report)[0]["error"]
    # a report that could not be written is refused before any submission is judged
    for bad, form in ((tmp_path / "no" / "such" / "g.csv", "csv"), (tmp_path, "csv"),
                      (tmp_path / "s0.md", "gradescope")):
        status, out, err = cli(capsys, EXAMPLES / "seed_rnn.sdm", *files, "--report", bad, "--report-format", form)
        assert status == 2 and ("--report" in err or "not a folder" in err)
        assert out == "" and "judged" not in err and "Traceback" not in err
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "a.pdf").write_bytes(b"%PDF")
    status, out, _ = cli(capsys, EXAMPLES / "seed_rnn.sdm", tmp_path / "pdfs", "--report", report)
    assert status == 2 and "pdfs: error: no write-up in this folder (its files: a.pdf); a write-up is a" in out
    status, out, err = cli(capsys, EXAMPLES / "seed_rnn.sdm", tmp_path / "pdfs")  # no report: an error
    assert status == 2 and out == "" and "error:" in err and "pdfs: no write-up in this folder" in err
    # in an autograder: a results.json that says so, not an autograder without results
    results = tmp_path / "results.json"
    status, _, _ = cli(capsys, EXAMPLES / "seed_rnn.sdm", tmp_path / "pdfs", "--report", results,
                       "--report-format", "gradescope")
    written = json.loads(results.read_text(encoding="utf-8"))
    assert status == 2 and written["score"] == 0 and written["tests"] == []
    assert "no write-up in this folder (its files: a.pdf)" in written["output"] and conforms(written, SCHEMA) == []


# ---------------------------------------------------------------------------------------
# The machinery: the progress bar, the model derived once, a failure as a row.


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_the_progress_bar(tmp_path, tty):
    right = r"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + "\n"
    for k in range(25):
        (tmp_path / f"s{k:02d}.md").write_text(right, encoding="utf-8")
    stream = _Stream(tty)
    grading.grade(str(EXAMPLES / "seed_rnn.sdm"), [str(tmp_path)], jobs=2, progress=stream)
    text = stream.getvalue()
    draws = text.replace("\r", "\n").split("\n")
    counts = [int(line.split()[1].split("/")[0]) for line in draws if line.startswith("judged")]
    assert counts == sorted(counts) and counts[-1] == 25 and all(f"/{25}" in d for d in draws if d)
    assert text.endswith("\n")
    assert "s left" in draws[0] and "left" not in [d for d in draws if d][-1]  # the time, and what is left
    if tty:  # redrawn in place, every file
        assert counts == list(range(1, 26)) and text.count("\n") == 1
    else:  # a line every tenth of the class, for a log
        assert len(counts) <= 13 and "\r" not in text
    few = _Stream(True)
    grading.grade(str(EXAMPLES / "seed_rnn.sdm"), [str(tmp_path / "s00.md"), str(tmp_path / "s01.md")],
                  jobs=1, progress=few)
    assert few.getvalue() == ""  # no bar for a couple of files


def test_the_command_draws_the_bar_on_a_terminal(tmp_path, monkeypatch):
    # through the command, whose standard error escapes control characters (terminal_safe):
    # the bar's own carriage return must still reach the terminal
    right = r"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + "\n"
    for k in range(6):
        (tmp_path / f"s{k}.md").write_text(right, encoding="utf-8")
    terminal, out = _Stream(True), io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["verify", str(EXAMPLES / "seed_rnn.sdm"), str(tmp_path), "--report", str(tmp_path / "g.csv"),
                 "--jobs", "1"]) == 0
    text = terminal.getvalue()
    assert text.count("\r") == 6 and "judged 6/6" in text and "\\u000d" not in text and "\\u001b" not in text


def test_a_worker_starts_with_the_parents_derivation(monkeypatch):
    model = str(EXAMPLES / "seed_rnn.sdm")
    d = symderiv.derive(symderiv.load(model))
    grading.prepare(model, d)
    handler = signal.getsignal(signal.SIGINT)

    def derive_again(*args, **kwargs):
        raise AssertionError("the worker derived the model again")

    monkeypatch.setattr(symderiv, "derive", derive_again)
    try:
        grading._start(model)  # what a forked worker runs first
        assert grading._STATE["d"] is d
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # ^C is the parent's to handle
    finally:
        signal.signal(signal.SIGINT, handler)
    grading._STATE.clear()
    with pytest.raises(AssertionError, match="derived the model again"):
        grading._start(model)  # not forked from a prepared parent: it derives
    signal.signal(signal.SIGINT, handler)


def test_an_internal_error_in_one_submission_is_its_row(tmp_path, monkeypatch):
    from symderiv.claims import verify as verify_module
    right = r"$$\delta \mathbf{h}^{(\mathrm{out})}_t = \hat{\mathbf{r}}_t - \mathbf{r}_t$$" + "\n"
    for name in ("a.md", "b.md", "c.md"):
        (tmp_path / name).write_text(right, encoding="utf-8")
    real = verify_module.verify

    def flaky(d, reading):
        if reading.path.endswith("b.md"):
            raise ZeroDivisionError("something the checker did not expect")
        return real(d, reading)

    monkeypatch.setattr(verify_module, "verify", flaky)
    results = grading.grade(str(EXAMPLES / "seed_rnn.sdm"), [str(tmp_path)], jobs=1)
    assert [bool(g.error) for g in results] == [False, True, False]
    assert "internal error" in results[1].error and "ZeroDivisionError" in results[1].error
    assert grading.exit_status(results, strict=False) == 2


def test_the_csv_the_teaching_page_shows(tmp_path, monkeypatch, capsys):
    page = (ROOT / "docs" / "verify.md").read_text(encoding="utf-8")
    shown = page.split("has one row a submission, in the order of the files:\n\n```text\n", 1)[1].split("```")[0]
    monkeypatch.chdir(ROOT)
    status, _, _ = cli(capsys, "examples/seed_rnn.sdm", "docs/examples/submissions", "--report", tmp_path / "g.csv")
    assert status == 1 and (tmp_path / "g.csv").read_text(encoding="utf-8") == shown
