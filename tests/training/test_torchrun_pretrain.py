"""`torchrun --nproc-per-node 2 -m realm pretrain --preset tiny`: end to end with the asynchronous index
refresh, killed mid-run (torchrun gets SIGKILL; its workers, in sessions of their own, must follow it),
resumed from its last checkpoint to the end; then a resume on another world size is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realm.training.logger import read_metrics

ROOT = Path(__file__).resolve().parents[2]
STEPS, CHECKPOINT = 60, 10
ARGS = [f"pretrain.checkpoint_every={CHECKPOINT}", "pretrain.refresh_every=3",
        "pretrain.max_staleness=4"]  # bounded staleness: the trainers wait for the builder, so swaps happen


def command(corpus: Path, run: Path, nproc: int | None = 2, steps: int = STEPS) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] \
        if nproc else [sys.executable]
    return launcher + ["-m", "realm", "pretrain", "--preset", "tiny", "--corpus", str(corpus), "--out", str(run),
                       f"pretrain.steps={steps}", *ARGS]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def rows(run: Path) -> list[dict]:
    try:
        return read_metrics(run / "metrics.jsonl")
    except (OSError, ValueError):
        return []


@pytest.mark.slow  # three launches of 2 ranks + a builder: ~1.5-2 min on this shared 2-core machine
def test_torchrun_pretrain_refreshes_asynchronously_and_resumes_after_being_killed(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    run = tmp_path / "run"
    log = open(tmp_path / "first.log", "w")
    job = subprocess.Popen(command(store.folder, run), env=env(), stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)  # its own process group: torchrun, 2 ranks, the builder
    deadline = time.time() + 300
    while not ((run / "checkpoints" / f"step_{CHECKPOINT:06d}").is_dir() and len(rows(run)) >= CHECKPOINT + 2):
        assert job.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    workers = children(job.pid)  # torchrun starts each worker in a session of its own
    assert len(workers) == 2
    os.killpg(job.pid, signal.SIGKILL)  # the launcher dies (SIGKILL): its workers must follow it
    job.wait()
    assert job.returncode == -signal.SIGKILL
    deadline = time.time() + 30
    while any(Path(f"/proc/{p}").exists() and proc_state(p) != "Z" for p in workers):
        assert time.time() < deadline, "the workers outlived their torchrun"
        time.sleep(0.05)
    killed_at = time.time()
    logged_before = len(rows(run))
    assert CHECKPOINT + 2 <= logged_before < STEPS  # killed mid-run, after logging past its checkpoint

    done = subprocess.run(command(store.folder, run), env=env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    metrics = rows(run)
    assert [r["step"] for r in metrics] == list(range(1, STEPS + 1))  # each step once: the tail was cut back
    resumed = [r["step"] for r in metrics if r["time"] > killed_at]
    last_ckpt = resumed[0] - 1
    assert last_ckpt % CHECKPOINT == 0 and CHECKPOINT <= last_ckpt < logged_before  # from its last checkpoint
    swaps = [r["step"] for r in metrics if r["index/swapped"]]
    assert any(s <= last_ckpt for s in swaps) and any(s > last_ckpt for s in swaps)  # async refresh, both runs
    assert all(r["index/staleness"] <= 4 for r in metrics)
    built = (run / "index-builder.log").read_text()
    assert built.count("built v") >= 2
    state = json.loads((run / "checkpoints" / f"step_{STEPS:06d}" / "state.json").read_text())
    assert state["world_size"] == 2
    latest = (run / "index" / "LATEST").read_text().strip()
    manifest = json.loads((run / "index" / latest / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and len(manifest["shards"]) == 2  # the final index, built in shards
    assert manifest["encoder_step"] == STEPS
    assert (run / "retriever" / "retriever.json").exists() and (run / "encoder" / "config.json").exists()

    config = (run / "config.yaml").read_text()
    one = subprocess.run(command(store.folder, run, nproc=None, steps=STEPS + 5), env=env(), capture_output=True,
                         text=True, timeout=300)  # more steps, on one process: refused before anything changes
    assert one.returncode == 2 and "on 2 process(es); this one has 1" in one.stderr, one.stderr[-2000:]
    assert len(rows(run)) == STEPS and (run / "config.yaml").read_text() == config
