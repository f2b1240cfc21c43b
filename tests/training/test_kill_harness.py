"""Kill harness: tiny REALM pretraining SIGKILLed at random moments (during a step, a checkpoint write, an index
publish, a builder snapshot), resumed each time.

Asserts: no builder outlives its trainer and at most one runs per run folder; every artifact a reader can see
verifies (no half-written checkpoint or index version is ever visible); the sync-mode run ends bit-identical to
an uninterrupted one (metrics and final weights); metrics have exactly one row per step; staleness is never negative.
"""

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

import realm.training.pretrain  # noqa: F401
from realm.index.store import latest_version, open_index
from realm.training.checkpoint import all_checkpoints, verify_checkpoint
from realm.training.logger import read_metrics
from tests.training.test_builder_lifecycle import alive, wait_dead

STEPS = 50
OVERRIDES = {"pretrain.steps": STEPS, "pretrain.refresh_every": 4, "pretrain.checkpoint_every": 5,
             "pretrain.top_k": 4, "index.keep_versions": 2}


def _train(corpus: str, run: str, mode: str) -> None:
    import torch

    import realm.training.pretrain
    from realm.config import load_config
    from realm.data.blocks import BlockStore
    from realm.training.pretrain import pretrain

    realm.training.pretrain.plot_curves = lambda *a, **k: None  # the curves are not what is tested (saves ~5 s)
    torch.set_num_threads(1)
    cfg = load_config("tiny", [f"{k}={v}" for k, v in (OVERRIDES | {"pretrain.refresh_mode": mode}).items()])
    pretrain(cfg, BlockStore(corpus), run, progress=False)


def _start(corpus, run, mode):
    p = multiprocessing.get_context("fork").Process(target=_train, args=(str(corpus), str(run), mode))
    p.start()
    return p


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _builders(run: Path) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"realm.training.refresh" in cmd and str(run).encode() in cmd and alive(int(d.name)):
                found.append(int(d.name))
    return found


def _check_visible_artifacts(run: Path) -> None:
    """Everything a reader can reach verifies: complete checkpoints, every published index version, LATEST."""
    for ckpt in all_checkpoints(run):
        verify_checkpoint(ckpt)
    root = run / "index"
    for v in root.glob("v[0-9]*"):
        open_index(v)  # raises on a partial or damaged version
    if latest_version(root) is not None:
        open_index(root)


def _rows(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_loop(corpus, run, mode, kills, rng, max_advance=5):
    """Start/resume until the run completes, SIGKILLing the first ``kills`` legs at random moments: one in
    five during setup, the others 1..max_advance steps after the leg resumed plus a random fraction of a step."""
    killed, legs, phases = 0, 0, []
    while True:
        legs += 1
        assert legs < kills + 20, "the run makes no progress between kills"
        done = _rows(run)
        t_leg = time.time()
        p = _start(corpus, run, mode)
        if killed < kills:
            during_setup = rng.random() < 0.2
            target = done + rng.randint(1, max_advance)
            extra = rng.uniform(0, 0.05)
            builder = None
            t0 = time.time()
            polls = 0
            while p.is_alive():
                polls += 1
                if during_setup and time.time() - t0 > extra * 10:
                    break
                if not during_setup and _rows(run) >= target:
                    time.sleep(extra)
                    break
                if mode == "async" and polls % 10 == 0:
                    if builder is None:
                        kids = _children(p.pid)
                        builder = kids[0] if kids else None
                    assert len(_builders(run)) <= 1, "two builders for one run folder"
                time.sleep(0.01)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join()
                killed += 1
                if os.environ.get("REALM_KILL_VERBOSE"):
                    print(f"leg {legs}: {time.time() - t_leg:.2f} s, rows {done} -> {_rows(run)}", flush=True)
                left = [p.name for p in (*run.glob("checkpoints/*.tmp"), *run.glob("index/.tmp-*"),
                                         *run.glob("snapshots/*.tmp"))]
                phases.append("setup" if during_setup else ",".join(sorted({n.split("-")[0] for n in left})) or "step")
                if builder is not None:
                    assert wait_dead(builder, 10), f"builder {builder} outlived its trainer"
                assert wait_dead_all(run, 10), "a builder survives its trainer"
                _check_visible_artifacts(run)
                continue
        p.join(300)
        assert p.exitcode == 0, f"a resumed leg failed (exit {p.exitcode})"
        assert not _builders(run)
        print(f"\n{mode}: {killed} kills; killed during: {phases}")
        return killed


def wait_dead_all(run, timeout):
    deadline = time.time() + timeout
    while _builders(run) and time.time() < deadline:
        time.sleep(0.05)
    return not _builders(run)


@pytest.mark.slow
def test_sync_run_survives_twelve_kills_bit_identical(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    ref = _start(store.folder, tmp_path / "ref", "sync")
    ref.join(300)
    assert ref.exitcode == 0
    rng = random.Random(int(os.environ.get("REALM_KILL_SEED", "16")))
    killed = _kill_loop(store.folder, tmp_path / "run", "sync", 12, rng, max_advance=2)
    assert killed == 12
    a, b = read_metrics(tmp_path / "ref" / "metrics.jsonl"), read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # one row per step, none duplicated
    for ra, rb in zip(a, b):
        for key in ("loss/mlm", "retrieval/utility", "index/version", "index/staleness", "grad_norm", "lr"):
            assert ra[key] == rb[key], (ra["step"], key)
    for name in ("retriever", "encoder"):
        for f in sorted((tmp_path / "ref" / name).glob("*.safetensors")):
            assert f.read_bytes() == (tmp_path / "run" / name / f.name).read_bytes(), f"{name}/{f.name} differs"
    _check_visible_artifacts(tmp_path / "run")


@pytest.mark.slow
def test_async_run_kills_leave_no_builder_and_no_negative_staleness(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    rng = random.Random(int(os.environ.get("REALM_KILL_SEED", "16")) + 1)
    killed = _kill_loop(store.folder, tmp_path / "run", "async", 5, rng, max_advance=6)
    assert killed == 5
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert min(r["index/staleness"] for r in rows) >= 0
