"""Index refresh during pretraining: a separate index-builder process, and the trainer's side.

The trainer exports document-encoder snapshots to ``RUN/snapshots/step_NNNNNN/`` (written to a
temp folder, then renamed). The builder (``python -m realm.training.refresh``, its own process)
waits for the newest snapshot, re-embeds every block with it and publishes a new index version
under ``RUN/index/`` (temp folder + rename + atomic ``LATEST``, see ``realm.index.store``). The
trainer polls between steps and swaps in a newer version (:class:`realm.retrieval.IndexFollower`);
it never reads a half-written index.
In ``sync`` mode the trainer builds the index itself and waits (deterministic; used by tests).

Lifecycle: the builder never outlives its trainer. Its stdin is a pipe whose only writer is the
trainer; when the trainer exits for any reason (SIGKILL included) the kernel closes the pipe and a
watcher thread in the builder sees end-of-file and exits at once (it also exits if it is reparented).
One builder per run folder: it holds ``RUN/index/.builder.lock`` (``flock``, released by the kernel
when the process dies) and refuses to start while another builder holds it. A builder that crashes
is restarted by the trainer a bounded number of times; meanwhile training goes on with the index in use.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import threading
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# realm.index (and torch) are imported inside the functions that need them: the builder process must
# arm its parent watch (in ``main``) within milliseconds of starting, not after seconds of imports.
log = logging.getLogger(__name__)
STOP_FILE = "STOP"
LOCK_FILE = ".builder.lock"
EXIT_LOCKED = 3  # the builder's exit code when another builder holds the run's lock


def snapshot_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "snapshots" / f"step_{step:06d}"


def export_snapshot(retriever, run_dir: Path, step: int, keep: int = 2) -> Path:
    """Save the retriever for the builder (atomically: temp folder, then rename)."""
    from realm.index.store import remove_atomically, sweep_trash

    final = snapshot_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if final.parent.is_dir():
        sweep_trash(final.parent)
    retriever.save(tmp)
    if final.exists():
        remove_atomically(final)
    os.rename(tmp, final)
    snaps = sorted(p for p in final.parent.glob("step_*") if not p.name.endswith(".tmp"))
    for old in snaps[:-keep]:
        remove_atomically(old)
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


def discard_future(run_dir: Path, step: int) -> int:
    """On resume at ``step``: drop snapshots and index versions made after it by a run that died
    (``step=-1``: a fresh start, no checkpoint; everything there is from a run that died before one).

    They come from weights the resumed run never had; using them would make the index newer than the
    trainer (negative staleness) and the run depend on when it was killed. Returns how many were dropped.
    """
    from realm.index.store import drop_versions_after, remove_atomically

    dropped = 0
    for snap in (run_dir / "snapshots").glob("step_*"):
        if snap.name.endswith(".tmp"):
            shutil.rmtree(snap, ignore_errors=True)
        elif int(snap.name.split("_")[1]) > step:
            remove_atomically(snap)
            dropped += 1
    if (run_dir / "index").is_dir():
        dropped += drop_versions_after(run_dir / "index", step)
    return dropped


def acquire_builder_lock(run_dir: Path, wait_s: float = 10.0) -> int | None:
    """Take the run's builder lock (waiting up to ``wait_s`` for a dying builder); its fd, or None."""
    path = run_dir / "index" / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.time() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.time() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def watch_parent(parent_pid: int, stream: int | None = None, poll_s: float = 0.5) -> threading.Thread:
    """Exit this process as soon as its trainer is gone: EOF on file descriptor ``stream`` (the trainer's
    pipe), or being reparented."""

    def on_eof():  # raw reads on the fd: a buffered reader's lock would block interpreter shutdown
        try:
            while os.read(stream, 4096):
                pass
        except OSError:
            pass
        os._exit(0)

    def on_reparent():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(0)

    threads = [threading.Thread(target=on_reparent, name="parent-watch", daemon=True)]
    if stream is not None:
        threads.append(threading.Thread(target=on_eof, name="parent-pipe", daemon=True))
    for t in threads:
        t.start()
    return threads[0]


