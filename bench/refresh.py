"""Index refresh during REALM pretraining: the builder's blocks/s, and how much it slows training.

REALM pretraining (demo preset models, asynchronous refresh every few steps) runs on a corpus large enough
that each rebuild takes several seconds. The builder process (1 torch thread, :class:`IndexBuilderProcess`)
logs when each build started and ended; a training step counts as "during a refresh" when most of it
overlaps a build. The slowdown is the median step time during builds / the median step time outside them,
in the same run. Each trainer thread setting is a separate run (the builder always has 1 thread): on this
2-core machine, 1 trainer thread leaves the builder a core of its own; 2 make them share.
"""
from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import Result

BUILT = re.compile(r"built v(\d+) from snapshot step (\d+) in ([\d.]+) s \(from ([\d.]+) to ([\d.]+)\)")


def build_intervals(log: str) -> list[tuple[float, float]]:
    """(start, end) wall times of the builds the builder logged."""
    return [(float(m.group(4)), float(m.group(5))) for m in BUILT.finditer(log)]


def split_steps(rows: list[dict], builds: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Step times (s) of steps mostly inside a build, and of steps that overlap none."""
    during, outside = [], []
    for r in rows:
        if "perf/step_s" not in r:
            continue
        end, dt = r["time"], r["perf/step_s"]
        start = end - dt
        overlap = sum(max(0.0, min(end, b1) - max(start, b0)) for b0, b1 in builds)
        if overlap >= 0.5 * dt:
            during.append(dt)
        elif overlap == 0:
            outside.append(dt)
    return during, outside


def one_run(store, root: Path, trainer_threads: int, steps: int, refresh_every: int) -> dict:
    import torch

    from realm.config import load_config
    from realm.training.logger import read_metrics
    from realm.training.pretrain import pretrain

    cfg = load_config("demo", [f"pretrain.steps={steps}", "pretrain.refresh_mode=async",
                               f"pretrain.refresh_every={refresh_every}", "pretrain.max_staleness=0",
                               "pretrain.probe_every=0", "pretrain.reading_rows=0", "pretrain.counterfactual=0",
                               f"pretrain.checkpoint_every={steps}", f"threads={trainer_threads}"])
    saved = torch.get_num_threads()
    torch.set_num_threads(trainer_threads)
    run = root / f"run-t{trainer_threads}"
    try:
        t0 = time.time()
        pretrain(cfg, store, run, progress=False)
        wall = time.time() - t0
    finally:
        torch.set_num_threads(saved)
    rows = read_metrics(run / "metrics.jsonl")[5:]  # the first steps warm up
    log = (run / "index-builder.log").read_text()
    builds = build_intervals(log)
    during, outside = split_steps(rows, builds)
    secs = [b1 - b0 for b0, b1 in builds]
    return {"trainer_threads": trainer_threads, "builds": len(builds), "build_s": statistics.median(secs),
            "blocks_per_s": len(store) / statistics.median(secs), "steps_during": len(during),
            "steps_outside": len(outside), "step_s_during": statistics.median(during) if during else float("nan"),
            "step_s_outside": statistics.median(outside) if outside else float("nan"),
            "ratio": (statistics.median(during) / statistics.median(outside)) if during and outside else float("nan"),
            "wall_s": wall}


def run(argv: list[str], quick: bool) -> Result:
    p = argparse.ArgumentParser(prog="python -m bench refresh")
    p.add_argument("--entities", type=int, default=800 if quick else 3000, help="world size (blocks ~ 2x)")
    p.add_argument("--steps", type=int, default=60 if quick else 150)
    p.add_argument("--refresh-every", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="trainer thread settings to compare")
    a = p.parse_args(argv)
    from realm.config import load_config
    from realm.data.corpus import build_corpus
    from realm.data.world import generate_world, write_world

    res = Result("refresh", "Index refresh during REALM pretraining: builder blocks/s, training slowdown", quick, argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = load_config("demo")
        corpus_file = write_world(generate_world(a.entities, 0), root / "world")["corpus"]
        store, _ = build_corpus(corpus_file, root / "corpus", cfg.corpus, progress=False)
        rows = res.table(f"demo preset models, {len(store):,} blocks, asynchronous refresh every "
                         f"{a.refresh_every} steps, {a.steps} steps per run; builder: 1 thread, bf16",
                         ["trainer threads", "builds", "build s (median)", "blocks/s", "steps during / outside",
                          "step s during", "step s outside", "during / outside"])
        for t in a.threads:
            r = one_run(store, root, t, a.steps, a.refresh_every)
            rows.append([t, r["builds"], r["build_s"], r["blocks_per_s"],
                         f"{r['steps_during']} / {r['steps_outside']}", r["step_s_during"], r["step_s_outside"],
                         r["ratio"]])
    res.note("a step is 'during' a refresh when at least half of it overlaps a build the builder logged, "
             "'outside' when it overlaps none; the first 5 steps are dropped (warm-up).")
    res.note("target: during / outside <= 1.3 (issue 14).")
    return res
