"""Each pass of the code generator on its own: a small schedule or a few expressions in, the
statements or expressions out, checked for what they mean (which arrays, which terms, which
order of operations), not for how NumPy spells them."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

import symderiv
from symderiv.codegen.numpy import Backend, NumpyIdioms, NumpyPrinter
from symderiv.codegen.numpy.spelling import call, group
from symderiv.codegen.passes import (
    StackFacts,
    applied_counts,
    dead_after,
    find_stacks,
    hoistable_factors,
    in_place_order,
    in_place_step,
    inline_sliced_adjoints,
    references,
    shared_applications,
    slice_through,
    split_by_recurrence,
    split_concat_products,
    unused_by,
)
from symderiv.codegen.plan import ModulePlan
from symderiv.codegen.schedule import AssignAll, Code, Free, Line, Phase, Value, ValueTable, line, reads_of
from symderiv.ir.expr import Apply, At, ColSlice, Concat, Delta, RowSlice, add, hadamard, matmul, shift, sub

from .helpers import EXAMPLES, generated_module

n_h, n_x, n = sp.Symbol("n_h"), sp.Symbol("n_x"), sp.Symbol("n")
h, x, c, o = (MatrixSymbol(s, n_h if s != "x" else n_x, 1) for s in ("h", "x", "c", "o"))
W = MatrixSymbol("W", n_h, n_h + n_x)
U, V = MatrixSymbol("U", n_h, n_h), MatrixSymbol("V", n_h, n_x)
b = MatrixSymbol("b", n_h, 1)
ones = OneMatrix(n_h, 1)


# --- splitting W [h; x] ---------------------------------------------------------------------------


def test_a_product_with_a_stacked_vector_splits_into_one_product_per_block():
    z = Concat(At(h, -1), At(x, 0))
    split = split_concat_products(matmul(W, z), {})
    assert split == add(matmul(ColSlice(W, 0, n_h), At(h, -1)), matmul(ColSlice(W, n_h, n_h + n_x), At(x, 0)))
    # through a quantity defined as the concatenation, at its step
    zq = MatrixSymbol("z", n_h + n_x, 1)
    assert split_concat_products(matmul(W, At(zq, 1)), {"z": z}) == add(
        matmul(ColSlice(W, 0, n_h), At(h, 0)), matmul(ColSlice(W, n_h, n_h + n_x), At(x, 1)))


def test_rows_of_a_transposed_product_are_a_product_with_columns():
    d = At(Delta(MatrixSymbol("y", n_h, 1)), 1)
    assert slice_through(matmul(Transpose(W), d), 0, n_h) == matmul(Transpose(ColSlice(W, 0, n_h)), d)
    assert isinstance(slice_through(hadamard(At(h, 0), At(h, 0)), 0, 2), RowSlice)  # nothing to push into


def test_an_adjoint_read_only_by_its_rows_is_replaced_by_the_rows_of_its_closed_form():
    y, z = MatrixSymbol("y", n_h, 1), MatrixSymbol("z", n_h + n_x, 1)
    dz_closed = matmul(Transpose(W), At(Delta(y), 0))
    terms = {"z": [(0, dz_closed)],
             "h": [(0, At(Delta(y), 0)), (1, RowSlice(At(Delta(z), 1), 0, n_h))]}
    out, dropped = inline_sliced_adjoints(terms, lambda name: True)
    assert dropped == {"z"} and "z" not in out
    assert out["h"][1] == (1, matmul(Transpose(ColSlice(W, 0, n_h)), At(Delta(y), 1)))
    # read whole somewhere else: kept
    _, dropped = inline_sliced_adjoints({"z": [(0, dz_closed)], "h": [(0, RowSlice(At(Delta(z), 0), 0, n_h))]},
                                        lambda name: False)
    assert dropped == set()


# --- hoisting ------------------------------------------------------------------------------------


def test_the_part_of_a_sum_off_the_recurrence_is_split_off():
    terms = [matmul(V, At(x, 0)), matmul(U, At(h, -1)), b]
    outside, inside = split_by_recurrence(terms, {"h"})
    assert outside == [matmul(V, At(x, 0)), b] and inside == [matmul(U, At(h, -1))]


def test_forward_factors_of_a_loop_term_are_hoisted_and_a_single_array_is_not():
    dh = At(Delta(h), 0)
    tanh_c = Apply("tanh", At(c, 0))
    term = hadamard(dh, At(o, 0), sub(ones, hadamard(tanh_c, tanh_c)))
    coeff, values, adjoints = hoistable_factors(term)
    assert coeff == 1 and adjoints == [dh]
    assert set(values) == {At(o, 0), sub(ones, hadamard(tanh_c, tanh_c))}
    assert hoistable_factors(hadamard(dh, At(o, 0))) is None  # o_t is an array already
    assert hoistable_factors(matmul(Transpose(U), dh)) is None  # not a product of factors


def test_a_function_of_a_value_read_by_two_loop_terms_is_shared():
    dh, dc = At(Delta(h), 0), At(Delta(c), 1)
    tanh_c = Apply("tanh", At(c, 0))
    terms = [hadamard(dh, tanh_c), hadamard(dc, tanh_c, At(o, 0)), hadamard(dh, Apply("sigmoid", At(o, 0)))]
    counts = applied_counts(terms)
    assert counts == {("tanh", "c"): 2, ("sigmoid", "o"): 1}
    assert shared_applications(terms[0], counts) == [tanh_c]
    assert shared_applications(terms[2], counts) == []
    assert applied_counts([Apply("tanh", At(c, -1))]) == {}  # c_{t−1} would need the initial state


# --- in-place updates ----------------------------------------------------------------------------


def test_a_sum_starts_from_its_product_over_all_steps_then_adds_in_place():
    e = add(matmul(V, At(x, 0)), b, -At(h, 0))
    ops = in_place_order(e, fresh=lambda a: isinstance(a, MatMul), full=lambda a: True)
    assert ops == [("=", matmul(V, At(x, 0))), ("+=", b), ("-=", At(h, 0))]


def test_a_product_starts_from_a_factor_that_is_a_new_array_anyway():
    s = At(o, 0)
    e = hadamard(s, sub(ones, s))
    ops = in_place_order(e, fresh=lambda a: isinstance(a, MatAdd), full=lambda a: True)
    assert ops == [("=", sub(ones, s)), ("*=", s)]
    # no such factor: the first two factors, one of which has every step and example
    e3 = hadamard(At(h, 0), At(o, 0), At(c, 0))
    ops = in_place_order(e3, fresh=lambda a: False, full=lambda a: a == At(o, 0))
    assert ops == [("=*", At(o, 0), At(h, 0)), ("*=", At(c, 0))]
    assert in_place_order(matmul(V, At(x, 0)), lambda a: True, lambda a: True) is None
    assert in_place_order(add(At(h, 0), b), fresh=lambda a: False, full=lambda a: True) is None


def test_a_step_is_written_into_its_slot():
    z = At(MatrixSymbol("z", n_h, 1), 0)
    assert in_place_step(Apply("tanh", z), lambda f: True) == [("f", Apply("tanh", z))]
    assert in_place_step(Apply("tanh", z), lambda f: False) == [("=", Apply("tanh", z))]
    e = hadamard(At(o, 0), Apply("tanh", At(c, 0)))
    assert in_place_step(e, lambda f: True) == [("f", Apply("tanh", At(c, 0))), ("*=", At(o, 0))]
    assert in_place_step(e, lambda f: False) == [("*", *e.args)]
    e = add(matmul(U, At(h, -1)), -At(c, 0))
    assert in_place_step(e, lambda f: True) == [("=", matmul(U, At(h, -1))), ("-=", At(c, 0))]


# --- stacking ------------------------------------------------------------------------------------


def _gate_facts():
    params = {"U_a", "U_b", "U_c", "W_a", "W_b", "W_c"}

    def static_product(t):
        if isinstance(t, MatMul) and len(t.args) == 2 and isinstance(t.args[0], MatrixSymbol) \
                and t.args[0].name in params:
            return t.args[0], t.args[1]
        return None

    return StackFacts(static_product=static_product, key=lambda v, mode: str(v),
                      timed=lambda t: "x" in references(t), batched=lambda t: bool(references(t) & {"x", "h"}),
                      has_out=lambda e: True)


def test_gates_over_the_same_vectors_become_one_stack():
    mats = {k: MatrixSymbol(k, n_h, n_h if k[0] == "U" else n_x) for k in ("U_a", "U_b", "U_c", "W_a", "W_b", "W_c")}
    code_expr = {
        "y_a": add(matmul(mats["W_a"], At(x, 0)), matmul(mats["U_a"], At(h, -1)), b),
        "y_b": add(matmul(mats["U_b"], At(h, -1)), matmul(mats["W_b"], At(x, 0))),
        "y_c": add(matmul(mats["U_c"], At(h, -1)), matmul(mats["U_a"], At(c, 0))),  # another vector: alone
        "h": hadamard(At(MatrixSymbol("y_a", n_h, 1), 0), At(MatrixSymbol("y_b", n_h, 1), 0)),
    }
    seq = list(code_expr)
    stacks = find_stacks(seq, code_expr, set(seq), {q: 0 for q in seq}, {q: n_h for q in seq}, _gate_facts())
    assert len(stacks) == 1
    (stack,) = stacks
    assert stack.members == ["y_a", "y_b"] and stack.sizes == [n_h, n_h]
    assert stack.inside == [(At(h, -1), [mats["U_a"], mats["U_b"]], "_stack0_W")]
    assert stack.outside == [(At(x, 0), [mats["W_a"], mats["W_b"]])]
    assert stack.consts == [[b], []]


def test_a_single_gate_or_a_padded_quantity_is_not_stacked():
    U_a, U_b = MatrixSymbol("U_a", n_h, n_h), MatrixSymbol("U_b", n_h, n_h)
    code_expr = {"y_a": matmul(U_a, At(h, -1)), "y_b": matmul(U_b, At(h, -1))}
    seq = list(code_expr)
    facts = _gate_facts()
    assert find_stacks(seq, code_expr, {"y_a"}, {q: 0 for q in seq}, {q: n_h for q in seq}, facts) == []
    assert find_stacks(seq, code_expr, set(seq), {"y_a": 1, "y_b": 0}, {q: n_h for q in seq}, facts) == []


# --- frees ---------------------------------------------------------------------------------------


def test_what_the_statements_before_the_loop_leave_dead_is_freed_in_the_order_they_name_it():
    before = [AssignAll("δy", [Line("d_y = p - r", ("d_y",), ("p", "r"))]),
              AssignAll("δh, outside", [Line("d_h = d_y @ W", ("d_h",), ("d_y", "W"))]),
              AssignAll("∂L/∂W", [Line("g_W = _outer(d_y, h)", ("g_W",), ("d_y", "h"))])]
    later = {"d_h", "W", "h_other"}
    dead = dead_after(before, later, arrays={"d_y", "p", "r", "d_h", "h", "g_W"}, keep={"W", "g_W"})
    assert dead == ["d_y", "p", "r", "h"]


def test_a_stack_is_freed_once_none_of_its_views_is_read():
    assert unused_by(["a", "b", "h"], used={"h"}, groups=[("_s0", ["a", "b"]), ("_s1", ["a", "h"])]) == \
        ["a", "b", "_s0"]


def test_the_frees_of_a_real_model_come_from_the_statements():
    d = symderiv.derive(symderiv.load(EXAMPLES / "lstm_tagger.sdm"))
    plan = ModulePlan(d, lambda lhs, rhs, label=None: "", str)
    (free,) = [st for st in plan.backward.before if isinstance(st, Free)]
    later = Phase(loop=plan.backward.loop, after=plan.backward.after, alloc=plan.backward.alloc).names()
    freed = set(free.lines[0].writes)
    assert freed and not freed & later  # nothing the loop or after reads
    touched_before = {n for st in plan.backward.before if st is not free for n in st.names}
    assert freed <= touched_before
    # the forward arrays the backward pass never names are freed before it
    assert set(plan.unused_by_backward()).isdisjoint(plan.used_names([plan.backward]))
    assert "z_f" in plan.unused_by_backward()  # a pre-activation: its δ is the stacked one's view


# --- the value table and the statements ----------------------------------------------------------


def test_the_value_table_finds_a_value_at_a_later_step():
    taken = {"h": "h"}
    table = ValueTable(taken, reach=2)
    kept = Apply("tanh", add(matmul(U, At(h, -1)), matmul(V, At(x, 0))))
    table.add(Value(table.fresh("_tanh_in_c"), kept, "kept", per_step=True, lookup=True))
    value, k = table.find(shift(kept, 1), shift)
    assert (value.array, k) == ("_tanh_in_c", 1)
    assert table.find(shift(kept, -1), shift) is None  # t − 1: before the first step
    assert table.find(shift(kept, 3), shift) is None  # beyond the reach
    table.add(Value("_factor", hadamard(At(h, 0), At(o, 0)), "factor", per_step=True))
    assert table.find(hadamard(At(h, 0), At(o, 0)), shift) is None  # read only where its pass put it
    assert table.fresh("_tanh_in_c") == "_tanh_in_c_" and table.fresh("h") == "h_"
    assert [v.array for v in table.of_kind("kept", "factor")] == ["_tanh_in_c", "_factor"]


def test_a_line_reads_what_its_codes_read():
    class Code:
        reads = ("W", "x")

    ln = line("y = W @ x", ("y",), Code(), ("n_h",))
    assert ln.writes == ("y",) and ln.reads == ("W", "x", "n_h") and ln.names == ("y", "W", "x", "n_h")
    st = AssignAll("y", [ln, Line("y += b", ("y",), ("y", "b"))])
    assert st.writes == ("y",) and st.reads == ("W", "x", "n_h", "y", "b")


@pytest.mark.parametrize("name", ["seed_rnn", "mlp", "gru_regressor"])
def test_every_array_a_statement_reads_is_written_before(name):
    """Liveness is only as good as the reads and writes: in every generated module of the examples,
    what a statement reads is a parameter, an input, a size, or written by an earlier statement."""
    d = symderiv.derive(symderiv.load(EXAMPLES / f"{name}.sdm"))
    plan = ModulePlan(d, lambda lhs, rhs, label=None: "", str)
    m = d.model
    known = {plan.names.value(q.name) for q in list(m.params) + list(m.data)}
    known |= {plan.names.value(k) for k in m.dims} | {"B"}
    for phase in (plan.forward, plan.backward):
        for st in phase.before:
            for ln in st.lines:
                assert set(ln.reads) - set(ln.writes) <= known, (st.comment, ln.text)
                known |= set(ln.writes)
        known |= {n for ln in phase.alloc for n in ln.writes}
        for st in phase.loop + phase.after:
            for ln in st.lines:
                known |= set(ln.writes)  # the loop reads what it wrote at earlier steps
                assert set(ln.reads) <= known, (st.comment, ln.text)


# --- a second way of writing the same schedule ---------------------------------------------------


class FunctionalIdioms(NumpyIdioms):
    """Every update as a new value, as a back end without in-place updates (JAX) would write it:
    ``a = a + b`` for ``a += b``, ``slot = f(x)`` for ``f(x, out=slot)``."""

    def update(self, target, op, value, indent=0):
        if op != "=":
            value = Code(f"{target.text} {op[0]} {group(value.text)}", reads=reads_of(target, value))
        return super().update(target, "=", value, indent)

    def apply_into(self, fname, x, slot, params=()):
        return self.update(slot, "=", Code(call(fname, x.text, params)[0], reads=x.reads))

    def multiply_into(self, a, b, slot):
        return self.update(slot, "=", self.times(a, b))


def _structure(phase):
    return [(type(st).__name__, st.comment, set(st.writes), set(st.names)) for st in phase.statements()]


@pytest.mark.parametrize("name", ["lstm_tagger", "gru_regressor", "seed_rnn", "mlp"])
def test_the_schedule_is_the_same_however_its_statements_are_written(name, tmp_path):
    """The plan with other idioms: the same statements (kinds, what they write and touch), the
    same frees, and a module that computes the same loss and gradients."""
    import importlib.util

    from symderiv.codegen.numpy.emitter import context, loop_context
    from symderiv.render.emit import MARK, _environment

    d = symderiv.derive(symderiv.load(EXAMPLES / f"{name}.sdm"))
    quiet = (lambda lhs, rhs, label=None: "", str)
    default = ModulePlan(d, *quiet)
    functional = ModulePlan(d, *quiet, backend=Backend(NumpyPrinter, FunctionalIdioms))
    for a, b in ((default.forward, functional.forward), (default.backward, functional.backward)):
        assert _structure(a) == _structure(b)
    assert default.free_before_backward == functional.free_before_backward
    schedule = functional.schedule()
    text = _environment().get_template("module.py.j2").render(
        mark=MARK, version="0", source=f"{name}.sdm",
        **context(d, schedule, functional.printer) | loop_context(schedule))
    assert "+=" not in text.split("def _run")[1] and "out=" not in text.split("def _run")[1]
    path = tmp_path / f"functional_{name}.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = generated_module(d, tmp_path)
    dims = {k: 2 + i for i, k in enumerate(module.DIMS)}
    params = module.init_params(dims, seed=1)
    rng = np.random.default_rng(2)
    data = {}
    for q in d.model.data:
        shape = ((4,) if q.sequence else ()) + (() if q.is_scalar else (dims[str(q.shape[0])],)) + (3,)
        value = rng.random(shape) + 0.1
        data[q.name] = value / value.sum(axis=-2, keepdims=True) if q.distribution else value
    loss, grads = module.loss_and_gradients(params, **data)
    ref_loss, ref_grads = reference.loss_and_gradients(params, **data)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for k in ref_grads:
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)
