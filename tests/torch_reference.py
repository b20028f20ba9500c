"""An independent forward pass of a model in PyTorch, for the tests of the generated PyTorch module.

It reads the model's equations (the parser's output, not the derivation, the schedule or the
generated code) and computes them with PyTorch's own operations, one step at a time, so that
``torch.autograd`` of it is a reference for the closed-form gradients.  A value is a tensor
``(rows, cols)`` (a vector is a column, as in the maths), with a leading batch axis
``(B, rows, cols)`` once it reads batched data; so the loss of a batch is the sum over its
examples of the terms that read data plus, once, the terms that read only params (the batch
rule of MODEL_LANGUAGE.md).
"""

from __future__ import annotations

import sympy as sp
import torch
import torch.nn.functional as F
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)

from symderiv.ir.expr import (
    Apply,
    At,
    AtEnd,
    AtStep,
    ColSlice,
    Concat,
    Det,
    Diag,
    Inv,
    LogDet,
    LogSoftmax,
    Norm2,
    RowSlice,
    Softmax,
    TimeSum,
    Trace,
    Window,
)

# The elementwise functions by their PyTorch operations (what each means, not how symderiv prints it).
FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": lambda z: torch.logaddexp(z, torch.zeros_like(z)),
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "sin": torch.sin,
    "cos": torch.cos,
    "gelu": F.gelu,
    # max(z, αz) written out: F.leaky_relu's backward holds α in float32 (an error of 1.5e-9 for α = 0.1)
    "leaky_relu": lambda z, alpha: torch.where(z > 0, z, float(alpha) * z),
    "sign": torch.sign,
    "normal_cdf": lambda z: 0.5 * (1 + torch.erf(z / 2 ** 0.5)),
    "normal_pdf": lambda z: torch.exp(-z * z / 2) / (2 * torch.pi) ** 0.5,
}

# The nodes this reference computes (``Reference.ev``), each from its meaning in the language.
NODES = (HadamardPower, HadamardProduct, Identity, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix,
         Apply, At, AtEnd, AtStep, ColSlice, Concat, LogSoftmax, RowSlice, Softmax, TimeSum,
         Trace, Det, LogDet, Norm2, Inv, Diag, Window)


