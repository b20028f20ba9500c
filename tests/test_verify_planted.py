"""``symderiv verify`` on write-ups with planted mistakes, for four architectures, each in
the three forms a derivation comes in (LaTeX, Markdown, a claims file).  Every claim's
verdict and diagnosis is asserted; together the write-ups of each form cover every
diagnosis code.  And everything symderiv writes itself verifies as correct."""

from functools import cache

import pytest

import symderiv
from symderiv.claims.reading import read_claims
from symderiv.claims.verify import CODES, verify
from symderiv.render.emit import write_outputs

from .helpers import EXAMPLES, ROOT

MODELS = ROOT / "tests" / "models"
PLANTED = ROOT / "tests" / "data" / "planted"
FORMATS = ("tex", "md", "claims")

C, P, U = "correct", "per-step", "unreadable"


def wrong(*codes):
    return ("incorrect", list(codes))


#: model → the claims of its write-ups in order: (target, verdict or (verdict, diagnosis)).
#: One list for the three forms, except where a form says something else (keyed by form).
EXPECTED = {
    "lstm": [
        ("h[t]", {"tex": C, "md": C, "claims": wrong("missing-recurrent-term")}),
        ("c[t]", wrong("missing-recurrent-term")),  # δc_{t+1} ⊙ f_{t+1} left out
        ("o[t]", C),
        ("a_o[t]", wrong("missing-activation-derivative")),  # δu_t ≜ ∂L/∂(W_o z_t + b_o) = δh_t ⊙ tanh(c_t)
        ("f[t]", wrong("wrong-factor")),  # c_t for c_{t-1}
        ("i[t]", C),
        ("a_i[t]", C),
        ("W_i", wrong("transpose")),  # Σ_t z_t δs_tᵀ
        ("W_f", C),
        ("b_y", P),
        ("c[t]", U),  # Σ_{k=t}^{T}
    ],
    "gru": [
        ("p[t]", wrong("sign")),
        ("a_n[t]", C),  # δs_t ≜ ∂L/∂(W_n x_t + U_n (r_t ⊙ h_{t-1}) + b_n)
        ("z[t]", wrong("extra-term")),
        ("r[t]", wrong("transpose")),  # U_n is square: only the values show it
        ("n[t]", wrong("shape")),  # x_t ⊙ δh_t: sizes n_x and n_h
        ("b_n", P),
        ("W_n", C),
        ("U_n[i, j]", P),
        ("", {"claims": U}),  # an unknown name
    ],
    "mlp_relu": [
        ("y_hat", wrong("wrong-factor")),  # 2 (ŷ − y)
        ("h", wrong("transpose")),
        ("b1", wrong("missing-activation-derivative")),  # 𝟙[W1 x + b1 > 0] left out
        ("W1", C),
        ("W2", wrong("transpose")),
        ("b2", wrong("extra-term")),
        ({"tex": "b1", "md": "b1", "claims": "W1[i, j]"}, C),
        ({"md": "b1", "claims": "b1"}, U),
    ],
    "context_rnn": [
        ("p", C),
        ("pooled", C),
        ("z_h[t]", C),  # δg_t ≜ ∂L/∂(W x_t + V h_{t-1} + ctx + b)
        ("ctx", wrong("missing-sum-over-time")),
        ("W_m", wrong("missing-sum-over-time")),
        ("V", C),
    ],
}


def expected_for(model: str, form: str) -> list[tuple[str, str, list]]:
    out = []
    for target, verdict in EXPECTED[model]:
        if isinstance(target, dict):
            if form not in target:
                continue
            target = target[form]
        if isinstance(verdict, dict):
            if form not in verdict:
                continue
            verdict = verdict[form]
        verdict, diagnosis = verdict if isinstance(verdict, tuple) else (verdict, [])
        out.append((target, verdict, diagnosis))
    return out


@cache
def derivation(model: str):
    return symderiv.derive(symderiv.load(MODELS / f"{model}.sdm"))


@cache
def report(model: str, form: str):
    d = derivation(model)
    return verify(d, read_claims(PLANTED / f"{model}.{form}", d))


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_every_claim_gets_its_verdict_and_diagnosis(model, form):
    got = [(v.target, v.verdict, v.diagnosis) for v in report(model, form).verdicts]
    assert got == expected_for(model, form)


@pytest.mark.parametrize("form", FORMATS)
def test_each_form_covers_every_diagnosis_code(form):
    seen = {code for model in EXPECTED for v in report(model, form).verdicts for code in v.diagnosis}
    assert seen == set(CODES)


def first_by_target(verdicts) -> dict:
    return {v.target: v for v in reversed(verdicts)}


