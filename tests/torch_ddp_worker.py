"""One process of tests/test_backend_torch.py's DistributedDataParallel test:
``python -m tests.torch_ddp_worker MODULE DIMS RANK WORLD PORT DIR``.

Joins a gloo group on localhost, wraps the generated module's ``Model`` in
``DistributedDataParallel``, runs its half of the batch (DIR/dataRANK.pt) forward and backward,
and saves the averaged gradients to DIR/gradsRANK.pt."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def main(argv: list[str]) -> int:
    module_path, dims, rank, world, port, out = argv
    dims, rank, world, out = ast.literal_eval(dims), int(rank), int(world), Path(out)
    spec = importlib.util.spec_from_file_location(f"ddp_module_{rank}", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.set_num_threads(1)  # the test machine is shared (see tests/test_backend_torch.py)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(module.Model(dims, seed=0))
        data = torch.load(out / f"data{rank}.pt")
        model(**data).backward()
        torch.save({k: p.grad for k, p in model.module.named_parameters()}, out / f"grads{rank}.pt")
        # Both ranks reach here before either leaves: a rank that destroys its group (and exits)
        # while the other still talks to it kills that one's gloo thread ("terminate called
        # without an active exception"), which made the test flaky.
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    # Even after the barrier, tearing gloo down raced with the other rank's teardown (seen once in
    # a full run with both ranks on one CPU): the gradients are on disk, so leave without running
    # gloo's destructors, which is where the race is.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
