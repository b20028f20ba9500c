"""``symderiv verify MODEL CLAIMS [--json]``: exit status, the JSON schema, the text report,
and bad input that must never end in a traceback."""

import json
import re
import subprocess
import sys

import pytest

from symderiv.claims.tree import FUNCTIONS
from symderiv.claims.verify import CODES, VERDICTS
from symderiv.cli import main

from .helpers import EXAMPLES, ROOT

SEED_HOMEWORK = ROOT / "tests" / "data" / "seed_homework.txt"
CLAIM_KEYS = {"line", "text", "target", "verdict", "diagnosis", "expected", "message"}

RIGHT_CLAIMS = """\
# every claim here is right
d(h_out[t]) = r_hat[t] - r[t]
d(h[t]) = W.T @ d(z_o[t]) + V.T @ d(z_h[t+1])
d(V) = Sum(d(z_h[t]) @ h[t-1].T, (t, 1, T))
d(W_out)[i, j] = Sum(d(h_out[t])[i] * o[t][j], (t, 1, T))
"""


def verify_cli(capsys, *args):
    status = main(["verify", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_all_correct_is_status_0(seed_path, tmp_path, capsys):
    claims = tmp_path / "right.claims"
    claims.write_text(RIGHT_CLAIMS)
    status, out, _ = verify_cli(capsys, seed_path, claims)
    assert status == 0
    assert "4 correct, 0 per-step, 0 incorrect, 0 unreadable" in out


def test_a_wrong_claim_is_status_1(seed_path, capsys):
    status, _, _ = verify_cli(capsys, seed_path, SEED_HOMEWORK)
    assert status == 1


def test_a_per_step_claim_is_not_a_correct_one(seed_path, tmp_path, capsys):
    claims = tmp_path / "per_step.claims"
    claims.write_text("d(V) = d(z_h[t]) @ h[t-1].T\n")
    status, out, _ = verify_cli(capsys, seed_path, claims)
    assert status == 1 and "per-step" in out


def test_json_is_exactly_the_documented_object(seed_path, capsys):
    status, out, _ = verify_cli(capsys, seed_path, SEED_HOMEWORK, "--json")
    assert status == 1
    report = json.loads(out)
    # the documented object, and what issue 14 added to it: the reader's notes, the skipped count
    assert set(report) == {"model", "claims", "summary", "notes", "skipped"}
    assert report["notes"] == [] and report["skipped"] == 0
    assert report["model"] == "seed_rnn"
    assert set(report["summary"]) == set(VERDICTS)
    assert sum(report["summary"].values()) == len(report["claims"]) == 29
    for claim in report["claims"]:
        assert set(claim) == CLAIM_KEYS
        assert isinstance(claim["line"], int) and claim["line"] >= 1
        assert all(isinstance(claim[k], str) for k in ("text", "target", "expected", "message"))
        assert claim["verdict"] in VERDICTS
        assert isinstance(claim["diagnosis"], list) and set(claim["diagnosis"]) <= set(CODES)
        assert claim["message"]
        assert claim["diagnosis"] == [] or claim["verdict"] == "incorrect"
    o = next(c for c in report["claims"] if c["target"] == "o[t]")
    assert o == {
        "line": 28,
        "text": r"\delta \mathbf{o}_t = \mathbf{W}^{(\text{out})} \delta \mathbf{h}_t^{(\text{out})}",
        "target": "o[t]",
        "verdict": "incorrect",
        "diagnosis": ["transpose"],
        "expected": r"{\mathbf{W}^{(\text{out})}}^{\top} \delta \mathbf{h}^{(\text{out})}_t",
        "message": r"$\mathbf{W}^{(\text{out})}$ needs a transpose.",
    }


def test_json_output_is_deterministic(seed_path, capsys):
    first = verify_cli(capsys, seed_path, SEED_HOMEWORK, "--json")[1]
    assert verify_cli(capsys, seed_path, SEED_HOMEWORK, "--json")[1] == first


def test_text_report_gives_line_claim_verdict_reason_and_correct_form(seed_path, capsys):
    _, out, _ = verify_cli(capsys, seed_path, SEED_HOMEWORK)
    assert out.startswith("seed_rnn: 29 claims in ")
    assert "6 correct, 16 per-step, 7 incorrect, 0 unreadable" in out
    block = out.split("\n\n")
    h = next(b for b in block if r"\delta\mathbf{h}_{t} = \mathbf{W}\delta\mathbf{y}_{o}" in b)
    assert h.startswith("line 30, column 17: ")
    assert "incorrect (transpose, missing-recurrent-term): " in h
    assert (r"correct form: \delta \mathbf{h}_t = {\mathbf{W}}^{\top} \delta \mathbf{y}_{o,t} + {\mathbf{V}}^{\top} "
            r"\delta \mathbf{y}_{h,t+1}") in h


def test_unreadable_claims_do_not_stop_the_rest(seed_path, tmp_path, capsys):
    writeup = tmp_path / "mixed.md"
    writeup.write_text(
        "$$\\delta \\mathbf{h}_t = \\sum_{k=t}^{T} \\mathbf{W}^\\top \\delta \\mathbf{y}_{o,k}$$\n\n"
        "$$\\delta \\mathbf{q}_t = \\mathbf{h}_t$$\n\n"
        "$$\\delta \\mathbf{o}_t = (\\mathbf{W}^{(\\mathrm{out})})^\\top (\\hat{\\mathbf{r}}_t - \\mathbf{r}_t$$\n\n"
        "$$\\delta \\mathbf{h}^{(\\mathrm{out})}_t = \\hat{\\mathbf{r}}_t - \\mathbf{r}_t$$\n")
    status, out, _ = verify_cli(capsys, seed_path, writeup, "--json")
    claims = json.loads(out)["claims"]
    assert [(c["line"], c["verdict"]) for c in claims] == [(1, "unreadable"), (3, "unreadable"), (5, "unreadable"),
                                                          (7, "correct")]
    assert claims[0]["message"].startswith("line 1, column ") and "sum over" in claims[0]["message"]
    assert "unknown name" in claims[1]["message"]
    assert "unbalanced" in claims[2]["message"]
    assert status == 1


def test_claims_file_errors_carry_their_column(seed_path, tmp_path, capsys):
    claims = tmp_path / "bad.claims"
    claims.write_text("d(h[t]) = W.T @@ d(z_o[t])\nd(o[t]) = __import__('os')\nd(h_out[t]) = r_hat[t] - r[t]\n")
    _, out, _ = verify_cli(capsys, seed_path, claims, "--json")
    a, b, c = json.loads(out)["claims"]
    assert a["verdict"] == b["verdict"] == "unreadable" and c["verdict"] == "correct"
    assert a["message"] == f"{claims}:1:16: invalid syntax"  # the second @, placed as in a model file
    assert a["target"] == "h[t]" and a["expected"]
    assert "only the functions" in b["message"] or "unknown function" in b["message"]


@pytest.mark.parametrize("case", ["missing claims", "invalid UTF-8", "unknown format", "missing model", "bad model",
                                  "a directory"])
def test_bad_input_is_status_2_with_a_message(case, seed_path, tmp_path, capsys):
    claims, model = tmp_path / "x.md", seed_path
    if case == "invalid UTF-8":
        claims.write_bytes(b"$$\\delta h = 1$$\n\xff\xfe\n")
    elif case == "unknown format":
        claims = tmp_path / "x.pdf"
        claims.write_text("%PDF")
    elif case == "missing model":
        model = tmp_path / "nope.sdm"
        claims.write_text("")
    elif case == "bad model":
        model = tmp_path / "bad.sdm"
        model.write_text("dim n\nparam W: (n, n)\nh = W @ q\nloss L = sum(h)\n")
        claims.write_text("")
    elif case == "a directory":
        claims = tmp_path
    status, out, err = verify_cli(capsys, model, claims)
    assert status == 2
    assert out == ""
    assert "error:" in err and "Traceback" not in err
    if case == "invalid UTF-8":
        assert re.match(r".*x\.md:2:1: error: the file is not valid UTF-8", err)


def test_the_command_never_shows_a_traceback(seed_path, tmp_path):
    claims = tmp_path / "x.tex"
    claims.write_bytes(b"\\begin{align}\\delta \\mathbf{h}_t &= \\frac{\\partial}{\\partial\n\xc3\x28")
    out = subprocess.run([sys.executable, "-m", "symderiv", "verify", str(seed_path), str(claims)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "not valid UTF-8" in out.stderr


def test_an_empty_writeup_has_no_claims(seed_path, tmp_path, capsys):
    claims = tmp_path / "empty.tex"
    claims.write_text("\\documentclass{article}\\begin{document}No equations.\\end{document}\n")
    status, out, _ = verify_cli(capsys, seed_path, claims)
    assert status == 0 and "no claims found" in out


def test_claim_readers_never_evaluate_text():
    # Every module that reads a write-up or a claims file.
    readers = sorted((ROOT / "symderiv" / "claims").rglob("*.py"))
    assert len(readers) >= 5
    for path in readers:
        source = path.read_text()
        assert not re.search(r"\b(eval|exec|sympify|parse_expr)\s*\(", source), path.name


def test_an_unknown_name_gets_the_model_languages_hint_at_its_file_line_and_column(tmp_path, capsys):
    model = ROOT / "tests" / "data" / "matrices" / "mean_ridge.sdm"
    claims = tmp_path / "typos.claims"
    claims.write_text("# δw through the residual\nd(w) = X.T @ d(rr) + 2 * lam * w\n  d(ww) = X.T @ r / N\n"
                      "d(w) = tahn(w)\n")
    status, out, err = verify_cli(capsys, model, claims, "--json")
    assert status == 1 and not err
    messages = [c["message"] for c in json.loads(out)["claims"]]
    assert messages == [
        f"{claims}:2:16: unknown name 'rr'; did you mean 'r'?",
        f"{claims}:3:5: unknown name 'ww'; did you mean 'w'?",
        f"{claims}:4:8: unknown function 'tahn' (did you mean 'tanh'?); a claim may use d(...), Sum(...) and "
        + ", ".join(FUNCTIONS + ("eye", "ones"))]
    # the model language's hint for the same slip
    bad = tmp_path / "typo.sdm"
    bad.write_text(model.read_text().replace("loss L = sum(r ** 2)", "loss L = sum(rr ** 2)"))
    assert main(["show", str(bad)]) == 2
    assert "unknown name 'rr'; did you mean 'r'?" in capsys.readouterr().err


def test_an_unknown_pre_activation_is_told_the_models_pre_activations(tmp_path, capsys):
    claims = tmp_path / "mine.claims"
    claims.write_text("d(b1) = d(Z1) @ ones(n)\nd(b1) = d(z_h) @ ones(n)\n")
    _, out, _ = verify_cli(capsys, EXAMPLES / "softmax_mlp.sdm", claims, "--json")
    first, second = json.loads(out)["claims"]
    assert first["message"] == (f"{claims}:1:11: unknown name 'Z1'; if it is a pre-activation, the model calls them "
                                "z_H (the argument of tanh in H); z_P (the argument of softmax in P)")
    assert second["message"] == f"{claims}:2:11: unknown name 'z_h'; did you mean 'z_H'?"
    assert second["verdict"] == "unreadable" and second["expected"]
