"""The async index builder never outlives its trainer, never runs twice per run, and is restarted after a crash."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from realm.index.store import latest_version, open_index, write_index_version
from realm.training.logger import MetricLogger, read_metrics
from realm.training.refresh import EXIT_LOCKED, IndexBuilderProcess, acquire_builder_lock, discard_future, main

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped yet counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def test_builder_dies_with_a_sigkilled_trainer(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    run = tmp_path / "run"
    trainer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from realm.training.refresh import IndexBuilderProcess
        b = IndexBuilderProcess(Path({str(run)!r}), Path({str(store.folder)!r}), 64, False, 2)
        print(b.pid, flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        builder_pid = int(trainer.stdout.readline())
        time.sleep(0.5)
        assert alive(builder_pid)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        assert wait_dead(builder_pid, 10), "the builder outlived its SIGKILLed trainer"
    finally:
        trainer.kill()


def test_a_second_builder_for_the_same_run_refuses(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    fd = acquire_builder_lock(tmp_path, wait_s=0)
    assert fd is not None
    try:
        code = main(["--run-dir", str(tmp_path), "--corpus", str(store.folder), "--lock-wait", "0.2"])
        assert code == EXIT_LOCKED
        assert acquire_builder_lock(tmp_path, wait_s=0) is None
    finally:
        os.close(fd)
    fd2 = acquire_builder_lock(tmp_path, wait_s=0)  # free again once the holder is gone
    assert fd2 is not None
    os.close(fd2)


def test_a_crashed_builder_is_restarted_a_bounded_number_of_times(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    b = IndexBuilderProcess(tmp_path, store.folder, 64, False, 2, max_restarts=2)
    try:
        assert b.ensure_alive() is False
        for i in range(2):
            first = b.pid
            b.proc.kill()
            b.proc.wait()
            assert b.ensure_alive() is True
            assert b.pid != first and b.alive()
        b.proc.kill()
        b.proc.wait()
        with pytest.raises(RuntimeError, match="after 2 restarts"):
            b.ensure_alive()
        assert "restart 2/2" in (tmp_path / "index-builder.log").read_text()
    finally:
        b.proc.kill()
        b.stop(timeout=5)


def test_resume_discards_snapshots_and_index_versions_from_after_the_checkpoint(tmp_path):
    import numpy as np

    root = tmp_path / "index"
    for step in (0, 4, 8, 12):
        write_index_version(root, np.ones((3, 2), np.float32) * step, corpus_hash="h", encoder_step=step, keep=10)
        (tmp_path / "snapshots" / f"step_{step:06d}").mkdir(parents=True)
    assert discard_future(tmp_path, 6) == 4  # 2 snapshots + 2 index versions
    assert latest_version(root) == 2
    _, manifest = open_index(root)
    assert manifest.encoder_step == 4
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["step_000000", "step_000004"]


def test_metrics_are_not_duplicated_after_a_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricLogger(path, 10, "t", 0, progress=False)
    for s in range(1, 8):
        log.log(s, {"loss": float(s)})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 8, "lo')  # torn by a kill mid-write
    log = MetricLogger(path, 10, "t", 5, progress=False)  # resumed from the step-5 checkpoint
    for s in range(6, 11):
        log.log(s, {"loss": float(s)})
    log.close()
    assert [r["step"] for r in read_metrics(path)] == list(range(1, 11))
    assert json.loads(path.read_text().splitlines()[-1])["loss"] == 10.0


def test_the_index_a_checkpoint_refers_to_is_never_pruned(tmp_path):
    """Found by the kill harness: with keep_versions=2, the version checkpoint 15 used was pruned by step 20; a kill
    before checkpoint 20 then left nothing to resume with once the newer versions were dropped."""
    import numpy as np
    import torch

    from realm.training.checkpoint import save_checkpoint

    root = tmp_path / "index"
    write_index_version(root, np.zeros((3, 2), np.float32), corpus_hash="h", encoder_step=12, keep=2)
    lin = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path, 15, {"m": lin}, torch.optim.SGD(lin.parameters(), lr=0.1), {"index_version": 1})
    for step in (16, 20, 24):
        write_index_version(root, np.ones((3, 2), np.float32), corpus_hash="h", encoder_step=step, keep=2)
    assert (root / "v000001").is_dir() and not (root / "v000002").exists()
    discard_future(tmp_path, 15)  # the run died before checkpoint 20: resume at 15 with the index it used
    _, manifest = open_index(root / "v000001")
    assert latest_version(root) == 1 and manifest.encoder_step == 12
