"""What every training recipe does the same way: open the run folder, resume, seed each step."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realm.config import RunConfig, save_config
from realm.models.bert import use_attention
from realm.models.inputs import Specials
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.checkpoint import load_newest_good, step_generator
from realm.training.optim import lr_at, make_optimizer, set_lr

log = logging.getLogger(__name__)


@dataclass
class RunSetup:
    run_dir: Path
    device: torch.device
    tokenizer: object  # realm.data.tokenizer.WordPiece
    specials: Specials


def start_run(cfg: RunConfig, store, run_dir: str | Path) -> RunSetup:
    """Create ``run_dir``, write the resolved config into it, seed torch; the corpus' tokenizer."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    return RunSetup(run_dir, torch.device(cfg.device), store.tokenizer, Specials.of(store.tokenizer))


def resume(run_dir: Path, modules: dict, optimizer, what: str) -> tuple[int, dict]:
    """(first step, saved state) from the run's newest checkpoint, or (0, {}) for a fresh run."""
    ckpt, state = load_newest_good(run_dir, modules, optimizer)  # verified; damaged ones are skipped, loudly
    if ckpt is None:
        return 0, {}
    log.info("resumed %s from %s (step %d)", what, ckpt, state["step"])
    return state["step"], state


def begin_step(optimizer, step: int, seed: int, lr: float, warmup: int, total: int) -> tuple[float, np.random.Generator]:
    """Set this step's learning rate and seeds; returns (lr, the step's data RNG).

    Data sampling and dropout are pure functions of (seed, step), so a resumed run continues exactly.
    """
    lr_now = lr_at(step, lr, warmup, total)
    set_lr(optimizer, lr_now)
    torch.manual_seed(seed * 1_000_003 + step)
    return lr_now, step_generator(seed, step)


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