class Reference:
    """The forward pass of ``model`` at ``params`` (tensors, the maths' shapes) and ``data`` (the
    generated PyTorch module's layout: (T, n) / (T, B, n), (n,) / (B, n), () / (B,), a matrix
    (rows, cols) / (B, rows, cols))."""

    def __init__(self, model, params: dict, data: dict, batched: bool):
        self.model = model
        self.sizes = {}
        self.values: dict = {}
        first = next(iter(params.values()))
        self.dtype, self.device = first.dtype, first.device
        T = None
        for q in model.data:
            a = torch.as_tensor(data[q.name], dtype=self.dtype, device=self.device)
            if q.sequence:
                T = a.shape[0]
            self.values[q.name] = self._datum(q, a, batched)
        for p in model.params:
            v = params[p.name]
            self.values[p.name] = v.reshape(1, 1) if v.ndim == 0 else v.reshape(-1, 1) if v.ndim == 1 else v
            for axis, x in enumerate(p.shape):
                if x.is_Symbol:
                    self.sizes[x] = self.values[p.name].shape[axis]
        for q in model.data:
            v = self.values[q.name]
            one = v[1] if q.sequence else v
            for axis, x in enumerate(q.shape):
                if x.is_Symbol:
                    self.sizes[x] = one.shape[axis - 2]
        if model.length is not None and T is not None:
            self.sizes[model.length] = T
        self.T = T

    def _datum(self, q, a, batched):
        """Per step (a dict 1..T) or static, each (B, n, 1) batched or (n, 1) unbatched (a matrix
        (B, rows, cols) or (rows, cols): as given)."""
        def one(v):  # v: (n,) / (B, n), or () / (B,) for a scalar, or a matrix
            if q.kind == "matrix":
                return v
            if q.is_scalar:
                v = v.unsqueeze(-1)
            return v.unsqueeze(-1)
        if q.sequence:
            return {t + 1: one(a[t]) for t in range(a.shape[0])}
        return one(a)

    def size(self, x) -> int:
        return int(sp.sympify(x, strict=True).xreplace(self.sizes))

    def number(self, c) -> float:
        """A coefficient: a number, or made of dims and T (their values: ``1 / sqrt(n_k)``)."""
        return float(sp.sympify(c, strict=True).xreplace(self.sizes))

    def scalar(self, v):
        """A value per example (…) as a 1 × 1 matrix (…, 1, 1)."""
        return v[..., None, None]

    def loss(self) -> torch.Tensor:
        """The loss, every value computed when first read (so a recurrence backwards in time, a
        state computed from other values and a fixed step need no schedule of their own)."""
        m = self.model
        # The batch rule: each term of the loss summed on its own, so that a term without the batch
        # axis (a penalty) counts once, not once per example.
        e = m[m.loss].expr
        terms = e.args if isinstance(e, MatAdd) else (e,)
        return sum(self.ev(term, None).sum() for term in terms)

    def zeros(self, shape):
        return torch.zeros(self.size(shape[0]), self.size(shape[1]), dtype=self.dtype, device=self.device)

    def lookup(self, name, step):
        m = self.model
        q = m.quantities[name]
        if q.role in ("input", "target"):
            v = self.values[name]
            if not q.sequence:
                return v
            return v[step] if step in v else self.zeros(q.shape)  # data outside 1..T is zero
        if q.role == "param":
            return self.values[name]
        if not q.sequence:
            if name not in self.values:
                self.values[name] = self.ev(q.expr, None)
            return self.values[name]
        cache = self.values.setdefault(name, {})
        if step not in cache:
            if step < 1:
                value = m.states[name][step]
            elif step > self.T:
                value = m.end_states[name][step - self.T]
            else:
                value = None
            cache[step] = self.ev(q.expr, step) if value is None else (
                self.zeros(value.shape) if isinstance(value, ZeroMatrix) else self.ev(value, None))
        return cache[step]

    def ev(self, e, t):
        if isinstance(e, At):
            return self.lookup(e.base.name, t + e.offset)
        if isinstance(e, AtStep):
            return self.lookup(e.base.name, e.step)
        if isinstance(e, AtEnd):
            return self.lookup(e.base.name, self.T + e.offset)
        if isinstance(e, MatrixSymbol):
            return self.lookup(e.name, None)
        if isinstance(e, ZeroMatrix):
            return self.zeros(e.shape)
        if isinstance(e, OneMatrix):
            return self.zeros(e.shape) + 1
        if isinstance(e, Identity):
            return torch.eye(self.size(e.shape[0]), dtype=self.dtype, device=self.device)
        if isinstance(e, MatAdd):
            out = self.ev(e.args[0], t)
            for a in e.args[1:]:
                out = out + self.ev(a, t)
            return out
        if isinstance(e, MatMul):
            coeff, out = 1.0, None
            for a in e.args:
                if not getattr(a, "is_Matrix", False):
                    coeff *= self.number(a)
                    continue
                v = self.ev(a, t)
                out = v if out is None else out @ v
            return coeff * out
        if isinstance(e, HadamardProduct):
            out = self.ev(e.args[0], t)
            for a in e.args[1:]:
                out = out * self.ev(a, t)
            return out
        if isinstance(e, HadamardPower):
            return self.ev(e.args[0], t) ** float(e.args[1])
        if isinstance(e, Transpose):
            return self.ev(e.arg, t).transpose(-1, -2)
        if isinstance(e, Apply):
            if e.fname not in FUNCTIONS:
                raise NotImplementedError(f"tests/torch_reference.py has no PyTorch operation for {e.fname}")
            return FUNCTIONS[e.fname](self.ev(e.arg, t), *e.params)
        if isinstance(e, LogSoftmax):
            return torch.log_softmax(self.ev(e.arg, t), dim=-2)
        if isinstance(e, Softmax):
            return torch.softmax(self.ev(e.arg, t), dim=-2)
        if isinstance(e, Concat):
            parts = [self.ev(a, t) for a in e.args]
            lead = torch.broadcast_shapes(*(p.shape[:-2] for p in parts))
            return torch.cat([p.expand(*lead, *p.shape[-2:]) for p in parts], dim=-2)
        if isinstance(e, RowSlice):
            return self.ev(e.arg, t)[..., self.size(e.start):self.size(e.stop), :]
        if isinstance(e, ColSlice):
            return self.ev(e.arg, t)[..., :, self.size(e.start):self.size(e.stop)]
        if isinstance(e, TimeSum):
            return sum(self.ev(e.arg, s) for s in range(1, self.T + 1))
        if isinstance(e, Window):  # Sum(…, (t, first, T - last)): 1 at the steps of the range, else 0
            step = {"t": t + e.at if t is not None else None, "step": e.at, "end": self.T + e.at}[e.where]
            return self.zeros(e.shape) + float(step is not None and e.first <= step <= self.T - e.last)
        # language version 2's functions of matrices, by PyTorch's linear algebra
        if isinstance(e, Trace):
            return self.scalar(torch.einsum("...ii->...", self.ev(e.arg, t)))
        if isinstance(e, Det):
            return self.scalar(torch.linalg.det(self.ev(e.arg, t)))
        if isinstance(e, LogDet):  # of a matrix with a positive determinant
            return self.scalar(torch.log(torch.linalg.det(self.ev(e.arg, t))))
        if isinstance(e, Norm2):  # Euclidean (of a vector) or Frobenius (of a matrix)
            return self.scalar(torch.linalg.norm(self.ev(e.arg, t), dim=(-2, -1)))
        if isinstance(e, Inv):
            return torch.linalg.inv(self.ev(e.arg, t))
        if isinstance(e, Diag):  # a column v → the square matrix with v on its diagonal
            return torch.diag_embed(self.ev(e.arg, t)[..., 0])
        raise NotImplementedError(f"tests/torch_reference.py cannot compute a {type(e).__name__}")


def reference_loss(model, params: dict, data: dict, batched: bool) -> torch.Tensor:
    """The loss of ``model`` (summed over a batch), computed by PyTorch from the equations."""
    return Reference(model, params, data, batched).loss()



def computes(model) -> bool:
    """Whether this reference computes every equation of ``model``: only the nodes of ``NODES``, the
    elementwise functions of ``FUNCTIONS``, and numbers (made of dims and T, or not) as coefficients."""
    def ok(e) -> bool:
        if isinstance(e, (MatrixSymbol, ZeroMatrix, OneMatrix, Identity)):  # their args are their shapes
            return True
        if isinstance(e, Apply) and e.fname not in FUNCTIONS:
            return False
        if getattr(e, "is_Matrix", False):
            return isinstance(e, NODES) and all(ok(a) for a in e.args)
        return isinstance(e, (int, float, sp.Basic)) and all(
            x == model.length or x.name in model.dims for x in sp.sympify(e).free_symbols)

    exprs = [q.expr for q in model.quantities.values() if q.expr is not None]
    exprs += [v for steps in list(model.states.values()) + list(model.end_states.values()) for v in steps.values()]
    return all(ok(e) for e in exprs)
