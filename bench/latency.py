"""QA serving latency: questions/s and p50/p99 at batch 1 and batch 32, in-process and over HTTP.

In-process: :class:`realm.serving.answer.Answerer` (``ask`` one question at a time = batch 1;
``ask_many`` of 32 questions = batch 32, latency = the whole batch). HTTP: the FastAPI app under
uvicorn in a subprocess (``POST /ask``; one server per code version), one keep-alive client sending questions one
after the other (batch 1), and 32 client threads at once (the server batches what is waiting, up to 32).
"before" runs the same code with the change of this benchmark's issue undone (models switch
train/eval modes the plain ``nn.Module`` way on every batch), in the same rounds as "after".
Questions: templates over the corpus's document titles (fixed order), so every run asks the same.
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bench.report import Result, percentile

DEMO_RUN = Path("/tmp/fresh/runs/demo-seeds/seed-0/model")
TEMPLATES = ["Where was {} born?", "Who founded {}?", "When was {} founded?", "What is {} known for?"]


def questions(answerer, n: int) -> list[str]:
    titles = [d["title"] for d in answerer.corpus.store.docs]
    return [TEMPLATES[i % len(TEMPLATES)].format(titles[(7 * i) % len(titles)]) for i in range(n)]


@contextmanager
def plain_mode_switch(active: bool):
    """Undo the models' mode-switch shortcut (the code before), while ``active``."""
    from torch import nn

    from realm.models.modes import SkipRedundantModeSwitch
    saved = SkipRedundantModeSwitch.train
    if active:
        SkipRedundantModeSwitch.train = nn.Module.train
    try:
        yield
    finally:
        SkipRedundantModeSwitch.train = saved


def timed_each(fn, items: list, per_item: int) -> tuple[list[float], float, int]:
    """(seconds per call of ``fn(item)``, wall seconds, questions answered)."""
    lat, t0 = [], time.perf_counter()
    for item in items:
        t = time.perf_counter()
        fn(item)
        lat.append(time.perf_counter() - t)
    return lat, time.perf_counter() - t0, per_item * len(items)


def summary(lat: list[float], wall: float, n_questions: int) -> list:
    return [n_questions / wall, statistics.median(lat) * 1e3, percentile(lat, 99) * 1e3]


@contextmanager
def http_server(run_dir: Path, mode: str, code: Path | None = None):
    """``realm serve``'s app under uvicorn in a subprocess (its own GIL), "before" or "after" code; ``code``:
    another checkout of the project to run instead of this one."""
    import os
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = code or Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "bench.latency", str(run_dir), str(port), mode],
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}")
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def serve(run_dir: str, port: int, mode: str) -> None:
    import uvicorn

    from realm.serving.app import create_app
    with plain_mode_switch(mode == "before"):
        app = create_app(run_dir, max_batch=32, watch=False)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def http_client(port: int, qs: list[str], out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for q in qs:
        t = time.perf_counter()
        conn.request("POST", "/ask", json.dumps({"question": q}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        out.append(time.perf_counter() - t)
    conn.close()


def run(argv: list[str], quick: bool) -> Result:
    p = argparse.ArgumentParser(prog="python -m bench latency")
    p.add_argument("--run", type=Path, default=None, help=f"servable run folder (default {DEMO_RUN} if "
                   "present, else an untrained tiny run built in a temp folder)")
    p.add_argument("--questions", type=int, default=40 if quick else 100, help="batch-1 questions per round")
    p.add_argument("--rounds", type=int, default=3 if quick else 5)
    p.add_argument("--before", metavar="REV", default=None,
                   help="HTTP rows: 'before' is the server of git revision REV (checked out to a temp folder) "
                        "instead of this code with the mode-switch shortcut undone")
    a = p.parse_args(argv)
    import torch

    from realm.serving.answer import Answerer
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run or (DEMO_RUN if DEMO_RUN.exists() else None)
        if run_dir is None:
            from tests.serving.test_answer import build_run
            run_dir = build_run(Path(tmp), entities=100, top_k=5)
        res = Result("latency", "QA serving latency", quick, argv)
        with Answerer(run_dir, max_batch=32) as ans:
            qs = questions(ans, max(a.questions, 32 * 4))
            res.note(f"run: {run_dir} ({ans.stats()['blocks']} blocks, k={ans.default_k}); "
                     f"torch threads {torch.get_num_threads()}; {a.rounds} rounds, before/after alternating")
            b1, b32 = qs[:a.questions], [qs[i:i + 32] for i in range(0, 128, 32)]
            cases = {}  # (mode, case) -> list of (latencies, wall, n)
            for q in b1[:5]:  # warm-up
                ans.ask(q)
            ans.ask_many(b32[0])
            for r in range(a.rounds):
                for mode in ("before", "after"):
                    with plain_mode_switch(mode == "before"):
                        cases.setdefault((mode, "in-process, batch 1"), []).append(timed_each(ans.ask, b1, 1))
                        cases.setdefault((mode, "in-process, batch 32"), []).append(
                            timed_each(ans.ask_many, b32, 32))
        before_code = _checkout(a.before, Path(tmp) / "before") if a.before else None
        if before_code:
            res.note(f"HTTP rows: 'before' is the server of revision {a.before} (`--before`), 'after' this code.")
        with http_server(run_dir, "after" if before_code else "before", before_code) as port_before, \
                http_server(run_dir, "after") as port_after:
            ports = {"before": port_before, "after": port_after}
            for port in ports.values():
                http_client(port, b1[:5], [])  # warm-up
            for r in range(a.rounds):
                for mode, port in ports.items():
                    lat, t0 = [], time.perf_counter()
                    http_client(port, b1, lat)
                    cases.setdefault((mode, "HTTP, 1 client (batch 1)"), []).append(
                        (lat, time.perf_counter() - t0, len(b1)))
                    lats = [[] for _ in range(32)]
                    per = [qs[i::32][:4] for i in range(32)]
                    threads = [threading.Thread(target=http_client, args=(port, per[i], lats[i]))
                               for i in range(32)]
                    t0 = time.perf_counter()
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
                    cases.setdefault((mode, "HTTP, 32 clients (batch <= 32)"), []).append(
                        (sum(lats, []), time.perf_counter() - t0, sum(map(len, per))))
        rows = res.table("questions/s and latency per request (batch 1) or per batch (in-process batch 32)",
                         ["case", "code", "questions/s", "p50 ms", "p99 ms", "p50 after / before"])
        for case in dict.fromkeys(c for _, c in cases):
            p50 = {}
            for mode in ("before", "after"):
                per_round = [summary(*x) for x in cases[(mode, case)]]
                q_s, med, p99 = (statistics.median(v[i] for v in per_round) for i in range(3))
                p50[mode] = [v[1] for v in per_round]
                rows.append([case, mode, q_s, med, p99, ""])
            rows[-1][-1] = statistics.median(a_ / b_ for a_, b_ in zip(p50["after"], p50["before"]))
    res.note("each figure is the median over rounds of that round's questions/s, p50 and p99; the ratio is "
             "the median of per-round p50 ratios.")
    return res


def _checkout(rev: str, where: Path) -> Path:
    """The project at git revision ``rev``, exported to ``where`` (no worktree left behind)."""
    import subprocess
    import tarfile
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    where.mkdir(parents=True)
    import io
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where


if __name__ == "__main__":  # the HTTP server subprocess: RUN PORT MODE
    import sys
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
