"""Hand-written NumPy references for the zoo models in examples/.

Each module is a plain forward pass and a plain backward pass (BPTT written out step by
step, the way one does it on paper), sharing nothing with symderiv: no import of the
package, no generated code.  ``loss_and_grads(params, **data) -> (loss, grads)`` takes the
parameters as the generated modules store them (matrix (rows, cols), vector (n,)) and data
as (T, n) or batched (T, n, B) for a sequence, (n,) or (n, B) for a static vector; the loss
is summed over the batch.
"""
