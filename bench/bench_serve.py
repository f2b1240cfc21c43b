"""Load test of `realm serve`: N requests from C concurrent clients against a server on 127.0.0.1.

    python -m bench serve -- [--run RUN_DIR] [--requests 1000] [--concurrency 16] [--max-batch 16 1]
                                [--server-threads 1] [--max-seconds 300] [--out bench/RESULTS-serve.md]

Without ``--run``, a run is built in a temp folder: the built-in world (``--entities``, default 300) packed with
the ``tiny`` preset and UNTRAINED tiny models (same shapes as trained ones, so the same cost; answers are
meaningless, which a load test does not care about). The server runs in a subprocess (so clients and server do
not share a GIL), bound to 127.0.0.1 only; the clients are threads with one keep-alive HTTP connection each.
Every request is a different question from the world's QA files (k = the run's top_k). Latency is measured by
the client (request sent -> response parsed). Each ``--max-batch`` value is one row of the table: 1 = the
worker answers one question per forward pass; 16 = it batches whatever is waiting. The run stops at
``--max-seconds`` even if not all requests were sent (the row then says how many were). Any non-200 response
or transport error counts as an error; the expected count is zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build_run(root: Path, entities: int) -> tuple[Path, list[str]]:
    import torch

    from realm.config import load_config
    from realm.data.corpus import build_corpus
    from realm.data.world import generate_world, write_world
    from realm.models.reader import SpanReader
    from realm.models.retriever import Retriever
    from realm.serving.qa_run import export_qa_run

    cfg = load_config("tiny")
    world = generate_world(entities, 0)
    paths = write_world(world, root / "world")
    store, _ = build_corpus(paths["corpus"], root / "corpus", cfg.corpus, progress=False)
    torch.manual_seed(0)
    tok = store.tokenizer
    run = export_qa_run(root / "run", Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id),
                        SpanReader.build(cfg.reader, tok.vocab_size, tok.pad_id), store, top_k=cfg.reader.top_k,
                        bf16=False, source="bench_serve: untrained tiny models")
    return run, [q["question"] for qs in world.questions.values() for q in qs]


def questions_for(run: Path) -> list[str]:
    """QA questions next to the run if any (RUN/../world/qa-*.jsonl), else generated ones."""
    out = []
    for f in sorted(run.parent.glob("world/qa-*.jsonl")):
        out += [json.loads(line)["question"] for line in f.read_text().splitlines() if line.strip()]
    return out or [f"Where was person number {i} born?" for i in range(1000)]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_forever(args) -> None:
    """The server subprocess."""
    import torch
    import uvicorn

    from realm.serving.app import create_app

    torch.set_num_threads(args.server_threads)
    app = create_app(args.serve, watch=False, max_batch=args.max_batch[0])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def start_server(run: Path, max_batch: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.bench_serve", "--serve", str(run), "--port", str(port), "--max-batch", str(max_batch),
           "--server-threads", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not come up within 120 s")


def load(url: str, questions: list[str], n: int, concurrency: int, max_seconds: float) -> dict:
    import httpx

    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.time() + max_seconds

    def client():
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    i = state["next"]
                    if i >= n or time.time() > deadline:
                        return
                    state["next"] += 1
                q = questions[i % len(questions)]
                t0 = time.perf_counter()
                try:
                    r = c.post("/ask", json={"question": q})
                    ok = r.status_code == 200 and r.json()["question"] == q.strip()
                    why = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except Exception as e:  # noqa: BLE001 - counted, never hidden
                    ok, why = False, f"{type(e).__name__}: {e}"
                dt_ = time.perf_counter() - t0
                with lock:
                    (latencies.append(dt_) if ok else errors.append(why))

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    pct = (lambda p: float(np.percentile(lat, p)) if lat.size else float("nan"))
    return {"sent": state["next"], "ok": len(latencies), "errors": len(errors), "error_examples": errors[:5],
            "wall_s": wall, "rps": len(latencies) / wall if wall else 0.0, "p50": pct(50), "p95": pct(95),
            "p99": pct(99), "mean": float(lat.mean()) if lat.size else float("nan")}


def write_results(path: Path, header: list[str], rows: list[str]) -> None:
    cols = ("| max_batch | requests ok/sent | errors | concurrency | throughput req/s | p50 ms | p95 ms | p99 ms "
            "| server p50/p99 ms | wall s | load 1m/5m before → after |")
    sep = "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
    path.write_text("\n".join(header + ["", cols, sep] + rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a servable run folder (default: build a tiny untrained one)")
    ap.add_argument("--entities", type=int, default=300, help="world size for the built run")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-batch", type=int, nargs="+", default=[16, 1])
    ap.add_argument("--server-threads", type=int, default=1, help="torch threads in the server")
    ap.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long (per row)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-serve.md")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # internal: run the server subprocess
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve_forever(args)
        return 0

    import torch

    tmp = None
    if args.run is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
        run, questions = build_run(Path(tmp.name), args.entities)
        run_desc = f"built-in world, {args.entities} entities, `tiny` preset, untrained models"
    else:
        run, questions = args.run, questions_for(args.run)
        run_desc = f"`{args.run}`"
    from realm.serving.qa_run import IndexedCorpus, read_run_info

    corpus = IndexedCorpus.load(run)
    info = read_run_info(run)
    header = [
        "# Serving load test (`bench/bench_serve.py`)", "",
        f"{args.requests} `POST /ask` requests (k = the run's top_k = {info.get('top_k')}), {args.concurrency} "
        "concurrent keep-alive clients (threads), server = `realm serve`'s app under uvicorn in a subprocess on "
        "127.0.0.1; latency measured by the client. Errors = non-200 responses or transport errors.", "",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, shared with other "
        "jobs (load average per row below)",
        f"- run: {run_desc}; {len(corpus.store)} blocks, {corpus.store.manifest['num_docs']} documents",
        f"- server: torch threads {args.server_threads}, device cpu",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}",
        f"- command: `python -m bench serve -- {' '.join(sys.argv[1:] if argv is None else argv)}`",
    ]
    rows = []
    try:
        for mb in args.max_batch:
            proc, url = start_server(run, mb, args.server_threads)
            try:
                load(url, questions[::-1], args.warmup, min(args.concurrency, args.warmup), 60)
                before = os.getloadavg()
                res = load(url, questions, args.requests, args.concurrency, args.max_seconds)
                after = os.getloadavg()
                import httpx

                server = httpx.get(url + "/stats", timeout=10).json()["latency_ms"]
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(json.dumps({"max_batch": mb, **res}), flush=True)
            rows.append(f"| {mb} | {res['ok']}/{res['sent']} | {res['errors']} | {args.concurrency} | {res['rps']:.1f} "
                        f"| {res['p50']:.1f} | {res['p95']:.1f} | {res['p99']:.1f} | {server['p50']:.1f}/"
                        f"{server['p99']:.1f} | {res['wall_s']:.1f} | {before[0]:.1f}/{before[1]:.1f} → "
                        f"{after[0]:.1f}/{after[1]:.1f} |")
            write_results(args.out, header, rows)
            for e in res["error_examples"]:
                print("error:", e, file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
