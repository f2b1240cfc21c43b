"""Optimiser and learning-rate schedule shared by every training recipe."""

from __future__ import annotations

import math

import torch
from torch import nn


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio * base_lr`` at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(params, lr: float, weight_decay: float = 0.01, scaled: dict | None = None) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights get no weight decay. Fused on CPU/GPU where available.

    ``scaled`` maps a name to ``(params, lr_scale)``: those parameters (taken out of ``params``) run at
    ``lr_scale`` times the scheduled learning rate (see :func:`set_lr`).
    """
    groups = []
    taken: set[int] = set()
    for name, (extra, scale) in (scaled or {}).items():
        extra = [p for p in extra if p.requires_grad]
        taken.update(id(p) for p in extra)
        groups += [{"params": [p for p in extra if p.dim() >= 2], "weight_decay": weight_decay, "lr_scale": scale, "name": name},
                   {"params": [p for p in extra if p.dim() < 2], "weight_decay": 0.0, "lr_scale": scale, "name": name}]
    params = [p for p in params if p.requires_grad and id(p) not in taken]
    groups += [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def unique_parameters(*modules: nn.Module):
    """Parameters of several modules, each shared tensor once."""
    seen, out = set(), []
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float = 1.0) -> float:
    """The one training step of every recipe: zero_grad -> backward -> clip the global gradient norm -> step.

    Returns the gradient norm before clipping.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    return float(norm)


def due(step: int, every: int, total: int) -> bool:
    """Is a periodic action (checkpoint, probe) due after ``step`` steps?  Every ``every`` steps
    (0 = never periodically) and always after the last step."""
    return step == total or (every > 0 and step % every == 0)
