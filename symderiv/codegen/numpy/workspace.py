"""The generated NumPy module's memory: lines outside the time loops rewritten to write into its workspace.

A line of the schedule computes a value with NumPy's operators and functions (``d = r_hat - r``,
``z = _matvec(W, x)``, ``g = 1 - (t ** 2)``), each of which allocates a new array.  At the sizes where
that matters, fresh memory is a page fault per 4 KiB on every call.  This pass rewrites a line (its
Python syntax tree, never its text) so that every array-valued operation takes its result array from
the module's workspace (``_Workspace`` in templates/module.py.j2):

- ``a + b``, ``a - b``, ``a * b``, ``a / b``, ``-a``, ``a ** 2`` (``np.square``), ``a ** p``, ``a @ b``,
  and the NumPy ufuncs (``np.tanh(a)``, ``np.logaddexp(a, b)``) → ``_ws.op(np.subtract, a, b)``,
  ``_ws.op1(np.tanh, a)``, ``_ws.mm(a, b)``: the ufunc with ``out=`` an array of the workspace;
- the module's helpers that write into an ``out`` (``_sigmoid``), one product over all steps
  (``_matvec``), ``_softmax_and_log`` and the concatenations, and the allocations ``np.empty`` /
  ``np.zeros``, through the workspace's method of the same job.
- ``np.sum(a, axis=…)`` → ``np.add.reduce(a, axis=…)``: the same reduction (``np.sum`` of an array is
  that call behind a Python wrapper that costs as much as the sum of a small array).

Which array is free is decided at run time by the workspace (an array nothing but the workspace refers
to any more), not here: the rewrite needs no liveness of its own, and a value still read (by its name,
through a view of it, or on Python's stack inside an expression) is never overwritten.  Where an
operand is not a float array of the module's dtype (a size, an integer, a mask), the method computes
as NumPy would, so a rewritten line means what the original meant.

Only lines outside the time loops are rewritten (no indentation): a step's arrays are (B, n), small, and
the loop's lines already write into their slots.
"""

from __future__ import annotations

import ast

import numpy as np

# ``a OP b`` → the ufunc computing it
_BINARY = {ast.Add: "np.add", ast.Sub: "np.subtract", ast.Mult: "np.multiply", ast.Div: "np.divide"}
# the module's helpers of one array with an ``out`` argument
_HELPERS_OUT = {"_sigmoid"}
# the module's helpers the workspace has a method for: name → the method
_METHODS = {"_matvec": "matvec", "_softmax_and_log": "softmax_and_log", "_concat": "concat",
            "np.concatenate": "concatenate", "np.empty": "empty", "np.zeros": "zeros"}
# the keywords of an ``np.sum`` written as ``np.add.reduce``: along an axis
_SUM_KEYWORDS = ({"axis"}, {"axis", "keepdims"})


def _is_ufunc(name: str) -> bool:
    """Whether ``name`` (``np.tanh``) is a NumPy ufunc (with ``out=``, computing entry by entry)."""
    if not name.startswith("np.") or name.count(".") != 1:
        return False
    return isinstance(getattr(np, name[3:], None), np.ufunc)


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.parse(func, mode="eval").body, args=list(args), keywords=[])


class _Pooled(ast.NodeTransformer):
    def __init__(self, sizes: frozenset[str]):
        self.sizes = sizes  # the names of sizes (T, B, the dims): integers, not arrays

    def _size(self, node: ast.expr) -> bool:
        """Whether ``node`` is arithmetic of numbers and sizes only (T + 1): no array in it."""
        return all(isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Load))
                   or (isinstance(n, ast.Name) and n.id in self.sizes) for n in ast.walk(node))

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        if self._size(node):
            return node
        op = type(node.op)
        if op in _BINARY:
            return _call("_ws.op", ast.parse(_BINARY[op], mode="eval").body, node.left, node.right)
        if op is ast.MatMult:
            return _call("_ws.mm", node.left, node.right)
        if op is ast.Pow:
            if isinstance(node.right, ast.Constant) and node.right.value == 2:
                return _call("_ws.op1", ast.parse("np.square", mode="eval").body, node.left)
            return _call("_ws.op", ast.parse("np.power", mode="eval").body, node.left, node.right)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
            return _call("_ws.op1", ast.parse("np.negative", mode="eval").body, node.operand)
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        name = ast.unparse(node.func)
        if any(isinstance(a, ast.Starred) for a in node.args):
            return node
        if name == "np.sum" and len(node.args) == 1 and {k.arg for k in node.keywords} in _SUM_KEYWORDS:
            # what ``np.sum`` computes along an axis, without its Python wrapper (half its time on a small array)
            return ast.Call(func=ast.parse("np.add.reduce", mode="eval").body, args=node.args, keywords=node.keywords)
        if node.keywords:
            return node
        if name in _METHODS:
            return _call(f"_ws.{_METHODS[name]}", *node.args)
        if name in _HELPERS_OUT and len(node.args) == 1:
            return _call("_ws.op1", node.func, node.args[0])
        if _is_ufunc(name) and len(node.args) in (1, 2):
            return _call("_ws.op1" if len(node.args) == 1 else "_ws.op", node.func, *node.args)
        return node


def pooled(text: str, sizes: frozenset[str] = frozenset()) -> str:
    """The line ``text`` with every array it computes taken from the workspace ``_ws`` (see above),
    ``sizes`` the names of sizes (integers: T, B, the dims' names in the code);
    a line that is not one statement at the top level (indented: inside a loop or a guard; a loop's
    header; a comment) is returned as it is."""
    if not text or text[0].isspace() or text.startswith(("#", "for ", "if ", "del ")):
        return text
    try:
        tree = ast.parse(text)
    except (SyntaxError, RecursionError, MemoryError):  # too deeply nested to parse: left as NumPy's
        return text
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Assign, ast.AugAssign, ast.Expr)):
        return text
    comment = ""
    head, sep, tail = text.partition("  # ")
    if sep:  # a trailing comment (``# what``) is kept: unparsing drops it
        comment = sep + tail
    try:
        new = _Pooled(sizes).visit(tree.body[0])
        return ast.unparse(new) + comment
    except RecursionError:  # an expression nested deeper than the rewrite recurses: left as NumPy's
        return text
