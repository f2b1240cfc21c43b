"""``realm demo``: the main job on the built-in world, top to bottom."""

from __future__ import annotations

import json
import time
from pathlib import Path

from realm.config import RunConfig, save_config


def run_demo(cfg: RunConfig, out: Path) -> dict:
    from realm.data.corpus import build_corpus, corpus_summary
    from realm.data.world import generate_world, world_summary, write_world

    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    t0 = time.time()
    world = generate_world(cfg.world.entities, cfg.world.seed)
    paths = write_world(world, out / "world")
    store, _ = build_corpus(paths["corpus"], out / "corpus", cfg.corpus)
    summary = {"world": world_summary(world), "corpus": corpus_summary(store), "seconds": round(time.time() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    example = store.block_info(0)
    print(f"\nblock 0 of {len(store)} — {example['title']} ({example['doc_id']}):\n  {example['text']}")
    return summary
