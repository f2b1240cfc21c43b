"""Data parallelism for the recipes: what a training loop does differently under ``torchrun``.

Every recipe follows the same rules (docs/distributed.md), and this module holds them so that a loop
stays the single-process loop with a few calls added:

* **Data.** A step's *global* batch is drawn from the step RNG, identical on every rank (a function of
  ``(seed, step)``); each rank keeps its contiguous slice (:func:`local_part`). N ranks see the examples one
  process sees. Randomness drawn *after* the split (e.g. per-question swaps in fine-tuning) comes from
  :func:`step_rng`: the step RNG in one process, ``rank_generator(seed, step, rank)`` in a job.
* **Gradients.** :class:`Replicas` puts the trained modules under one ``DistributedDataParallel``;
  :meth:`Replicas.run` executes the step's whole forward pass and loss (one function, however many
  sub-modules and passes it uses) inside DDP's ``forward``, so the backward pass averages the gradients
  over ranks. In one process it just calls the function.
* **Losses** that are means over a count that differs between ranks (masked tokens, questions with a
  correct span) are turned into their share of the global mean with :func:`global_counts` /
  :func:`mean_scale` (DDP divides the summed gradient by the world size).
* **Rank 0 alone** writes metrics (:func:`metric_logger` is silent elsewhere), checkpoints and plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from realm import distributed
from realm.distributed import Dist
from realm.training.logger import MetricLogger


class Replicas(nn.Module):
    """The modules a recipe trains, as one ``DistributedDataParallel`` in a job (``find_unused_parameters``:
    a step need not touch every parameter, e.g. a frozen retriever's pooler)."""

    def __init__(self, modules: dict[str, nn.Module], dist: Dist | None = None):
        super().__init__()
        self.dist = dist or distributed.current()
        self.parts = nn.ModuleDict({k: m for k, m in modules.items()
                                    if any(p.requires_grad for p in m.parameters())})
        ddp = self.dist.wrap(self, find_unused_parameters=True, broadcast_buffers=False) \
            if self.dist.distributed and len(self.parts) else None
        object.__setattr__(self, "_ddp", ddp)  # not a submodule: DDP holds this module

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(*args, **kwargs)

    def run(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` (the step's forward and loss); under DDP in a job, so that the backward
        pass of the loss it returns averages the gradients over the ranks."""
        return self._ddp(fn, *args, **kwargs) if self._ddp is not None else fn(*args, **kwargs)


def local_part(items: Sequence, dist: Dist | None = None):
    """This rank's contiguous share of a global batch (its length must divide by the world size)."""
    dist = dist or distributed.current()
    return items[dist.local_slice(len(items))] if dist.distributed else items


def step_rng(rng: np.random.Generator, seed: int, step: int, dist: Dist | None = None) -> np.random.Generator:
    """The RNG for what a rank draws after the split: ``rng`` (the step's) in one process, else the rank's own
    stream, a pure function of ``(seed, step, rank)``."""
    dist = dist or distributed.current()
    return distributed.rank_generator(seed, step, dist.rank) if dist.distributed else rng


def global_counts(*local: float) -> tuple[float, ...]:
    """Sums over the ranks of each of ``local`` (one collective; the values themselves in one process)."""
    if distributed.world_size() == 1:
        return tuple(float(x) for x in local)
    gathered = distributed.all_gather(torch.tensor([float(x) for x in local], dtype=torch.float64))
    return tuple(gathered.sum(0).tolist())


def mean_scale(local: float, total: float, world: int | None = None) -> float:
    """The factor that turns a rank's mean over its ``local`` items into its share of the mean over all
    ``total`` items, given that DDP averages the gradients: ``world * local / total`` (1 in one process).

    With ``loss_r = S_r / local_r`` on each rank, ``(1/W) Σ_r loss_r * W local_r / total = Σ_r S_r / total``.
    """
    world = distributed.world_size() if world is None else world
    if world == 1 or total <= 0:
        return 1.0
    return world * local / total


def global_token_mean(loss: torch.Tensor, local_tokens: int) -> torch.Tensor:
    """``loss``, a mean over this rank's ``local_tokens`` masked tokens, as its share of the mean over the
    global batch's tokens (one collective; ``loss`` itself in one process)."""
    return loss * mean_scale(local_tokens, *global_counts(local_tokens))


def mean_metrics(metrics: dict, sums: Sequence[str] = ()) -> dict:
    """``metrics`` averaged over the ranks (keys in ``sums`` summed, e.g. tokens/s); a key some rank lacks or
    holds as None is averaged over the ranks that have it, and a value equal on every rank (the step's
    learning rate, the index version) is kept as it is. One collective; ``metrics`` in one process."""
    if distributed.world_size() == 1:
        return metrics
    rows = distributed.all_gather_object({k: _num(v) for k, v in metrics.items()})
    out = {}
    for k in sorted(metrics.keys() | set().union(*rows)):
        vals = [r[k] for r in rows if isinstance(r.get(k), float)]
        if not vals or (k not in sums and len(vals) == len(rows) and len(set(vals)) == 1 and k in metrics):
            out[k] = metrics.get(k)
        else:
            out[k] = float(np.sum(vals)) if k in sums else float(np.mean(vals))
    return out


def _num(v):
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or v is None:
        return v
    return float(v) if isinstance(v, (int, float, np.integer, np.floating)) else v


class _Silent:
    """The metric logger of ranks other than 0."""

    def log(self, step: int, metrics: dict) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def metric_logger(*args, **kwargs) -> MetricLogger | _Silent:
    """A :class:`MetricLogger` on rank 0, a silent one elsewhere."""
    return MetricLogger(*args, **kwargs) if distributed.is_main() else _Silent()


def embed_all(doc_encoder: nn.Module, store, batch_size: int, bf16: bool, device) -> np.ndarray:
    """[N, d] float32 embeddings of every block of ``store``: each rank embeds its contiguous share and the
    shares are all-gathered (one process embeds all)."""
    from realm.index.build import embed_blocks

    lo, hi = distributed.current().row_range(len(store))
    mine = embed_blocks(doc_encoder, store, np.arange(lo, hi), batch_size=batch_size, bf16=bf16, device=device,
                        progress=False)
    if distributed.world_size() == 1:
        return mine
    dim = doc_encoder.dense.out_features
    mine = torch.from_numpy(np.asarray(mine, np.float32).reshape(hi - lo, dim))
    return torch.cat(distributed.all_gather_rows(mine)).numpy()
