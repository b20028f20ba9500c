"""Nothing in a model file is ever run.

1. The package source has no call that runs or parses text as code: ``eval``, ``exec``,
   ``compile``, ``__import__``, ``parse_expr``, ``parse_latex``, nor ``sympify`` (or its
   alias ``S``) unless ``strict=True`` (which refuses strings).  Found with ``ast``, so a
   comment or a string that mentions them does not count.
2. Hostile model files -- ``__import__('os').system(...)``, attribute chains, lambdas,
   comprehensions, f-strings, starred arguments, in every kind of statement -- are refused
   with a positioned error, while an audit hook watches for anything being run.
3. What a file says never reaches generated code as code: a hostile file *name* (it is
   quoted in the header of every output) cannot break out of the header comment, and a
   ``latex`` spelling cannot read files, run commands or leave the formula.

(The basic cases of 2 are in test_language_errors.py; this file adds the rest.)
"""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys

import pytest

import symderiv
from symderiv import ModelError
from symderiv.render.emit import render, write_outputs

from .helpers import EXAMPLES, ROOT, import_generated

PACKAGE = ROOT / "symderiv"

# ---------------------------------------------------------------------------------------
# 1. The source: no call that turns text into running code

BUILTINS = {"eval", "exec", "compile", "__import__"}  # as plain names, or builtins.NAME
PARSERS = {"sympify", "S", "parse_expr", "parse_latex"}  # as plain names, or any_module.NAME
FORBIDDEN = BUILTINS | PARSERS


def forbidden_calls(source: str) -> list[str]:
    """Calls (by name, also through ``import ... as``) that run or parse text as code."""
    tree = ast.parse(source)
    names = set(FORBIDDEN)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sympy.parsing"):
            names |= {a.asname or a.name for a in node.names}
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname for a in node.names if a.asname and a.name in FORBIDDEN}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
        elif isinstance(func, ast.Attribute) and (func.attr in PARSERS or func.attr in BUILTINS and isinstance(
                func.value, ast.Name) and func.value.id == "builtins"):
            name = func.attr  # sp.sympify(...), builtins.eval(...); not re.compile(...)
        else:
            continue
        if name not in names:
            continue
        strict = any(k.arg == "strict" and isinstance(k.value, ast.Constant) and k.value.value is True
                     for k in node.keywords)
        if name in ("sympify", "S") and strict:
            continue  # sympify(x, strict=True) refuses strings: it never parses text
        found.append(f"line {node.lineno}: {ast.unparse(node)[:100]}")
    return found


def test_the_scanner_finds_calls_and_ignores_comments_and_strings():
    source = '''
import sympy as sp
from sympy import sympify as sy
from sympy.parsing.sympy_parser import parse_expr as pe
# eval(text) in a comment
"exec(text) in a string"
a = eval(text)
b = sp.sympify(text)
c = sy(text)
d = pe(text)
e = sp.sympify(x, strict=True)
f = __import__(text)
g = sp.S(text)
h = builtins.exec(code)
i = re.compile(pattern)
j = self.eval(x)
'''
    found = forbidden_calls(source)
    assert [f.split(":")[0] for f in found] == ["line 7", "line 8", "line 9", "line 10", "line 12", "line 13",
                                                  "line 14"], found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_call_runs_or_parses_text_as_code(path):
    assert forbidden_calls(path.read_text(encoding="utf-8")) == []


# ---------------------------------------------------------------------------------------
# 2. Hostile model files

