"""Determinism: the same model gives byte-identical outputs on every run, whatever Python's
string-hash seed (which changes the iteration order of sets and so could change the order
of terms, of equations, of generated statements)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import symderiv
from symderiv.render.emit import render

from .helpers import EXAMPLES, ROOT

SEEDS = ["0", "1", "12345"]
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.sdm"))


def derive(out_root, seed: str, path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=seed)
    out = out_root / seed / path.stem
    proc = subprocess.run([sys.executable, "-m", "symderiv", "derive", str(path), "-o", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """``python -m symderiv derive`` of every example, once per hash seed
    (two at a time: two cores)."""
    root = tmp_path_factory.mktemp("determinism")
    jobs = [(seed, path) for seed in SEEDS for path in EXAMPLE_FILES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(derive, root, seed, path) for seed, path in jobs]:
            future.result()
    return root


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_outputs_are_byte_identical_across_hash_seeds(outputs, path):
    runs = {}
    for seed in SEEDS:
        folder = outputs / seed / path.stem
        runs[seed] = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    first = runs[SEEDS[0]]
    assert sorted(first) == sorted(f"{symderiv.load(path).name}.{ext}" for ext in ("md", "py", "tex"))
    for seed in SEEDS[1:]:
        assert sorted(runs[seed]) == sorted(first)
        for name, data in first.items():
            assert runs[seed][name] == data, f"{name} differs between PYTHONHASHSEED={SEEDS[0]} and {seed}"


def test_examples_match_the_committed_outputs_under_every_seed(outputs):
    """And they are the files in generated/ (themselves produced under some other seed)."""
    for path in EXAMPLE_FILES:
        name = symderiv.load(path).name
        for ext in ("tex", "md", "py"):
            produced = (outputs / SEEDS[-1] / path.stem / f"{name}.{ext}").read_bytes()
            committed = (ROOT / "generated" / f"{name}.{ext}").read_bytes()
            assert produced == committed, f"{name}.{ext}"


def test_repeated_runs_in_one_process_are_identical():
    """SymPy's caches fill up on the first run; the output must not depend on them."""
    for path in EXAMPLE_FILES + sorted((ROOT / "tests" / "models").glob("*.sdm")):
        texts = []
        for _ in range(2):
            d = symderiv.derive(symderiv.load(path))
            texts.append([render(d, fmt, path.name) for fmt in ("tex", "md", "py")])
        assert texts[0] == texts[1], path.name
