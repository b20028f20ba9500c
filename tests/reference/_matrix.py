"""The batch of the matrix references (no symderiv code): a batch is the sum of its examples."""

import numpy as np


def summed(one, ranks):
    """``loss_and_grads`` from ``one(params, **example)``: ``ranks`` gives the axes of one
    example's value of each datum (0 scalar, 1 vector, 2 matrix); an extra last axis is the batch."""
    def loss_and_grads(params, **data):
        data = {k: np.asarray(v, dtype=float) for k, v in data.items()}
        sizes = {v.shape[-1] for k, v in data.items() if v.ndim > ranks[k]}
        if not sizes:
            return one(params, **data)
        (B,) = sizes
        loss, grads = 0.0, {k: np.zeros(np.shape(v)) for k, v in params.items()}
        for b in range(B):
            example = {k: v[..., b] if v.ndim > ranks[k] else v for k, v in data.items()}
            lb, gb = one(params, **example)
            loss += lb
            grads = {k: grads[k] + gb[k] for k in grads}
        return loss, grads
    return loss_and_grads