class Watch:
    """Records what a process would do to run something: a command, a new process, code
    compiled from a string.  Audit hooks cannot be removed, so one hook serves every test
    and only records while ``active``."""

    EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
              "pty.spawn", "socket.connect", "shutil.rmtree", "os.remove", "os.rename", "ctypes.dlopen",
              "webbrowser.open")

    def __init__(self):
        self.active = False
        self.seen: list[tuple[str, str]] = []
        sys.addaudithook(self)

    def __call__(self, event, args):
        if not self.active:
            return
        if event in self.EVENTS:
            self.seen.append((event, repr(args)[:200]))
        elif event == "exec":  # code being run: fine from a file (a lazy import), not from a string
            code = args[0] if args else None
            filename = getattr(code, "co_filename", "")
            if filename.startswith("<") and filename not in ("<frozen importlib._bootstrap>",):
                self.seen.append((event, filename))

    @contextlib.contextmanager
    def watching(self):
        self.seen.clear()
        self.active = True
        try:
            yield self.seen
        finally:
            self.active = False


WATCH = Watch()

PRE = """\
dim n_in, n_out
time t = 1..T
input x[t]: n_in
param W: (n_out, n_in)
param b: n_out
"""
LOSS = "loss L = Sum(sum(h[t]), (t, 1, T))\n"
RUN = "__import__('os').system('touch PWNED')"

