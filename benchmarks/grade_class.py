"""A whole class at once: N submissions (copies of real write-ups, each with planted errors)
judged by ``symderiv verify MODEL DIR --report grades.csv``, its wall time, and the CSV's
counts checked against single-file runs of every submission.

    python benchmarks/grade_class.py [--n 200] [--jobs 2] [--corpus DIR]

``--corpus`` is a directory of cases, each a folder with one model (``*.sdm``) and its
write-ups (the layout of tests/data/wild/); without it, tests/data/planted with the models of
tests/models.  A planted error is one of the usual slips: a sign flipped, a transpose dropped,
a recurrent term cut, a factor doubled, applied to a different claim in each copy.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchutil import child_env  # noqa: E402

WRITEUPS = (".md", ".tex", ".txt", ".ipynb", ".html", ".claims")
#: Slips planted into a copy: (pattern, replacement), tried in turn from a different start in each copy.
SLIPS = [
    (r"(=\s*)(?!-)", r"\1-"),  # the sign of a right side
    (r"\^\{?\\top\}?|\^\{?T\}?(?![a-zA-Z])", ""),  # a transpose dropped
    (r"\s\+\s[^=$\\]*?\\delta[^$]*?_\{?[a-z,]*t\+1\}?", ""),  # a term through t+1 cut
    (r"(=\s*)", r"\g<1>2 "),  # a factor of two
]


def cases(corpus: Path | None) -> list[tuple[Path, list[Path]]]:
    """(model, its write-ups) for every case of the corpus."""
    if corpus is None:
        planted = ROOT / "tests" / "data" / "planted"
        out = []
        for model in sorted((ROOT / "tests" / "models").glob("*.sdm")):
            files = sorted(p for p in planted.glob(model.stem + ".*") if p.suffix in WRITEUPS)
            if files:
                out.append((model, files))
        return out
    from symderiv import load
    from symderiv.errors import SymderivError
    out = []
    for case in sorted(p for p in corpus.iterdir() if p.is_dir()):
        models = sorted(case.glob("*.sdm"))
        files = sorted(p for p in case.rglob("*") if p.suffix in WRITEUPS and p.name.lower() != "readme.md")
        if len(models) == 1 and files:
            try:
                load(models[0])
            except SymderivError as err:  # a model this version of the language cannot state
                print(f"skipped {case.name}: {str(err).splitlines()[0]}")
                continue
            out.append((models[0], files))
    return out


def plant(text: str, k: int) -> str:
    """The write-up with one slip planted in its k-th displayed claim (counting round), if any fits."""
    spans = [m for m in re.finditer(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|^d\(.*$", text, re.S | re.M)
             if "\\delta" in m.group(0) or "\\partial" in m.group(0) or m.group(0).startswith("d(")]
    for attempt in range(len(spans) * len(SLIPS)):
        m = spans[(k + attempt) % len(spans)]
        pattern, repl = SLIPS[(k + attempt // len(spans)) % len(SLIPS)]
        body = m.group(0)
        changed = re.sub(pattern, repl, body, count=1)
        if changed != body:
            return text[:m.start()] + changed + text[m.end():]
    return text


def build(n: int, corpus: Path | None, root: Path) -> list[tuple[Path, Path]]:
    """n submissions under root/CASE/, each a copy with a slip planted; (model, directory) per case."""
    found = cases(corpus)
    dirs = {}
    k = 0
    while k < n:
        for model, files in found:
            if k >= n:
                break
            d = dirs.setdefault(model, root / (model.parent.name if model.stem == "model" else model.stem))
            d.mkdir(parents=True, exist_ok=True)
            src = files[k % len(files)]
            text = src.read_text(encoding="utf-8")
            if src.suffix != ".ipynb":
                text = plant(text, k)
            (d / f"student{k:03d}{src.suffix}").write_text(text, encoding="utf-8")
            k += 1
    return list(dirs.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--no-check", action="store_true", help="skip the single-file runs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="grade_class_"))
    try:
        groups = build(args.n, args.corpus, tmp / "class")
        total, mismatches, rows_all = 0.0, 0, []
        for model, folder in groups:
            report = tmp / f"{model.stem}.csv"
            cmd = [sys.executable, "-m", "symderiv", "verify", str(model), str(folder), "--report", str(report)]
            if args.jobs:
                cmd += ["--jobs", str(args.jobs)]
            start = time.perf_counter()
            subprocess.run(cmd, env=child_env(), capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - start
            total += elapsed
            rows = list(csv.DictReader(report.open()))
            rows_all += rows
            print(f"{folder.name:<20} {len(rows):>4} submissions  {elapsed:7.1f} s")
            if args.no_check:
                continue
            from symderiv import derive, load
            from symderiv.claims.reading import read_claims
            from symderiv.claims.verify import verify
            d = derive(load(model))
            for row in rows:
                single = verify(d, read_claims(row["submission"], d))
                same = int(row["claims"]) == len(single.verdicts) and all(
                    int(row[v]) == single.summary[v] for v in ("correct", "per-step", "incorrect", "unreadable"))
                mismatches += not same
        claims = sum(int(r["claims"]) for r in rows_all)
        print(f"total: {len(rows_all)} submissions, {claims} claims, wall time {total:.1f} s"
              + ("" if args.no_check else f"; CSV rows differing from single-file runs: {mismatches}"))
        return 1 if mismatches else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
