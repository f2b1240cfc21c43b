"""Soak test of ``realm serve``: N clients for T seconds over loopback; errors, latency, server RSS over time.

    python -m bench soak -- [--seconds 300] [--clients 16] [--run RUN] [--out bench/RESULTS-soak.md]

The server is the real one (``realm.serving.app.serve``: uvicorn with the header/body deadlines and the
connection cap) in its own process, bound to 127.0.0.1. Without ``--run`` an untrained tiny run is built
(the service's cost does not depend on the weights' values). Each client keeps one HTTP/1.1 connection
and sends ``POST /ask`` back to back; one request in ten is malformed on purpose (it must get a 4xx).
An error is anything else: a transport failure, a 5xx, or a status that does not match the request.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

QUESTIONS = ["Where was {} born?", "Who founded {}?", "When was {} founded?", "What is the population of {}?"]


def tiny_run(tmp: Path) -> Path:
    from tests.serving.test_answer import build_run

    return build_run(tmp, entities=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port: int, stop: float, seed: int, titles: list[str], out: dict, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, errors, bad_ok, n = [], 0, 0, 0
    while time.time() < stop:
        malformed = rng.random() < 0.1
        body = (b'{"question": ' if malformed else
                json.dumps({"question": rng.choice(QUESTIONS).format(rng.choice(titles)), "k": rng.randint(1, 5)}).encode())
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/ask", body=body, headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        dt = time.perf_counter() - t0
        n += 1
        if malformed:
            bad_ok += r.status == 400
            errors += r.status != 400
        else:
            lat.append(dt)
            errors += r.status != 200
    conn.close()
    with lock:
        out["lat"] += lat
        out["errors"] += errors
        out["requests"] += n
        out["malformed_4xx"] += bad_ok


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--run", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/RESULTS-soak.md"))
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    run = a.run or tiny_run(tmp)
    from realm.serving.qa_run import IndexedCorpus

    titles = sorted({d["title"] for d in IndexedCorpus.load(run).store.docs})
    port = free_port()
    env = dict(os.environ, REALM_ADMIN_TOKEN="soak", OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-c", "import sys; from realm.serving.app import serve; "
                               f"serve({str(run)!r}, host='127.0.0.1', port={port}, log_level='warning')"],
                              env=env, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.time() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.5)
        rss = [(0.0, rss_mb(server.pid))]
        out = {"lat": [], "errors": 0, "requests": 0, "malformed_4xx": 0}
        lock = threading.Lock()
        t0 = time.time()
        stop = t0 + a.seconds
        threads = [threading.Thread(target=client, args=(port, stop, i, titles, out, lock)) for i in range(a.clients)]
        for t in threads:
            t.start()
        while time.time() < stop:
            time.sleep(min(10, max(0.05, stop - time.time())))
            rss.append((round(time.time() - t0, 1), rss_mb(server.pid)))
        for t in threads:
            t.join()
        wall = time.time() - t0
    finally:
        server.terminate()
        server.wait(30)
    lat = np.array(out["lat"]) * 1000
    load = os.getloadavg()
    res = {"seconds": round(wall, 1), "clients": a.clients, "requests": out["requests"], "errors": out["errors"],
           "malformed_answered_400": out["malformed_4xx"], "req_per_s": round(out["requests"] / wall, 1),
           "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
           "rss_start_mb": round(rss[0][1], 1), "rss_end_mb": round(rss[-1][1], 1),
           "rss_max_mb": round(max(r for _, r in rss), 1), "loadavg_after": [round(x, 2) for x in load]}
    print(json.dumps(res, indent=2))
    md = [f"# Soak: `realm serve`, {a.clients} clients, {wall:.0f} s, loopback", "",
          f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), load average after the run "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; server: 1 torch thread; run: "
          f"{'untrained tiny (60 entities)' if a.run is None else a.run}.", "",
          "| requests | errors | malformed -> 400 | req/s | p50 ms | p99 ms | RSS start MB | RSS end MB | RSS max MB |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
          f"| {res['requests']} | {res['errors']} | {res['malformed_answered_400']} | {res['req_per_s']} | "
          f"{res['p50_ms']} | {res['p99_ms']} | {res['rss_start_mb']} | {res['rss_end_mb']} | {res['rss_max_mb']} |", "",
          "RSS over time (s: MB): " + ", ".join(f"{t:g}: {r:.0f}" for t, r in rss), "",
          f"Command: `python -m bench soak -- --seconds {a.seconds:g} --clients {a.clients}`", ""]
    a.out.write_text("\n".join(md))
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
