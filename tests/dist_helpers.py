"""Run a function on N local processes joined in a gloo group, as ``torchrun`` would launch them."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args) -> None:
    # the environment torchrun gives each worker
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from realm import distributed

    d = distributed.init(backend="gloo", timeout_s=120)
    assert (d.rank, d.world_size, d.backend) == (rank, world, "gloo")
    try:
        fn(d, *args)
    finally:
        distributed.shutdown()


def launch(fn, world: int = 2, *args) -> None:
    """``fn(dist, *args)`` on ``world`` spawned ranks; an exception on any rank fails the call.
    ``fn`` must be importable (module level)."""
    mp.start_processes(_entry, args=(world, free_port(), fn, args), nprocs=world, start_method="spawn", join=True)
