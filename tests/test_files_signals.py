"""Writing outputs when runs are killed, interrupted or run at the same time: every output
file in a directory always comes from one run (old or new, never a mix), the next run
removes what a killed one left, and non-regular files and unfit names are refused."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import symderiv
from symderiv import SymderivError
from symderiv.cli import main
from symderiv.render import emit
from symderiv.render.emit import render, write_outputs

from .helpers import EXAMPLES, ROOT

FORMATS = ["tex", "md", "py"]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and flock are POSIX")

# Two models with the same name and different gradients: every output tells which wrote it.
VERSIONS = {
    "v1": "model same\ndim n\nparam b: n\nloss L = sum(b * b)\n",
    "v2": "model same\ndim n\nparam b: n\nparam W: (n, n)\nloss L = sum(tanh(W @ b))\n",
    "v3": "model same\ndim n\nparam c: n\nloss L = sum(exp(c))\n",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each version's model file (all called same.sdm) and the bytes of its outputs."""
    base = tmp_path_factory.mktemp("models")
    out = {}
    for version, text in VERSIONS.items():
        path = base / version / "same.sdm"
        path.parent.mkdir()
        path.write_text(text)
        d = symderiv.derive(symderiv.load(path))
        out[version] = (path, d, {fmt: render(d, fmt, "same.sdm").encode() for fmt in FORMATS})
    return out


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def versions_of(directory: Path, models, formats=FORMATS) -> set[str]:
    """Which run wrote each of ``formats``; fails on leftovers or a file no run wrote."""
    found = files(directory)
    assert sorted(found) == sorted(f"same.{fmt}" for fmt in FORMATS), sorted(found)
    who = set()
    for fmt in formats:
        owners = [v for v, (_, _, outs) in models.items() if outs[fmt] == found[f"same.{fmt}"]]
        assert owners, f"same.{fmt} is from no run"
        who.add(owners[0])
    return who


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


# ---------------------------------------------------------------------------------------
# A signal during the renames


KILLER = textwrap.dedent("""
    import os, signal, sys
    import symderiv
    from symderiv.render import emit
    model, out, sig, nth = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    d = symderiv.derive(symderiv.load(model))
    real, done = os.replace, []

    def replace(src, dst):
        real(src, dst)
        if not os.path.basename(dst).startswith(".symderiv"):
            done.append(dst)
            if len(done) == nth:  # the signal arrives right after the nth output's rename
                os.kill(os.getpid(), sig)

    emit.os.replace = replace
    emit.write_outputs(d, out, ["tex", "md", "py"])
""")


@pytest.mark.parametrize("sig, nth", [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 1),
                                      (signal.SIGKILL, 1), (signal.SIGKILL, 2)],
                         ids=["TERM-1", "TERM-2", "INT-1", "KILL-1", "KILL-2"])
def test_a_signal_during_the_renames_leaves_one_run_s_files(models, tmp_path, sig, nth):
    """SIGTERM or SIGINT waits for the renames: every file is the new run's.  SIGKILL cannot
    wait: the next run finishes the killed run's renames from its journal (so the files it
    does not rewrite are all the killed run's) and removes every temporary and backup."""
    write_outputs(models["v1"][1], tmp_path, FORMATS)
    res = subprocess.run([sys.executable, "-c", KILLER, str(models["v2"][0]), str(tmp_path), str(int(sig)),
                          str(nth)], env=env(), capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0, res.stderr  # it was signalled
    if sig != signal.SIGKILL:
        assert versions_of(tmp_path, models) == {"v2"}
        return
    write_outputs(models["v3"][1], tmp_path, ["py"])  # the next run, writing one format only
    assert versions_of(tmp_path, models, ["tex", "md"]) == {"v2"}
    assert versions_of(tmp_path, models, ["py"]) == {"v3"}  # and no journal, .tmp or .bak left


def test_sigterm_at_random_moments_of_a_real_run(models, tmp_path):
    """`symderiv derive` killed by SIGTERM at random moments: old files or new, never a mix,
    and no temporary file; the next run writes its own."""
    rng = random.Random(16)
    for attempt in range(3):
        out = tmp_path / str(attempt)
        write_outputs(models["v1"][1], out, FORMATS)
        proc = subprocess.Popen([sys.executable, "-m", "symderiv", "derive", str(models["v2"][0]), "-o", str(out)],
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 3.0))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        # SIGTERM waits for the whole write (temporary files included): nothing is left over.
        assert len(versions_of(out, models)) == 1
        write_outputs(models["v3"][1], out, FORMATS)
        assert versions_of(out, models) == {"v3"}  # and no leftover of the killed run


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(models, tmp_path):
    write_outputs(models["v1"][1], tmp_path, FORMATS)
    for name in (".same.py.0123456789ab.tmp", ".same.tex.ba9876543210.bak", ".symderiv-journal.new"):
        (tmp_path / name).write_text("left by a killed run")
    (tmp_path / ".notes.txt.tmp").write_text("mine")  # not symderiv's pattern: kept
    (tmp_path / ".same.py.tmp").write_text("mine too")
    write_outputs(models["v2"][1], tmp_path, FORMATS)
    assert sorted(files(tmp_path)) == [".notes.txt.tmp", ".same.py.tmp", "same.md", "same.py", "same.tex"]


