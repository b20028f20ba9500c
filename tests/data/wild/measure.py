"""How well ``symderiv verify`` reads the wild corpus: run it on every source and compare
with the hand verdicts of each ``expected.json``.

    python tests/data/wild/measure.py            # the table
    python tests/data/wild/measure.py --json     # the same, one JSON object

For each source it runs ``python -m symderiv verify MODEL FILE --json`` with the symderiv
that PYTHONPATH names first (``PYTHONPATH=/path/to/worktree python tests/data/wild/measure.py``
measures that worktree's reader on this corpus), else this repository's, and prints

- claims read / total: the hand claims the reader matched and did not call unreadable;
- verdicts equal: of the claims read, how many verdicts equal the hand verdict;
- diagnosis right: of the claims the hand verdict calls incorrect, how many the reader
  called incorrect with every hand diagnosis code among its own;
- extra: claims the reader reported that match no hand claim (not counted above).

A reader claim matches a hand claim when it names the same target (an entry of a parameter
names the parameter) and its line lies in the hand claim's display (one line of slack);
failing that, the same target within three lines.  In a notebook, whose lines a reader may
count in the file or in its Markdown cells, claims are matched by target in document order.
This script measures; it asserts nothing (the thresholds belong to the reader's tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


@dataclass
class SourceResult:
    id: str
    total: int
    language: int = 1
    read: int = 0
    equal: int = 0
    wrong: int = 0
    diagnosed: int = 0
    extra: int = 0
    status: int = 0
    error: str = ""
    rows: list[dict] = field(default_factory=list)


def sources(corpus: Path = HERE) -> list[Path]:
    """The source directories of a corpus, in name order."""
    return sorted(p.parent for p in corpus.glob("*/expected.json"))


def run_verify(model: Path, claims: Path) -> tuple[int, dict | None, str]:
    env = dict(os.environ)
    # the symderiv measured is the one PYTHONPATH names (another worktree's), else this one's
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(ROOT)]))
    # (``python -m`` puts its working directory first on sys.path: run it in the measured tree)
    cwd = env["PYTHONPATH"].split(os.pathsep)[0]
    proc = subprocess.run([sys.executable, "-m", "symderiv", "verify", str(model), str(claims), "--json"],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return proc.returncode, None, (proc.stderr or proc.stdout).strip()


def same_target(hand: str, reader: str | None) -> bool:
    """The reader's target names the hand claim's; an entry of a parameter (``V[i, j]``)
    names the parameter (``V``)."""
    if not reader:
        return False
    if reader.replace(" ", "") == hand.replace(" ", ""):
        return True
    return "[" not in hand and reader.split("[")[0].strip() == hand


def match_in_order(expected: list[dict], reported: list[dict]) -> list[dict | None]:
    """Matching by target in document order, for files whose line numbers a reader may
    count differently (a notebook: lines of the file, or of its Markdown cells)."""
    out: list[dict | None] = []
    start = 0
    for e in expected:
        k = next((k for k in range(start, len(reported)) if same_target(e["target"], reported[k].get("target"))), None)
        if k is None:
            out.append(None)
        else:
            out.append(reported[k])
            start = k + 1
    return out


def match(expected: list[dict], reported: list[dict]) -> list[dict | None]:
    """For each hand claim, the reader claim it matches (or None); each reader claim once."""
    used: set[int] = set()
    out: list[dict | None] = []
    for e in expected:
        lo, hi = e.get("lines", [e["line"], e["line"]])
        best = None
        for slack_lo, slack_hi in ((lo - 1, hi + 1), (e["line"] - 3, e["line"] + 3)):
            for k, r in enumerate(reported):
                if k in used or not same_target(e["target"], r.get("target")):
                    continue
                if slack_lo <= int(r.get("line") or -1) <= slack_hi:
                    best = k
                    break
            if best is not None:
                break
        if best is not None:
            used.add(best)
            out.append(reported[best])
        else:
            out.append(None)
    return out


def measure_source(directory: Path) -> SourceResult:
    spec = json.loads((directory / "expected.json").read_text(encoding="utf-8"))
    claims = spec["claims"]
    res = SourceResult(spec["id"], len(claims), spec.get("language", 1))
    status, report, err = run_verify(directory / spec["model"], directory / spec["file"])
    res.status = status
    reported = (report or {}).get("claims", [])
    if report is None:
        lines = [x for x in err.splitlines() if "error" in x] or err.splitlines()
        res.error = (lines[0] if lines else f"exit status {status}, no JSON").replace(f"{ROOT}/", "")
    matched = (match_in_order if spec["file"].endswith(".ipynb") else match)(claims, reported)
    for e, r in zip(claims, matched):
        read = r is not None and r.get("verdict") != "unreadable"
        equal = read and r["verdict"] == e["verdict"]
        res.read += read
        res.equal += equal
        diag_ok = None
        if e["verdict"] == "incorrect":
            res.wrong += 1
            diag_ok = bool(read and r["verdict"] == "incorrect"
                           and set(e.get("diagnosis", [])) <= set(r.get("diagnosis", [])))
            res.diagnosed += diag_ok
        res.rows.append({"claim": e["id"], "target": e["target"], "hand": e["verdict"],
                         "hand_diagnosis": e.get("diagnosis", []),
                         "reader": None if r is None else r.get("verdict"),
                         "reader_diagnosis": None if r is None else r.get("diagnosis"),
                         "read": read, "equal": equal, "diagnosis_right": diag_ok,
                         "message": None if r is None else r.get("message")})
    ids = {id(r) for r in matched if r is not None}
    res.extra = sum(1 for r in reported if id(r) not in ids and r.get("verdict") != "unreadable")
    return res


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}%" if b else "   - "


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--corpus", type=Path, default=HERE, help="a directory of sources (default: this one)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per claim")
    args = ap.parse_args(argv)
    results = [measure_source(d) for d in sources(args.corpus)]
    total = sum(r.total for r in results)
    read = sum(r.read for r in results)
    equal = sum(r.equal for r in results)
    wrong = sum(r.wrong for r in results)
    diagnosed = sum(r.diagnosed for r in results)
    summary = {"sources": len(results), "claims": total, "read": read, "equal": equal,
               "wrong": wrong, "diagnosed": diagnosed, "extra": sum(r.extra for r in results)}
    if args.json:
        print(json.dumps({"summary": summary, "sources": [r.__dict__ for r in results]}, indent=2))
        return 0
    print(f"{'source':<22} {'read':>9} {'equal':>9} {'diagnosis':>10} {'extra':>5}  exit  note")
    for r in results:
        print(f"{r.id:<22} {r.read:>4}/{r.total:<4} {r.equal:>4}/{r.read:<4} {r.diagnosed:>4}/{r.wrong:<5}"
              f" {r.extra:>5}  {r.status:>4}  {r.error}")
        if args.verbose:
            for row in r.rows:
                print(f"    {row['claim']:<4} {row['target']:<10} hand {row['hand']:<9} reader {row['reader']}"
                      f" {row['reader_diagnosis'] or ''}")
    print()
    for label, rs in (("all sources", results), ("language-1 models", [r for r in results if r.language == 1])):
        t, rd = sum(r.total for r in rs), sum(r.read for r in rs)
        eq, wr, dg = sum(r.equal for r in rs), sum(r.wrong for r in rs), sum(r.diagnosed for r in rs)
        print(f"{label}: claims read {rd}/{t} ({pct(rd, t).strip()}); verdicts equal {eq}/{rd}"
              f" ({pct(eq, rd).strip()}); diagnosis right on wrong claims {dg}/{wr} ({pct(dg, wr).strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
