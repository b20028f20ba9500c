"""The registry of operations: the functions of MODEL_LANGUAGE.md version 2 that are one
record each (sqrt, abs, sin, cos, gelu, leaky_relu), the registry's completeness, unknown
nodes as internal errors, and a throwaway function registered at test time.

Answers are independent of the records' rules: ``certify`` differentiates the scalar network
with SymPy, the generated module is compared with central differences of its own loss, and
the functions' values with the standard library's math."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from sympy import MatrixSymbol, OneMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr
from sympy.printing.numpy import NumPyPrinter

import symderiv
import symderiv.ir.expr as ir
from symderiv import ModelError
from symderiv.ad.derive import _Sweep
from symderiv.ad.simplify import tidy
from symderiv.check import numcheck
from symderiv.check.certify import certify
from symderiv.check.evaluate import Evaluator, evaluate, positive_leaves, random_point
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import verify
from symderiv.ops import (
    ELEMENTWISE,
    FUNCTIONS,
    LANGUAGE,
    NODES,
    Elementwise,
    LanguageFunction,
    Node,
    node_record,
    register,
    unregister,
)
from symderiv.render.printing import latex, unicode

from .helpers import EXAMPLES

MODELS = sorted((Path(__file__).parent / "models").glob("*.sdm"))


def one_layer(body: str, loss: str = "squared_error(y, h)") -> str:
    return f"""model one_layer
