"""The NumPy printer and the plan of the generated module.

Layout of values in the generated code (row convention, the batch in front):

- a per-example vector of size n is a row of a ``(B, n)`` array; a per-example scalar is
  ``(B, 1)``; a sequence stacks the steps in front, ``(T, B, n)``, padded in front by its
  lag so that ``h[t-1]`` is ``h[i + P - 1]``;
- a parameter keeps its shape; a vector parameter is 1-D ``(n,)``, a scalar ``(1,)``.

So ``W x`` is ``x @ W.T`` for one step and ``_matvec(W, x)`` for all steps at once (one
matrix product over all T·B rows).  The plan computes everything that does not feed the
recurrence for all steps at once, before or after the time loop; only the recurrence
itself loops over t.  Parameter gradients are one product over all steps and examples
(Σ_t δ_t h_tᵀ = Δᵀ H).
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field, replace

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix
from sympy.printing.printer import Printer

from ..ad.derive import Derivation
from ..ir.expr import (
    Apply,
    At,
    AtStep,
    ColSlice,
    Concat,
    Delta,
    RowSlice,
    Softmax,
    TimeSum,
    add,
    coeff_and_rest,
    hadamard,
    matmul,
    scale,
    shift,
)
from ..ops import ELEMENTWISE
from .numpy.spelling import call, call_out, has_out
from .schedule import Accumulate, AssignAll, AssignStep, Free, Line, Phase, Value, ValueTable, line

RESERVED = set(keyword.kwlist) | {
    # what the generated module itself defines or uses
    "np", "params", "data", "grads", "out", "i", "T", "B", "lr", "dims", "seed", "rng", "dtype", "loss", "values",
    "want",
    "forward", "gradients", "sgd_step", "init_params", "loss_and_gradients",
    "v", "a", "k", "e", "s", "z", "x", "p", "width", "parts", "lead",
    # builtins it calls
    "range", "sum", "float", "dict", "len", "max", "min", "abs", "tuple", "int", "str", "zip", "list", "reversed",
}


@dataclass
class Names:
    """Python identifiers for the model's names, avoiding what the module itself uses.

    A value keeps the model's name where it can (``h``, ``W_in``); its adjoint is ``d_`` and
    its gradient ``g_`` in front, unless the model itself uses that name.
    """

    table: dict[str, str]
    adjoints: dict[str, str]
    grads: dict[str, str]

    @classmethod
    def for_model(cls, d: Derivation) -> Names:
        used = set(RESERVED)

        def fresh(py: str) -> str:
            if py.startswith("_"):  # the module's own helpers and temporaries start with "_"
                py = "v" + py
            while py in used:
                py = py + "_"
            used.add(py)
            return py

        names = list(d.model.quantities) + list(d.model.dims)
        table = {name: fresh(name) for name in names}
        adjoints = {name: fresh("d_" + table[name]) for name in d.model.quantities}
        grads = {name: fresh("g_" + table[name]) for name in d.model.quantities}
        return cls(table, adjoints, grads)

    def value(self, name: str) -> str:
        return self.table[name]

    def adjoint(self, name: str) -> str:
        return self.adjoints[name]

    def grad(self, name: str) -> str:
        return self.grads[name]


def group(code: str) -> str:
    """``code`` as one operand: parenthesised unless it already is one (a name, an index, a call, a group)."""
    depth = 0
    for ch in code:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch == " ":
            return f"({code})"
    return code


@dataclass(frozen=True)
class Code:
    """Printed NumPy code and what its value carries in front of the per-example core."""

    text: str
    batched: bool = False  # a batch axis
    timed: bool = False  # a time axis (all steps at once)
    summed: bool = False  # already summed over steps and examples (an outer product in a gradient)
    # The arrays and sizes the code reads, each once, in the order the code names them: what the
    # statements built from it read (their liveness), known from the printed nodes, not from the text.
    reads: tuple[str, ...] = ()
    # "array": only names an array; "view": an array at a step or a slice of one; "expr": computes a new one.
    form: str = "expr"

    def __str__(self) -> str:
        return self.text


def _join(text: str, *parts: Code, order=None) -> Code:
    """Code made of ``parts``; it reads what they read (``order``: the codes it names, in order, if not ``parts``)."""
    return Code(text, any(p.batched for p in parts), any(p.timed for p in parts), any(p.summed for p in parts),
                _reads(*(parts if order is None else order)))


def _reads(*parts) -> tuple[str, ...]:
    """The names read by ``parts`` (codes, or tuples of names), each once, in order."""
    return tuple(dict.fromkeys(n for p in parts for n in (p.reads if isinstance(p, Code) else p)))


class NumpyPrinter(Printer):
    """Prints one expression as NumPy code.

    Mode ``static``: outside the time loop; ``step``: inside it, at loop index ``i``;
    ``time``: all steps at once, over the window of steps t with t + ``window`` <= T (a term
    that reads δ at t + k is computed for the first T - k steps only).
    """

    printmethod = "_numpy_print"

    def __init__(self, d: Derivation, names: Names, pads: dict[str, int], batched: set[str], values: ValueTable):
        super().__init__()
        self.d, self.model, self.names, self.pads, self.batched_names = d, d.model, names, pads, batched
        self.values = values  # the schedule's: read here, never written
        self.mode, self.window = "static", 0
        self.helpers: set[str] = set()  # runtime helpers of the module the printed code calls (_erf)

    def _print(self, expr, **kwargs):
        found = self.values.find(expr, shift)
        if found is not None:  # computed once already: read its array
            value, k = found
            if value.per_step:
                return self.at(value.array, value.array, k, False)
            return Code(value.array, value.batched, value.timed, value.summed, (value.array,), "array")
        return super()._print(expr, **kwargs)

    def _array(self, name: str) -> str:
        """The array of a model value, or one of the code's own (a value in the table)."""
        return name if name in self.values.arrays else self.names.value(name)

    def code(self, e, mode: str = "static", window: int = 0) -> Code:
        saved = self.mode, self.window
        self.mode, self.window = mode, window
        try:
            return self._print(e)
        finally:
            self.mode, self.window = saved

    # --- sizes and leaves ---------------------------------------------------------------

    def size(self, e) -> str:
        e = sp.sympify(e, strict=True)
        if e.is_Integer:
            return str(e)
        return " + ".join(self._size_term(t) for t in sp.Add.make_args(e))

    def _size_term(self, t) -> str:
        c, rest = t.as_coeff_Mul()
        name = self.names.value(rest.name) if rest.is_Symbol else str(rest)
        return name if c == 1 else f"{c} * {name}"

    def size_reads(self, e) -> tuple[str, ...]:
        """The names of the sizes ``size(e)`` prints, in order."""
        e = sp.sympify(e, strict=True)
        if e.is_Integer:
            return ()
        found = (t.as_coeff_Mul()[1] for t in sp.Add.make_args(e))
        return _reads(*((self.names.value(x.name) for x in sorted(r.free_symbols, key=str)) for r in found))

    def core_reads(self, e) -> tuple[str, ...]:
        """The names of the sizes ``core(e)`` prints, in order."""
        rows, cols = e.shape
        if rows != 1 and cols != 1:
            return _reads(self.size_reads(rows), self.size_reads(cols))
        return self.size_reads(rows if cols == 1 else cols)

    def core(self, e) -> str:
        """The per-example shape of ``e`` as a NumPy shape."""
        rows, cols = e.shape
        if rows != 1 and cols != 1:
            return f"({self.size(rows)}, {self.size(cols)})"
        return f"({self.size(rows if cols == 1 else cols)},)"

    def at(self, name: str, array: str, offset: int, is_delta: bool) -> Code:
        pad = 0 if is_delta else self.pads.get(name, 0)
        if self.mode == "step":
            k = pad + offset
            index = "i" if k == 0 else f"i + {k}" if k > 0 else f"i - {-k}"
            return Code(f"{array}[{index}]", batched=True, reads=(array,), form="view")
        if self.mode == "time":
            # Steps t = 1 .. T - window; the array is T + pad long, so the slice ends
            # (offset - window) from its end.
            start, end = pad + offset, offset - self.window
            text = f"{array}[{start or ''}:{end or ''}]"
            whole = text == f"{array}[:]"
            return Code(array if whole else text, batched=True, timed=True, reads=(array,),
                        form="array" if whole else "view")
        raise ValueError(f"{array} at a step outside the time loop")

    def _print_At(self, e: At):
        if isinstance(e.base, Delta):
            return self.at(e.base.name, self.names.adjoint(e.base.name), e.offset, True)
        return self.at(e.base.name, self._array(e.base.name), e.offset, False)

    def _print_AtStep(self, e: AtStep):
        if isinstance(e.base, Delta):
            array = self.names.adjoint(e.base.name)
            return Code(f"{array}[{e.step - 1}]", batched=True, reads=(array,), form="view")
        name, array = e.base.name, self.names.value(e.base.name)
        return Code(f"{array}[{self.pads.get(name, 0) + e.step - 1}]", batched=True, reads=(array,), form="view")

    def _print_MatrixSymbol(self, e):
        value = self.values.arrays.get(e.name)
        if value is not None:
            return Code(value.array, batched=value.batched, reads=(value.array,), form="array")
        array = self.names.value(e.name)
        return Code(array, batched=e.name in self.batched_names, reads=(array,), form="array")

    def _print_Delta(self, e):
        array = self.names.adjoint(e.name)
        return Code(array, batched=e.name in self.batched_names, reads=(array,), form="array")

    def _print_OneMatrix(self, e):
        return Code(f"np.ones({self.core(e)}, dtype)", reads=self.core_reads(e))

    def _print_ZeroMatrix(self, e):
        return Code(f"np.zeros({self.core(e)}, dtype)", reads=self.core_reads(e))

    # --- operations ---------------------------------------------------------------------

    def _number(self, c) -> str:
        c = sp.sympify(c, strict=True)
        if not c.is_Rational:  # sigmoid(1), log(2): a constant the model computed, as a float
            return repr(float(c))
        return str(c.p) if c.q == 1 else f"({c.p} / {c.q})"

    def _print_MatAdd(self, e):
        text, parts = "", []
        for k, term in enumerate(e.args):
            c, rest = coeff_and_rest(term)
            negative = c.is_Number and c < 0
            if negative:
                c = -c
            if isinstance(rest, OneMatrix) and rest.shape[0] * rest.shape[1] != 1 or rest == OneMatrix(1, 1):
                body = self._number(c)  # 1 − o: NumPy broadcasts the number
            else:
                code = self._print(rest)
                parts.append(code)
                body = code.text if c == 1 else f"{self._number(c)} * {group(code.text)}"
                if negative:
                    body = group(body)
            text += ("-" if negative else "") if k == 0 else (" - " if negative else " + ")
            text += body
        return _join(text, *parts)

    def _print_MatMul(self, e):
        """Fold the product from the right, so a vector product stays per example."""
        c, rest = coeff_and_rest(e)
        mats = list(rest.args) if isinstance(rest, MatMul) else [rest]
        acc_expr = mats[-1]
        acc = self._print(acc_expr)
        cols = acc_expr.shape[1]  # a product from the left keeps the columns
        for a in reversed(mats[:-1]):
            acc = self._product(a, acc, cols)
        if c == -1:
            return _join("-" + group(acc.text), acc)
        if c != 1:
            return _join(f"{self._number(c)} * {group(acc.text)}", acc)
        return acc

    def _product(self, a, acc: Code, cols) -> Code:
        """``a`` times the value so far (which has ``cols`` columns per example)."""
        p, q = a.shape
        x = group(acc.text)
        if isinstance(a, OneMatrix):
            if p == 1:  # 1ᵀ v: the sum of the entries
                return _join(f"np.sum({acc.text}, axis=-1, keepdims=True)" if cols == 1 else f"{x}.sum(axis=0)", acc)
            return _join(f"{x} * np.ones({self.size(p)}, dtype)", acc,  # 1 s: a scalar spread over a vector
                         order=(acc, self.size_reads(p)))
        left = self._print(a)
        if acc.summed and left.batched:
            raise NotImplementedError(f"no NumPy form for {a} times a sum of outer products")
        if p != 1 and q != 1:  # a matrix
            if left.batched:
                raise NotImplementedError(f"no NumPy form for the per-example matrix {a}")
            if cols == 1 and acc.batched:
                if self.mode == "time":
                    return _join(f"_matvec({left.text}, {acc.text})", acc, order=(left, acc))
                # x W^T per row; for a transposed matrix that is x W.
                right = group(self._print(a.arg).text) if isinstance(a, Transpose) else f"{group(left.text)}.T"
                return _join(f"{x} @ {right}", acc, order=(acc, left))
            return _join(f"{group(left.text)} @ {x}", acc, order=(left, acc))
        if p == 1 and q != 1:  # a row vector
            if cols == 1:
                return _join(f"np.sum({group(left.text)} * {x}, axis=-1, keepdims=True)", left, acc)
            return _join(f"{group(left.text)} @ {x}", left, acc)
        if cols == 1 or p == 1:  # a column (or a scalar) times a per-example scalar (or row)
            return _join(f"{group(left.text)} * {x}", left, acc)
        if not left.batched and not acc.batched:
            return Code(f"np.outer({left.text}, {acc.text})", reads=_reads(left, acc))
        return Code(f"_outer({left.text}, {acc.text})", summed=True, reads=_reads(left, acc))  # Σ over steps, examples

    def _print_HadamardProduct(self, e):
        num = [f for f in e.args if not (isinstance(f, HadamardPower) and f.args[1] < 0)]
        den = [f.args[0] if f.args[1] == -1 else HadamardPower(f.args[0], -f.args[1])
               for f in e.args if isinstance(f, HadamardPower) and f.args[1] < 0]
        codes = [self._print(f) for f in num]
        text = " * ".join(group(c.text) for c in codes) if codes else "1"
        dens = [self._print(f) for f in den]
        for c in dens:
            text += f" / {group(c.text)}"
        return _join(text, *codes, *dens)

    def _print_HadamardPower(self, e):
        base, k = e.args
        code = self._print(base)
        if k == -1:
            return _join(f"1 / {group(code.text)}", code)
        return _join(f"{group(code.text)} ** {int(k)}", code)

    def _print_Transpose(self, e):
        code = self._print(e.arg)
        rows, cols = e.arg.shape
        if rows != 1 and cols != 1:
            return _join(f"{group(code.text)}.T", code)
        return code  # a vector is held the same way as its transpose

    def _print_Apply(self, e):
        if e.fname == "log":  # the log of a probability, computed from its logit, stably
            z = self._source(e.arg, lambda x: type(x) is Softmax)
            if z is not None:  # log softmax(z)
                code = self._print(z)
                return _join(f"_log_softmax({code.text})", code)
            z = self._source(e.arg, _is_sigmoid)
            if z is not None:  # log σ(z) = −softplus(−z)
                code = self._print(z)
                return _join(f"-np.logaddexp(0, -{group(code.text)})", code)
            rest = _one_minus(e.arg)
            z = self._source(rest, _is_sigmoid) if rest is not None else None
            if z is not None:  # log(1 − σ(z)) = −softplus(z)
                code = self._print(z)
                return _join(f"-np.logaddexp(0, {code.text})", code)
        code = self._print(e.arg)
        text, helpers = call(e.fname, code.text, _params(e))
        self.helpers |= helpers
        return _join(text, code)

    def _source(self, e, defined_as):
        """z when ``e`` names a quantity defined as f(z) with ``defined_as(f(z))``, else None."""
        if isinstance(e, At) and not isinstance(e.base, Delta):
            q = self.model.quantities.get(e.base.name)
            if q is not None and q.expr is not None and defined_as(q.expr):
                return shift(q.expr.args[-1], e.offset)
        if isinstance(e, MatrixSymbol):
            q = self.model.quantities.get(e.name)
            if q is not None and q.expr is not None and defined_as(q.expr):
                return q.expr.args[-1]
        return None

    def _print_Softmax(self, e):
        code = self._print(e.arg)
        return _join(f"_softmax({code.text})", code)

    def _print_LogSoftmax(self, e):
        code = self._print(e.arg)
        return _join(f"_log_softmax({code.text})", code)

    def _print_Concat(self, e):
        codes = [self._print(a) for a in e.args]
        return _join("_concat(" + ", ".join(c.text for c in codes) + ")", *codes)

    def _print_ColSlice(self, e):
        code = self._print(e.arg)
        return self._slice(code, f"{group(code.text)}[:, {self._range(e)}]", e)

    def _print_RowSlice(self, e):
        code = self._print(e.arg)
        return self._slice(code, f"{group(code.text)}[..., {self._range(e)}]", e)

    def _slice(self, code: Code, text: str, e) -> Code:
        sliced = _join(text, code, order=(code, self._range_reads(e)))
        return replace(sliced, form="view") if code.form == "array" else sliced  # a view of an array

    def _range_reads(self, e) -> tuple[str, ...]:
        return _reads(() if e.start == 0 else self.size_reads(e.start), self.size_reads(e.stop))

    def _range(self, e) -> str:
        return ("" if e.start == 0 else self.size(e.start)) + ":" + self.size(e.stop)

    def _print_TimeSum(self, e):
        inner = self.code(e.arg, "time", 0)
        if inner.summed:
            return inner
        if inner.timed:
            return Code(f"np.sum({inner.text}, axis=0)", batched=inner.batched, reads=inner.reads)
        return _join(f"T * {group(inner.text)}", inner)

    def emptyPrinter(self, e):
        raise NotImplementedError(f"no NumPy form for {type(e).__name__}")


