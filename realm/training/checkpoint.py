"""Resumable training checkpoints: ``runs/NAME/checkpoints/step_000100/``.

A checkpoint folder holds one ``<module>.safetensors`` per trained module (shared tensors stored
once), ``optimizer.pt`` (tensors and numbers only, read back with ``weights_only=True``),
``rng.safetensors`` (torch RNG state) and ``state.json`` (step and recipe state). It is written
to a temp folder and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def save_checkpoint(run_dir: str | Path, step: int, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer,
                    state: dict | None = None, keep: int = 2) -> Path:
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, module in modules.items():
        save_model(module, str(tmp / f"{name}.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    py_state = random.getstate()
    full_state = {"step": step, "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
                  "numpy_rng": _numpy_state(), **(state or {})}
    (tmp / "state.json").write_text(json.dumps(full_state))
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _prune(final.parent, keep)
    return final


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    steps = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*")
                   if p.is_dir() and not p.name.endswith(".tmp") and (p / "state.json").exists())
    return steps[-1] if steps else None


def load_checkpoint(folder: str | Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore modules, optimizer and RNG from ``folder``; returns the saved state dict."""
    folder = Path(folder)
    for name, module in modules.items():
        missing, unexpected = load_model(module, str(folder / f"{name}.safetensors"), strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
    state = json.loads((folder / "state.json").read_text())
    py = state["python_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return state


def step_generator(seed: int, step: int) -> np.random.Generator:
    """The data RNG of one step: a pure function of (seed, step), so a resumed run samples the same."""
    return np.random.default_rng([seed, step])