def builder_loop(run_dir: Path, corpus: Path, batch_size: int, bf16: bool, keep: int, poll_s: float = 0.2) -> int:
    """The index builder: embed each newest snapshot once, until ``RUN/index/STOP`` appears."""
    index_root = run_dir / "index"
    built = -1
    while True:
        snap = newest_snapshot(run_dir)
        if snap is not None and snap[0] > built:
            step, path = snap
            try:
                t0 = time.time()
                out = build_from_snapshot(path, step, corpus, index_root, batch_size, bf16, keep)
                t1 = time.time()
                print(f"[index-builder pid {os.getpid()}] built {out.name} from snapshot step {step} "
                      f"in {t1 - t0:.2f} s (from {t0:.3f} to {t1:.3f})", flush=True)
                built = step
            except FileNotFoundError:  # the snapshot was pruned while we read it: take the next one
                continue
        elif (index_root / STOP_FILE).exists():
            return 0
        else:
            time.sleep(poll_s)


class IndexBuilderProcess:
    """Starts, watches and stops the builder subprocess (1 torch thread, so the trainer keeps a core).

    The builder's stdin is a pipe held only by this process (see the module docstring). A builder that
    exits unexpectedly is restarted by :meth:`ensure_alive`, at most ``max_restarts`` times per run.
    """

    def __init__(self, run_dir: Path, corpus: Path, batch_size: int, bf16: bool, keep: int, threads: int = 1,
                 max_restarts: int = 3):
        (run_dir / "index").mkdir(parents=True, exist_ok=True)
        (run_dir / "index" / STOP_FILE).unlink(missing_ok=True)
        self.run_dir = run_dir
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                        REALM_THREADS=str(threads))
        self.argv = [sys.executable, "-m", "realm.training.refresh", "--run-dir", str(run_dir), "--corpus", str(corpus),
                     "--batch-size", str(batch_size), "--keep", str(keep), "--parent-pid", str(os.getpid())] + \
            (["--bf16"] if bf16 else [])
        self.max_restarts, self.restarts = max_restarts, 0
        self.log_file = open(run_dir / "index-builder.log", "a")
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.PIPE, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)

    def ensure_alive(self) -> bool:
        """Restart a builder that died (logging why); True if one was restarted. Raises after too many."""
        code = self.proc.poll()
        if code is None:
            return False
        where = self.run_dir / "index-builder.log"
        if self.restarts >= self.max_restarts:
            raise RuntimeError(f"index builder exited with code {code} after {self.restarts} restarts; see {where}")
        self.restarts += 1
        log.warning("index builder exited with code %s; restarting it (%d/%d), training goes on with the current "
                    "index; see %s", code, self.restarts, self.max_restarts, where)
        print(f"[trainer] index builder exited with code {code}; restart {self.restarts}/{self.max_restarts}",
              file=self.log_file, flush=True)
        self._start()
        return True

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
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.log_file.close()
        return code


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="REALM asynchronous index builder")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process (the trainer) is gone")
    p.add_argument("--lock-wait", type=float, default=10.0, help="seconds to wait for another builder's lock")
    a = p.parse_args(argv)
    if a.parent_pid is not None:
        if os.getppid() != a.parent_pid:
            return 0  # the trainer died before we got here
        watch_parent(a.parent_pid, sys.stdin.fileno())
    lock = acquire_builder_lock(a.run_dir, a.lock_wait)
    if lock is None:
        holder = (a.run_dir / "index" / LOCK_FILE).read_text().strip()
        print(f"[index-builder pid {os.getpid()}] another builder (pid {holder}) holds "
              f"{a.run_dir / 'index' / LOCK_FILE}; exiting", flush=True)
        return EXIT_LOCKED
    import torch

    torch.set_num_threads(int(os.environ.get("REALM_THREADS", "1")))
    return builder_loop(a.run_dir, a.corpus, a.batch_size, a.bf16, a.keep)


if __name__ == "__main__":
    sys.exit(main())