def _names_value(e, name: str) -> bool:
    """``e`` is the value of the quantity ``name`` (at some step)."""
    return (isinstance(e, At) and not isinstance(e.base, Delta) and e.base.name == name) or \
        (isinstance(e, MatrixSymbol) and e.name == name)


def _applied_value(e) -> bool:
    """f(q_{t+k}) for an elementwise f and a forward sequence quantity q."""
    return (isinstance(e, Apply) and isinstance(e.arg, At) and not isinstance(e.arg.base, Delta)
            and e.arg.offset >= 0 and e.fname in ELEMENTWISE)  # q_{t−1} would need the initial state


def _params(e) -> tuple:
    """The parameters of an elementwise function's node (none for the functions of today)."""
    return tuple(getattr(e, "params", ()))


def _is_sigmoid(e) -> bool:
    return isinstance(e, Apply) and e.fname == "sigmoid"


def _one_minus(e):
    """x when ``e`` is 1 − x (a vector of ones minus x), else None."""
    if isinstance(e, MatAdd) and len(e.args) == 2:
        for a, b in (e.args, e.args[::-1]):
            c, rest = coeff_and_rest(b)
            if isinstance(a, OneMatrix) and c == -1:
                return rest
    return None


# ---------------------------------------------------------------------------------------
# The plan: which statements run before, inside and after the time loop.


