"""Regenerate ``generated/`` from ``examples/``: ``python -m symderiv.regenerate [--check]``.

With ``--check`` nothing is written; the exit status is 1 when a committed file differs
from what the examples generate now (CI runs this through the test suite).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import derive, load
from .render.emit import formats_for, output_name, render, write_outputs


def stale_files(examples: Path, generated: Path) -> list[str]:
    """Names of files in ``generated`` that are missing or differ from a fresh rendering."""
    stale = []
    for path in sorted(examples.glob("*.sdm")):
        d = derive(load(path))
        for fmt in formats_for(d)[0]:  # the write-ups and every code back end's module that supports it
            target = generated / output_name(d.model.name, fmt)
            if not target.exists() or target.read_text(encoding="utf-8") != render(d, fmt, path.name):
                stale.append(str(target))
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m symderiv.regenerate", description=__doc__)
    p.add_argument("--examples", default="examples")
    p.add_argument("--generated", default="generated")
    p.add_argument("--check", action="store_true", help="only report stale files")
    args = p.parse_args(argv)
    examples, generated = Path(args.examples), Path(args.generated)
    if args.check:
        stale = stale_files(examples, generated)
        for s in stale:
            print(f"stale: {s}")
        return 1 if stale else 0
    for path in sorted(examples.glob("*.sdm")):
        d = derive(load(path))
        able, notes = formats_for(d)
        for written in write_outputs(d, generated, able):
            print(f"wrote {written}")
        for note in notes:
            print(f"  ({note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
