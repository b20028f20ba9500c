"""Hostile inputs against every command, each in a fresh process under a memory and time bound:
python benchmarks/attacks.py [--timeout S] [--memory GIB] [--only SUBSTRING]

For the reliability issue's closing table: for each attack, the command, the size of the
input, the exit status, the wall time, the peak memory of the process, and whether it held
(a clear message with exit status 0, 1 or 2; no traceback, no kill by the time or memory
bound). Every input is built here from a few lines of text, so nothing is shipped; the
regression tests in tests/test_bounds.py hold the same cases to their messages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MLP = """model m
dim n_x, n_h, n_y
input x: n_x
target y: n_y
param W: (n_h, n_x)
param b: n_h
param U: (n_y, n_h)
{body}
"""

RNN = """model r
dim n_x, n_h
time t = 1..T
input x[t]: n_x
target y[t]: n_h
param W: (n_h, n_x)
param V: (n_h, n_h)
param b: n_h
{body}
"""


def nested(fn: str, inner: str, depth: int) -> str:
    return f"{fn}(" * depth + inner + ")" * depth


def chain(n: int) -> str:
    lines = ["h0 = tanh(W @ x + b)"] + [f"h{k} = tanh(h{k - 1})" for k in range(1, n)]
    return "\n".join(lines) + f"\nloss L = squared_error(y, U @ h{n - 1})"


def concat_tower(depth: int) -> str:
    lines = ["c0 = tanh(W @ x + b)"] + [f"c{k} = concat(c{k - 1}, c{k - 1})" for k in range(1, depth)]
    return "\n".join(lines) + f"\nloss L = sum(c{depth - 1})"


@dataclass
class Attack:
    name: str
    command: str  # derive, show, check, verify
    model: str
    writeup: str | None = None  # verify's write-up (.md)

    @property
    def size(self) -> int:
        return len(self.model.encode()) + len((self.writeup or "").encode())


def attacks() -> list[Attack]:
    seed = (ROOT / "examples" / "seed_rnn.sdm").read_text(encoding="utf-8")
    claim = "$$\\delta \\mathbf{h}_t = \\mathbf{W}^\\top \\delta \\mathbf{o}_t$$\n\n"
    out = [
        Attack("exact power 2^99999999999999 in a write-up", "verify", seed, "$$z = 2^{99999999999999}$$"),
        Attack("superscript digit after a name", "verify", seed, "$$\\delta \\mathbf{h}_t² = 0$$"),
        Attack("5,000-digit number in a claim", "verify", seed, "$$\\delta \\mathbf{h}_t = " + "7" * 5000 + "$$"),
        Attack("claim line of 100,000 spaces", "verify", seed, "$$\\delta \\mathbf{h}_t =" + " " * 100_000 + "0$$"),
        Attack("3,200 Hadamard factors", "verify", seed,
               "$$\\delta \\mathbf{h}_t = " + " \\odot ".join(["\\mathbf{h}_t"] * 3200) + "$$"),
        Attack("100 KB of ordinary claims", "verify", seed, claim * (100_000 // len(claim))),
        Attack("16 nested softmaxes", "derive", MLP.format(body="loss L = squared_error(y, U @ "
                                                          + nested("softmax", "W @ x + b", 16) + ")")),
        Attack("18 nested softmaxes, show", "show", MLP.format(body="loss L = squared_error(y, U @ "
                                                               + nested("softmax", "W @ x + b", 18) + ")")),
        Attack("22 nested softmaxes, show", "show", MLP.format(body="loss L = squared_error(y, U @ "
                                                               + nested("softmax", "W @ x + b", 22) + ")")),
        Attack("state h[-10000000000]", "check", RNN.format(
            body="state h[0] = 0\nstate h[-10000000000] = 0\nh[t] = tanh(W @ x[t] + V @ h[t-1] + b)\n"
                 "loss L = Sum(squared_error(y[t], h[t]), (t, 1, T))")),
        Attack("literal size (100000, 100000)", "check", MLP.format(body="").replace(
            "param W: (n_h, n_x)", "param W: (100000, 100000)").replace("param b: n_h", "param b: 100000")
            .replace("param U: (n_y, n_h)", "param U: (n_y, 100000)") + "loss L = squared_error(y, U @ (W @ x + b))\n"),
        Attack("literal size 99999999999999999999999", "check", MLP.format(body="loss L = sum(W @ x)").replace(
            "param W: (n_h, n_x)", "param W: (99999999999999999999999, n_x)")),
        Attack("literal size 300", "check", MLP.format(body="loss L = sum(tanh(W @ x))").replace(
            "param W: (n_h, n_x)", "param W: (300, n_x)")),
        Attack("60 levels of concat(c, c)", "check", MLP.format(body=concat_tower(60))),
        Attack("six nested exp", "check", MLP.format(body="loss L = sum(" + nested("exp", "W @ x", 6) + ")")),
        Attack("log(0 * b)", "check", MLP.format(body="loss L = sum(log(0 * b))")),
        Attack("1e308 * 1e308", "check", MLP.format(body="loss L = sum(1e308 * 1e308 * (W @ x))")),
        Attack("5,000 equations", "derive", MLP.format(body=chain(5000))),
        Attack("20,000 equations", "derive", MLP.format(body=chain(20000))),
        Attack("5,000-argument concat", "derive", MLP.format(
            body="c = concat(" + ", ".join(["b"] * 5000) + ")\nloss L = sum(c)")),
        Attack("a 10 MB model file", "derive", MLP.format(body="# " + "x" * 10_000_000 + "\nloss L = sum(W @ x)")),
        Attack("a line of 1,000,000 characters", "derive", MLP.format(
            body="loss L = sum(W @ x" + " + 0 * b[0]" * 0 + " " * 1_000_000 + ")")),
    ]
    return out


def run(attack: Attack, timeout: float, memory: float) -> dict:
    with tempfile.TemporaryDirectory() as work:
        model = Path(work, "attack.sdm")
        model.write_text(attack.model, encoding="utf-8")
        if attack.command == "verify":
            writeup = Path(work, "writeup.md")
            writeup.write_text(attack.writeup or "", encoding="utf-8")
            argv = ["verify", str(model), str(writeup)]
        elif attack.command == "derive":
            argv = ["derive", str(model), "-o", str(Path(work, "out"))]
        else:
            argv = [attack.command, str(model)]
        # A fresh wrapper process per attack, so that its children's peak memory is this attack's alone.
        wrapper = ("import json, resource, subprocess, sys\n"
                   "limit = int(sys.argv[1]); timeout = float(sys.argv[2])\n"
                   "bound = lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
                   "try:\n"
                   "    done = subprocess.run(sys.argv[3:], capture_output=True, text=True, timeout=timeout,"
                   " preexec_fn=bound)\n"
                   "    status, err = done.returncode, done.stderr\n"
                   "except subprocess.TimeoutExpired:\n"
                   "    status, err = 'timeout', ''\n"
                   "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
                   "print(json.dumps({'status': status, 'err': err[-4000:], 'peak': peak}))\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", wrapper, str(int(memory * 2**30)), str(timeout),
                               sys.executable, "-m", "symderiv", *argv], capture_output=True, text=True, env=env,
                              cwd=work, check=True)
        seconds = time.perf_counter() - start
        result = json.loads(done.stdout)
        status, err, peak = result["status"], result["err"], result["peak"]
        outputs = sum(p.stat().st_size for p in Path(work, "out").glob("*")) if Path(work, "out").exists() else 0
    held = status in (0, 1, 2) and "Traceback" not in err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return {"attack": attack.name, "command": attack.command, "bytes": attack.size, "status": status,
            "seconds": seconds, "peak_mib": peak, "written": outputs, "held": held, "message": last[:110]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per attack (default 120)")
    parser.add_argument("--memory", type=float, default=2.0, help="address-space bound in GiB (default 2)")
    parser.add_argument("--only", default="", help="run only the attacks whose name contains this")
    args = parser.parse_args(argv)
    print("| attack | command | input bytes | status | seconds | peak MiB | written bytes | held | message |")
    print("|---|---|--:|---|--:|--:|--:|---|---|")
    ok = True
    for attack in attacks():
        if args.only not in attack.name:
            continue
        r = run(attack, args.timeout, args.memory)
        ok &= r["held"]
        message = r["message"].replace("|", "\\|")
        print(f"| {r['attack']} | {r['command']} | {r['bytes']:,} | {r['status']} | {r['seconds']:.2f} | "
              f"{r['peak_mib']:.0f} | {r['written']:,} | {'yes' if r['held'] else 'NO'} | {message} |", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
