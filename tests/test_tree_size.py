"""ir.expr.tree_size, which the sweep's bound on closed forms reads: the number of nodes of an
expression written out as a tree, counted over its distinct subtrees, by recursion and, past
200 levels, with a stack of its own.  Held to a plain recursive count written here."""

from __future__ import annotations

import sympy as sp
from sympy import MatrixSymbol

from symderiv.ir.expr import Apply, At, add, hadamard, tree_size


def written_out(e: sp.Basic) -> int:
    """The reference: every node counted each time it appears (no sharing, no memo)."""
    return 1 + sum(written_out(a) for a in e.args)


n = sp.Symbol("n", integer=True, positive=True)
x = MatrixSymbol("x", n, 1)


def test_a_small_tree():
    e = add(hadamard(Apply("tanh", x), At(x, -1)), x)
    assert tree_size(e) == written_out(e)


def test_a_shared_subtree_counts_each_time_it_is_written():
    e = x
    for _ in range(12):  # each level reads the one below twice: 2^12 copies of x written out
        e = hadamard(Apply("tanh", e), Apply("sigmoid", e))
    expected = written_out(x)
    for _ in range(12):  # the product, and each Apply's node and name over its copy of the level below
        expected = 1 + 2 * (2 + expected)
    assert tree_size(e) == expected
    assert written_out(e) == expected  # the plain count agrees (2^12 copies: still quick to walk)


def test_a_tree_deeper_than_the_recursion_is_counted_by_the_stack():
    e = x
    for k in range(3000):  # far past Python's recursion limit as a recursive walk
        e = Apply("tanh" if k % 2 else "sigmoid", e)
    assert tree_size(e) == 3000 * 2 + written_out(x)  # each Apply node and its name
    # and a tree reaching the cached part from a new root
    assert tree_size(Apply("exp", e)) == 3000 * 2 + written_out(x) + 2
