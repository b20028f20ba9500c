"""A generated module of another framework seen through the NumPy module's interface, so that
``numcheck`` runs the same checks on it (``symderiv check --backend torch``).

The adapter converts at the boundary only: NumPy arrays in the NumPy module's layout (a batch
axis last) become the framework's arrays in its layout (time first, batch second, like
``torch.nn.RNN``), float64; what comes back is converted back.  Inputs are passed without a
copy (``torch.from_numpy``), so the check that nothing is changed in place still sees the
module's writes.  The framework is imported only here, only when such a check runs.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import numpy as np

from ..ir.model import Model


class TorchAsNumpy:
    """The generated PyTorch module ``module`` with the NumPy module's entry points."""

    def __init__(self, module, model: Model):
        self.module, self.model = module, model
        self.torch = importlib.import_module("torch")
        self.quantities = model.quantities

    # --- layouts ----------------------------------------------------------------------

    def _core(self, name: str) -> int:
        """The axes of one example of ``name`` (its steps first, for a sequence)."""
        q = self.quantities[name]
        return int(q.sequence) + (0 if q.is_scalar else 1 if q.is_vector else 2)

    def _in(self, name: str, a):
        """NumPy layout → PyTorch layout: the batch axis (last) moves after the time axis (first, of a
        sequence), before a vector's or a matrix's axes."""
        a = np.asarray(a, dtype=np.float64)
        q = self.quantities[name]
        if a.ndim == self._core(name) + 1 and not q.is_scalar:
            a = np.moveaxis(a, -1, int(q.sequence))
        return self.torch.from_numpy(a) if a.flags.writeable else self.torch.tensor(a)

    def _out(self, name: str, t):
        """PyTorch layout → NumPy layout."""
        a = t.detach().cpu().numpy()
        q = self.quantities[name]
        if a.ndim == self._core(name) + 1 and not q.is_scalar:
            a = np.moveaxis(a, int(q.sequence), -1)
        return a

    def _params(self, params: dict) -> dict:
        return {k: self.torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in params.items()}

    def _data(self, data: dict) -> dict:
        return {k: self._in(k, v) for k, v in data.items()}

    def _grads(self, grads: dict) -> dict:
        return {k: v.detach().cpu().numpy() for k, v in grads.items()}

    # --- the entry points -----------------------------------------------------------------

    def init_params(self, dims, seed=0):
        return self._grads(self.module.init_params(dims, seed=seed))

    def forward(self, params, /, **data):
        values = self.module.forward(self._params(params), **self._data(data))
        return {k: self._out(k, v) for k, v in values.items()}

    def loss(self, params, /, **data):
        return float(self.module.loss(self._params(params), **self._data(data)).detach())

    def gradients(self, params, /, **data):
        """The gradients of ``loss(...).backward()``: the ``autograd.Function``'s backward pass,
        checked against ``loss_and_gradients`` (which runs it without autograd) by numcheck."""
        p = {k: v.clone().requires_grad_(True) for k, v in self._params(params).items()}
        self.module.loss(p, **self._data(data)).backward()
        return {k: (v.grad if v.grad is not None else self.torch.zeros_like(v)).numpy() for k, v in p.items()}

    def loss_and_gradients(self, params, /, **data):
        value, grads = self.module.loss_and_gradients(self._params(params), **self._data(data))
        return float(value), self._grads(grads)

    def sgd_step(self, params, grads, lr):
        return self._grads(self.module.sgd_step(self._params(params), self._params(grads), lr))


class JaxAsNumpy:
    """The generated JAX module ``module`` with the NumPy module's entry points and layout (batch
    last), its results as NumPy arrays; float64 throughout: JAX's 64-bit mode is switched on,
    through the module's own ``jax``, for each call and restored after it."""

    def __init__(self, module, model: Model):
        self.module, self.model = module, model
        self.DIMS, self.PARAMS, self.INPUTS = module.DIMS, module.PARAMS, module.INPUTS

    @contextmanager
    def _float64(self):
        jax = self.module.jax
        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            yield
        finally:
            jax.config.update("jax_enable_x64", before)

    @staticmethod
    def _axis(q) -> int:
        return 1 if q.sequence else 0

    def _data(self, data: dict) -> dict:
        out = dict(data)
        for q in self.model.data:
            v = np.asarray(data[q.name]) if q.name in data else None
            core = int(q.sequence) + int(not q.is_scalar)
            if v is not None and v.ndim == core + 1 and not q.is_scalar:
                out[q.name] = np.moveaxis(v, -1, self._axis(q))
        return out

    @staticmethod
    def _arrays(values: dict) -> dict:
        return {k: np.asarray(v) for k, v in values.items()}

    def init_params(self, dims, seed=0):
        with self._float64():
            return self._arrays(self.module.init_params(dims, seed=seed))

    def loss(self, params, /, **data):
        with self._float64():
            return float(self.module.loss(params, **self._data(data)))

    def gradients(self, params, /, **data):
        with self._float64():
            return self._arrays(self.module.gradients(params, **self._data(data)))

    def loss_and_gradients(self, params, /, **data):
        with self._float64():
            loss, grads = self.module.loss_and_gradients(params, **self._data(data))
            return float(loss), self._arrays(grads)

    def forward(self, params, /, **data):
        x = self._data(data)
        batched = any(np.ndim(x[q.name]) > int(q.sequence) + int(not q.is_scalar) for q in self.model.data)
        with self._float64():
            values = self._arrays(self.module.forward(params, **x))
        if batched:
            for q in self.model.quantities.values():
                if q.name in values and not q.is_scalar:
                    values[q.name] = np.moveaxis(values[q.name], self._axis(q), -1)
        return values

    def sgd_step(self, params, grads, lr):
        with self._float64():
            return self._arrays(self.module.sgd_step(params, grads, lr))


ADAPTERS = {"torch": TorchAsNumpy, "jax": JaxAsNumpy}
