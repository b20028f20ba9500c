"""The command line: ``symderiv derive | show | check | verify``."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import unicodedata

from .errors import SymderivError

FORMATS = ("tex", "md", "py")  # the default of `derive --format`; `all` is every format (render.emit.formats)


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint at what to type after its own message (a misspelt command)."""

    def error(self, message: str):
        from .frontend.statements import nearest  # the model language's own "did you mean"

        hint = "run 'symderiv --help' for the commands, or 'symderiv COMMAND --help' for one command"
        if "invalid choice" in message:
            bad = message.split("'")[1] if "'" in message else ""
            close = nearest(bad, COMMANDS)
            if close is not None:
                hint = f"did you mean 'symderiv {close}'? " + hint
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n{hint}\n")


COMMANDS = ("derive", "show", "check", "verify")
_EXAMPLES = {
    "derive": "examples:\n  symderiv derive examples/seed_rnn.sdm -o out\n"
              "  symderiv derive examples/mlp.sdm --format md,py -o out\n"
              "  symderiv derive examples/seed_rnn.sdm --format torch -o out",
    "show": "example:\n  symderiv show examples/seed_rnn.sdm",
    "check": "examples:\n  symderiv check examples/seed_rnn.sdm\n"
             "  symderiv check examples/seed_rnn.sdm --backend torch",
    "verify": "examples:\n  symderiv verify examples/seed_rnn.sdm my_derivation.tex\n"
              "  symderiv verify examples/seed_rnn.sdm my_claims.claims --json\n"
              "  symderiv verify examples/seed_rnn.sdm submissions/ --report grades.csv\n"
              "  symderiv verify examples/seed_rnn.sdm submissions/ --report out --report-format gradescope",
}


