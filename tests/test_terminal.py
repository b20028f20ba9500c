"""What the command line prints: control characters of a model file or a claim escaped, and
characters the terminal cannot encode written as escapes, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from symderiv.cli import main, terminal_safe

from .helpers import EXAMPLES, ROOT

ATTACK = "\x1b]0;owned\x07\x1b[2J"


def test_terminal_safe_escapes_control_characters_only():
    assert terminal_safe("a\tb\nδh ⊙ c") == "a\tb\nδh ⊙ c"
    assert terminal_safe(ATTACK) == "\\u001b]0;owned\\u0007\\u001b[2J"
    assert terminal_safe("\x9b2J\r\x7f") == "\\u009b2J\\u000d\\u007f"


def test_an_error_line_with_escape_sequences_is_not_echoed_raw(tmp_path, capsys):
    model = tmp_path / "m.sdm"
    model.write_text(f"dim n\nparam b: n\nloss L = sum(b) {ATTACK}\n")
    assert main(["show", str(model)]) == 2
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err and "\x07" not in captured.err
    assert "\\u001b" in captured.err


def test_claim_text_with_escape_sequences_is_not_echoed_raw(tmp_path, capsys, seed_path):
    claims = tmp_path / "c.claims"
    claims.write_text(f"d(o[t]) = W_out.T @ d(h_out[t]) {ATTACK}\n")
    main(["verify", str(seed_path), str(claims)])
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "\x07" not in captured.out + captured.err


def test_an_ascii_only_terminal_gets_escapes_not_a_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="ascii")
    res = subprocess.run([sys.executable, "-m", "symderiv", "show", str(EXAMPLES / "seed_rnn.sdm")], env=env,
                         capture_output=True, text=True, encoding="ascii", timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "\\u03b4h" in res.stdout  # δh