dim n, k
input x: n
target y: k
param W: (k, n)
param b: k
{body}
loss L = {loss}
"""


#: Each new function in a one-layer network; sqrt's argument is positive by construction.
NEW = {
    "sqrt": "h = sqrt(exp(W @ x + b))",
    "abs": "h = abs(W @ x + b)",
    "sin": "h = sin(W @ x + b)",
    "cos": "h = cos(W @ x + b)",
    "gelu": "h = gelu(W @ x + b)",
    "leaky_relu": "h = leaky_relu(W @ x + b, 0.1)",
}


@pytest.fixture(params=sorted(NEW), ids=str)
def new_model(request, tmp_path):
    path = tmp_path / f"{request.param}.sdm"
    path.write_text(one_layer(NEW[request.param]))
    return request.param, symderiv.load(path)


def test_each_new_function_parses_from_a_model_file(new_model):
    fname, model = new_model
    # The activation is split from its pre-activation in the derivation; as written it is one node.
    node = model["h"].expr
    assert isinstance(node, ir.Apply) and node.fname == fname
    assert node.params == ((sp.Rational(1, 10),) if fname == "leaky_relu" else ())


def test_each_new_function_certifies(new_model):
    _, model = new_model
    result = certify(model)  # 40 digits against SymPy's own differentiation
    assert result.ok, result
    assert max(result.param_errors.values()) < 1e-30


def test_a_sqrt_of_an_arbitrary_sum_certifies_with_points_inside_its_domain():
    model = symderiv.parse(one_layer("h = sqrt(W @ x + b)"))
    assert positive_leaves(model) == {"W", "x", "b"}
    params, data = random_point(model, {"n": 3, "k": 2}, None)
    assert (params["W"] @ data["x"] + params["b"] > 0).all()
    assert certify(model).ok
    # log of an input directly, and of an intermediate product
    model = symderiv.parse(one_layer("z = W @ x\nh = log(z * z + b)"))
    assert positive_leaves(model) == {"W", "x", "b"}
    assert certify(model).ok


def test_models_without_a_restricted_domain_draw_what_they_always_drew():
    for path in sorted(EXAMPLES.glob("*.sdm")) + MODELS:
        model = symderiv.load(path)
        assert positive_leaves(model) == set(), path.name
        # and through the derivation's own model (pre-activations named), as probes use it
        assert positive_leaves(symderiv.derive(model).model) == set(), path.name


@pytest.mark.parametrize("fname", sorted(NEW))
def test_the_generated_module_matches_central_differences(fname, monkeypatch):
    d = symderiv.derive(symderiv.parse(one_layer(NEW[fname])))
    result = numcheck.finite_difference_check(d, {"n": 3, "k": 2}, None)
    assert result.ok, result.errors


REFERENCE = {
    "sqrt": math.sqrt,
    "abs": abs,
    "sin": math.sin,
    "cos": math.cos,
    "gelu": lambda z: z * 0.5 * (1 + math.erf(z / math.sqrt(2))),
    "leaky_relu": lambda z: z if z > 0 else 0.1 * z,
}


@pytest.mark.parametrize("fname", sorted(REFERENCE), ids=str)
@pytest.mark.parametrize("precision", [None, 30], ids=["float64", "mpmath"])
def test_the_evaluator_computes_each_function_as_the_standard_library(fname, precision):
    model = symderiv.parse(one_layer(NEW[fname]))
    d = symderiv.derive(model)
    params, data = random_point(model, {"n": 3, "k": 2}, None, seed=4)
    values = evaluate(d, {"n": 3, "k": 2}, None, params, data, precision=precision)
    # h = f(z_h), with z_h = W x + b (exp(W x + b) for sqrt)
    z = np.asarray(values.forward[d.preactivations["h"]], dtype=float).ravel()
    got = np.asarray(values.forward["h"], dtype=float).ravel()
    assert np.allclose(got, [REFERENCE[fname](v) for v in z], rtol=1e-14, atol=0)


SPELLINGS = {
    # function: (LaTeX of h = f(z_h), Unicode of it, the Unicode closed form of δz_h)
    "sqrt": (r"\sqrt{\mathbf{z}_h}", "√(z_h)", "1/2 ((h − y) ⊘ h)"),
    "abs": (r"\left|\mathbf{z}_h\right|", "|z_h|", "(h − y) ⊙ sign(z_h)"),
    "sin": (r"\sin\left(\mathbf{z}_h\right)", "sin(z_h)", "(h − y) ⊙ cos(z_h)"),
    "cos": (r"\cos\left(\mathbf{z}_h\right)", "cos(z_h)", "−(h − y) ⊙ sin(z_h)"),
    "gelu": (r"\operatorname{gelu}\left(\mathbf{z}_h\right)", "gelu(z_h)", "(h − y) ⊙ (Φ(z_h) + z_h ⊙ φ(z_h))"),
    "leaky_relu": (r"\operatorname{leaky\_relu}_{0.1}\left(\mathbf{z}_h\right)", "leaky_relu(z_h, 0.1)",
                   "(h − y) ⊙ (𝟙[z_h > 0] + 1/10 𝟙[z_h ≤ 0])"),
}


@pytest.mark.parametrize("fname", sorted(SPELLINGS), ids=str)
def test_latex_and_unicode_spellings(fname):
    d = symderiv.derive(symderiv.parse(one_layer(NEW[fname])))
    assert d.preactivations["h"] == "z_h"  # the pre-activation of h is z_h, whatever the target is called
    h = d.model["h"].expr
    want_latex, want_unicode, adjoint = SPELLINGS[fname]
    assert latex(d.model, h) == want_latex
    assert unicode(d.model, h) == want_unicode
    assert unicode(d.model, d.adjoint("z_h")) == adjoint


def test_the_rational_derivative_of_sqrt_is_written_through_its_output():
    d = symderiv.derive(symderiv.parse(one_layer("h = sqrt(exp(W @ x + b))")))
    # δa_h = ½ (h − y) ⊘ h: through h, not through a new square root of z_h
    closed = d.adjoint("z_h")
    assert not any(isinstance(n, ir.Apply) for n in sp.preorder_traversal(closed))
    assert MatrixSymbol("h", *d.model["h"].shape) in closed.atoms(MatrixSymbol)


# ---------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("body, col, words", [
    ("h = leaky_relu(W @ x + b)", 5, "leaky_relu() takes 2 arguments, got 1"),
    ("h = leaky_relu(W @ x + b, b)", 27, "the alpha of leaky_relu() must be a constant number, not b"),
    ("h = leaky_relu(W @ x + b, 0.1, 2)", 5, "takes 2 arguments, got 3"),
    ("h = sqrt(W @ x, b)", 5, "sqrt() takes 1 argument, got 2"),
    ("h = sin(W @ x, n)", 5, "sin() takes 1 argument, got 2"),  # version 2: sin(n) of a dim is a number
])
def test_a_parametrised_function_needs_a_constant(tmp_path, body, col, words):
    path = tmp_path / "bad.sdm"
    path.write_text(one_layer(body))
    with pytest.raises(ModelError) as info:
        symderiv.load(path)
    assert words in str(info.value)
    assert (info.value.pos.line, info.value.pos.col) == (7, col)


def test_the_cli_exits_with_status_2_for_a_non_constant_alpha(tmp_path, capsys):
    from symderiv.cli import main

    path = tmp_path / "bad.sdm"
    path.write_text(one_layer("h = leaky_relu(W @ x + b, W @ x)"))
    assert main(["derive", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "bad.sdm:7:27: error: the alpha of leaky_relu() must be a constant number" in capsys.readouterr().err


def test_a_function_of_a_number_is_a_number():
    model = symderiv.parse(one_layer("h = leaky_relu(-2, 0.5) * (W @ x + b) + sqrt(4) + cos(0)"))
    assert model["h"].expr == symderiv.parse(one_layer("h = -1 * (W @ x + b) + 3"))["h"].expr


# ---------------------------------------------------------------------------------------
# Claims


def test_claims_read_the_new_functions(tmp_path):
    d = symderiv.derive(symderiv.parse(one_layer("h = sin(W @ x + b)")))
    tex = tmp_path / "writeup.md"
    tex.write_text(r"$$\delta \mathbf{b} = \cos(\mathbf{W} \mathbf{x} + \mathbf{b}) \odot (\mathbf{h} - \mathbf{y})$$"
                   "\n\n"
                   r"$$\delta \mathbf{b} = \sin(\mathbf{W} \mathbf{x} + \mathbf{b}) \odot (\mathbf{h} - \mathbf{y})$$"
                   "\n")
    verdicts = [v.verdict for v in verify(d, read_claims(tex, d)).verdicts]
    assert verdicts[0] == "correct" and verdicts[1] != "correct"
    d = symderiv.derive(symderiv.parse(one_layer("h = leaky_relu(W @ x + b, 0.1)")))
    claims = tmp_path / "leaky.claims"
    claims.write_text("d(h) = leaky_relu(z_h, 0.1) - y\nd(h) = leaky_relu(z_h, 0.2) - y\n"
                      "d(h) = leaky_relu(z_h, -1/10) - y\nd(h) = leaky_relu(z_h) - y\n")
    verdicts = [(v.verdict, v.message) for v in verify(d, read_claims(claims, d)).verdicts]
    assert verdicts[0][0] == "correct"
    assert verdicts[1][0] != "correct" and verdicts[2][0] != "correct"
    assert "leaky_relu() takes 2 arguments" in (verdicts[3][1] or "")


def test_function_words_come_from_the_records():
    from symderiv.claims.latex.tokens import FUNCTION_COMMANDS, FUNCTION_WORDS

    assert FUNCTION_WORDS["ReLU"] == "relu" and FUNCTION_WORDS["logsoftmax"] == "log_softmax"
    assert FUNCTION_COMMANDS["sigma"] == "sigmoid" and FUNCTION_COMMANDS["ln"] == "log"
    assert FUNCTION_COMMANDS["sqrt"] == "sqrt" and FUNCTION_COMMANDS["cos"] == "cos"
    assert set(FUNCTION_WORDS.values()) | set(FUNCTION_COMMANDS.values()) <= set(ELEMENTWISE) | set(LANGUAGE)


# ---------------------------------------------------------------------------------------
# Completeness


def test_every_language_function_has_a_record():
    for name in FUNCTIONS:
        if name == "Sum":
            continue
        assert (name in ELEMENTWISE and ELEMENTWISE[name].public) or name in LANGUAGE, name
    for name in ("sqrt", "abs", "sin", "cos", "gelu", "leaky_relu"):  # MODEL_LANGUAGE.md version 2
        assert name in FUNCTIONS


def test_every_elementwise_meaning_is_printable_by_sympys_numpy_printer():
    # The NumPy back end prints a function without a hand-written spelling from its meaning.
    z = sp.Symbol("z", real=True)
    for record in ELEMENTWISE.values():
        meaning = record.scalar(z, *[sp.Rational(1, 10)] * len(record.params))
        text = NumPyPrinter({"strict": True}).doprint(meaning)
        assert "z" in text, record.name


def test_every_ir_node_class_has_a_record():
    classes = [ir.Delta, ir.At, ir.AtStep, ir.AtEnd, ir.Apply, ir.Softmax, ir.LogSoftmax, ir.Concat, ir.RowSlice,
               ir.ColSlice, ir.TimeSum, ir.Window, ir.Trace, ir.Det, ir.LogDet, ir.Norm2, ir.Inv, ir.Diag]
    concrete = {c for c in vars(ir).values() if isinstance(c, type) and issubclass(c, MatrixExpr)
                and c.__module__ == ir.__name__ and not c.__name__.startswith("_")}
    assert concrete == set(classes)
    assert set(classes) <= set(NODES)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.sdm")) + MODELS, ids=lambda p: p.stem)
def test_every_node_that_reaches_the_passes_has_a_record(path):
    d = symderiv.derive(symderiv.load(path))
    exprs = [q.expr for q in d.model.equations] + [a.closed for a in d.adjoints.values()] + [
        g.expr for g in d.gradients.values()]
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if getattr(node, "is_Matrix", False):
                assert type(node) in NODES, type(node).__name__


class Mystery(MatrixExpr):
    """A node no pass knows."""

    def __new__(cls, arg):
        return MatrixExpr.__new__(cls, arg)

    @property
    def shape(self):
        return self.args[0].shape


def test_an_unknown_node_is_an_error_in_every_pass():
    model = symderiv.load(EXAMPLES / "mlp.sdm")
    d = symderiv.derive(model)
    x = MatrixSymbol(model.data[0].name, *model.data[0].shape)
    with pytest.raises(TypeError, match="no operation record for the node Mystery"):
        node_record(Mystery(x))
    with pytest.raises(TypeError, match="Mystery"):
        tidy(ir.add(Mystery(x), x))
    with pytest.raises(TypeError, match="Mystery"):
        _Sweep(d.model).back(Mystery(x), OneMatrix(*x.shape), Mystery(x), False)
    dims = {k: 2 for k in model.dims}
    params, data = random_point(model, dims, None)
    ev = Evaluator(d, dims, None, params, data)
    with pytest.raises(TypeError, match="cannot evaluate Mystery"):
        ev.ev(ir.add(Mystery(x), x), None)


# ---------------------------------------------------------------------------------------
# A new elementwise function is one record.


def test_a_function_registered_at_test_time_parses_derives_certifies_and_prints(tmp_path):
    # softsign z / (1 + |z|): nothing but this record; its derivative is SymPy's.
    record = Elementwise("softsign", lambda z: z / (1 + sp.Abs(z)), r"\operatorname{softsign}", "softsign")
    path = tmp_path / "soft.sdm"
    path.write_text(one_layer("h = softsign(W @ x + b)"))
    with pytest.raises(ModelError, match="unknown function 'softsign'"):
        symderiv.load(path)
    register(record)
    try:
        model = symderiv.load(path)
        d = symderiv.derive(model)
        result = certify(model, d)
        assert result.ok, result
        assert max(result.param_errors.values()) < 1e-30
        assert unicode(d.model, d.model["h"].expr) == "softsign(z_h)"
        assert latex(d.model, d.model["h"].expr) == r"\operatorname{softsign}\left(\mathbf{z}_h\right)"
        # the generated module runs it too: the NumPy back end prints it from its meaning
        assert numcheck.finite_difference_check(d, {"n": 3, "k": 2}, None).ok
    finally:
        unregister(record)
    assert "softsign" not in ELEMENTWISE and "softsign" not in FUNCTIONS
    with pytest.raises(ModelError, match="unknown function 'softsign'"):
        symderiv.load(path)


class Reverse(MatrixExpr):
    """A throwaway structural node: the entries of a column vector in reverse order."""

    def __new__(cls, arg):
        return MatrixExpr.__new__(cls, arg)

    @property
    def arg(self):
        return self.args[0]

    @property
    def shape(self):
        return self.arg.shape


def test_a_structural_operation_registered_at_test_time_is_its_record(tmp_path):
    # reverse(v): its node record (rule, evaluation, meaning, spelling) and its language
    # record; the NumPy back end's spelling would be the one other file it needs.
    def build(ctx, call, args):
        ctx.need_vector(call.args[0], args[0], "reverse")
        return Reverse(args[0])

    node = Node(Reverse, "operation", vjp=lambda e, g, out: [Reverse(g)],
                evaluate=lambda ev, e, t: ev.ev(e.arg, t)[::-1],
                unroll=lambda net, e, step: net.entries(e.arg, step)[::-1, :],
                latex=r"\operatorname{reverse}", unicode="reverse")
    function = LanguageFunction("reverse", 1, build, Reverse)
    path = tmp_path / "rev.sdm"
    path.write_text(one_layer("z = W @ x + b\nh = tanh(reverse(z) * z)"))
    for record in (node, function):
        register(record)
    try:
        model = symderiv.load(path)
        d = symderiv.derive(model)
        result = certify(model, d)
        assert result.ok, result
        assert max(result.param_errors.values()) < 1e-30
        assert "reverse(" in unicode(d.model, d.adjoint("z"))
        assert latex(d.model, Reverse(MatrixSymbol("z", *model["z"].shape))) == \
            r"\operatorname{reverse}\left(\mathbf{z}\right)"
        bad = tmp_path / "bad.sdm"
        bad.write_text(one_layer("h = reverse(W)"))
        with pytest.raises(ModelError, match=r"reverse\(\) needs a column vector"):
            symderiv.load(bad)
    finally:
        for record in (node, function):
            unregister(record)
    assert Reverse not in NODES and "reverse" not in FUNCTIONS


@pytest.mark.parametrize("spelling", [
    r"\operatorname{sqrt}(\mathbf{z}_h)",
    r"\sqrt(\mathbf{z}_h)",
    r"\sqrt{\mathbf{z}_h}",
    r"\sqrt{\mathbf{z}_h \odot \mathbf{1}}",  # a braced argument of more than a name
])
def test_a_writeup_may_spell_sqrt(tmp_path, spelling):
    d = symderiv.derive(symderiv.parse(one_layer("h = sqrt(exp(W @ x + b))")))
    md = tmp_path / "writeup.md"
    md.write_text(rf"$$\delta \mathbf{{z}}_h = \frac{{1}}{{2}} (\mathbf{{h}} - \mathbf{{y}}) \oslash {spelling}$$"
                  "\n\n"
                  rf"$$\delta \mathbf{{z}}_h = (\mathbf{{h}} - \mathbf{{y}}) \oslash {spelling}$$" "\n")
    verdicts = [v.verdict for v in verify(d, read_claims(md, d)).verdicts]
    assert verdicts[0] == "correct" and verdicts[1] not in ("correct", "unreadable"), verdicts


def test_a_root_of_another_degree_is_unreadable_with_a_reason(tmp_path):
    d = symderiv.derive(symderiv.parse(one_layer("h = sqrt(exp(W @ x + b))")))
    md = tmp_path / "writeup.md"
    md.write_text(r"$$\delta \mathbf{z}_h = \frac{1}{2} (\mathbf{h} - \mathbf{y}) \oslash \sqrt[3]{\mathbf{z}_h}$$"
                  "\n")
    (v,) = verify(d, read_claims(md, d)).verdicts
    assert v.verdict == "unreadable" and "a root of another degree" in v.message, (v.verdict, v.message)


@pytest.mark.parametrize("fname", sorted(n for n, r in ELEMENTWISE.items() if r.derivative is not None), ids=str)
def test_a_declared_derivative_is_the_derivative_of_the_meaning(fname):
    """A record may state f' instead of leaving it to SymPy (for speed, or for a form SymPy would
    not find); it must be d/dz of the record's meaning, checked at points of the domain."""
    record = ELEMENTWISE[fname]
    z = sp.Symbol("z", real=True)
    params = [sp.Rational(1, 10)] * len(record.params)
    truth = sp.diff(record.scalar(z, *params), z)
    declared = record.derivative(z, *params)
    helpers = {"step": lambda x: sp.Heaviside(x), "step_nonpositive": lambda x: sp.Heaviside(-x),
               "sign": sp.sign, "normal_cdf": lambda x: (1 + sp.erf(x / sp.sqrt(2))) / 2,
               "normal_pdf": lambda x: sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)}
    # a helper by its meaning above; another record (softplus' is σ) by its own meaning
    declared = declared.replace(lambda e: isinstance(e, sp.core.function.AppliedUndef),
                                lambda e: helpers.get(e.func.__name__, ELEMENTWISE[e.func.__name__].scalar)(*e.args))
    for x in (sp.Rational(7, 3), sp.Rational(1, 5), sp.Rational(-9, 4)):
        if record.domain == "positive" and x <= 0:
            continue
        assert abs(sp.N(truth.subs(z, x) - declared.subs(z, x), 30)) < 1e-25, (fname, x)
