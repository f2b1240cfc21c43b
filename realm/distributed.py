"""Data-parallel primitives on ``torch.distributed``: one place that knows about ranks.

A script launched by ``torchrun`` finds its place in the job in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init` reads them, picks the
backend (``nccl`` when CUDA is available, ``gloo`` otherwise) and joins the process group. Launched
without ``torchrun`` (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) it joins nothing and every helper here
degrades to its single-process meaning, so recipes call the same code either way::

    with distributed.init() as d:              # Dist(rank, world_size, local_rank, backend, device)
        b = d.local_batch_size(cfg.batch_size)  # global batch -> this rank's share (error if not divisible)
        model = d.wrap(model)                  # DistributedDataParallel when world_size > 1
        ...
        if d.is_main():                        # rank 0 alone writes checkpoints, metrics, plots
            save(...)
        d.barrier()

Randomness: the *global* batch of a step is drawn from an RNG every rank seeds identically (e.g.
``np.random.default_rng([seed, step])``), and each rank takes its contiguous slice
(:meth:`Dist.local_slice`), so the data seen by N ranks is the data one process would see. What must
differ between ranks (dropout, masking of its own examples) comes from :func:`rank_generator` /
:func:`rank_seed`, pure functions of ``(seed, step, rank)``: a run is reproducible for a fixed world size.

Collectives (:func:`all_gather`, :func:`all_gather_rows`, :func:`broadcast_object`, :func:`barrier`) move
tensors through the backend's device (CUDA for nccl, CPU for gloo) and hand results back on the caller's
device.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as tdist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A launch environment or a per-rank split that cannot work (the message says what to change)."""


