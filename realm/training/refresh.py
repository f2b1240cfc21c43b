"""Index refresh during pretraining: a separate index-builder process, and the trainer's side.

The trainer exports document-encoder snapshots to ``RUN/snapshots/step_NNNNNN/`` (written to a
temp folder, then renamed). The builder (``python -m realm.training.refresh``, its own process)
waits for the newest snapshot, re-embeds every block with it and publishes a new index version
under ``RUN/index/`` (temp folder + rename + atomic ``LATEST``, see ``realm.index.store``). The
trainer polls between steps and swaps in a newer version; it never reads a half-written index.
In ``sync`` mode the trainer builds the index itself and waits (deterministic; used by tests).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from realm.index.exact import ExactIndex
from realm.index.store import IndexManifest, latest_version, open_index, to_float32

log = logging.getLogger(__name__)
STOP_FILE = "STOP"


def snapshot_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "snapshots" / f"step_{step:06d}"


def export_snapshot(retriever, run_dir: Path, step: int, keep: int = 2) -> Path:
    """Save the retriever for the builder (atomically: temp folder, then rename)."""
    final = snapshot_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    retriever.save(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    snaps = sorted(p for p in final.parent.glob("step_*") if not p.name.endswith(".tmp"))
    for old in snaps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def newest_snapshot(run_dir: Path) -> tuple[int, Path] | None:
    snaps = sorted(p for p in (run_dir / "snapshots").glob("step_*") if not p.name.endswith(".tmp"))
    return (int(snaps[-1].name.split("_")[1]), snaps[-1]) if snaps else None


def build_from_snapshot(snapshot: Path, step: int, corpus: Path, index_root: Path, batch_size: int, bf16: bool,
                        keep: int, progress: bool = False) -> Path:
    from realm.data.blocks import BlockStore
    from realm.index.build import build_index
    from realm.models.retriever import Retriever

    retriever = Retriever.load(snapshot)
    return build_index(retriever.doc, BlockStore(corpus), index_root, encoder=str(snapshot), encoder_step=step,
                       batch_size=batch_size, bf16=bf16, keep=keep, progress=progress)


def builder_loop(run_dir: Path, corpus: Path, batch_size: int, bf16: bool, keep: int, poll_s: float = 0.2) -> int:
    """The index builder: embed each newest snapshot once, until ``RUN/index/STOP`` appears."""
    index_root = run_dir / "index"
    built = -1
    while True:
        snap = newest_snapshot(run_dir)
        if snap is not None and snap[0] > built:
            step, path = snap
            try:
                out = build_from_snapshot(path, step, corpus, index_root, batch_size, bf16, keep)
                print(f"[index-builder pid {os.getpid()}] built {out.name} from snapshot step {step}", flush=True)
                built = step
            except FileNotFoundError:  # the snapshot was pruned while we read it: take the next one
                continue
        elif (index_root / STOP_FILE).exists():
            return 0
        else:
            time.sleep(poll_s)


class IndexBuilderProcess:
    """Starts and stops the builder subprocess (1 torch thread, so the trainer keeps a core)."""

    def __init__(self, run_dir: Path, corpus: Path, batch_size: int, bf16: bool, keep: int, threads: int = 1):
        (run_dir / "index").mkdir(parents=True, exist_ok=True)
        (run_dir / "index" / STOP_FILE).unlink(missing_ok=True)
        self.run_dir = run_dir
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), REALM_THREADS=str(threads))
        self.log_file = open(run_dir / "index-builder.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "realm.training.refresh", "--run-dir", str(run_dir), "--corpus", str(corpus),
             "--batch-size", str(batch_size), "--keep", str(keep)] + (["--bf16"] if bf16 else []),
            env=env, stdout=self.log_file, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 120) -> int:
        (self.run_dir / "index" / STOP_FILE).touch()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log_file.close()
        return code


class IndexFollower:
    """The trainer's view: the index version in use, swapped for a newer one between steps."""

    def __init__(self, index_root: Path, corpus_hash: str, dim: int, device="cpu"):
        self.root, self.corpus_hash, self.dim, self.device = index_root, corpus_hash, dim, device
        self.version: int | None = None
        self.manifest: IndexManifest | None = None
        self.index: ExactIndex | None = None
        self.embeddings: np.ndarray | None = None

    def load(self, version: int | None = None) -> bool:
        """Load ``version`` (default: the latest); True if it changed."""
        path = self.root if version is None else self.root / f"v{version:06d}"
        emb, manifest = open_index(path, expect_corpus_hash=self.corpus_hash, expect_dim=self.dim)
        if manifest.version == self.version:
            return False
        self.embeddings = np.array(to_float32(emb, manifest), dtype=np.float32)  # a private copy in memory
        self.index = ExactIndex(self.embeddings, device=self.device)
        self.version, self.manifest = manifest.version, manifest
        return True

    def poll(self) -> bool:
        """Swap in a newer published version if there is one."""
        latest = latest_version(self.root)
        return latest is not None and latest != self.version and self.load()

    def staleness(self, step: int) -> int:
        return step - (self.manifest.encoder_step if self.manifest else 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="REALM asynchronous index builder")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("REALM_THREADS", "1")))
    return builder_loop(a.run_dir, a.corpus, a.batch_size, a.bf16, a.keep)


if __name__ == "__main__":
    sys.exit(main())
