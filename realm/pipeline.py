"""``realm demo``: ``realm experiment`` on the built-in world, top to bottom."""

from __future__ import annotations

import json
from pathlib import Path

from realm.config import RunConfig


def run_demo(cfg: RunConfig, out: Path, progress: bool = True) -> dict:
    from realm.data.world import generate_world, world_summary, write_world
    from realm.experiment import run_experiment

    out.mkdir(parents=True, exist_ok=True)
    world = generate_world(cfg.world.entities, cfg.world.seed, style=cfg.world.style, recap=cfg.world.recap)
    paths = write_world(world, out / "world")
    print("built-in world:", json.dumps(world_summary(world)))
    return run_experiment(cfg, paths["corpus"], paths["qa-train"], paths["qa-dev"], paths["qa-test"], out,
                          progress=progress)
