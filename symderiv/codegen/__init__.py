"""Code generation in two halves: a schedule, then an emitter that prints it.

The schedule (``schedule.py``) is what the generated module computes and in which order:
statements as data (``AssignAll``: a value for all steps at once, or one without time;
``AssignStep``: one step inside the time loop; ``Accumulate``: an adjoint term by term;
``Free``: arrays nothing later reads; the allocations of the arrays the loop fills), each line
carrying the arrays and sizes it writes and reads (from the printed nodes, not the text), and
one ``ValueTable``: an expression at step t → the array that holds it (kept f(…), the log of a
softmax, f(q_t) shared by loop terms, hoisted factors, repeated subexpressions, stacks), which
the printer reads and never writes.

``plan.ModulePlan`` builds it from a derivation by applying the passes of ``passes.py`` in
order, each a small function tested on its own: splitting ``W [h; x]`` into blocks, hoisting
what a loop computes that does not need the loop, stacking gates over the same vectors into
one array (``find_stacks``), the order of in-place updates (``in_place_order``,
``in_place_step``), frees (``dead_after``, ``unused_by``).  The forward pass is planned first;
the backward pass takes what it left (its stacks; the values it kept, in the table).

A back end (``numpy.Backend``) is two classes the plan is given: a printer of one expression
(``numpy/printer.py``: ``code(e, mode, window)`` → ``schedule.Code``, the text and what the
value carries: batch axis, time axis, summed, the arrays it reads) and the idioms a statement
is written with (``numpy/idioms.py``: allocate, split into views, update in place, f(x, out=…),
guards, frees).  Then an emitter turns the schedule into its template's context
(``numpy/emitter.py`` → templates/module.py.j2), and a spelling table says how each elementwise
function is computed (``numpy/spelling.py``; a function without an entry is printed from its
meaning by SymPy's NumPy printer).

The back ends are listed in ``backends.py`` (format name → emitter, template, file suffix);
``jax/`` is the second one, functional (every update a new value, each time loop a
``lax.scan``).  A PyTorch or JAX back end reuses unchanged: ``plan.py``, ``passes.py``, ``schedule.py`` (the
statement kinds, the value table, the liveness) and ``names.py``.  It writes: a printer (the
~20 ``_print_*`` methods of ``NumpyPrinter``: ``x @ W.T`` per step, one product over all steps,
the slicing of padded sequences, the stable log-softmax), an idioms class (JAX has no in-place
updates: ``a = a + b`` for ``a += b``, ``x.at[i].set(…)`` for a slot; see the functional idioms
in tests/test_codegen_passes.py, which reuse the NumPy printer and give the same gradients), a
spelling table (``torch.sigmoid``, ``jax.nn.softplus``), and its template with its helpers.
What remains NumPy-shaped in the shared half: the printer's ``Code.form`` ("product" marks a
product over all steps as a new array, which the in-place pass starts from) and the stacking
pass's key for a vector (its printed text, used to group and order the stacks' vectors).
"""
