"""Shared builders for tests: a tiny built-in world and its corpus (cached per session)."""

from __future__ import annotations

from pathlib import Path

from realm.config import load_config
from realm.data.blocks import BlockStore
from realm.data.corpus import build_corpus
from realm.data.world import generate_world, write_world


def tiny_world_corpus(root: Path, entities: int = 60, seed: int = 0, preset: str = "tiny") -> tuple[BlockStore, dict]:
    cfg = load_config(preset)
    paths = write_world(generate_world(entities, seed), root / "world")
    store, _ = build_corpus(paths["corpus"], root / "corpus", cfg.corpus, progress=False)
    return store, paths
