"""Benchmark MIPS backends: latency per query batch, recall@k vs exact fp32, build time.

    python -m bench ann -- [--sizes 100000 1000000] [--data random structured]
                                 [--out bench/RESULTS-search.md]

Data: ``random`` = i.i.d. N(0,1) vectors (the hardest case for graph/IVF indexes);
``structured`` = rank-32 Gaussian latent x fixed projection + N(0, 0.3^2) noise, closer
to real dense-retriever embeddings. Queries come from the same distribution.
Latency = median wall time of ``--runs`` timed searches of one ``--batch``-query batch
(after one warm-up). The results table is rewritten after every row, so a partial
run still leaves a valid file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from realm.index import ExactIndex, FaissIndex

METHODS = ("exact_fp32", "exact_bf16", "faiss_flat", "faiss_hnsw", "faiss_ivfpq")


def make_data(kind: str, n: int, d: int, nq: int, seed: int = 0):
    """Blocks [n, d] and queries [nq, d], float32."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return (rng.standard_normal((n, d), dtype=np.float32),
                rng.standard_normal((nq, d), dtype=np.float32))
    rank = 32
    w = rng.standard_normal((rank, d), dtype=np.float32) / np.sqrt(rank)
    out = []
    for m in (n, nq):
        x = np.empty((m, d), np.float32)
        for s in range(0, m, 200_000):
            e = min(m, s + 200_000)
            x[s:e] = rng.standard_normal((e - s, rank), dtype=np.float32) @ w
            x[s:e] += 0.3 * rng.standard_normal((e - s, d), dtype=np.float32)
        out.append(x)
    return out[0], out[1]


def timed(fn, runs: int):
    """(median s, min s, last result) over ``runs`` calls after one warm-up call."""
    fn()
    times, res = [], None
    for _ in range(runs):
        t = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), res


def recall(got: np.ndarray, ref: np.ndarray) -> float:
    k = ref.shape[1]
    return float(np.mean([len(set(a) & set(b) - {-1}) / k for a, b in zip(got, ref)]))


def environment() -> list[str]:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {cpu}, {os.cpu_count()} logical CPUs, shared with other jobs "
        f"(load average per row below)",
        f"- threads: torch {torch.get_num_threads()}, faiss/OpenMP {faiss.omp_get_max_threads()}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"faiss {faiss.__version__}, numpy {np.__version__}",
    ]


class Report:
    """Accumulates rows and rewrites the markdown file after each one."""

    def __init__(self, path: Path, args):
        self.path, self.args, self.rows, self.notes = path, args, [], []

    def add(self, **row):
        row["load"] = "%.1f/%.1f" % os.getloadavg()[:2]
        self.rows.append(row)
        print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        self.write()

    def write(self):
        a = self.args
        lines = ["# MIPS search benchmark (`bench/bench_search.py`)", "",
                 f"Top-{a.k} inner-product search, {a.batch}-query batches, d={a.dim}; "
                 f"latency = median (and min) of {a.runs} timed runs after a warm-up; "
                 f"recall@{a.k} vs exact fp32 on the same batch.", "",
                 *environment(),
                 f"- command: `python -m bench ann -- {shlex.join(a.argv)}`", "",
                 "| data | N | method | params | build s | ms/batch (median) | ms (min) "
                 f"| recall@{a.k} | load 1m/5m |",
                 "|---|---:|---|---|---:|---:|---:|---:|---|"]
        for r in self.rows:
            lines.append(f"| {r['data']} | {r['n']:,} | {r['method']} | {r['params']} | "
                         f"{r['build']} | {r['ms']:.1f} | {r['ms_min']:.1f} | "
                         f"{r['recall']:.3f} | {r['load']} |")
        lines += ["", *self.notes, ""]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(lines))


def bench_one(report: Report, kind: str, n: int, args) -> None:
    t0 = time.perf_counter()
    emb, q = make_data(kind, n, args.dim, args.batch, seed=n)
    print(f"[{kind} {n}] data in {time.perf_counter() - t0:.1f}s", flush=True)
    k, runs = args.k, args.runs
    ref = None

    def row(method, params, build, index):
        nonlocal ref
        med, mn, (_, ids) = timed(lambda: index.search(q, k), runs)
        if ref is None:
            ref = ids
        report.add(data=kind, n=n, method=method, params=params,
                   build="-" if build is None else f"{build:.1f}",
                   ms=med * 1e3, ms_min=mn * 1e3, recall=recall(ids, ref))

    idx = ExactIndex(emb, dtype="fp32", chunk_size=args.chunk)
    row("exact torch fp32", f"chunk={args.chunk}", None, idx)
    if "exact_bf16" in args.methods:
        t = time.perf_counter()
        idx = ExactIndex(emb, dtype="bf16", chunk_size=args.chunk)
        row("exact torch bf16", f"chunk={args.chunk}", time.perf_counter() - t, idx)
    del idx
    if "faiss_flat" in args.methods:
        t = time.perf_counter()
        fidx = FaissIndex(emb, "flat")
        row("faiss flat", "IndexFlatIP", time.perf_counter() - t, fidx)
        del fidx
    if "faiss_hnsw" in args.methods and not (n >= 1_000_000 and kind in args.skip_1m_hnsw):
        t = time.perf_counter()
        fidx = FaissIndex(emb, "hnsw", M=args.hnsw_m, ef_construction=args.ef_construction)
        build = time.perf_counter() - t
        for ef in args.ef_search:
            fidx.set_search_params(ef_search=ef)
            row("faiss HNSW", f"M={args.hnsw_m} efC={args.ef_construction} ef={ef}", build, fidx)
        del fidx
    if "faiss_ivfpq" in args.methods and not (n >= 1_000_000 and kind in args.skip_1m_ivfpq):
        nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
        t = time.perf_counter()
        fidx = FaissIndex(emb, "ivfpq", nlist=nlist, m=args.pq_m, nbits=8)
        build = time.perf_counter() - t
        for nprobe, rerank in [(args.nprobe, False), (args.nprobe, True), (2 * args.nprobe, True)]:
            fidx.set_search_params(nprobe=nprobe, rerank=rerank, rerank_factor=10)
            label = f"nlist={nlist} m={args.pq_m}x8b nprobe={nprobe}" + \
                (" rerank x10" if rerank else "")
            row("faiss IVF-PQ" + (" +rerank" if rerank else ""), label, build, fidx)
        del fidx


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--data", nargs="+", default=["random", "structured"],
                   choices=["random", "structured"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--chunk", type=int, default=65536)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=128)
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--pq-m", type=int, default=16)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--skip-1m-hnsw", nargs="*", default=[], help="data kinds to skip at N>=1M")
    p.add_argument("--skip-1m-ivfpq", nargs="*", default=[], help="data kinds to skip at N>=1M")
    p.add_argument("--threads", type=int, default=None, help="torch + faiss threads")
    p.add_argument("--note", action="append", default=[], help="free-text line for the file")
    p.add_argument("--out", type=Path, default=Path("bench/RESULTS-search.md"))
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    report = Report(args.out, args)
    report.notes = [f"- {n}" for n in args.note]
    for n in sorted(args.sizes):
        for kind in args.data:
            bench_one(report, kind, n, args)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