@dataclass
class Stack:
    """Pre-activations Σ_j W_kj v_j + … held as views of one array (see ``ModulePlan._stacks``)."""

    name: str  # the array
    members: list[str]  # the quantities, in order
    sizes: list  # their sizes
    inside: list  # (v_j, [W_kj for each member], name of [W_1j; W_2j; …]) for each vector the loop reads
    outside: list  # (u, [M_k for each member]) for each vector the parts outside the loop multiply
    consts: list  # the constant terms of each member
    adjoint: str | None = None  # the array their δ are views of, when the backward loop fills them
    # (f, [f(y_k) …], first k, last k + 1, array): consecutive members under the same elementwise
    # function, whose values are views of one array computed by one call
    activations: list = field(default_factory=list)


def recurrent(graph: dict[str, set[str]]) -> set[str]:
    """Nodes on a cycle of ``graph`` (node → the nodes it reads)."""
    on_cycle = set()
    for start in graph:
        stack, seen = list(graph[start]), set()
        while stack:
            n = stack.pop()
            if n == start:
                on_cycle.add(start)
                break
            if n in seen:
                continue
            seen.add(n)
            stack.extend(graph.get(n, ()))
    return on_cycle


def depends_on(graph: dict[str, set[str]], node: str, targets: set[str]) -> bool:
    stack, seen = list(graph.get(node, ())), set()
    while stack:
        n = stack.pop()
        if n in targets:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(graph.get(n, ()))
    return False


def _references(e) -> set[str]:
    """Names of the quantities (not adjoints) an expression reads."""
    found = set()
    for node in sp.preorder_traversal(e):
        if isinstance(node, (At, AtStep)) and not isinstance(node.base, Delta):
            found.add(node.base.name)
        elif isinstance(node, MatrixSymbol):
            found.add(node.name)
    return found


def _adjoint_references(e) -> set[str]:
    found = set()
    for node in sp.preorder_traversal(e):
        if isinstance(node, Delta):
            found.add(node.name)
    return found


def _terms(e) -> list:
    return list(e.args) if isinstance(e, MatAdd) else [e]


def _sum(terms):
    return add(*terms)


# ---------------------------------------------------------------------------------------
# Rewrites for speed: the code computes the same values as the closed forms, in a cheaper order.


def split_concat_products(e, concats: dict):
    """W z_t with z_t = [h_{t-1}; x_t] becomes W[:, :n_h] h_{t-1} + W[:, n_h:] x_t.

    The block that multiplies the input is then computed for all steps before the time loop,
    and only the recurrent block stays in it.  ``concats`` maps a quantity defined as a
    Concat to that definition.
    """
    if isinstance(e, MatMul):
        c, rest = coeff_and_rest(e)
        mats = list(rest.args) if isinstance(rest, MatMul) else [rest]
        if len(mats) == 2:
            parts = _concat_parts(mats[1], concats)
            if parts is not None:
                terms, start = [], sp.Integer(0)
                for part in parts:
                    stop = sp.expand(start + part.shape[0])
                    terms.append(matmul(ColSlice(mats[0], start, stop), split_concat_products(part, concats)))
                    start = stop
                return scale(c, add(*terms))
    if getattr(e, "is_Matrix", False) and e.args and not isinstance(e, (At, AtStep, MatrixSymbol, Delta)):
        args = [split_concat_products(a, concats) if getattr(a, "is_Matrix", False) else a for a in e.args]
        if all(a is b for a, b in zip(args, e.args)):
            return e
        return add(*args) if isinstance(e, MatAdd) else e.func(*args)
    return e


def _concat_parts(v, concats: dict):
    if isinstance(v, Concat):
        return list(v.args)
    if isinstance(v, At) and not isinstance(v.base, Delta) and v.base.name in concats:
        return list(shift(concats[v.base.name], v.offset).args)
    return None


def slice_through(e, start, stop):
    """Rows start..stop of ``e``, pushed inside where that saves work: [Wᵀ δ]_{1:n_h} = W[:, :n_h]ᵀ δ."""
    if isinstance(e, MatAdd):
        return add(*[slice_through(t, start, stop) for t in e.args])
    c, rest = coeff_and_rest(e)
    if isinstance(rest, MatMul) and len(rest.args) == 2 and isinstance(rest.args[0], Transpose):
        w, v = rest.args[0].arg, rest.args[1]
        return scale(c, matmul(Transpose(ColSlice(w, start, stop)), v))
    return RowSlice(e, start, stop)


def inline_sliced_adjoints(terms: dict, readers_ok) -> tuple[dict, set]:
    """Replace [δz_{t+k}]_{a:b} by the rows a..b of δz's own closed form, where δz is read only so.

    ``terms`` maps a named sequence adjoint to its (offset, expression) terms; returns the new
    terms and the adjoints no longer needed.  δz of an LSTM's stacked input is the case: only
    its h-rows are read, and computing those alone skips the rows of the input.
    """
    dropped = set()
    for z, z_terms in terms.items():
        if any(offset != 0 for offset, _ in z_terms) or not readers_ok(z):
            continue
        reads = [(n, i) for n, ts in terms.items() if n != z for i, (_, t) in enumerate(ts)
                 if z in _adjoint_references(t)]
        if not reads or not all(_only_sliced(terms[n][i][1], z) for n, i in reads):
            continue
        closed = add(*[t for _, t in z_terms])
        for n, i in reads:
            offset, t = terms[n][i]
            terms[n][i] = (offset, _replace_sliced(t, z, closed))
        dropped.add(z)
    return {n: ts for n, ts in terms.items() if n not in dropped}, dropped


def _only_sliced(e, z) -> bool:
    if isinstance(e, RowSlice) and isinstance(e.arg, At) and isinstance(e.arg.base, Delta) and e.arg.base.name == z:
        return True
    if isinstance(e, Delta) and e.name == z:
        return False
    return all(_only_sliced(a, z) for a in e.args if isinstance(a, sp.Basic))


def _replace_sliced(e, z, closed):
    if isinstance(e, RowSlice) and isinstance(e.arg, At) and isinstance(e.arg.base, Delta) and e.arg.base.name == z:
        return slice_through(shift(closed, e.arg.offset), e.start, e.stop)
    if not e.args or not getattr(e, "is_Matrix", False):
        return e
    args = [_replace_sliced(a, z, closed) if getattr(a, "is_Matrix", False) else a for a in e.args]
    return e.func(*args)


def batched_quantities(model) -> set[str]:
    """Quantities whose value depends on the data (and so carries the batch axis)."""
    batched = {q.name for q in model.data}
    changed = True
    while changed:
        changed = False
        for q in model.quantities.values():
            if q.name in batched or q.expr is None:
                continue
            if _references(q.expr) & batched or q.sequence:
                batched.add(q.name)
                changed = True
    return batched


