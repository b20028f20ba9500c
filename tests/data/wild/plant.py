"""A class of submissions from the wild corpus: copies of its write-ups with planted errors,
and the verdicts they must get, for the grading test (``verify MODEL DIR --report``).

    python tests/data/wild/plant.py OUT [-n 200] [--seed 0]

writes ``OUT/<source>/model.sdm`` and ``OUT/<source>/sub_NNN.<ext>`` (each submission a copy
of the source's write-up, one to three of its right claims edited), and ``OUT/expected.json``
and ``OUT/expected.csv``: for every submission, its planted errors and the expected count of
each verdict over the source's hand claims.

The planted errors, each applied to the right side of a claim the hand verdicts call
correct or per-step (a wrong claim is never edited):

- ``sign``: the right side R becomes ``-\\left( R \\right)``; expected incorrect, ``sign``;
- ``transpose``: one transpose mark (``^T``, ``^\\top``, ...) of R is removed; expected
  incorrect, ``transpose``;
- ``recurrent``: the term of a sum that reads step t+1 is dropped; expected incorrect,
  ``missing-recurrent-term``;
- ``sum``: a leading sum over the time axis (``\\sum_{t=1}^T``) is dropped; the right side is then the
  term of step t, which INTERFACES.md calls ``per-step`` (the gradient sums it over t): the
  expected verdict is per-step;
- ``activation``: the activation's derivative is dropped from a product (``\\odot \\phi'(z)``,
  ``\\circ \\sigma'(g_6)``, the second half ``\\circ (1 - o_t)`` of a sigmoid's ``o_t (1 - o_t)``,
  ``\\odot (1 - h_t^2)``); expected incorrect, ``missing-activation-derivative``;
- ``factor``: the right side R becomes ``2 \\left( R \\right)``; expected incorrect, ``wrong-factor``.

Only claims whose right side stands in one line of the file (as written, in a notebook's
JSON string, or in a codecogs URL) are edited, so that an edit is a plain text substitution; every planted
submission still differs from its source in exactly the planted places (asserted).  The
choice is seeded: the same N and seed give the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("sign", "transpose", "recurrent", "sum", "activation", "factor")
EXPECT = {"sign": ("incorrect", ["sign"]), "transpose": ("incorrect", ["transpose"]),
          "recurrent": ("incorrect", ["missing-recurrent-term"]), "sum": ("per-step", []),
          "activation": ("incorrect", ["missing-activation-derivative"]), "factor": ("incorrect", ["wrong-factor"])}
_TRANSPOSE = re.compile(r"\^\{?\\top\}?|\^\{T\}|\^T(?![a-zA-Z_{])|\^\{Tr\}|\^T(?=[a-zA-Z_])")
_SUM = re.compile(r"^\\sum_\{?t\s*=\s*1\}?\^\{?T\}?\s*")   # a sum over the time axis t = 1..T
_ARG = r"(?:\\left\(.*?\\right\)|\([^()]*\)|\{[^{}]*\})"   # (z), \left( z \right), {z}
_PRODUCT = r"\s*\\(?:odot|circ|cdot)\s*"
#: An activation's derivative as a factor of a product: f'(z), \sigma'(z), \text{ReLU}'(z) after
#: ⊙ (or before it), 1 - h^2 (tanh's), and the (1 - o) of a sigmoid's o (1 - o) after o.
_ACTIVATION = [
    re.compile(_PRODUCT + r"(?:\\phi|\\sigma|\\tanh|f|g|\\(?:text|mathrm|operatorname)\{\w+\})'\s*" + _ARG),
    re.compile(r"(?:\\phi|\\sigma|\\tanh|f|g|\\(?:text|mathrm|operatorname)\{\w+\})'\s*" + _ARG + _PRODUCT),
    re.compile(_PRODUCT + r"\(\s*1\s*-\s*[^()]*\^\{?2\}?\s*\)"),
    re.compile(r"(?P<o>[a-z](?:_\{[^{}]*\}|_\w)?)" + _PRODUCT + r"\(\s*1\s*-\s*(?P=o)\s*\)"),
]


def _rhs(text: str) -> str:
    """The right side a claim is judged on: after its last ``=`` (``X = A = B`` is judged on B)."""
    depth, cut = 0, None
    for k, ch in enumerate(text):
        depth += (ch in "{([") - (ch in "})]")
        if ch == "=" and depth == 0:     # (the = of a sum's \\sum_{t=1} is inside braces)
            cut = k
    rhs = text[cut + 1:] if cut is not None else ""
    rhs = rhs.strip()
    rhs = re.sub(r"\s*\\in\s*\\mathbb\{R\}\^\{?\w+\}?\s*[.,]?$", "", rhs)
    return rhs.rstrip(".,").strip()


def _top_level_terms(rhs: str) -> list[str] | None:
    depth, start, out = 0, 0, []
    for k, ch in enumerate(rhs):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "+" and depth == 0:
            out.append(rhs[start:k])
            start = k + 1
    out.append(rhs[start:])
    return out if len(out) > 1 else None


def edit(rhs: str, kind: str) -> str | None:
    """The right side with the error planted, or None when this kind does not apply."""
    if kind == "sign":
        return rf"-\left( {rhs} \right)"
    if kind == "transpose":
        for m in _TRANSPOSE.finditer(rhs):
            if re.search(r"\\(sum|prod|Sigma)_\{[^{}]*\}$", rhs[:m.start()]):
                continue          # the upper limit of a sum, not a transpose
            return rhs[:m.start()] + rhs[m.end():]
        return None
    if kind == "recurrent":
        terms = _top_level_terms(rhs)
        if not terms:
            return None
        kept = [t for t in terms if not re.search(r"t\s*\+\s*1", t)]
        if not kept or len(kept) == len(terms):
            return None
        return "+".join(kept).strip()
    if kind == "sum":
        m = _SUM.match(rhs)
        return rhs[m.end():] if m and rhs[m.end():].strip() else None
    if kind == "activation":
        for pattern in _ACTIVATION:
            m = pattern.search(rhs)
            if m:
                keep = m.end("o") if "o" in pattern.groupindex else m.start()
                return (rhs[:keep] + rhs[m.end():]).strip() or None
        return None
    if kind == "factor":
        return rf"2 \left( {rhs} \right)"
    raise ValueError(kind)


def _encodings(suffix: str):
    """How a right side may stand in the file: as written; inside a notebook's JSON string;
    inside a codecogs image URL with the backslash HTML-escaped and spaces encoded."""
    yield lambda s: s
    if suffix == ".ipynb":
        yield lambda s: json.dumps(s)[1:-1]
    yield lambda s: s.replace("\\", "&#x5C;").replace(" ", "%20")


def candidates(directory: Path) -> list[tuple[dict, str, int, str, str]]:
    """(claim, kind, line index, old text, new text) for every error that can be planted:
    the claim's right side found once in one line of its display."""
    spec = json.loads((directory / "expected.json").read_text(encoding="utf-8"))
    path = directory / spec["file"]
    if path.suffix not in {".md", ".tex", ".ipynb"}:
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    shared = {c["line"] for c in spec["claims"]}
    shared = {n for n in shared if sum(c["line"] == n for c in spec["claims"]) > 1}
    out = []
    for c in spec["claims"]:
        if c["verdict"] not in {"correct", "per-step"} or c["line"] in shared:
            continue              # (an edit of a row that holds two claims would change both)
        rhs = _rhs(c["text"])
        if not rhs:
            continue
        lo, hi = c.get("lines", [c["line"], c["line"]])
        for enc in _encodings(path.suffix):
            hits = [i for i in range(lo - 1, hi) if enc(rhs) in lines[i]]
            if len(hits) == 1 and lines[hits[0]].count(enc(rhs)) == 1:
                break
        else:
            continue
        for kind in KINDS:
            new = edit(rhs, kind)
            if new is not None and new != rhs:
                out.append((c, kind, hits[0], enc(rhs), enc(new)))
    return out


