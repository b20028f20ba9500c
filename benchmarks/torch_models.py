"""The seed RNN and the LSTM tagger in PyTorch (eager mode, autograd), for benchmarks/speed.py.

A step is a row block (B, n), as PyTorch's own layers have it; the data are converted once, outside the timed
region, to tensors (T, B, n). Two ways of writing each network, both plain eager code:

- ``per_step``: every layer inside the loop over t (the straightforward way, as the hand-written NumPy does);
- ``hoisted``: only the recurrence in the loop; the layers before and after it run on all T·B rows at once,
  the way the generated module does it.

Every function takes leaf tensors with ``requires_grad`` (``leaf_params``) and data tensors (``rows``) and returns
(loss tensor, gradient tensors keyed like the parameters) after ``loss.backward()``.

``python benchmarks/torch_models.py`` prints how far these are from the generated modules (relative error).
"""

import numpy as np
import torch
import torch.nn.functional as F


def leaf_params(params: dict) -> dict:
    return {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True) for k, v in params.items()}


def rows(a) -> torch.Tensor:
    """(T, n) or (T, n, B) NumPy data → a contiguous tensor (T, B, n)."""
    a = np.asarray(a, dtype=np.float64)
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, 1, 2)))


def _backward(loss, params):
    for p in params.values():
        p.grad = None
    loss.backward()
    return loss, {k: p.grad for k, p in params.items()}


def seed_rnn_per_step(p, x, r):
    T, B, _ = x.shape
    h = x.new_zeros(B, p["V"].shape[0])
    loss = x.new_zeros(())
    for t in range(T):
        a = torch.sigmoid(F.linear(x[t], p["W_in"], p["b_in"]))
        h = torch.sigmoid(F.linear(a, p["U"], p["b_h"]) + F.linear(h, p["V"]))
        o = torch.sigmoid(F.linear(h, p["W"], p["b_o"]))
        loss = loss - (r[t] * F.log_softmax(F.linear(o, p["W_out"], p["b_out"]), dim=-1)).sum()
    return _backward(loss, p)


def seed_rnn_hoisted(p, x, r):
    T, B, _ = x.shape
    pre = F.linear(torch.sigmoid(F.linear(x, p["W_in"], p["b_in"])), p["U"], p["b_h"])
    h = x.new_zeros(B, p["V"].shape[0])
    hs = []
    for t in range(T):
        h = torch.sigmoid(pre[t] + F.linear(h, p["V"]))
        hs.append(h)
    o = torch.sigmoid(F.linear(torch.stack(hs), p["W"], p["b_o"]))
    loss = -(r * F.log_softmax(F.linear(o, p["W_out"], p["b_out"]), dim=-1)).sum()
    return _backward(loss, p)


def _g(p):
    return ("W_g", "b_g") if "W_g" in p else ("W_c", "b_c")


def lstm_per_step(p, x, r):
    W_g, b_g = _g(p)
    T, B, _ = x.shape
    n_h = p["W_f"].shape[0]
    h = x.new_zeros(B, n_h)
    c = x.new_zeros(B, n_h)
    loss = x.new_zeros(())
    for t in range(T):
        z = torch.cat((h, x[t]), dim=1)
        f = torch.sigmoid(F.linear(z, p["W_f"], p["b_f"]))
        i = torch.sigmoid(F.linear(z, p["W_i"], p["b_i"]))
        o = torch.sigmoid(F.linear(z, p["W_o"], p["b_o"]))
        g = torch.tanh(F.linear(z, p[W_g], p[b_g]))
        c = f * c + i * g
        h = o * torch.tanh(c)
        loss = loss - (r[t] * F.log_softmax(F.linear(h, p["W_y"], p["b_y"]), dim=-1)).sum()
    return _backward(loss, p)


def lstm_hoisted(p, x, r):
    W_g, b_g = _g(p)
    T, B, _ = x.shape
    n_h = p["W_f"].shape[0]
    h = x.new_zeros(B, n_h)
    c = x.new_zeros(B, n_h)
    hs = []
    for t in range(T):
        z = torch.cat((h, x[t]), dim=1)
        f = torch.sigmoid(F.linear(z, p["W_f"], p["b_f"]))
        i = torch.sigmoid(F.linear(z, p["W_i"], p["b_i"]))
        o = torch.sigmoid(F.linear(z, p["W_o"], p["b_o"]))
        g = torch.tanh(F.linear(z, p[W_g], p[b_g]))
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
    loss = -(r * F.log_softmax(F.linear(torch.stack(hs), p["W_y"], p["b_y"]), dim=-1)).sum()
    return _backward(loss, p)


VARIANTS = {
    "seed_rnn": {"per step": seed_rnn_per_step, "hoisted": seed_rnn_hoisted},
    "lstm": {"per step": lstm_per_step, "hoisted": lstm_hoisted},
}


def main():
    from benchutil import load_generated, sequence_data, table

    table_rows = []
    for name, key in (("seed_rnn", "seed_rnn"), ("lstm_tagger", "lstm")):
        module = load_generated(name)
        for n, T, batch in ((32, 20, None), (64, 10, 4)):
            dims = dict.fromkeys(module.DIMS, n)
            params = module.init_params(dims, seed=0)
            data = sequence_data(T, dims, module.INPUTS, batch, seed=1)
            loss, grads = module.loss_and_gradients(params, **data)
            for variant, fn in VARIANTS[key].items():
                t_loss, t_grads = fn(leaf_params(params), rows(data["x"]), rows(data["r"]))
                pairs = [(np.asarray(loss), t_loss.detach().numpy())] + [(grads[k], t_grads[k].numpy()) for k in grads]
                worst = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)) for a, b in pairs)
                table_rows.append([name, variant, f"n={n}, T={T}, B={batch or 1}", f"{worst:.1e}"])
    print(table(["model", "variant", "size", "worst rel. error vs generated"], table_rows, "lllr"))


if __name__ == "__main__":
    main()