def test_a_broken_journal_is_ignored(models, tmp_path):
    write_outputs(models["v1"][1], tmp_path, FORMATS)
    (tmp_path / emit.JOURNAL).write_text('[["../../etc/passwd", "same.py"], ["x", "/abs"], [1], "x", null]')
    write_outputs(models["v2"][1], tmp_path, FORMATS)
    assert versions_of(tmp_path, models) == {"v2"}


# ---------------------------------------------------------------------------------------
# Two runs into one directory


def test_two_runs_into_one_directory_wait_for_each_other(models, tmp_path, monkeypatch):
    """Two runs meet before their first rename (a barrier); the slow one renames first, the
    fast one does all its renames during the slow one's: without the lock, a mix."""
    real = os.replace
    local = threading.local()

    def replace(src, dst):
        if Path(dst).name.startswith("same."):
            if not getattr(local, "met", False):
                local.met = True
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=1.0)  # times out when the other run waits for the lock
                time.sleep(local.delay[0])
            real(src, dst)
            time.sleep(local.delay[1])
            return None
        return real(src, dst)

    monkeypatch.setattr(emit.os, "replace", replace)
    for attempt in range(2):
        out = tmp_path / str(attempt)
        out.mkdir()
        errors: list[Exception] = []
        barrier = threading.Barrier(2)

        def run(version, delay, out=out, errors=errors):
            local.delay = delay
            try:
                write_outputs(models[version][1], out, FORMATS)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(v, delay))
                   for v, delay in (("v1", (0.0, 0.1)), ("v2", (0.03, 0.0)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert len(versions_of(out, models)) == 1


def test_two_concurrent_derive_commands(models, tmp_path):
    for attempt in range(2):
        out = tmp_path / str(attempt)
        procs = [subprocess.Popen([sys.executable, "-m", "symderiv", "derive", str(models[v][0]), "-o", str(out)],
                                  env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for v in ("v1", "v2")]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        assert len(versions_of(out, models)) == 1


def test_a_waiting_run_fails_clearly_after_the_wait(models, tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setattr(emit, "LOCK_WAIT", 0.2)
    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(SymderivError, match="another symderiv run"):
            write_outputs(models["v1"][1], tmp_path, FORMATS)
    finally:
        os.close(fd)
    assert files(tmp_path) == {}


# ---------------------------------------------------------------------------------------
# Non-regular files, SIGINT, names


@pytest.mark.parametrize("force", [False, True])
def test_an_output_path_that_is_a_fifo_is_refused_without_blocking(models, tmp_path, force):
    os.mkfifo(tmp_path / "same.py")
    os.symlink(tmp_path / "same.py", tmp_path / "same.md")  # a link to it, too
    result = []
    t = threading.Thread(target=lambda: result.append(_attempt(models["v1"][1], tmp_path, force)), daemon=True)
    t.start()
    t.join(20)
    assert result, "write_outputs blocked on a FIFO"
    assert isinstance(result[0], SymderivError) and "not a regular file" in str(result[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.md", "same.py"]


def _attempt(d, out, force):
    try:
        write_outputs(d, out, FORMATS, force=force)
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


# The derivation says "ready" and then waits for the signal before it starts: the interrupt lands
# inside it whatever the speed of the machine or of the derivation (a fixed sleep once raced a
# derivation that had become faster than it, and the signal came after main had returned).
INTERRUPTED = textwrap.dedent("""
    import sys, time
    import symderiv
    import symderiv.cli
    real = symderiv.derive
    def derive(model):
        sys.stderr.write("ready\\n")
        sys.stderr.flush()
        time.sleep(60)
        return real(model)
    symderiv.derive = derive
    raise SystemExit(symderiv.cli.main(["derive", sys.argv[1], "-o", sys.argv[2]]))
""")


def test_sigint_is_one_line_and_exit_130(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(EXAMPLES / "lstm_tagger.sdm"), str(tmp_path)],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "ready\n"  # inside the derivation
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "interrupted" in err


@pytest.mark.parametrize("name, why", [
    ("import", "keyword"), ("numpy", "numpy"), ("torch", "torch"), ("jax", "jax"), ("sympy", "sympy"),
    ("os", "Python's own module os"), ("json", "Python's own"), ("symderiv", "symderiv"),
    ("Random", "Python's own module random"),
])
def test_output_names_that_would_shadow_a_module_are_refused(tmp_path, capsys, name, why):
    model = tmp_path / f"{name}.sdm"  # named by the file's stem (a `model` line may not be a keyword)
    model.write_text("dim n\nparam b: n\nloss L = sum(b * b)\n")
    out = tmp_path / "out"
    assert main(["derive", str(model), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and "model NAME" in err
    assert not out.exists()


def test_a_non_ascii_output_name_is_refused(tmp_path, capsys):
    model = tmp_path / "ℌ.sdm"
    model.write_text("dim n\nparam b: n\nloss L = sum(b * b)\n")
    assert main(["derive", str(model), "-o", str(tmp_path / "out")]) == 2
    assert "not ASCII" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