def plant(out: Path, n: int, seed: int = 0, only: list[str] | None = None) -> list[dict]:
    """Write the class (``only``: from these sources alone) and return its rows."""
    rng = random.Random(seed)
    sources = []
    for d in sorted(p.parent for p in HERE.glob("*/expected.json")):
        if only is not None and d.name not in only:
            continue
        cands = candidates(d)
        if cands:
            sources.append((d, json.loads((d / "expected.json").read_text(encoding="utf-8")), cands))
    if not sources:
        raise SystemExit("no source has a claim an error can be planted in")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows = []
    planted_so_far = dict.fromkeys(KINDS, 0)
    for k in range(n):
        d, spec, cands = sources[k % len(sources)]
        target = out / spec["id"]
        if not target.exists():
            target.mkdir()
            shutil.copyfile(d / spec["model"], target / "model.sdm")
        lines = (d / spec["file"]).read_text(encoding="utf-8").splitlines(keepends=True)
        by_claim: dict[str, list] = {}
        for cand in cands:
            by_claim.setdefault(cand[0]["id"], []).append(cand)
        ids = sorted(by_claim)
        chosen_ids = rng.sample(ids, min(len(ids), rng.randint(1, 3)))
        planted, used_lines = [], set()
        for cid in sorted(chosen_ids, key=ids.index):
            # of the errors this claim can take, one of the kinds planted least so far (so
            # that the rarer kinds, which few claims can take, are planted wherever they can be)
            fewest = min(planted_so_far[cand[1]] for cand in by_claim[cid])
            c, kind, i, old, new = rng.choice([cand for cand in by_claim[cid] if planted_so_far[cand[1]] == fewest])
            if i in used_lines:
                continue              # two claims of one display row: edit one of them
            used_lines.add(i)
            planted_so_far[kind] += 1
            assert lines[i].count(old) == 1
            lines[i] = lines[i].replace(old, new)
            planted.append({"claim": cid, "kind": kind, "line": c["line"], "target": c["target"]})
        name = f"sub_{k:03d}{Path(spec['file']).suffix}"
        (target / name).write_text("".join(lines), encoding="utf-8")
        kinds = {p["claim"]: p["kind"] for p in planted}
        claims = []
        for c in spec["claims"]:
            if c["id"] in kinds:
                verdict, diagnosis = EXPECT[kinds[c["id"]]]
            else:
                verdict, diagnosis = c["verdict"], c.get("diagnosis", [])
            claims.append({"claim": c["id"], "line": c["line"], "target": c["target"],
                           "verdict": verdict, "diagnosis": diagnosis})
        counts = {v: sum(c["verdict"] == v for c in claims) for v in ("correct", "per-step", "incorrect")}
        rows.append({"submission": f"{spec['id']}/{name}", "source": spec["id"], "planted": planted,
                     "claims": claims, "counts": counts})
    (out / "expected.json").write_text(json.dumps({"seed": seed, "submissions": rows}, indent=1) + "\n",
                                       encoding="utf-8")
    with open(out / "expected.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["submission", "claims", "correct", "per-step", "incorrect", "planted"])
        for r in rows:
            w.writerow([r["submission"], len(r["claims"]), r["counts"]["correct"], r["counts"]["per-step"],
                        r["counts"]["incorrect"], " ".join(f"{p['claim']}:{p['kind']}" for p in r["planted"])])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the directory to write (replaced if it exists)")
    ap.add_argument("-n", type=int, default=200, help="how many submissions (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=None, metavar="SOURCE",
                    help="plant into this source's write-up only (repeatable; default: every source)")
    args = ap.parse_args(argv)
    rows = plant(args.out, args.n, args.seed, args.only)
    kinds = [p["kind"] for r in rows for p in r["planted"]]
    print(f"{len(rows)} submissions from {len({r['source'] for r in rows})} sources in {args.out}; "
          f"planted: " + ", ".join(f"{k} {kinds.count(k)}" for k in KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
