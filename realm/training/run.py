"""What every training recipe does the same way: open the run folder, resume, seed each step.

Under ``torchrun`` (see :mod:`realm.training.parallel`) :func:`start_run` joins the process group, rank 0
alone writes the config and checkpoints (:func:`save`), a checkpoint records the world size and
:func:`resume` refuses another one, and :func:`begin_step` seeds torch per rank."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realm import distributed
from realm.config import RunConfig, save_config
from realm.distributed import Dist, DistributedError
from realm.models.bert import use_attention
from realm.models.inputs import Specials
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.checkpoint import all_checkpoints, load_newest_good, save_checkpoint, step_generator
from realm.training.optim import lr_at, make_optimizer, set_lr

log = logging.getLogger(__name__)


@dataclass
class RunSetup:
    run_dir: Path
    device: torch.device
    tokenizer: object  # realm.data.tokenizer.WordPiece
    specials: Specials
    dist: Dist = Dist()


def start_run(cfg: RunConfig, store, run_dir: str | Path) -> RunSetup:
    """Create ``run_dir``, write the resolved config into it (rank 0), seed torch; the corpus' tokenizer.

    Joins the ``torchrun`` job if there is one (``gloo`` for ``device: cpu``; under ``nccl`` each rank uses
    ``cuda:LOCAL_RANK``)."""
    run_dir = Path(run_dir)
    device = torch.device(cfg.device)
    dist = distributed.init(backend="gloo" if device.type == "cpu" else None)
    if dist.distributed and device.type == "cuda":
        device = dist.device
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpts = all_checkpoints(run_dir)
    if ckpts:  # refused before anything in the run folder changes (resume() checks the one it loads too)
        try:
            state = json.loads((ckpts[-1] / "state.json").read_text())
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict):
            check_world_size(ckpts[-1], state)
    if dist.is_main():
        save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    return RunSetup(run_dir, device, store.tokenizer, Specials.of(store.tokenizer), dist)


def check_world_size(checkpoint: Path, state: dict) -> None:
    """A run resumes on the world size that wrote its checkpoint (the data each rank saw depends on it)."""
    saved, world = int(state.get("world_size", 1)), distributed.world_size()
    if saved != world:
        raise DistributedError(f"{checkpoint} was written by a run on {saved} process(es); this one has {world}. "
                               f"Resume with the same world size (torchrun --nproc-per-node {saved}, in all), or "
                               f"start a new run folder")


def resume(run_dir: Path, modules: dict, optimizer, what: str) -> tuple[int, dict]:
    """(first step, saved state) from the run's newest checkpoint, or (0, {}) for a fresh run."""
    ckpt, state = load_newest_good(run_dir, modules, optimizer)  # verified; damaged ones are skipped, loudly
    if ckpt is None:
        return 0, {}
    check_world_size(ckpt, state)
    log.info("resumed %s from %s (step %d)", what, ckpt, state["step"])
    return state["step"], state


def begin_step(optimizer, step: int, seed: int, lr: float, warmup: int, total: int) -> tuple[float, np.random.Generator]:
    """Set this step's learning rate and seeds; returns (lr, the step's data RNG).

    Data sampling and dropout are pure functions of (seed, step), so a resumed run continues exactly. The
    data RNG is the same on every rank (each takes its share of the global batch); torch's (dropout) is the
    rank's own, from (seed, step, rank).
    """
    lr_now = lr_at(step, lr, warmup, total)
    set_lr(optimizer, lr_now)
    d = distributed.current()
    torch.manual_seed(distributed.rank_seed(seed, step, d.rank) if d.distributed else seed * 1_000_003 + step)
    return lr_now, step_generator(seed, step)


def save(run: RunSetup, step: int, modules: dict, optimizer, state: dict | None = None) -> None:
    """A checkpoint of ``step`` (rank 0 writes it; it records the world size)."""
    if run.dist.is_main():
        save_checkpoint(run.run_dir, step, modules, optimizer, {**(state or {}), "world_size": run.dist.world_size})


def start_encoder_run(cfg: RunConfig, store, run_dir: str | Path, encoder: KnowledgeAugEncoder | None, lr: float,
                      input_len: int, what: str):
    """:func:`start_run` for a recipe that trains the knowledge-augmented encoder alone: the encoder (built
    from ``cfg.reader.encoder`` unless given), its optimizer, and the resumed step.

    ``input_len`` is the longest input the recipe reads; it must fit the encoder's position embeddings.
    Returns ``(run, encoder, optimizer, modules, first step)``.
    """
    if input_len > cfg.reader.encoder.max_positions:
        raise ValueError(f"inputs of {input_len} tokens exceed reader.encoder.max_positions "
                         f"{cfg.reader.encoder.max_positions}")
    run = start_run(cfg, store, run_dir)
    encoder = encoder or KnowledgeAugEncoder.build(cfg.reader.encoder, run.tokenizer.vocab_size, run.tokenizer.pad_id)
    use_attention(encoder, cfg.reader.encoder.attention)  # also for an encoder loaded from an earlier stage
    encoder.to(run.device).train()
    opt = make_optimizer(encoder.parameters(), lr)
    modules = {"encoder": encoder}
    start, _ = resume(run.run_dir, modules, opt, what)
    return run, encoder, opt, modules, start
