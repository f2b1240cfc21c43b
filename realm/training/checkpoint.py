"""Resumable training checkpoints: ``runs/NAME/checkpoints/step_000100/``.

A checkpoint folder holds one ``<module>.safetensors`` per trained module (shared tensors stored
once), ``optimizer.pt`` (tensors and numbers only, read back with ``weights_only=True``),
``rng.safetensors`` (torch RNG state) and ``state.json`` (step and recipe state). It is written
to a temp folder and renamed into place, so a crash never leaves a half-written checkpoint.

``files.json`` records every file's size and sha256; :func:`load_checkpoint` verifies them before it
reads anything, and any damage (a changed byte, a truncated file, unreadable ``state.json``) raises
:class:`CheckpointError` naming the file. :func:`load_newest_good` resumes from the newest checkpoint
that verifies and says which ones it skipped. Older checkpoints are pruned only after the new one
has been read back and verified.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from realm.data.errors import InputError
from realm.index.store import file_record, fsync_path, pin_versions, remove_atomically, sweep_trash, verify_files

log = logging.getLogger(__name__)
FILES = "files.json"


class CheckpointError(InputError):
    """A checkpoint is damaged or incomplete; the message names the file (the CLI exits with code 2)."""

    def __init__(self, message: str):
        self.path, self.line, self.message = "", None, message
        ValueError.__init__(self, message)


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def save_checkpoint(run_dir: str | Path, step: int, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer,
                    state: dict | None = None, keep: int = 2) -> Path:
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sweep_trash(final.parent)  # left by a run killed while it pruned
    tmp.mkdir(parents=True)
    for name, module in modules.items():
        save_model(module, str(tmp / f"{name}.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    py_state = random.getstate()
    full_state = {"step": step, "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
                  "numpy_rng": _numpy_state(), **(state or {})}
    (tmp / "state.json").write_text(json.dumps(full_state))
    records = {p.name: file_record(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    (tmp / FILES).write_text(json.dumps(records, indent=1))
    for p in tmp.iterdir():
        fsync_path(p)
    fsync_path(tmp)
    if final.exists():
        remove_atomically(final)
    os.rename(tmp, final)
    fsync_path(final.parent)
    verify_checkpoint(final)  # prune older checkpoints only once this one reads back intact
    _prune(final.parent, keep)
    if "index_version" in (state or {}) and (Path(run_dir) / "index").is_dir():
        _pin_indexes(Path(run_dir))
    return final


def _pin_indexes(run_dir: Path) -> None:
    """Keep every index version a kept checkpoint refers to: a resumed run continues with the exact index."""
    versions = []
    for folder in all_checkpoints(run_dir):
        try:
            v = json.loads((folder / "state.json").read_text()).get("index_version")
        except (OSError, ValueError):
            continue
        if isinstance(v, int):
            versions.append(v)
    pin_versions(run_dir / "index", versions)


def verify_checkpoint(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first file whose size or sha256 differs from ``files.json``.

    A checkpoint written before ``files.json`` existed is accepted unverified."""
    folder = Path(folder)
    path = folder / FILES
    if not path.exists():
        if not (folder / "state.json").exists():
            raise CheckpointError(f"{folder / 'state.json'}: missing; the checkpoint is incomplete")
        return
    try:
        files = json.loads(path.read_text())
        ok = isinstance(files, dict) and all(isinstance(v, dict) for v in files.values())
    except (ValueError, UnicodeDecodeError, RecursionError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: not a valid file list; the checkpoint is damaged")
    verify_files(folder, files, error=CheckpointError)


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[:-keep]:
        remove_atomically(old)  # never visible half-deleted, even if the run is killed here


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def all_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*")
                  if p.is_dir() and not p.name.endswith(".tmp") and (p / "state.json").exists())


def load_newest_good(run_dir: str | Path, modules: dict[str, nn.Module],
                     optimizer: torch.optim.Optimizer | None) -> tuple[Path | None, dict]:
    """Load the newest checkpoint that verifies; (folder, state), or (None, {}) if there is none.

    A damaged newer checkpoint is reported (warning + stderr) and skipped; if every checkpoint is
    damaged, :class:`CheckpointError` is raised rather than silently starting over."""
    ckpts = all_checkpoints(run_dir)
    errors = []
    for folder in reversed(ckpts):
        try:
            verify_checkpoint(folder)
            state = load_checkpoint(folder, modules, optimizer, verify=False)
        except CheckpointError as e:
            errors.append(str(e))
            msg = f"checkpoint {folder.name} is damaged ({e}); falling back to an older one"
            log.info(msg)  # and always on stderr, whether or not logging is configured
            print(f"realm: warning: {msg}", file=sys.stderr, flush=True)
            continue
        if errors:
            print(f"realm: resuming from {folder} (newest good checkpoint)", file=sys.stderr, flush=True)
        return folder, state
    if errors:
        raise CheckpointError(f"no usable checkpoint in {Path(run_dir) / 'checkpoints'}: " + "; ".join(errors))
    return None, {}


def load_checkpoint(folder: str | Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer | None,
                    verify: bool = True) -> dict:
    """Restore modules, optimizer and RNG from ``folder``; returns the saved state dict.

    Raises :class:`CheckpointError` (naming the file) if the checkpoint is damaged. Files are verified
    before anything is loaded, so a damaged checkpoint leaves ``modules`` untouched."""
    folder = Path(folder)
    if verify:
        verify_checkpoint(folder)
    path = folder / "state.json"
    try:
        state = json.loads(path.read_text())
        py = state["python_rng"]
        np_state = state["numpy_rng"]
        int(state["step"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint state ({type(e).__name__}: {e})") from None
    for name, module in modules.items():
        path = folder / f"{name}.safetensors"
        try:
            load_model(module, str(path), strict=True)
        except Exception as e:  # safetensors raises several types for damaged headers
            raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {e})") from None
    if optimizer is not None:
        path = folder / "optimizer.pt"
        try:
            optimizer.load_state_dict(torch.load(path, weights_only=True))
        except Exception as e:
            raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {e})") from None
    path = folder / "rng.safetensors"
    try:
        torch.set_rng_state(load_file(str(path))["torch"])
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {e})") from None
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = np_state
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return state


def step_generator(seed: int, step: int) -> np.random.Generator:
    """The data RNG of one step: a pure function of (seed, step), so a resumed run samples the same."""
    return np.random.default_rng([seed, step])