# Every payload, as an expression: each is refused somewhere in its tree.
EXPRESSIONS = [
    RUN,
    "__import__('subprocess').run(['touch', 'PWNED'])",
    "eval(\"__import__('os').system('touch PWNED')\")",
    "exec('import os')",
    "getattr(__builtins__, 'eval')('1')",
    "open('PWNED', 'w')",
    "breakpoint()",
    "x.__class__",
    "x.__class__.__base__.__subclasses__()",
    "W.T.__class__.__mro__[1].__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()[0]",
    "''.__class__.__mro__[1].__subclasses__()",
    "b.__dict__",
    "b.__globals__",
    "sigmoid.__globals__['__builtins__']['eval']('1')",
    "W.T.T.__init__.__globals__",
    "(lambda: " + RUN + ")()",
    "(lambda f: f(f))(lambda f: f(f))",
    "sigmoid(lambda z: z)",
    "[" + RUN + " for _ in W]",
    "{" + RUN + " for _ in W}",
    "{k: " + RUN + " for k in W}",
    "sum(" + RUN + " for _ in W)",
    "sum([b for b in [W]])",
    "f'{" + RUN + "}'",
    "f'{b!r}'",
    "F'{b:{W}}'",
    "rf'{b}'",
    "concat(*b)",
    "concat(*[b, b])",
    "tanh(**b)",
    "sigmoid(x=b)",
    "(c := " + RUN + ")",
    "b if " + RUN + " else b",
    RUN + " and b",
    "not " + RUN,
    "b[" + RUN + "]",
    "x[t][" + RUN + "]",
    "x[" + RUN + "]",
    "x[t:" + RUN + "]",
    "x[t, " + RUN + "]",
    "b + " + RUN,
    "-" + RUN,
    "sigmoid(" + RUN + ")",
    "Sum(b, (t, 1, " + RUN + "))",
    "Sum(" + RUN + ", (t, 1, T))",
    "await b",
    "(yield b)",
    "b @ ...",
    "b'\\x00'",
    "'os'",
    "None",
    "9 ** 9 ** 9 ** 9",
    "1 << 100000",
    "b.T.real",
    "W.T.T.T.__class__",
    "np.tanh(b)",
    "math.exp(b)",
    "builtins.eval('1')",
    "sp.sympify('x')",
    "sympify('__import__(\"os\").system(\"touch PWNED\")')",
    "parse_expr('x')",
    "__builtins__",
    "__name__",
    "globals()",
    "vars()",
    "locals()",
    "dir()",
    "type(b)",
    "input()",
    "print(b)",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_hostile_expression_is_refused_and_nothing_runs(tmp_path, monkeypatch, expr):
    monkeypatch.chdir(tmp_path)
    text = PRE + f"h[t] = W @ x[t] + ({expr})\n" + LOSS
    with WATCH.watching() as seen, pytest.raises(ModelError) as info:
        symderiv.parse(text, "hostile.sdm")
    err = info.value
    assert err.pos is not None and err.pos.line == 6 and err.pos.col >= 18, err.format()
    assert err.format().startswith(f"hostile.sdm:6:{err.pos.col}: error: ")
    assert seen == []
    assert list(tmp_path.iterdir()) == []


# The same payloads where other statements take an expression or a size.
PLACES = [
    "param U: {}",
    "param U: ({}, n_in)",
    "param U: (n_out, {})",
    "input y: {}",
    "input y[t]: {}",
    "target y[t]: {}, distribution",
    "state h[0] = {}",
    "state h[{}] = 0",
    "h[{}] = W @ x[t]",
    "loss L = {}",
    "loss L = Sum(sum(W @ x[t]), (t, 1, {}))",
    "loss L = Sum(sum(W @ x[t]), ({}, 1, T))",
    "h[t] = W @ x[t]\nloss L = Sum(sum(h[t]) * {}, (t, 1, T))",
    "dim {}",
    "time t = 1..{}",
    "model {}",
    "latex W \"{}\"",
]
PAYLOADS = [RUN, "x.__class__", "(lambda: 0)()", "[b for b in W]", "f'{b}'", "*b"]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("place", PLACES)
def test_hostile_statement_is_refused_and_nothing_runs(tmp_path, monkeypatch, place, payload):
    monkeypatch.chdir(tmp_path)
    line = place.format(payload)
    if line.startswith("latex"):
        line = line.replace('"', "'", 2) if '"' in payload else line
    rest = "" if line.startswith("loss") or "\nloss" in line else "h[t] = W @ x[t]\n" + LOSS
    text = PRE + line + "\n" + rest
    with WATCH.watching() as seen:
        try:
            model = symderiv.parse(text, "hostile.sdm")
        except ModelError as err:
            assert err.pos is not None and err.pos.line >= 6, err.format()
        else:  # only a latex spelling may hold arbitrary (harmless, quoted) text
            assert line.startswith("latex") and model.latex_overrides["W"] == payload, line
            for fmt in ("tex", "md", "py"):
                render(symderiv.derive(model), fmt, "hostile.sdm")
    assert seen == []
    assert list(tmp_path.iterdir()) == []


def test_the_watch_sees_a_command_being_run(tmp_path):
    """The audit hook is not blind: running a command under it is recorded."""
    with WATCH.watching() as seen:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        eval(compile("1 + 1", "<string>", "eval"))  # what the watch must see
    assert [e for e, _ in seen] == ["subprocess.Popen", "exec"]


@pytest.mark.parametrize("case", ["show", "derive", "check"])
def test_cli_on_a_hostile_file_runs_nothing(tmp_path, case):
    path = tmp_path / "hostile.sdm"
    path.write_text(PRE + f"h[t] = sigmoid(W @ x[t]) + {RUN}\n" + LOSS, encoding="utf-8")
    args = [sys.executable, "-m", "symderiv", case, str(path)] + (["-o", str(tmp_path / "out")] if case == "derive"
                                                                  else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"{path}:6:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.sdm"]


# ---------------------------------------------------------------------------------------
# 3. Text from the model file inside the outputs

HOSTILE_FILE_NAMES = [
    'x\nimport os; os.system("touch PWNED")\n#.sdm',
    'x\rimport os; os.system("touch PWNED")\r#.sdm',
    "x\u2028import os\u2029#.sdm",
    "x\x0cimport os\x0b#.sdm",
    "x\x85import os.sdm",
    "x --> <script>alert(1)<\\script> <!-- .sdm",
    "x\n\\input{passwd}\n%.sdm",
    "x `rm -rf ~` $(touch PWNED).sdm",
]


@pytest.mark.parametrize("name", HOSTILE_FILE_NAMES, ids=range(len(HOSTILE_FILE_NAMES)))
def test_a_hostile_file_name_stays_inside_the_header_comment(tmp_path, monkeypatch, name):
    """The file's name is quoted in the first line of every output: a line break in it must
    not start a line of code (found by this test: `x\\nimport os; os.system(...)\\n#.sdm`
    put the command into the generated module, which `symderiv check` then imported)."""
    monkeypatch.chdir(tmp_path)
    model_path = tmp_path / name
    model_path.write_text((EXAMPLES / "mlp.sdm").read_text(encoding="utf-8"), encoding="utf-8")
    d = symderiv.derive(symderiv.load(model_path))
    out = tmp_path / "out"
    written = write_outputs(d, out, ["tex", "md", "py"])
    for path in written:
        text = path.read_text(encoding="utf-8")
        first, rest = text.split("\n", 1)
        assert "import os" not in rest and "\\input" not in rest and "<script>" not in rest, path
        assert all(ch.isprintable() for ch in first), repr(first)
        if path.suffix == ".md":
            assert first.startswith("<!--") and first.endswith("-->") and first.count("-->") == 1, first
        # and the API's render, used by `symderiv check` and `regenerate`, is as safe
        assert render(d, path.suffix[1:], model_path.name).split("\n", 1)[1] == rest
    module = import_generated(out / "mlp.py", "hostile_name_mlp")
    assert module.PARAMS
    assert not (tmp_path / "PWNED").exists()


def test_check_on_a_hostile_file_name_runs_nothing(tmp_path):
    name = HOSTILE_FILE_NAMES[0]
    (tmp_path / name).write_text((EXAMPLES / "mlp.sdm").read_text(encoding="utf-8"), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "symderiv", "check", name], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("spelling, word", [
    (r"\immediate\write18{touch PWNED}", r"'\immediate'"),
    (r"\write18{touch PWNED}", r"'\write'"),
    (r"\input{/etc/passwd}", r"'\input'"),
    (r"\include{secret}", r"'\include'"),
    (r"\openin5=/etc/passwd", r"'\openin'"),
    (r"\def\W{x}", r"'\def'"),
    (r"\catcode`\$=11", r"'\catcode'"),
    (r"\csname input\endcsname{x}", r"'\csname'"),
    (r"\end{document}", r"'\end'"),
    (r"\usepackage{shellesc}", r"'\usepackage'"),
    (r"\href{javascript:alert(1)}{W}", r"'\href'"),
    (r"\htmlClass{x}{W}", r"'\htmlClass'"),
    (r"\directlua{os.execute('touch PWNED')}", r"'\directlua'"),
    (r"W$ \input{x} $", "'$'"),
    (r"W % the rest of the line is gone", "'%'"),
    (r"W}} \input{x} {{", "unmatched '}'"),
    (r"\mathbf{W", "unclosed '{'"),
    (r"<img src=x onerror=alert(1)>", "'<'"),
    (r"W \\ x", "line break"),
    (r"W & x", "'&'"),
    ("W\x0cx", "U+000C"),
    (r"\text{out}", r"'\text'"),  # it leaves math: in the Markdown page, where a link would be read
    (r"\{x\}", r"'\{'"),  # only control words are allowed, no control symbol
])
def test_latex_spelling_is_only_math(spelling, word):
    text = PRE + "h[t] = W @ x[t]\n" + LOSS + f'latex W "{spelling}"\n'
    with pytest.raises(ModelError) as info:
        symderiv.parse(text, "hostile.sdm")
    assert word in info.value.message and info.value.pos.line == 8, info.value.format()
    assert info.value.pos.col >= 10


@pytest.mark.parametrize("spelling", [r"\mathbf{W}^{(\mathrm{in})}", r"\tilde{\mathbf{c}}", r"\mathbf{y}^{*}",
                                      r"\boldsymbol{\Theta}_{[1]}", r"\hat{\mathbf{r}}", r"\mathrm{out}",
                                      r"\mathcal{W}"])
def test_ordinary_latex_spellings_are_fine(spelling):
    text = PRE + "h[t] = W @ x[t]\n" + LOSS + f'latex W "{spelling}"\n'
    assert symderiv.parse(text, "ok.sdm").latex_overrides["W"] == spelling
