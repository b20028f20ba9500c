"""Code generation in two halves: a schedule, then an emitter that prints it.

The schedule (``schedule.py``) is what the generated module computes and in which order:
statements as data (``AssignAll``: a value for all steps at once, or one without time;
``AssignStep``: one step inside the time loop; ``Accumulate``: an adjoint term by term;
``Free``: arrays nothing later reads; the allocations of the arrays the loop fills), each
carrying the arrays and sizes it writes and reads, and one ``ValueTable``: an expression at
step t → the array that holds it (kept f(…), the log of a softmax, f(q_t) shared by loop terms,
hoisted factors, repeated subexpressions), which the printer reads and never writes.

``plan.ModulePlan`` builds it from a derivation by applying the passes of ``passes.py`` in
order, each a small function tested on its own: splitting ``W [h; x]`` into blocks, hoisting
what a loop computes that does not need the loop, stacking gates over the same vectors into
one array, in-place updates, frees.  The forward pass is planned first; the backward pass reads
what it left (its stacks, and the values it kept, in the table).

The NumPy back end (``numpy/``) is the printer of one expression (``printer.py``), the spelling
of the elementwise functions (``spelling.py``; a function without an entry is printed from its
meaning by SymPy's NumPy printer) and the emitter (``emitter.py``): schedule → the context of
``templates/module.py.j2``.

A second back end (PyTorch, JAX) reuses unchanged: the value table, the statement kinds and their
reads and writes, the passes' decisions (which stacks, which factors hoisted, which values kept,
shared or freed, the order of the in-place operations, ``passes.in_place_order``), and the liveness.
What is NumPy-specific and would be written again: the expression printer (``numpy/printer.py``,
~20 ``_print_*`` methods: ``x @ W.T``, ``_matvec``, slicing of padded sequences), the spelling
table, the template and its helpers (``_sigmoid``, ``_softmax_and_log``, ``_outer``), and, in
``plan.py``, the handful of NumPy idioms its statements are printed with as they are scheduled
(``np.empty`` / ``np.split`` views, ``out=`` forms).  JAX has no in-place updates: its emitter
would print ``py = py + b`` for ``("+=", b)`` and skip the views (``.at[].set`` for a slot).
"""
