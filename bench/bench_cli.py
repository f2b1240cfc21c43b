"""CLI start-up: `realm --help` against a bare `python -c pass`, and where `realm ask`'s cold start goes.

    python -m bench cli -- --run RUN_DIR [--before SRC_DIR] [--questions QA.jsonl] [--repeat 7]
                              [--ask-repeat 3] [--out bench/RESULTS-cli.md]

Every figure is the median of ``--repeat`` (help) or ``--ask-repeat`` (ask) fresh interpreters, run one after
the other with ``OMP_NUM_THREADS=1``. ``--before SRC_DIR`` (a checkout of an older commit, e.g.
``git archive e988334 | tar -x -C /tmp/before``) is measured in the same rounds, interleaved, so both columns
see the same machine load. Sections:

1. help: wall time of ``realm [VERB] --help`` and its ratio to ``python -c pass`` (target: <= 0.3 s);
2. ask, cold: wall time of ``realm ask RUN QUESTION``, and a breakdown measured inside one such process
   (argument parsing, imports, retriever/reader/index/tokenizer loads, first answer) with timing wrappers
   around the load functions (the code under test is not changed);
3. ask, warm (current code only): ``realm ask --server URL`` against a ``realm serve`` of the same run, and
   answering a question file in-process with ``--batch-size`` 1 vs 16.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from realm.cli import main; sys.exit(main(sys.argv[1:]))"
HELPS = [[], ["ask"], ["serve"], ["demo"], ["index", "update"], ["convert", "from-hf-realm"]]
BEFORE_HELPS = [[], ["ask"]]  # the old CLI imported everything before parsing: every verb costs the same
QUESTION = "Where was the founder born?"

# Runs inside a fresh interpreter: the stages of `realm ask RUN QUESTION --json`, timed.
BREAKDOWN = r'''
import contextlib, io, json, sys, time
t_all = time.perf_counter()
run, question = sys.argv[1], sys.argv[2]
seconds, cpu, calls = {}, {}, {}

def timed(name, fn):
    def wrapper(*a, **kw):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c
            calls[name] = calls.get(name, 0) + 1
    return wrapper

def phase(name, t, c):
    seconds[name], cpu[name] = time.perf_counter() - t, time.process_time() - c

t, c = time.perf_counter(), time.process_time()
from realm.cli import build_parser
args = build_parser().parse_args(["ask", run, question, "--json"])
phase("import realm.cli + parse arguments", t, c)
t, c = time.perf_counter(), time.process_time()
import realm.serving.answer, realm.evaluation.qa, realm.models.reader, realm.models.retriever
phase("import torch, transformers, realm models", t, c)
from realm.data.tokenizer import WordPiece
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever
from realm.serving.qa_run import IndexedCorpus
Retriever.load = classmethod(timed("  of which: retriever load", Retriever.load.__func__))
SpanReader.load = classmethod(timed("  of which: reader load", SpanReader.load.__func__))
IndexedCorpus.load = classmethod(timed("  of which: index + corpus load", IndexedCorpus.load.__func__))
WordPiece.__init__ = timed("  of which: tokenizer load", WordPiece.__init__)
t, c = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert args.func(args) == 0
phase("run the command: loads + first answer", t, c)
seconds["  of which: first answer (Answerer.ask latency)"] = json.loads(out.getvalue())["latency_ms"] / 1000
phase("total in-process", t_all, 0.0)
print(json.dumps({"seconds": seconds, "cpu": cpu, "calls": calls}))
'''

# Runs inside a fresh interpreter (current code): questions/s of Answerer.ask_many per max_batch.
BATCH = r'''
import json, sys, time
from realm.serving.answer import Answerer
run, qfile, sizes = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
questions = [json.loads(l)["question"] for l in open(qfile) if l.strip()]
out = {}
for size in sizes:
    with Answerer(run, max_batch=size) as a:
        a.ask(questions[0])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(questions), size):
            a.ask_many(questions[i:i + size])
        out[size] = len(questions) / (time.perf_counter() - t)
print(json.dumps({"questions": len(questions), "questions_per_s": out}))
'''


def _env(src: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _src(env: dict) -> str:
    return env["PYTHONPATH"]  # also the working directory: `python -c` puts it first on sys.path


def _wall(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=_src(env), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _median_rounds(jobs: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each job; the jobs are interleaved round by round (same load for all)."""
    times: dict = {k: [] for k in jobs}
    for _ in range(repeat):
        for key, (cmd, env) in jobs.items():
            times[key].append(_wall(cmd, env))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def _json_child(code: str, args: list[str], env: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=_src(env), capture_output=True, text=True,
                         timeout=600, check=False)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _help_imports(src: Path) -> list[tuple[str, float]]:
    """The slowest top-level imports of `realm --help` (python -X importtime, cumulative ms)."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", CLI, "--help"], env=_env(src), cwd=src,
                         capture_output=True, text=True, timeout=120, check=False)
    rows = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            rows.append((parts[2].strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:6]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _warm(run: Path, repeat: int) -> dict:
    """`realm ask --server URL` (fresh interpreters) and raw POST /ask round trips, against `realm serve`."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(ROOT)
    server = subprocess.Popen([sys.executable, "-c", CLI, "serve", str(run), "--port", str(port), "--no-watch",
                               "--log-level", "warning", "--threads", "1"], env=env, cwd=ROOT)
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - t0 > 600:
                    raise RuntimeError("realm serve did not start") from None
                time.sleep(0.1)
        server_start = time.perf_counter() - t0
        cli = _median_rounds({"ask --server": ([sys.executable, "-c", CLI, "ask", str(run), QUESTION, "--server",
                                                url], env)}, repeat)["ask --server"]
        trips = []
        for _ in range(20):
            body = json.dumps({"question": QUESTION}).encode()
            req = urllib.request.Request(url + "/ask", data=body, headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            urllib.request.urlopen(req, timeout=30).read()
            trips.append(time.perf_counter() - t)
        return {"server_start_s": server_start, "ask_server_cli_s": cli, "post_ask_s": statistics.median(trips)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a servable run folder (e.g. realm demo's OUT/model)")
    ap.add_argument("--before", type=Path, help="source tree of an older commit, measured alongside")
    ap.add_argument("--questions", type=Path, help="QA JSONL for the batch figures (default: RUN's own titles)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--ask-repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-cli.md")
    args = ap.parse_args(argv)
    srcs = {"after": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    load_before = _load()

    help_jobs = {("pass", None): ([sys.executable, "-c", "pass"], _env(ROOT))}
    for label, src in srcs.items():
        for verb in HELPS if label == "after" else BEFORE_HELPS:
            help_jobs[(label, " ".join(verb))] = ([sys.executable, "-c", CLI, *verb, "--help"], _env(src))
    helps = _median_rounds(help_jobs, args.repeat)
    bare = helps[("pass", None)]
    imports = {label: _help_imports(src) for label, src in srcs.items()}

    ask_jobs = {label: ([sys.executable, "-c", CLI, "ask", str(args.run), QUESTION], _env(src))
                for label, src in srcs.items()}
    ask = _median_rounds(ask_jobs, args.ask_repeat)
    breakdown = {}
    for label, src in srcs.items():
        runs = [_json_child(BREAKDOWN, [str(args.run), QUESTION], _env(src)) for _ in range(args.ask_repeat)]
        breakdown[label] = {"calls": runs[0]["calls"], **{
            kind: {k: statistics.median(r[kind][k] for r in runs) for k in runs[0][kind]} for kind in ("seconds", "cpu")}}
    warm = _warm(args.run, args.ask_repeat)
    qfile = args.questions
    if qfile is None:
        qfile = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_cli_questions.jsonl"
        docs = (args.run / "corpora").glob("*/docs.jsonl")
        titles = [json.loads(line)["title"] for line in next(docs).read_text().splitlines()[:64]]
        qfile.write_text("".join(json.dumps({"question": f"Where was {t} born?"}) + "\n" for t in titles))
    batch = _json_child(BATCH, [str(args.run), str(qfile), "1,16"], _env(ROOT))
    load_after = _load()

    labels = list(srcs)
    lines = ["# CLI start-up (`bench/bench_cli.py`)", "",
             f"- date (UTC): {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
             f"load average 1/5/15 min: {load_before} before, {load_after} after",
             f"- run: `{args.run}`; python {platform.python_version()}; OMP_NUM_THREADS=1",
             f"- columns: {', '.join(f'{k} = `{v}`' for k, v in srcs.items())}",
             f"- command: `python -m bench cli -- {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"## `realm [VERB] --help` (median of {args.repeat} fresh interpreters; target <= 0.3 s)", "",
             f"Bare `python -c pass`: {bare[0]:.3f} s wall, {bare[1]:.3f} s CPU. On a shared machine the CPU "
             f"time (user + system) is the steadier figure: wall time includes waiting for a core.", "",
             "| command | " + " | ".join(f"{lb} wall s | {lb} CPU s | {lb} CPU / bare" for lb in labels) + " |",
             "|---|" + "---:|---:|---:|" * len(labels)]
    for verb in HELPS:
        cells = []
        for lb in labels:
            w, c = helps.get((lb, " ".join(verb)), (None, None))
            cells.append("– | – | –" if w is None else f"{w:.3f} | {c:.3f} | {c / bare[1]:.1f}x")
        lines.append(f"| `realm {' '.join(verb + ['--help'])}` | " + " | ".join(cells) + " |")
    lines += ["", "Slowest top-level imports of `realm --help` (`python -X importtime`, cumulative ms):", ""]
    for lb in labels:
        lines.append(f"- {lb}: " + ", ".join(f"{name} {ms:.0f}" for name, ms in imports[lb]))
    lines += ["", f"## `realm ask RUN QUESTION`, cold (median of {args.ask_repeat})", "",
              "| | " + " | ".join(f"{lb} wall s | {lb} CPU s" for lb in labels) + " |",
              "|---|" + "---:|---:|" * len(labels),
              "| process start to exit | " + " | ".join(f"{ask[lb][0]:.2f} | {ask[lb][1]:.2f}" for lb in labels) + " |"]
    for key in breakdown[labels[0]]["seconds"]:
        cells = [f"{breakdown[lb]['seconds'][key]:.3f} | " + (f"{breakdown[lb]['cpu'][key]:.3f}"
                 if key in breakdown[lb]["cpu"] else "–") for lb in labels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for key in breakdown[labels[0]]["calls"]:
        lines.append(f"| calls of {key} | " + " | ".join(str(breakdown[lb]["calls"].get(key, 0)) for lb in labels)
                     + " |")
    lines += ["", "## warm (current code)", "",
              f"- `realm serve` start until /health answers: {warm['server_start_s']:.2f} s (paid once)",
              f"- `realm ask RUN QUESTION --server URL`, process start to exit: {warm['ask_server_cli_s'][0]:.3f} s "
              f"wall, {warm['ask_server_cli_s'][1]:.3f} s CPU (median of {args.ask_repeat})",
              f"- one POST /ask round trip to the warm server: {warm['post_ask_s'] * 1000:.1f} ms (median of 20)",
              f"- `Answerer.ask_many` on {batch['questions']} questions (`--batch-size`): " + ", ".join(
                  f"{size}: {qps:.1f} questions/s" for size, qps in batch["questions_per_s"].items()), ""]
    text = "\n".join(lines)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"bare_s": bare, "help_s": {f"{k[0]}:{k[1]}": v for k, v in helps.items() if k[1] is not None},
         "ask_cold_s": ask, "breakdown": breakdown, "warm": warm, "batch": batch}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
