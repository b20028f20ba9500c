"""The record types of the registry, and the registry itself.

Every operation symderiv knows is one record, in one place: an ``Elementwise`` record for a
function applied entry by entry (``ops/elementwise.py``), a ``Node`` record for each class of
the expression IR (``ops/structural.py``) and a ``LanguageFunction`` record for each
structural function a model file may call.  The passes (parser, sweep, simplifier,
evaluator, certification, claim reader, printers) look operations up here and keep no table
of their own; a node without a record is an internal error in every pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sympy as sp

#: The scalar argument of every elementwise meaning and derivative.
Z = sp.Symbol("z", real=True)


@dataclass(frozen=True)
class Elementwise:
    """A function applied to every entry: its meaning, its derivative, its spellings.

    ``scalar(z, *params)`` is the SymPy meaning on one entry; ``evaluate``, certification and
    the claim reader use it, and ``derivative`` derives f' from it unless the record gives
    ``derivative`` itself (a scalar expression in ``z`` whose functions are other records,
    written ``sp.Function(name)(z)``).  ``params`` names constant parameters written after the
    argument (``leaky_relu(z, alpha)``).  ``latex``/``unicode`` are the function's head
    (``\\tanh``); ``latex_form``/``unicode_form``, where given, spell the whole application
    with ``$x`` for the argument and ``$<param>`` for a parameter (``\\sqrt{$x}``).
    """

    name: str
    scalar: Callable[..., sp.Expr]
    latex: str
    unicode: str
    public: bool = True  # False: a helper that only appears in derivatives (𝟙[z > 0])
    params: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # text words of a write-up (\operatorname{relu}, "ReLU")
    commands: tuple[str, ...] = ()  # LaTeX commands of a write-up (\sigma, \tanh)
    latex_form: str | None = None
    unicode_form: str | None = None
    domain: str = "real"  # "positive": random points keep the argument > 0 (log, sqrt)
    positive: bool = False  # f(z) > 0 for every real z: an argument built from it is positive
    derivative: Callable[..., sp.Expr] | None = None  # f'(z, *params), else derived by SymPy
    float64: Callable | None = None  # a numerically stable float64 version, else lambdify


@dataclass(frozen=True)
class Node:
    """What each pass does with one class of the expression IR.

    ``kind``: ``"symbol"`` (a quantity or an adjoint: the sweep keeps its books on it),
    ``"constant"`` (𝟏, 𝟎: nothing to differentiate) or ``"operation"``.

    - ``vjp(node, g, out)``: one adjoint contribution per child (None: not differentiated),
      through ``out``, the forward value of the node.  ``over_time``: the children are
      summed over the steps (Σ_t), so their contributions are per step.
    - ``evaluate(ev, node, t)``: the value at step ``t`` (``ev`` is the evaluator: ``ev.ev``,
      ``ev.zeros``, ``ev.number``, ``ev.exp``, ``ev.log``, ``ev.size``, ``ev.lookup``).
    - ``tidy(tidier, node)``: the node in normal form; ``"keep"`` (a leaf, as it is) or
      ``"rebuild"`` (the same node over tidied matrix arguments).
    - ``unroll(net, node, step)``: the scalar meaning entry by entry, a ``sympy.Matrix``,
      for certification (``net.entries``, ``net.value``, ``net.size``, ``net.T``).
    - ``latex``/``unicode``: the head of a function-like node without a printer method.
    """

    cls: type
    kind: str
    evaluate: Callable
    unroll: Callable | None
    vjp: Callable | None = None
    tidy: Callable | str = "rebuild"
    over_time: bool = False
    latex: str | None = None
    unicode: str | None = None


@dataclass(frozen=True)
class BuildContext:
    """What a language function's builder may ask of the parser: positioned errors and
    shape checks (``error(ast_node, message)`` returns the ``ModelError`` to raise)."""

    error: Callable
    need_vector: Callable  # (ast_node, value, fname)
    conform: Callable  # (call_node, a, b, op, where)
    text: Callable  # ast_node → its source text
    resolve: Callable  # a size → the size with pending placeholders resolved
    shape_text: Callable  # (shape, resolve) → "a vector of size n"
    pending: Callable  # a size → its placeholder symbols


@dataclass(frozen=True)
class LanguageFunction:
    """A structural function of the model language (``softmax``, ``concat``, ...).

    ``arity``: the number of arguments (None: one or more).  ``build(ctx, call, args)``
    checks the arguments (positioned errors through ``ctx``) and returns the expression;
    ``make(*args)`` builds it without checks (the claim reader's shape checks are its own).
    ``claims``: a claim may call it.  ``keywords``: the keyword arguments it takes (``axis``),
    which its builder reads off ``call.keywords``.  ``sizes``: its arguments are sizes (dims,
    positive integers: ``eye(n)``), not matrices.
    """

    name: str
    arity: int | None
    build: Callable
    make: Callable
    words: tuple[str, ...] = ()
    claims: bool = False
    keywords: tuple[str, ...] = ()
    sizes: bool = False
    commands: tuple[str, ...] = ()  # LaTeX commands of a write-up (\det)


#: Any record ``register`` takes.
Record = Elementwise | Node | LanguageFunction
_R = TypeVar("_R", Elementwise, Node, LanguageFunction)

# ---------------------------------------------------------------------------------------
# The registry.

ELEMENTWISE: dict[str, Elementwise] = {}
NODES: dict[type, Node] = {}
LANGUAGE: dict[str, LanguageFunction] = {}
#: Names the model language reserves besides the registered functions.
RESERVED_CALLS = ("Sum",)
_listeners: list[Callable[[], None]] = []


def register(record: _R) -> _R:
    """Add a record (elementwise, node or language function) to the registry; returns it."""
    if isinstance(record, Elementwise):
        ELEMENTWISE[record.name] = record
    elif isinstance(record, Node):
        NODES[record.cls] = record
    elif isinstance(record, LanguageFunction):
        LANGUAGE[record.name] = record
    else:
        raise TypeError(f"not an operation record: {record!r}")
    _changed()
    return record


def unregister(record: Record) -> None:
    """Remove a record added by ``register`` (a test's throwaway function)."""
    if isinstance(record, Elementwise):
        ELEMENTWISE.pop(record.name, None)
    elif isinstance(record, Node):
        NODES.pop(record.cls, None)
    else:
        LANGUAGE.pop(record.name, None)
    _changed()


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever the registry changes (caches derived from it)."""
    _listeners.append(listener)


def _changed() -> None:
    _RECORD_OF.clear()
    for listener in _listeners:
        listener()


#: node class → its record found along the class's MRO (every pass asks for every node it meets)
_RECORD_OF: dict[type, Node] = {}


def node_record(node: sp.Basic) -> Node:
    """The record of ``node``'s class (or of its nearest registered base class).

    An unknown node is an internal error, never passed through: a pass that met it would
    otherwise compute with a node it does not understand."""
    cls = type(node)
    record = _RECORD_OF.get(cls)
    if record is not None:
        return record
    for base in cls.__mro__:
        record = NODES.get(base)
        if record is not None:
            _RECORD_OF[cls] = record
            return record
    raise TypeError(f"internal error: no operation record for the node {type(node).__name__} ({node})")


class _FunctionNames(Sequence[str]):
    """The names a model file may call, sorted; a live view of the registry."""

    def _names(self) -> list[str]:
        return sorted([n for n, e in ELEMENTWISE.items() if e.public] + list(LANGUAGE) + list(RESERVED_CALLS))

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        e = ELEMENTWISE.get(name)
        return (e is not None and e.public) or name in LANGUAGE or name in RESERVED_CALLS

    def __add__(self, other: Iterable[str]) -> list[str]:
        return self._names() + list(other)

    def __repr__(self) -> str:
        return repr(self._names())


#: The functions of the model language (elementwise, structural and ``Sum``).
FUNCTIONS = _FunctionNames()