class ModulePlan:
    """The statements of the generated module's forward and backward passes."""

    def __init__(self, d: Derivation, comment, comment_text=None):
        self.d, self.model, self.comment = d, d.model, comment
        self.comment_text = comment_text or str
        self.names = Names.for_model(d)
        self.pads = {q: self.model.max_lag(q) for q in self.model.quantities}
        self.batched = batched_quantities(self.model)
        # Every array the code computes once and reads again (see ``schedule.ValueTable``).
        self.values = ValueTable(self.names.table, reach=1 + max(self.pads.values(), default=0))
        self.printer = NumpyPrinter(d, self.names, self.pads, self.batched, self.values)
        self.repeated = self._repeated() if not self.model.has_time else {}
        self.forward = self._forward()
        self.backward = self._backward()

    # --- common subexpressions of a model without time ---------------------------------------

    def _static_adjoint_exprs(self, a) -> list:
        return [e for e in (a.closed_per_step, a.closed_static) if e is not None]

    def _gradient_exprs(self, g) -> list:
        return [e for e in (g.per_step, g.static) if e is not None] + [e for _, _, e in g.initial]

    def _repeated(self) -> dict:
        """Subexpressions a model without time computes more than once, forward and backward: the
        loss written in one line, L = ½‖W2 tanh(W1 x + b1) + b2 − y‖², reads tanh(W1 x + b1) and
        the residual in several gradients.  Each gets an array of its own, computed once.

        Found in rounds, largest first: a part of a repeated expression counts once for the array
        that computes it, so it gets an array of its own only if it is also read elsewhere."""
        m, d, pr = self.model, self.d, self.printer
        exprs = [q.expr for q in m.equations if not q.sequence and q.expr is not None]
        exprs += [e for a in d.backward_order if a.named and not a.sequence for e in self._static_adjoint_exprs(a)]
        exprs += [e for g in d.gradients.values() for e in self._gradient_exprs(g)]
        repeated: dict = {}
        refused: set = set()

        def walk(roots, stop):
            """Every node under ``roots``, not below a node in ``stop`` (a root is always entered)."""
            stack = [(r, True) for r in roots]
            while stack:
                node, root = stack.pop()
                yield node
                if root or node not in stop:
                    stack.extend((a, False) for a in node.args if isinstance(a, sp.Basic))

        def eligible(node) -> bool:
            if node in refused:
                return False
            ok = isinstance(node, (Apply, MatAdd, HadamardProduct, HadamardPower, Softmax)) or (
                isinstance(node, MatMul) and isinstance(coeff_and_rest(node)[1], MatMul))
            if ok:
                try:
                    code = pr.code(node)
                    ok = code.batched and not code.summed and code.form == "expr"
                except (NotImplementedError, ValueError):
                    ok = False
            if not ok:
                refused.add(node)
            return ok

        for _ in range(50):  # rounds: at most the depth to which repeated expressions nest
            roots = exprs + list(repeated)
            counts: dict = {}
            for node in walk(roots, repeated):
                if node not in repeated:
                    counts[node] = counts.get(node, 0) + 1
            new = {node for node, c in counts.items() if c >= 2 and eligible(node)}
            if not new:
                break
            for node in walk(roots, new | set(repeated)):  # the largest of them: none inside another
                if node in new and node not in repeated:
                    repeated[node] = f"_v{len(repeated)}"
        return repeated

    def _common(self, exprs) -> list[AssignAll]:
        """Statements computing the repeated subexpressions of ``exprs`` not computed yet, innermost
        first; from then on the printer reads their arrays."""
        pr, out = self.printer, []
        for e in exprs:
            for node in sp.postorder_traversal(e):
                name = self.repeated.get(node)
                if name is None or name in self.values.arrays:
                    continue
                code = pr.code(node)
                out.append(AssignAll(f"{self.comment_text(node)}, read more than once",
                                     [line(f"{name} = {code.text}", (name,), code)]))
                # From here on the printer reads the array wherever the expression appears.
                self.values.add(Value(name, node, "repeated", batched=code.batched, timed=code.timed,
                                      summed=code.summed, lookup=True))
        return out

    # --- forward ------------------------------------------------------------------------

    def _forward(self) -> Phase:
        m, names, pr = self.model, self.names, self.printer
        seq = [q.name for q in m.equations if q.sequence]
        concats = {n: m[n].expr for n in seq if isinstance(m[n].expr, Concat)}
        code_expr = {n: split_concat_products(m[n].expr, concats) for n in seq}
        reads = {n: _references(code_expr[n]) & set(seq) for n in seq}
        loop = recurrent(reads)
        self.stacks = self._stacks(seq, code_expr, loop)
        stacked = {n: s for s in self.stacks for n in s.members}
        activated = {n: (s, run) for s in self.stacks for run in s.activations for n in run[1]}
        inline = self._inline_values(seq, concats)
        phase = Phase()
        statics_before, statics_after = self._static_split()
        for n in statics_before:
            phase.before += self._common([m[n].expr])
            phase.before.append(self._assign(n, names.value(n), pr.code(m[n].expr)))
        for n in seq:
            q, py, pad, expr = m[n], names.value(n), self.pads[n], code_expr[n]
            comment = self.comment(m.ref(n), q.expr)
            if n in inline:
                expr = self._keep_inline_values(n, expr, inline[n], loop, reads, phase)
            if n not in loop and not depends_on(reads, n, loop):
                if pad:
                    code = pr.code(expr, 'time')
                    phase.before.append(AssignAll(comment, self._padded(n) + [
                        line(f"{py}[{pad}:] = {code.text}", (py,), code)]))
                else:
                    phase.before.append(AssignAll(comment, self._time_lines(n, py, expr)))
            elif n in stacked:  # one array with the others that multiply the same vector in the loop
                stack = stacked[n]
                order = sorted(stack.members, key=seq.index)
                if n == order[-1]:  # after everything the members' parts outside the loop read
                    phase.before.append(self._stack_before(stack, phase))
                if n == order[0]:  # before any member is read; the vector is known by then
                    phase.loop.append(self._stack_loop(stack))
            elif n in activated:  # one call for the activations of consecutive members of a stack
                stack, run = activated[n]
                if n == min(run[1], key=seq.index):  # after the stack's product, before any is read
                    phase.loop.append(self._stack_activation(stack, run, phase))
            elif n in loop:
                # The part of a sum that does not read the recurrence is computed for all steps first.
                outside = [t for t in _terms(expr) if not (_references(t) & loop)]
                inside = [t for t in _terms(expr) if _references(t) & loop]
                target = pr.code(m.ref(n), "step")
                # Only worth it where the part reads a sequence (a projection of the inputs).
                if outside and inside and pr.code(_sum(outside), "time").timed:
                    code = pr.code(_sum(outside), 'time')
                    phase.before.append(AssignAll(f"{comment}: the part that does not depend on the recurrence",
                                                  self._padded(n) + [
                        line(f"{py}[{pad}:] = {code.text}", (py,), code)] if pad else
                        self._assign_time(py, _sum(outside))))
                    code = pr.code(_sum(inside), 'step')
                    phase.loop.append(AssignStep(comment, [line(f"{target} += {code.text}", target.reads, code)]))
                else:
                    phase.alloc.extend(self._padded(n, empty=True))
                    phase.loop.append(AssignStep(comment, self._assign_step(target, expr)))
            else:
                code = pr.code(expr, 'time') if pad else None
                lines = [line(f"{py}[{pad}:] = {code.text}", (py,), code)] if pad else self._time_lines(n, py, expr)
                phase.after.append(AssignAll(comment, (self._padded(n) if pad else []) + lines))
        for n in statics_after:
            phase.after += self._common([m[n].expr])
            phase.after.append(self._assign(n, names.value(n), pr.code(m[n].expr)))
        return phase

    # --- values inside an equation that the backward pass reads too -------------------------

    def _inline_values(self, seq, concats) -> dict[str, list]:
        """f(…) written inside a sequence equation, c_t = f_t ⊙ c_{t−1} + tanh(W x_t + U h_{t−1}),
        whose value the backward pass reads too (as 1 − tanh²(…)): kept in an array of its own.

        Maps a quantity to its [(f(…) as derived, as the code computes it, the array's symbol)],
        innermost first."""
        pr = self.printer
        reach = 1 + max(self.pads.values(), default=0)  # the backward pass reads forward values up to t + lag
        backward = [a.closed for a in self.d.adjoints.values() if a.named and a.closed is not None]
        backward += [g.expr for g in self.d.gradients.values()]
        wanted = {node for e in backward for node in sp.preorder_traversal(e) if isinstance(node, Apply)}
        found: dict[str, list] = {}
        for n in seq:
            e = self.model[n].expr
            for node in sp.postorder_traversal(e):
                if (node is e or not isinstance(node, Apply) or node.fname == "log"
                        or isinstance(node.arg, (At, AtStep, MatrixSymbol))
                        or any(node == a for a, _, _ in found.get(n, []))
                        or not any(shift(node, k) in wanted for k in range(reach + 1))):
                    continue
                name = self.values.reserve(self.values.fresh(f"_{node.fname}_in_{self.names.value(n).rstrip('_')}"))
                found.setdefault(n, []).append((node, split_concat_products(node, concats),
                                                MatrixSymbol(name, *node.shape)))
        return {n: kept for n, kept in found.items() if any(pr.code(a, "time").timed for a, _, _ in kept)}

    def _keep_inline_values(self, n, expr, kept, loop, reads, phase: Phase):
        """Statements computing the kept values of ``n``'s equation just before it; ``expr`` reading them."""
        m, pr = self.model, self.printer
        subs = {}
        for a, code_a, sym in kept:
            done = self.values.get(a)
            if done is not None:  # kept for an earlier equation already
                subs[code_a] = At(MatrixSymbol(done.array, *a.shape), 0)
                continue
            value = code_a.xreplace(subs)  # an inner kept value is read, not computed again
            comment = (f"{self.comment_text(a)}, in the equation of {self.comment_text(m.ref(n))}: "
                       "kept for the backward pass")
            if n in loop and _references(value) & loop:  # computed step by step
                phase.alloc.append(self._empty(sym.name, "T", a.shape[0]))
                phase.loop.append(AssignStep(comment, self._inline_step(sym, value, loop, phase)))
                loop.add(sym.name)
            elif pr.code(value, "time").timed:  # for all steps at once: before the loop if it can be
                early = not any(r in loop or depends_on(reads, r, loop) for r in _references(value) & set(reads))
                code = pr.code(value, 'time')
                (phase.before if early else phase.after).append(AssignAll(comment, [
                    line(f"{sym.name} = {code.text}", (sym.name,), code)]))
            else:
                continue
            subs[code_a] = At(sym, 0)
            # From here on f(…) at t + k reads the array (the backward pass's 1 − tanh²(…) above all).
            self.values.add(Value(sym.name, a, "kept", per_step=True, timed=True, lookup=True))
        return expr.xreplace(subs)

    def _inline_step(self, sym, value, loop, phase: Phase) -> list[str]:
        """f(u + v) into ``sym[i]``, where the part u of the argument that does not read the
        recurrence (an input projection) is computed for all steps before the loop."""
        pr = self.printer
        outside = [t for t in _terms(value.arg) if not _references(t) & loop]
        inside = [t for t in _terms(value.arg) if _references(t) & loop]
        if not (outside and inside and pr.code(_sum(outside), "time").timed):
            return self._assign_step(Code(f"{sym.name}[i]", reads=(sym.name,)), value)
        pre = f"{sym.name}_arg"
        self.values.add(Value(pre, _sum(outside), "argument", per_step=True, timed=True))
        phase.before.append(AssignAll(f"{self.comment_text(value.arg)}, the argument of {self.comment_text(value)}: "
                                      "the part that does not depend on the recurrence",
                                      self._assign_time(pre, _sum(outside))))
        code = pr.code(_sum(inside), 'step')
        lines = [line(f"{pre}[i] += {code.text}", (pre,), code)]
        form = call_out(value.fname, f"{pre}[i]", f"{sym.name}[i]", _params(value))
        lines.append(line(form, (sym.name,), (pre,)) if form else
                     line(f"{sym.name}[i] = {self._call(value, f'{pre}[i]')}", (sym.name,), (pre,)))
        return lines

    # --- stacking: one matrix product per step for the pre-activations that share a vector ---

    def _stacks(self, seq, code_expr, loop) -> list[Stack]:
        """Loop quantities Σ_j W_kj v_j + (parts outside the loop) with the same vectors v_j: the gates
        of an LSTM or a GRU.

        Each becomes a view of one (T, B, Σ n_k) array, so the loop computes all of them with one
        product [W_1j; W_2j; …] v_j per vector, and the backward pass reads all their δ with one
        product too.  A member's part outside the loop must be products with the same vectors for
        every member, plus constants (biases), so that it is one product per vector as well.
        """
        pr = self.printer
        by_key: dict[tuple, list] = {}
        for n in seq:
            if n not in loop or self.pads[n]:
                continue
            inside, outside, consts = {}, {}, []
            for t in _terms(code_expr[n]):
                prod = self._static_product(t)
                if _references(t) & loop:
                    if prod is None:
                        break
                    key, found = pr.code(prod[1], "step").text, inside
                elif prod is not None and pr.code(t, "time").timed:
                    key, found = pr.code(prod[1], "time").text, outside
                elif not (pr.code(t, "time").batched or pr.code(t, "time").timed):
                    consts.append(t)
                    continue
                else:
                    break
                if key in found:
                    break
                found[key] = prod
            else:
                if inside:
                    key = (tuple(sorted(inside)), tuple(sorted(outside)))
                    by_key.setdefault(key, []).append((n, inside, outside, consts))
        # The members' activations: n_k = f(y_k) with nothing else, computed in the loop.
        activation = {}
        for n in seq:
            e = code_expr[n]
            if n in loop and not self.pads[n] and isinstance(e, Apply) and has_out(e.fname, _params(e)) \
                    and isinstance(e.arg, At) and e.arg.offset == 0 and not isinstance(e.arg.base, Delta):
                activation.setdefault(e.arg.base.name, (e.fname, n))
        stacks = []
        for (inside_keys, outside_keys), found in by_key.items():
            if len(found) < 2:
                continue
            # Members with the same activation side by side, so one call computes all of them.
            fnames = list(dict.fromkeys(activation[f[0]][0] for f in found if f[0] in activation))
            found.sort(key=lambda f: fnames.index(activation[f[0]][0]) if f[0] in activation else len(fnames))
            name = f"_stack{len(stacks)}"
            inside = [(found[0][1][key][1], [f[1][key][0] for f in found], f"{name}_W{j}" if len(inside_keys) > 1
                       else f"{name}_W") for j, key in enumerate(inside_keys)]
            outside = [(found[0][2][key][1], [f[2][key][0] for f in found]) for key in outside_keys]
            stack = Stack(name, [f[0] for f in found], [self.model[f[0]].shape[0] for f in found],
                          inside, outside, [f[3] for f in found])
            for fname in fnames:
                run = [k for k, f in enumerate(found) if activation.get(f[0], ("",))[0] == fname]
                if len(run) > 1:
                    outputs = [activation[found[k][0]][1] for k in run]
                    stack.activations.append((fname, outputs, run[0], run[-1] + 1,
                                              f"{name}_out{len(stack.activations)}"))
            stacks.append(stack)
        return stacks

    def _static_product(self, t):
        """(A, v) when the term ``t`` is A v with A a matrix the same for every step and example, else None."""
        c, rest = coeff_and_rest(t)
        if c != 1 or not isinstance(rest, MatMul) or len(rest.args) != 2:
            return None
        a, v = rest.args
        if 1 in a.shape or v.shape[1] != 1 or a.has(At, AtStep, Delta) or self.printer.code(a).batched:
            return None
        return a, v

    def _split_points(self, sizes) -> str:
        ends, total = [], sp.Integer(0)
        for size in sizes[:-1]:
            total = sp.expand(total + size)
            ends.append(self.printer.size(total))
        return "[" + ", ".join(ends) + "]"

    def _split_reads(self, sizes) -> tuple[str, ...]:
        """The sizes ``_split_points(sizes)`` names."""
        totals = [sp.expand(sum(sizes[:k + 1], sp.Integer(0))) for k in range(len(sizes) - 1)]
        return _reads(*(self.printer.size_reads(t) for t in totals))

    def _empty(self, array: str, length: str, size, alloc: str = "np.empty") -> Line:
        """``array = np.empty((length, B, size), dtype)``: a sequence array the code fills."""
        pr = self.printer
        return line(f"{array} = {alloc}(({length}, B, {pr.size(size)}), dtype)", (array,), ("B",), pr.size_reads(size))

    def _split(self, names: list[str], array: str, sizes, axis: str = ", axis=-1") -> Line:
        """``a, b = np.split(array, […])``: views of one array."""
        return line(f"{', '.join(names)} = np.split({array}, {self._split_points(sizes)}{axis})", tuple(names),
                    (array,), self._split_reads(sizes))

    def _stack_before(self, stack: Stack, phase: Phase) -> AssignAll:
        """Before the loop: the stacked matrices, and the parts outside the loop (or the array)."""
        pr, m = self.printer, self.model
        lines = []
        for _, mats, matrix in stack.inside:
            self.values.add(Value(matrix, None, "stack", batched=False))  # [W_1j; W_2j; …]
            codes = [pr.code(a) for a in mats]
            lines.append(line(f"{matrix} = np.concatenate([{', '.join(c.text for c in codes)}])", (matrix,), *codes))
        consts = None
        if any(stack.consts):
            parts = [pr.code(_sum(c)) if c else Code(f"np.zeros({pr.size(size)}, dtype)", reads=pr.size_reads(size))
                     for c, size in zip(stack.consts, stack.sizes)]
            consts = Code("np.concatenate([" + ", ".join(c.text for c in parts) + "])", reads=_reads(*parts))
        split = self._split([self.names.value(n) for n in stack.members], stack.name, stack.sizes)
        if stack.outside:
            products = []
            for u, mats in stack.outside:
                codes = [pr.code(a) for a in mats] + [pr.code(u, 'time')]
                products.append(Code(f"_matvec(np.concatenate([{', '.join(c.text for c in codes[:-1])}]), "
                                     f"{codes[-1].text})", reads=_reads(*codes)))
            lines.append(line(f"{stack.name} = " + " + ".join(c.text for c in products), (stack.name,), *products))
            if consts:
                lines.append(line(f"{stack.name} += {consts.text}", (stack.name,), consts))
            lines.append(split)
            what = "first the parts that do not depend on the recurrence"
        else:  # all in the loop: the array is filled there, the constants added there
            if consts:
                lines.append(line(f"{stack.name}_b = {consts.text}", (f"{stack.name}_b",), consts))
            phase.alloc += [self._empty(stack.name, "T", sum(stack.sizes)), split]
            what = "first the stacked matrices"
        refs = ", ".join(self.comment_text(m.ref(n)) for n in stack.members)
        equations = [Line(f"# {self.comment(m.ref(n), m[n].expr)}") for n in stack.members]
        return AssignAll(f"{refs} as views of one array, so that one product per step serves them all; {what}",
                         equations + lines)

    def _stack_loop(self, stack: Stack) -> AssignStep:
        m = self.model
        refs = ", ".join(self.comment_text(m.ref(n)) for n in stack.members)
        products = []
        for v, _, matrix in stack.inside:
            code = self.printer.code(v, 'step')
            products.append(Code(f"{group(code.text)} @ {matrix}.T", reads=_reads(code, (matrix,))))
        vectors = ", ".join(self.comment_text(v) for v, _, _ in stack.inside)
        if stack.outside:
            each = " each" if len(stack.inside) > 1 else ""
            return AssignStep(f"{refs}: the parts that multiply {vectors}, one product{each}",
                              [line(f"{stack.name}[i] += " + " + ".join(c.text for c in products), (stack.name,),
                                    *products)])
        if any(stack.consts):
            products.append(Code(f"{stack.name}_b", reads=(f"{stack.name}_b",)))
        return AssignStep(f"{refs}: one product with {vectors} each",
                          [line(f"{stack.name}[i] = " + " + ".join(c.text for c in products), (stack.name,),
                                *products)])

    def _call(self, e, x: str) -> str:
        """f(x) for the node ``e`` = f(…), with the code ``x`` as its argument."""
        text, helpers = call(e.fname, x, _params(e))
        self.printer.helpers |= helpers
        return text

    def _stack_activation(self, stack: Stack, run, phase: Phase) -> AssignStep:
        fname, outputs, lo, hi, array = run
        pr, m = self.printer, self.model
        self.values.add(Value(array, None, "stack", per_step=True, timed=True))  # the members' activations
        start, stop = (sp.expand(sum(stack.sizes[:k], sp.Integer(0))) for k in (lo, hi))
        phase.alloc += [self._empty(array, "T", sp.expand(sum(stack.sizes[lo:hi]))),
                        self._split([self.names.value(n) for n in outputs], array, stack.sizes[lo:hi])]
        block = f"{stack.name}[i, :, {'' if pr.size(start) == '0' else pr.size(start)}:{pr.size(stop)}]"
        comment = ", ".join(self.comment(m.ref(n), m[n].expr) for n in outputs)
        return AssignStep(f"{comment}: one call", [line(call_out(fname, block, f"{array}[i]"), (array,), (stack.name,),
                                                        pr.size_reads(start), pr.size_reads(stop))])

    def _static_split(self):
        m = self.model
        seq = {q.name for q in m.equations if q.sequence}
        before, after, later = [], [], set(seq)
        for q in m.equations:
            if q.sequence:
                continue
            if q.expr.has(TimeSum) or _references(q.expr) & later:
                after.append(q.name)
                later.add(q.name)
            else:
                before.append(q.name)
        return before, after

    def _padded(self, n: str, empty: bool = False) -> list[Line]:
        """Allocate a sequence array (padded in front by its lag) and write its initial states."""
        q, py, pad = self.model[n], self.names.value(n), self.pads[n]
        if not pad and not empty:
            return []
        # The padding holds the states (zeros unless a state is a param); the rest is written in full.
        length, alloc = (f"T + {pad}", "np.zeros") if pad else ("T", "np.empty")
        lines = [self._empty(py, length, q.shape[0], alloc)]
        for k, value in sorted(self.model.states.get(n, {}).items()):
            if not isinstance(value, ZeroMatrix):
                state = self.names.value(value.name)
                lines.append(line(f"{py}[{pad + k - 1}] = {state}  # {self.model.unicode(n, str(k))}", (py,), (state,)))
        return lines

    def _assign(self, n: str, target: str, code: Code) -> AssignAll:
        m = self.model
        return AssignAll(self.comment(m.ref(n), m[n].expr), [line(f"{target} = {code.text}", (target,), code)])

    # --- backward -----------------------------------------------------------------------

    def _backward(self) -> Phase:
        d, names, pr = self.d, self.names, self.printer
        named = [a for a in d.backward_order if a.named]
        statics = [a for a in named if not a.sequence]
        outside_reads = set().union(*(_adjoint_references(g.expr) for g in d.gradients.values()),
                                    *(_adjoint_references(a.closed) for a in statics))
        terms, dropped = inline_sliced_adjoints(
            {a.name: [(term.offset, t) for term in a.closed_terms for t in _terms(term.expr)]
             for a in named if a.sequence},
            lambda z: z not in outside_reads)
        terms = {n: [(o, u) for o, t in ts for u in _terms(t)] for n, ts in terms.items()}
        seq = [a.name for a in named if a.sequence and a.name not in dropped]
        reads = {n: set().union(*(_adjoint_references(t) for _, t in terms[n])) & set(seq) for n in seq}
        loop = recurrent(reads)
        stacks = self._adjoint_stacks(terms, seq, loop)
        stacked = {n: s for s in stacks for n in s.members}
        self.applied_counts = {}
        for n in loop & set(terms):
            for _, t in terms[n]:
                for node in sp.preorder_traversal(t):
                    if _applied_value(node):
                        key = (node.fname, node.arg.base.name)
                        self.applied_counts[key] = self.applied_counts.get(key, 0) + 1
        phase = Phase()
        seq_dependent_static = set(self._static_split()[1])  # they read the sequence: their δ comes first
        early = set()  # the adjoints complete before the loop
        for a in statics:
            if a.name in seq_dependent_static:  # consumers of the sequence: before the loop
                phase.before += self._common(self._static_adjoint_exprs(a))
                phase.before.append(self._static_adjoint(a))
                early.add(a.name)
        for n in seq:
            a = d.adjoints[n]
            py = names.adjoint(n)
            comment = self.comment(a.symbol, a.closed)
            zeros = self._empty(py, "T", a.quantity.shape[0], "np.zeros")
            if n in loop:
                outside = [(o, t) for o, t in terms[n] if not _adjoint_references(t) & loop]
                inside = [(o, t) for o, t in terms[n] if _adjoint_references(t) & loop]
                inside.sort(key=lambda term: term[0])  # the terms that always exist first, then by offset
                assign = not outside and inside[0][0] == 0  # the first term sets the value
                if outside:
                    phase.before.append(Accumulate(comment + ": the part outside the recurrence",
                                                   self._accumulate(py, outside, zeros)))
                elif n not in stacked:
                    phase.alloc.append(self._empty(py, "T", a.quantity.shape[0]) if assign else zeros)
                elif n == min(stacked[n].members, key=seq.index):  # the δ of a stack: views of one array
                    stack = stacked[n]
                    phase.alloc += [self._empty(stack.adjoint, "T", sum(stack.sizes)),
                                    self._split([names.adjoint(m) for m in stack.members], stack.adjoint,
                                                stack.sizes)]
                loop_lines, guard = [], None
                slot = Code(f"{py}[i]", reads=(py,))
                for k, (offset, t) in enumerate(inside):
                    t = self._hoist_forward_factors(t, offset, f"_{py}_{k}", phase)
                    code = pr.code(self._share_applied(t, phase), "step")
                    if offset:  # the terms that read δ at t + offset exist for the first T − offset steps
                        if offset != guard:
                            loop_lines.append(Line(f"if i + {offset} < T:"))
                            guard = offset
                        loop_lines.append(line(f"    {py}[i] += {code.text}", (py,), code))
                    elif assign and k == 0:
                        loop_lines += self._assign_step(slot, t)
                    else:
                        loop_lines.append(line(f"{py}[i] += {code.text}", (py,), code))
                phase.loop.append(Accumulate(comment, loop_lines))
            else:
                target = phase.before if not depends_on(reads, n, loop) else phase.after
                target.append(Accumulate(comment, self._accumulate(py, terms[n], zeros)))
                if target is phase.before:
                    early.add(n)
        for a in statics:
            if a.name not in seq_dependent_static:
                phase.after += self._common(self._static_adjoint_exprs(a))
                phase.after.append(self._static_adjoint(a))
        stacked_grads = self._stacked_gradients(stacks)
        for g in d.gradients.values():
            if g.name not in stacked_grads:
                # A gradient of adjoints known before the loop is computed there, so that they can be freed.
                target = phase.before if _adjoint_references(g.expr) <= early else phase.after
                target += self._common(self._gradient_exprs(g))
                target.append(self._gradient(g))
            elif stacked_grads[g.name] is not None:
                phase.after.append(stacked_grads[g.name])
        if phase.loop or phase.after:
            dead = self._dead_after_before(phase)
            if dead:
                phase.before.append(Free("not read from here on: freed, so the loop reuses their memory",
                                         [Line(f"del {', '.join(dead)}", tuple(dead))]))
        return phase

    def _dead_after_before(self, phase: Phase) -> list[str]:
        """Arrays the backward pass's statements before the loop read or write and nothing after does."""
        later = self.used_names([Phase(loop=phase.loop, after=phase.after, alloc=phase.alloc)])
        keep = {self.names.value(p.name) for p in self.model.params} | set(self.names.grads.values())
        arrays = ({self.names.value(q.name) for q in self.model.quantities.values() if q.role != "param"}
                  | set(self.names.adjoints.values()) | set(self.values.arrays) | self.values.reserved)
        order = dict.fromkeys(n for st in phase.before for n in st.names)
        return [n for n in order if n in arrays and n not in keep and n not in later]

    def _adjoint_stacks(self, terms: dict, seq: list[str], loop: set[str]) -> list[Stack]:
        """The stacks whose members' δ the loop fills: δ_k become views of one array, and the terms
        W_kᵀ δ_{k,t+o} of every member, wherever they appear together, one product [W_1; W_2; …]ᵀ δ_{t+o}.

        ``terms`` is rewritten in place; returns the stacks so handled.
        """
        done = []
        for stack in self.stacks:
            ok = all(n in loop and terms.get(n) and min(o for o, _ in terms[n]) == 0 and
                     all(_adjoint_references(t) & loop for _, t in terms[n]) for n in stack.members)
            if not ok:
                continue
            stack.adjoint = "_d" + stack.name
            # The stacked δ is the adjoint of a name of its own, so the loop sees what it reads.
            self.names.adjoints[stack.name] = stack.adjoint
            self.batched.add(stack.name)
            loop.add(stack.name)
            deltas = [Delta(self.model[n].symbol) for n in stack.members]
            whole = Delta(MatrixSymbol(stack.name, sp.expand(sum(stack.sizes)), 1))
            for v, mats, name in stack.inside:
                matrix = MatrixSymbol(name, sp.expand(sum(stack.sizes)), v.shape[0])
                for n in terms:
                    for offset in sorted({o for o, _ in terms[n]}):
                        wanted = [(offset, matmul(Transpose(w), At(dk, offset))) for w, dk in zip(mats, deltas)]
                        rest = list(terms[n])
                        for w in wanted:  # one of each, once
                            if w not in rest:
                                break
                            rest.remove(w)
                        else:
                            terms[n] = rest + [(offset, matmul(Transpose(matrix), At(whole, offset)))]
            done.append(stack)
        return done

    def _stacked_gradients(self, stacks: list[Stack]) -> dict:
        """Gradients Σ_t δ_{k,t} u_tᵀ (or Σ_t δ_{k,t}) of every member of a stack with the same u: one
        product with the stacked δ, split by rows.  Maps each such parameter to the statement that
        computes it (for the first of a stack) or None."""
        pr, m = self.printer, self.model
        out: dict = {}
        for stack in stacks:
            whole = Delta(MatrixSymbol(stack.name, sp.expand(sum(stack.sizes)), 1))
            by_key: dict = {}
            for g in self.d.gradients.values():
                if g.static is not None or g.initial or g.per_step is None:
                    continue
                e = g.per_step
                if isinstance(e, At) and isinstance(e.base, Delta) and e.offset == 0:
                    delta, u = e.base, None
                elif (isinstance(e, MatMul) and len(e.args) == 2 and isinstance(e.args[0], At)
                      and isinstance(e.args[0].base, Delta) and e.args[0].offset == 0):
                    delta, u = e.args[0].base, e.args[1]
                else:
                    continue
                if delta.name in stack.members:
                    by_key.setdefault(u, {}).setdefault(delta.name, []).append(g)
            for k, (u, found) in enumerate(by_key.items()):
                if set(found) != set(stack.members) or any(len(gs) != 1 for gs in found.values()):
                    continue
                grads = [found[n][0] for n in stack.members]
                target = f"_g{stack.name}_{k}"
                expr = At(whole, 0) if u is None else matmul(At(whole, 0), u)
                code = pr.code(expr, "time")
                labels = ", ".join(f"∂{m.unicode(m.loss)}/∂{m.unicode(g.name)}" for g in grads)
                lines = [Line(f"# {self.comment(None, g.expr, label=f'∂{m.unicode(m.loss)}/∂{m.unicode(g.name)}')}")
                         for g in grads]
                total = self._total(code, False)
                lines += [line(f"{target} = {total.text}", (target,), total),
                          self._split([self.names.grad(g.name) for g in grads], target, stack.sizes, axis="")]
                how = "one sum of the stacked δ" if u is None else "one product with the stacked δ"
                out[grads[0].name] = AssignAll(f"{labels}: {how}, split by rows", lines)
                out.update({g.name: None for g in grads[1:]})
        return out

    def _assign_step(self, slot: Code, e) -> list[Line]:
        """``slot = e`` inside the loop, written into the slot: f(x, out=slot), np.multiply(a, b,
        out=slot), then slot += the other terms; no new array for the result and no copy of it."""
        pr, to = self.printer, slot.reads

        def assign(op, x):  # slot op= x
            code = pr.code(x, "step")
            return line(f"{slot.text} {op} {code.text}", to, code)

        if isinstance(e, Apply) and e.fname != "log" and has_out(e.fname, _params(e)):
            code = pr.code(e.arg, "step")
            return [line(call_out(e.fname, code.text, slot.text, _params(e)), to, code)]
        if isinstance(e, HadamardProduct) and not any(isinstance(a, HadamardPower) for a in e.args):
            applied = [a for a in e.args if isinstance(a, Apply) and a.fname != "log" and
                       has_out(a.fname, _params(a))]
            first = [e.args.index(applied[0])] if applied else [0, 1]  # f(x) into the slot, else a product of two
            a, b = (pr.code(e.args[k], "step") for k in [0, 1])
            lines = self._assign_step(slot, applied[0]) if applied else [
                line(f"np.multiply({a.text}, {b.text}, out={slot.text})", to, a, b)]
            lines += [assign("*=", f) for k, f in enumerate(e.args) if k not in first]
            return lines
        if isinstance(e, MatAdd) and not any(isinstance(coeff_and_rest(a)[1], OneMatrix) for a in e.args):
            first, *rest = e.args
            lines = self._assign_step(slot, first) if coeff_and_rest(first)[0] == 1 else [assign("=", first)]
            for a in rest:
                c, r = coeff_and_rest(a)
                lines.append(assign("-=", r) if c == -1 else assign("+=", a))
            return lines
        return [assign("=", e)]

    def _time_lines(self, n: str, py: str, e) -> list[Line]:
        """``py = e`` for all steps; a softmax whose log is read too (by a cross-entropy) with that
        log, by one call: p, log p = _softmax_and_log(z)."""
        m = self.model
        if type(e) is Softmax and any(
                isinstance(node, Apply) and node.fname == "log" and _names_value(node.arg, n)
                for q in m.equations if q.name != n and q.expr is not None for node in sp.preorder_traversal(q.expr)):
            log = self.values.fresh(f"_log_{py.rstrip('_')}")
            # From here on log(p_t) (a cross-entropy's) reads the array.
            self.values.add(Value(log, Apply("log", m.ref(n)), "log", per_step=True, timed=True, lookup=True))
            code = self.printer.code(e.arg, 'time')
            return [line(f"{py}, {log} = _softmax_and_log({code.text})", (py, log), code)]
        return self._assign_time(py, e)

    def _assign_time(self, py: str, e, window: int = 0) -> list[Line]:
        """``py = e`` for all steps at once, with one new array, updated in place.

        W x + b is ``py = _matvec(W, x)`` then ``py += b``; (Wᵀ δ) ⊙ s ⊙ (1 − s) is
        ``py = _matvec(W.T, δ)``, ``py *= s``, ``py *= 1 - s``; s ⊙ (1 − s) is ``py = 1 - s``,
        ``py *= s``; a ⊙ b ⊙ c is ``py = a * b``, ``py *= c``: the same values, without a new
        array of all steps per operation (each costs its memory traffic and, fresh, its page faults).
        """
        pr, printed = self.printer, {}

        def code(x):  # each operand printed once
            if x not in printed:
                printed[x] = pr.code(x, "time", window)
            return printed[x]

        def update(op, x):  # py op= x
            return line(f"{py} {op} {code(x).text}", (py,), code(x))

        whole = code(e)
        if not isinstance(e, (MatAdd, HadamardProduct)) or not whole.timed:
            return [update("=", e)]
        fresh = [a for a in e.args if isinstance(a, MatMul) and code(a).text.startswith("_matvec(") and code(a).timed]
        if isinstance(e, HadamardProduct) and not fresh:  # a factor that is a new array of every step anyway
            fresh = [a for a in e.args if isinstance(a, (MatAdd, Apply)) and code(a).timed and code(a).batched
                     and code(a).form == "expr"]  # not an array kept by the forward pass
        if fresh:
            lines, first = [update("=", fresh[0])], fresh[:1]
        elif isinstance(e, HadamardProduct) and len(e.args) > 2:
            # the first two factors: one of them has every step and example, so the product does too
            plain = [a for a in e.args if not isinstance(a, HadamardPower)]
            full = next((a for a in plain if code(a).timed and code(a).batched), None)
            if full is None or len(plain) < 2:
                return [update("=", e)]
            first = [full, next(a for a in plain if a is not full)]
            a, b = code(first[0]), code(first[1])
            lines = [line(f"{py} = {group(a.text)} * {group(b.text)}", (py,), a, b)]
        else:
            return [update("=", e)]
        for a in e.args:
            if any(a is f for f in first):
                continue
            if isinstance(e, MatAdd):
                c, rest = coeff_and_rest(a)
                lines.append(update("-=", rest) if c == -1 else update("+=", a))
            elif isinstance(a, HadamardPower) and a.args[1] == -1:
                lines.append(update("/=", a.args[0]))
            else:
                lines.append(update("*=", a))
        return lines

    def _share_applied(self, e, phase: Phase):
        """f(q_{t+k}) read by more than one loop term (tanh(c_t) in an LSTM's δc and δy_o): computed
        once for all steps, before the arrays that read it."""
        found = {node for node in sp.preorder_traversal(e) if _applied_value(node)}
        for node in sorted(found, key=str):
            key = (node.fname, node.arg.base.name)
            if self.applied_counts.get(key, 0) < 2:
                continue
            whole = Apply(node.fname, At(node.arg.base, 0))
            shared = self.values.get(whole)
            if shared is None:
                name = self.values.fresh(f"_{node.fname}_{self.names.value(node.arg.base.name).rstrip('_')}")
                code = self.printer.code(whole, 'time')
                phase.before.append(AssignAll(f"{self.comment_text(whole)}, for every step at once, read below",
                                              [line(f"{name} = {code.text}", (name,), code)]))
                shared = self.values.add(Value(name, whole, "shared", per_step=True, timed=True))
            e = e.xreplace({node: At(MatrixSymbol(shared.array, *node.shape), node.arg.offset)})
        return e

    def _hoist_forward_factors(self, t, offset: int, name: str, phase: Phase):
        """Compute the factors of a loop term that only read forward values for all steps first.

        δc_t = δh_t ⊙ o_t ⊙ (1 − tanh²(c_t)) + …: o_t ⊙ (1 − tanh²(c_t)) is known after the
        forward pass, so it becomes one array computed at once, and the loop multiplies by it.
        """
        c, rest = coeff_and_rest(t)
        if not isinstance(rest, HadamardProduct):
            return t
        values = [f for f in rest.args if not _adjoint_references(f)]
        if len(values) < 2 and all(isinstance(f, (At, MatrixSymbol)) for f in values):
            return t  # nothing to save
        sym = MatrixSymbol(name, *rest.shape)
        factor = hadamard(*values)
        self.values.add(Value(name, factor, "factor", per_step=True, timed=True))
        comment = f"{self.comment_text(factor)}, for every step at once"
        factor = self._share_applied(factor, phase)
        phase.before.append(AssignAll(comment, self._assign_time(name, factor, offset)))
        return scale(c, hadamard(At(sym, 0), *[f for f in rest.args if _adjoint_references(f)]))

    def _accumulate(self, py: str, terms, zeros: Line) -> list[Line]:
        """δ = its terms, each over the steps where the δ it reads (at t + offset) exists."""
        by_offset: dict[int, list] = {}
        for offset, t in terms:
            by_offset.setdefault(offset, []).append(t)
        lines = [] if 0 in by_offset else [zeros]
        for offset, ts in sorted(by_offset.items()):
            if offset == 0:
                lines += self._assign_time(py, _sum(ts))
            else:
                code = self.printer.code(_sum(ts), 'time', offset)
                lines.append(line(f"{py}[:-{offset}] += {code.text}", (py,), code))
        return lines

    def _static_adjoint(self, a) -> AssignAll:
        pr = self.printer
        parts = []
        if a.closed_per_step is not None:
            parts.append(self._total(pr.code(TimeSum(a.closed_per_step)), a.name in self.batched))
        if a.closed_static is not None:
            parts.append(self._total(pr.code(a.closed_static), a.name in self.batched))
        parts = parts or [pr.code(ZeroMatrix(*a.quantity.shape))]
        target = self.names.adjoint(a.name)
        return AssignAll(self.comment(a.symbol, a.closed),
                         [line(f"{target} = {' + '.join(c.text for c in parts)}", (target,), *parts)])

    @staticmethod
    def _total(code: Code, keep_batch: bool) -> Code:
        """A contribution to a value without a batch axis: sum over the examples (and steps)."""
        if (code.batched or code.timed) and not code.summed and not keep_batch:
            return Code(f"_sum_examples({code.text})", reads=code.reads)
        return code

    def _gradient(self, g) -> AssignAll:
        pr, m = self.printer, self.model
        parts = []
        if g.per_step is not None:
            code = pr.code(g.per_step, "time")
            if not (code.timed or code.summed):
                parts.append(Code(f"T * {group(code.text)}", reads=code.reads))
            else:
                parts.append(self._total(code, False))
        if g.static is not None:
            parts.append(self._total(pr.code(g.static), False))
        # Through an initial state: a term reading δ at step s exists only when T >= s.
        guarded: dict[int, list] = {}
        for _, _, e in g.initial:
            for t in _terms(e):
                steps = [n.step for n in sp.preorder_traversal(t) if isinstance(n, AtStep) and
                         isinstance(n.base, Delta)]
                s = max(steps, default=1)
                if s <= 1:
                    parts.append(self._total(pr.code(t), False))
                else:
                    guarded.setdefault(s, []).append(t)
        if not parts:
            parts.append(pr.code(ZeroMatrix(*g.param.shape)))
        target = self.names.grad(g.name)
        lines = [line(f"{target} = " + " + ".join(c.text for c in parts), (target,), *parts)]
        for s, ts in sorted(guarded.items()):
            code = self._total(pr.code(_sum(ts)), False)
            lines += [Line(f"if T >= {s}:"), line(f"    {target} = {target} + {code.text}", (target,), (target,), code)]
        label = f"∂{m.unicode(m.loss)}/∂{m.unicode(g.name)}"
        return AssignAll(self.comment(None, g.expr, label=label), lines)

    def used_names(self, phases=None) -> set[str]:
        """The arrays and sizes the code of ``phases`` (default: both passes) touches."""
        phases = phases or (self.forward, self.backward)
        return set().union(*(ph.names() for ph in phases))

    def unused_by_backward(self) -> list[str]:
        """Forward arrays the backward pass never reads: freed before it starts, to keep the peak low."""
        used = self.used_names([self.backward])
        free = [self.names.value(q.name) for q in self.model.equations
                if q.role != "loss" and self.names.value(q.name) not in used]
        # The array the members of a stack are views of, once none of them is read.
        free += [s.name for s in self.stacks if all(self.names.value(n) in free for n in s.members)]
        free += [v.array for v in self.values.of_kind("log") if v.array not in used]
        free += [v.array for v in self.values.of_kind("repeated", "argument") if v.array not in used]
        return free


