"""The documentation and the code in step, without Sphinx: the language reference
(docs/language.md) against the operation registry and the parser, and the docs' example
files against what symderiv does with them.

The docs build checks the same examples again (docs/_ext/symderiv_docs.py); these tests
keep the check in the suite that every change runs.
"""

from __future__ import annotations

import ast
import re

import pytest

from symderiv import ModelError, parse
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify
from symderiv.cli import main
from symderiv.ops import ELEMENTWISE, FUNCTIONS, LANGUAGE

from .helpers import ROOT

DOCS = ROOT / "docs"
REFERENCE = (DOCS / "language.md").read_text(encoding="utf-8")
#: A directive block of the reference: ```{NAME} ARGUMENT, its lines, ```.
BLOCK = re.compile(r"^```\{(?P<name>[a-z-]+)\}(?P<arg>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


def blocks(name: str) -> list[tuple[str, str]]:
    return [(m.group("arg").strip(), m.group("body")) for m in BLOCK.finditer(REFERENCE) if m.group("name") == name]


def table_rows(text: str) -> list[list[str]]:
    """The rows of every Markdown table whose header has an 'example' column: the cells."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: ") and "example" in header:
            rows.append(dict(zip(header, cells)))
    return rows


def code(cell: str) -> str:
    """The text of the one `...` span of a cell."""
    spans = re.findall(r"`([^`]+)`", cell)
    assert len(spans) == 1, cell
    return spans[0]


CONTEXT = next(body for _, body in blocks("sdm-model") if body.startswith("# the context of the examples"))
EXAMPLES = [code(row["example"]) for row in table_rows(REFERENCE)]


def with_context(line: str) -> str:
    """The context model with the example line added; an example of a statement the model has
    one of (``time``, ``loss``, ``state h``) takes the place of the context's own."""
    key = re.match(r"(time|loss|state \w+)\b", line)
    kept = [c for c in CONTEXT.splitlines() if not (key and c.startswith(key.group(0)))]
    return "\n".join(kept + [line]) + "\n"


def test_the_reference_has_examples():
    assert len(EXAMPLES) >= 40 and len(blocks("sdm-error")) >= 60


@pytest.mark.parametrize("line", EXAMPLES)
def test_every_example_of_the_reference_parses(line):
    model = parse(with_context(line), "example.sdm")
    name = re.match(r"(?:loss\s+|param\s+|input\s+|target\s+|latex\s+)?(\w+)", line).group(1)
    if not line.startswith(("dim", "model", "time", "state")):
        assert name in model.quantities  # the example's own line was read, not skipped


def test_every_function_of_the_registry_has_a_row_with_an_example():
    rows = table_rows(REFERENCE[REFERENCE.index("## Functions"):REFERENCE.index("## LaTeX names")])
    documented = {name for row in rows for name in re.findall(r"`(\w+)\(", row["function"])}
    registry = set(FUNCTIONS) | {n for n, e in ELEMENTWISE.items() if e.public} | set(LANGUAGE)
    assert registry - documented == set(), "functions without a row in docs/language.md"
    assert documented - registry == set(), "rows for functions the registry does not have"
    for row in rows:  # each row's example calls (one of) its functions
        names = re.findall(r"`(\w+)\(", row["function"])
        assert any(re.search(rf"\b{n}\(", code(row["example"])) for n in names), row


def test_an_unknown_function_is_not_documented_as_one():
    with pytest.raises(ModelError, match="unknown function 'max'"):
        parse(with_context("g = max(b)"), "example.sdm")


@pytest.mark.parametrize("context,body", blocks("sdm-model"))
def test_every_model_of_the_reference_parses(context, body):
    parse(body, "example.sdm")


@pytest.mark.parametrize("message,body", blocks("sdm-error"), ids=lambda x: x[:40])
def test_every_error_example_fails_with_its_message(message, body):
    with pytest.raises(ModelError) as info:
        parse(body, "example.sdm")
    assert message in info.value.message
    assert info.value.pos is not None and info.value.pos.line >= 1  # positioned


@pytest.mark.parametrize("path", sorted((DOCS / "examples" / "errors").glob("*.sdm")), ids=lambda p: p.name)
def test_every_error_file_fails_with_the_message_of_its_first_line(path):
    message = path.read_bytes().split(b"\n", 1)[0].decode().removeprefix("# error: ")
    with pytest.raises(ModelError) as info:
        parse(path.read_bytes(), path.name)
    assert info.value.message.startswith(message)
    assert message in " ".join(REFERENCE.split())


def _message_pieces() -> list[tuple[str, int, str]]:
    """(file, line, the longest literal piece) of every message the model reader can raise."""
    found = []
    files = sorted((ROOT / "symderiv" / "frontend").glob("*.py")) + [ROOT / "symderiv" / "ops" / "structural.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func not in ("error", "_error", "_op_error", "node_error", "ModelError", "error_at"):
                continue
            for arg in node.args:
                pieces = [p.value for p in ast.walk(arg) if isinstance(p, ast.Constant) and isinstance(p.value, str)]
                if pieces and any(len(p.strip(" '.;:(")) >= 8 for p in pieces):
                    found.append((path.name, node.lineno, max(pieces, key=len).strip(" '.;:(")))
                    break
    return found


def test_every_message_of_the_model_reader_is_documented():
    """A message added to the reader fails here until docs/language.md says what to do about it."""
    pieces = _message_pieces()
    assert len(pieces) >= 70
    text = " ".join(REFERENCE.split())
    missing = [f"{f}:{line}: {piece}" for f, line, piece in pieces if " ".join(piece.split()) not in text]
    assert missing == []


def test_the_tutorial_claims_get_the_verdicts_the_tutorial_explains(seed_derivation):
    report = verify(seed_derivation, read_claims(DOCS / "examples" / "seed_rnn.claims", seed_derivation))
    got = [(v.verdict, v.diagnosis) for v in report.verdicts]
    assert got == [("correct", []), ("correct", []), ("incorrect", ["missing-recurrent-term"]),
                   ("per-step", []), ("incorrect", ["transpose"])]


def test_the_tutorial_cell_derives_and_its_module_trains(tmp_path):
    # The tutorial's doctest trains it; here the gradients are compared with central differences.
    from .helpers import assert_module_is_right

    assert_module_is_right((DOCS / "examples" / "mgu.sdm").read_text(encoding="utf-8"), tmp_path)


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"symderiv \d+\.\d+\.\d+\n", capsys.readouterr().out)
    for command in ("derive", "show", "check", "verify"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert re.search(rf"^examples?:\n  symderiv {command} examples/\w+\.sdm", out, re.M), out


def test_a_misspelt_command_suggests_the_right_one(capsys):
    with pytest.raises(SystemExit) as done:
        main(["dervie", "examples/mlp.sdm"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "did you mean 'symderiv derive'?" in err and "symderiv --help" in err


def test_a_missing_file_says_to_check_its_path(capsys, tmp_path):
    assert main(["show", str(tmp_path / "nope.sdm")]) == 2
    assert "No such file or directory; check the path of the model file" in capsys.readouterr().err
    assert main(["verify", str(ROOT / "examples" / "seed_rnn.sdm"), str(tmp_path / "nope.tex")]) == 2
    assert "check the path of the derivation" in capsys.readouterr().err
