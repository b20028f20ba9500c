"""Print the README's table of sources from the expected.json files:
``python tests/data/wild/table.py`` (paste it into README.md; the test checks they agree)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows() -> list[str]:
    out = []
    for p in sorted(HERE.glob("*/expected.json")):
        s = json.loads(p.read_text(encoding="utf-8"))
        src = s["source"]
        where = f"{src['repository']} `{src['path']}`" if src.get("repository") else src["url"]
        counts = [f"{sum(c['verdict'] == v for c in s['claims'])} {v}" for v in ("correct", "per-step", "incorrect")]
        counts = [c for c in counts if not c.startswith("0 ")]
        lang = "" if s["language"] == 1 else " (needs version 2)"
        v2 = [c["id"] for c in s["claims"] if c.get("needs_language") == 2]
        if v2 and s["language"] == 1:
            lang = f" ({', '.join(v2)} {'needs' if len(v2) == 1 else 'need'} version 2)"
        out.append(f"| {s['id']} | {where} | {src['licence']} | {s['derives']}{lang} | {len(s['claims'])} |"
                   f" {', '.join(counts)} |")
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