def _parser(command_name: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser.  ``command_name``: the command about to be parsed; ``verify`` alone
    leaves out the code generator's and the renderer's registries, which only ``derive`` and
    ``check`` read (a class graded one process a student starts that much faster)."""
    from . import __version__
    p = _Parser(prog="symderiv", description="Symbolic gradients of neural networks, in closed form.",
                epilog="example:\n  symderiv derive examples/seed_rnn.sdm -o out\n\n"
                       "'symderiv COMMAND --help' describes one command.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"symderiv {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              epilog=_EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter)

    if command_name == "verify":
        backends, known = ["numpy"], list(FORMATS)  # (not parsed: the derive and check options unused)
    else:
        from .codegen.backends import BACKENDS
        from .render.emit import formats
        backends, known = [b.name for b in BACKENDS.values()], list(formats())
    d = command("derive", "derive every gradient and write the LaTeX, Markdown and NumPy files")
    d.add_argument("model", help="the model file (.sdm)")
    d.add_argument("-o", "--output", default=".", help="output directory (default: .)")
    d.add_argument("--format", default=",".join(FORMATS),
                   help=f"comma-separated subset of {','.join(known)}, or all "
                        f"(default: {','.join(FORMATS)})")
    d.add_argument("--force", action="store_true", help="overwrite files that symderiv did not write")
    s = command("show", "print the forward equations and the closed-form gradients")
    s.add_argument("model", help="the model file (.sdm)")
    c = command("check", "check the gradients numerically and against SymPy's own differentiation")
    c.add_argument("model", help="the model file (.sdm)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random point compared at (default: 0)")
    c.add_argument("--backend", default="numpy", choices=backends,
                   help="which generated module to check numerically (default: numpy)")
    v = command("verify", "check a hand derivation (.claims, .tex, .md, .txt, .ipynb, .html) claim by claim")
    v.add_argument("model", help="the model file (.sdm) of the exercise")
    v.add_argument("claims", nargs="+", help="the hand derivation: a claims file, a write-up (LaTeX, Markdown, "
                                             "a notebook, an HTML page), or - for standard input; several files "
                                             "or directories judge a whole class")
    v.add_argument("--json", action="store_true", help="print the verdicts as one JSON object")
    v.add_argument("--strict", action="store_true",
                   help="also fail when no claim was found, or an equation was skipped as no claim")
    v.add_argument("--report", metavar="PATH", help="write the results of every submission to PATH (a CSV of "
                                                     "counts, or Gradescope results)")
    v.add_argument("--report-format", choices=("csv", "gradescope"), default="csv",
                   help="csv (default): one row a submission; gradescope: results.json (a directory of "
                        "SUBMISSION/results.json for several submissions)")
    v.add_argument("--jobs", type=int, default=None, help="processes judging a class (default: the CPU count)")
    return p


def terminal_safe(text: str) -> str:
    """``text`` with every control character but newline and tab written as a ``\\u`` escape:
    a model file or a claim can hold ``ESC ]0;…`` or ``ESC [2J``, which a terminal would obey
    (retitle, clear the screen) if echoed raw."""
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else f"\\u{ord(ch):04x}" for ch in text)


class _SafeStream:
    """A text stream whose writes go through ``terminal_safe``."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(terminal_safe(text))

    @property
    def raw(self):
        """The stream itself, for symderiv's own control characters (a progress bar's ``\\r``)."""
        return self._stream

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status (0, 1, 2, 130 on ^C)."""
    for stream in (sys.stdout, sys.stderr):
        # A terminal or pipe that cannot encode a character (PYTHONIOENCODING=ascii) gets
        # ``\u`` escapes instead of a UnicodeEncodeError.
        if isinstance(stream, io.TextIOWrapper):  # not a replacement such as pytest's capture
            with contextlib.suppress(ValueError):
                stream.reconfigure(errors="backslashreplace")
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _SafeStream(out), _SafeStream(err)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("symderiv: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = _parser(next((a for a in given if not a.startswith("-")), None)).parse_args(given)
    try:
        return {"derive": _derive, "show": _show, "check": _check, "verify": _verify}[args.command](args)
    except SymderivError as err:
        print(err.format(), file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{args.model}: error: the model is nested too deeply to process", file=sys.stderr)
        return 2
    except NotImplementedError as err:  # a valid model that the code generator or a printer cannot handle
        print(f"{args.model}: error: symderiv cannot produce this output for this model: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`symderiv show M | head -1`): stop quietly
        try:  # and keep Python from complaining when it flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except OSError as err:  # a file or directory that failed outside symderiv's own checks
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


def _load(path: str):
    from . import derive, load
    model = load(path)
    return model, derive(model)


def _show(args) -> int:
    from .render.report import show_text
    _, d = _load(args.model)
    sys.stdout.write(show_text(d))
    return 0


def _derive(args) -> int:
    from .render.emit import formats as known
    from .render.emit import formats_for, write_outputs
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    formats = list(dict.fromkeys(g for f in formats for g in (known() if f == "all" else (f,))))
    unknown = [f for f in formats if f not in known()]
    if unknown or not formats:
        raise SymderivError(f"unknown format {', '.join(unknown) or '(none)'}; "
                            f"choose from {', '.join(known())}, or all")
    _, d = _load(args.model)
    notes: list[str] = []
    if "all" in args.format.split(","):  # every format this model can be written in; the others said
        formats, notes = formats_for(d, formats)
    written = write_outputs(d, args.output, formats, force=args.force)
    print(f"{d.model.name}: {len(d.gradients)} gradients derived in {d.seconds:.2f} s")
    for path in written:
        print(f"  wrote {path}")
    for note in notes:
        print(f"  ({note})")
    return 0


def _check(args) -> int:
    import importlib.util

    from .check.certify import DEFAULT_T, TooLargeToCertify, certify, default_dims
    from .check.numcheck import finite_difference_check
    from .codegen.backends import by_name
    from .ops.numeric import ExactOverflow
    package = by_name(args.backend).package
    if importlib.util.find_spec(package) is None:  # whether it is installed, without importing it
        raise SymderivError(f"checking the {args.backend} module needs {package}, which is not installed: "
                            f"pip install 'symderiv[{package}]'")
    model, d = _load(args.model)
    try:
        exact = certify(model, d, seed=args.seed)
    except ExactOverflow as exc:
        print(f"{model.name}: cannot check the gradients: at the point drawn, {exc}; the model's values overflow "
              "any arithmetic (nested exponentials?)")
        return 1
    except TooLargeToCertify as exc:
        dims = default_dims(model)
        T = DEFAULT_T if model.has_time else None
        numeric = finite_difference_check(d, dims, T, seed=args.seed, backend=args.backend)
        print(f"{model.name}: the exact check is skipped: {exc}")
        for problem in numeric.problems:
            print(f"  disagreement: {problem}")
        print("the generated module agrees with central differences; the closed forms are not certified"
              if numeric.ok else "DISAGREEMENT: some gradients are wrong")
        return 0 if numeric.ok else 1
    numeric = finite_difference_check(d, exact.dims, exact.T, seed=args.seed, backend=args.backend)
    sizes = ", ".join(f"{k}={v}" for k, v in exact.dims.items()) + (f", T={exact.T}" if exact.T else "")
    print(f"{model.name}: gradients checked at {sizes}")
    which = {"numpy": "NumPy", "torch": "PyTorch", "jax": "JAX"}.get(args.backend, args.backend)
    print(f"  {'parameter':<16} {'closed form vs SymPy (40 digits)':>34} {which + ' vs central differences':>30}")
    for name, err in exact.param_errors.items():
        print(f"  {name:<16} {err:>34.2e} {numeric.errors[name]:>30.2e}")
    for problem in numeric.problems:
        print(f"  disagreement: {problem}")
    ok = exact.ok and numeric.ok
    print("all agree" if ok else "DISAGREEMENT: some gradients are wrong")
    return 0 if ok else 1


def _verify(args) -> int:
    from .claims.reading import STDIN, read_claims
    from .claims.verify import verify
    if args.report is None and len(args.claims) == 1 and (args.claims[0] == STDIN or not os.path.isdir(args.claims[0])):
        _, d = _load(args.model)
        report = verify(d, read_claims(args.claims[0], d))
        sys.stdout.write(report.json() + "\n" if args.json else report.text())
        failed = not report.all_correct or (args.strict and (not report.verdicts or report.skipped > 0))
        return 1 if failed else 0
    return _verify_class(args)


def _verify_class(args) -> int:
    """Several submissions: judged in parallel, a line each (or --json), and the --report."""
    import json

    from .claims import grading
    if args.jobs is not None and args.jobs < 1:
        raise SymderivError("--jobs must be at least 1")
    if "-" in args.claims:
        raise SymderivError("standard input (-) is one write-up; it cannot be judged with other submissions")
    _, d = _load(args.model)  # a bad model is one error, before any process starts; derived once
    files, ignored = grading.collect(args.claims)
    empty = [f for f in files if os.path.isdir(f)]
    if empty and args.report is None:  # (with a report, such a folder is a row that says so)
        raise SymderivError(f"{empty[0]}: {grading.no_writeup(empty[0])}")
    if args.report is not None:
        grading.check_report_path(args.report, args.report_format, len(files))
    if ignored:
        shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        print(f"not judged ({len(ignored)} {'file is' if len(ignored) == 1 else 'files are'} not a write-up: "
              f"{', '.join(sorted(grading.FORMATS))}): {shown}", file=sys.stderr)
    # the bar's own \r and erase-line must reach the terminal (it quotes nothing of the files)
    results = grading.grade(args.model, files, args.jobs, progress=getattr(sys.stderr, "raw", sys.stderr),
                            derivation=d)
    if args.json:
        sys.stdout.write(json.dumps({"submissions": [{"submission": g.submission, "error": g.error, **(g.report or {})}
                                                     for g in results]}, indent=2, ensure_ascii=False) + "\n")
    else:
        for g in results:
            counts = ", ".join(f"{n} {v}" for v, n in g.counts().items())
            claims = f"{len(g.claims)} claim{'' if len(g.claims) == 1 else 's'}"
            sys.stdout.write(f"{g.submission}: " + (f"error: {g.error}" if g.error else f"{claims}: {counts}") + "\n")
    if args.report is not None:
        for path in grading.write_report(results, args.report, args.report_format):
            print(f"  wrote {path}", file=sys.stderr)
    return grading.exit_status(results, args.strict)