def _active() -> bool:
    return tdist.is_available() and tdist.is_initialized()


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process' place in the job. ``backend`` is None for a single process without a group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    # -- who am I
    def is_main(self) -> bool:
        """True on rank 0: the one rank that writes checkpoints, metrics, plots and publishes indexes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # -- splitting work
    def local_batch_size(self, global_batch_size: int) -> int:
        return local_batch_size(global_batch_size, self.world_size)

    def local_slice(self, global_batch_size: int) -> slice:
        """This rank's contiguous part ``[rank*b, (rank+1)*b)`` of a global batch of ``global_batch_size``."""
        b = self.local_batch_size(global_batch_size)
        return slice(self.rank * b, (self.rank + 1) * b)

    def row_range(self, num_rows: int) -> tuple[int, int]:
        return row_range(num_rows, self.rank, self.world_size)

    # -- models and sync
    def wrap(self, model: torch.nn.Module, **ddp_kwargs) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` (gradients averaged over ranks) in a group, else ``model``."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)

    def barrier(self) -> None:
        barrier()

    def shutdown(self) -> None:
        shutdown()

    def __enter__(self) -> "Dist":
        return self

    def __exit__(self, *exc) -> bool:
        self.shutdown()
        return False


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"environment variable {name}={raw!r} is not an integer") from None


def auto_backend() -> str:
    """``nccl`` when CUDA (and NCCL) are available, else ``gloo``."""
    if torch.cuda.is_available() and tdist.is_nccl_available():
        return "nccl"
    return "gloo"


def current() -> Dist:
    """This process' :class:`Dist` from the live process group (or the single-process one)."""
    if not _active():
        return Dist(device=torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    backend = tdist.get_backend()
    local = _env_int("LOCAL_RANK", 0)
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    return Dist(tdist.get_rank(), tdist.get_world_size(), local, backend, device)


def init(backend: str | None = None, timeout_s: float = 1800.0) -> Dist:
    """Join the process group described by torchrun's environment; a no-op for a single process.

    ``backend`` defaults to :func:`auto_backend`. Calling it again in a process that already joined
    returns the same :class:`Dist`. Raises :class:`DistributedError` for an incomplete environment.
    """
    world = _env_int("WORLD_SIZE", 1)
    if _active():
        return current()
    if world <= 1:
        return current()
    missing = [v for v in ENV_VARS if v not in os.environ and v != "LOCAL_RANK"]
    if missing:
        raise DistributedError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with torchrun "
                               "(see docs/distributed.md)")
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is outside [0, WORLD_SIZE={world})")
    backend = backend or auto_backend()
    if backend == "nccl":
        torch.cuda.set_device(local)
    tdist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                             timeout=timedelta(seconds=timeout_s))
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        exit_with_launcher()
    return current()


def exit_with_launcher(poll_s: float = 0.5) -> threading.Thread:
    """End this worker as soon as its launcher is gone (being reparented).

    ``torchrun`` starts each worker in a session of its own, so a ``torchrun`` that is killed (SIGKILL, the
    OOM killer) leaves its workers running; they would go on training and writing into the run folder that
    a resumed job is using. :func:`init` arms this in every worker ``torchrun`` started."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    t = threading.Thread(target=watch, name="launcher-watch", daemon=True)
    t.start()
    return t


def shutdown() -> None:
    """Leave the process group (after a final barrier, so no rank exits while others still talk)."""
    if _active():
        tdist.barrier()
        tdist.destroy_process_group()


def rank() -> int:
    return tdist.get_rank() if _active() else 0


def world_size() -> int:
    return tdist.get_world_size() if _active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if _active():
        tdist.barrier()


# ------------------------------------------------------------------------------------- splitting
def local_batch_size(global_batch_size: int, world: int | None = None) -> int:
    """``global_batch_size / world`` (batch sizes in configs are global); an error if it does not divide."""
    world = world_size() if world is None else world
    if global_batch_size < 1:
        raise DistributedError(f"the global batch size must be >= 1, got {global_batch_size}")
    if global_batch_size % world:
        raise DistributedError(
            f"global batch size {global_batch_size} does not split over {world} ranks; use a multiple of {world} "
            f"(e.g. {max(world, global_batch_size // world * world)})")
    return global_batch_size // world


def row_range(num_rows: int, rank_: int, world: int) -> tuple[int, int]:
    """Contiguous ``[start, end)`` of ``num_rows`` for ``rank_`` of ``world``: sizes differ by at most one,
    the first ``num_rows % world`` ranks taking the extra row."""
    if not 0 <= rank_ < world:
        raise DistributedError(f"rank {rank_} is outside [0, {world})")
    base, extra = divmod(int(num_rows), world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (rank_ < extra)


# ------------------------------------------------------------------------------------- randomness
def rank_generator(seed: int, step: int, rank_: int) -> np.random.Generator:
    """numpy RNG of one rank at one step: a pure function of ``(seed, step, rank)``."""
    return np.random.default_rng([seed, step, rank_])


def rank_seed(seed: int, step: int, rank_: int) -> int:
    """A 63-bit seed for ``torch.manual_seed`` (dropout), a pure function of ``(seed, step, rank)``."""
    return int(np.random.SeedSequence([seed, step, rank_]).generate_state(1, np.uint64)[0] >> np.uint64(1))


# ------------------------------------------------------------------------------------- collectives
def _comm_device() -> torch.device:
    return current().device if _active() else torch.device("cpu")


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """Stack every rank's ``t`` (same shape and dtype on all ranks) -> ``[world, *t.shape]`` on t's device."""
    if not _active():
        return t.unsqueeze(0)
    dev = _comm_device()
    x = t.detach().to(dev).contiguous()
    out = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
    tdist.all_gather(out, x)
    return torch.stack(out).to(t.device)


def all_gather_rows(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``t`` ([n_r, ...]; ``n_r`` may differ between ranks, the rest must not), in rank order."""
    if not _active():
        return [t]
    sizes = all_gather(torch.tensor([t.shape[0]], dtype=torch.int64)).flatten().tolist()
    pad = torch.zeros((max(sizes) - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    stacked = all_gather(torch.cat([t, pad]))
    return [stacked[r, :n] for r, n in enumerate(sizes)]


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (small picklable values between our own ranks only)."""
    if not _active():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj`` (small picklable values between our own ranks only), in rank order."""
    if not _active():
        return [obj]
    out = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


class _GatherWithGrad(torch.autograd.Function):
    """Forward: every rank's rows, in rank order. Backward: the gradient of this rank's rows, summed over
    the ranks (each rank's loss may depend on every rank's rows)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        dev = _comm_device()
        x = t.detach().to(dev).contiguous()
        out = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(out, x)
        ctx.rank, ctx.rows, ctx.device = tdist.get_rank(), t.shape[0], t.device
        return torch.cat(out).to(t.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.detach().to(_comm_device()).contiguous()
        tdist.all_reduce(g, op=tdist.ReduceOp.SUM)
        return g[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows].to(ctx.device)


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """``cat`` of every rank's ``t`` ([n, ...], the same shape on all ranks) with gradient to each rank's part.

    Under DDP (which averages parameter gradients over ranks) a loss ``L_r`` on each rank that reads the
    gathered rows then trains every rank's rows as ``(1/W) Σ_r L_r`` would: ICT's in-batch negatives over
    the global batch.
    """
    if not _active():
        return t
    return _GatherWithGrad.apply(t)