@pytest.mark.parametrize("form", FORMATS)
def test_messages_say_what_to_change(form):
    by_target = first_by_target(report("gru", form).verdicts)
    assert "sign" in by_target["p[t]"].message
    assert r"\mathbf{U}_n" in by_target["r[t]"].message and "transpose" in by_target["r[t]"].message
    assert r"\delta \mathbf{h}_t \odot \mathbf{z}_t" in by_target["z[t]"].message  # the extra term, named
    assert "n_x" in by_target["n[t]"].message and "n_h" in by_target["n[t]"].message
    lstm = first_by_target(report("lstm", form).verdicts)
    assert r"\mathbf{c}_{t-1}" in lstm["f[t]"].message.replace("{\\mathbf{c}}", "\\mathbf{c}")
    assert r"\mathbf{o}_t \odot \left(\mathbf{1} - \mathbf{o}_t\right)" in lstm["a_o[t]"].message
    mlp = first_by_target(report("mlp_relu", form).verdicts)
    assert "2 times" in mlp["y_hat"].message
    # ReLU's derivative is written with the write-up's names, not symderiv's pre-activation z_h.
    assert "z_h" not in mlp["b1"].message and r"\mathbb{I}" in mlp["b1"].message


@pytest.mark.parametrize("form", ["tex", "md"])
def test_definitions_name_intermediates_in_the_writeups_own_notation(form):
    gru = first_by_target(report("gru", form).verdicts)
    assert gru["b_n"].expected == r"\sum_{t=1}^{T} \delta \mathbf{s}_t"  # δs_t, as the write-up named it
    lstm = first_by_target(report("lstm", form).verdicts)
    assert lstm["a_o[t]"].expected.startswith(r"\delta \mathbf{h}_t \odot \tanh")
    assert r"\mathbf{c}_{t+1}" in lstm["c[t]"].expected  # lstm's c, spelled as the write-up does


def test_unreadable_claims_say_where_and_why():
    lstm = report("lstm", "tex").verdicts[-1]
    assert lstm.verdict == U and lstm.message.startswith(f"line {lstm.line}, column ")
    assert "sum over" in lstm.message
    gru = report("gru", "claims").verdicts[-1]
    assert gru.message.startswith(f"{PLANTED / 'gru.claims'}:{gru.line}:3: unknown name 'q'")


@pytest.mark.parametrize("path", [MODELS / "lstm.sdm", MODELS / "gru.sdm", MODELS / "mlp_relu.sdm",
                                  MODELS / "context_rnn.sdm", EXAMPLES / "seed_rnn.sdm"],
                         ids=lambda p: p.stem)
def test_what_symderiv_writes_verifies_as_correct(path, tmp_path):
    d = symderiv.derive(symderiv.load(path))
    written = write_outputs(d, tmp_path, ["tex", "md"])
    for doc in written:
        result = verify(d, read_claims(doc, d))
        assert len(result.verdicts) >= len(d.gradients)
        assert result.all_correct, [(v.line, v.text, v.verdict, v.message) for v in result.verdicts
                                    if v.verdict != "correct"]


#: (claim of δw for tests/data/matrices/mean_ridge.sdm, diagnosis, what the message says); the
#: true value, by hand, is Xᵀ (X w − y) / N + 2 λ w.
TERM_FACTORS = [
    ("X.T @ r / N + lam * w", ["wrong-factor"], "needs a factor 2"),  # the 2 of ∂(λ wᵀw)/∂w dropped
    ("X.T @ r / N + 4 * lam * w", ["wrong-factor"], "needs a factor 1/2"),
    ("X.T @ r + 2 * lam * w", ["wrong-factor"], "needs a factor 1/N"),  # the mean's 1/N dropped
    ("X.T @ r / (2 * N) + 2 * lam * w", ["wrong-factor"], "needs a factor 2"),
    ("-X.T @ r / N - lam * w", ["sign", "wrong-factor"], "needs a factor 2"),
    ("2 * X.T @ r / N + 4 * lam * w", ["wrong-factor"], "It is 2 times the true value"),
]


@pytest.mark.parametrize(("claim", "diagnosis", "says"), TERM_FACTORS)
def test_one_term_off_by_a_factor_is_a_wrong_factor(tmp_path, claim, diagnosis, says):
    d = symderiv.derive(symderiv.load(ROOT / "tests" / "data" / "matrices" / "mean_ridge.sdm"))
    path = tmp_path / "mine.claims"
    path.write_text(f"d(w) = {claim}\n")
    (v,) = verify(d, read_claims(path, d)).verdicts
    assert (v.verdict, v.diagnosis) == ("incorrect", diagnosis) and says in v.message, v.message


def test_a_penalty_without_its_factor_in_a_write_up(tmp_path):
    # linear_regression: L = ½ ‖X w − y‖² + λ/2 ‖w‖², so ∂L/∂w = Xᵀ (X w − y) + λ w, and 2 λ w has a 2 too many
    d = symderiv.derive(symderiv.load(EXAMPLES / "linear_regression.sdm"))
    path = tmp_path / "mine.md"
    path.write_text("$$\\frac{\\partial L}{\\partial \\mathbf{w}} = \\mathbf{X}^\\top (\\mathbf{X} \\mathbf{w} - "
                    "\\mathbf{y}) + 2 \\lambda \\mathbf{w}$$\n\n"
                    "$$\\frac{\\partial L}{\\partial \\mathbf{w}} = \\mathbf{X}^\\top (\\mathbf{X} \\mathbf{w} - "
                    "\\mathbf{y}) + \\lambda \\mathbf{w}$$\n")
    wrong, right = verify(d, read_claims(path, d)).verdicts
    assert (wrong.verdict, wrong.diagnosis) == ("incorrect", ["wrong-factor"]) and "needs a factor 1/2" in wrong.message
    assert right.verdict == "correct"
