"""Exact top-k MIPS over N x d blocks for a batch of queries: the project's exact searches against
FAISS ``IndexFlatIP`` and plain ``torch.topk(q @ E.T)``, in the same rounds.

Rows: ``ExactIndex`` fp32 (the reference before this benchmark existed: chunked matmul + running
top-k), ``ExactIndex`` bf16, ``FilteredExactIndex`` (int8 candidates + float64 re-scoring, proven
identical to the oracle), FAISS flat, torch fp32 and bf16. "= oracle" checks ids and scores against
``brute_force_search`` (numpy float64, computed in slices of queries).
"""
from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import torch

from bench.report import Result, ratio, rounds


def make_data(kind: str, n: int, d: int, nq: int, seed: int = 0):
    """``random``: i.i.d. N(0,1); ``structured``: rank-32 latent x projection + N(0, 0.3^2) noise."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((n, d), dtype=np.float32), rng.standard_normal((nq, d), dtype=np.float32)
    w = rng.standard_normal((32, d), dtype=np.float32) / np.sqrt(32)
    out = []
    for m in (n, nq):
        x = np.empty((m, d), np.float32)
        for s in range(0, m, 200_000):
            e = min(m, s + 200_000)
            x[s:e] = rng.standard_normal((e - s, 32), dtype=np.float32) @ w
            x[s:e] += 0.3 * rng.standard_normal((e - s, d), dtype=np.float32)
        out.append(x)
    return out[0], out[1]


def oracle(q, emb, k, chunk=131072):
    """``brute_force_search(q, emb, k)`` computed faster: float64 scores per column chunk rounded to
    float32 (as the oracle does), then only the entries >= each row's k-th value go through its sort."""
    from realm.index.exact import topk_sorted
    q64 = q.astype(np.float64)
    s = np.concatenate([(q64 @ emb[c:c + chunk].astype(np.float64).T).astype(np.float32)
                        for c in range(0, len(emb), chunk)], 1)
    kk = min(k, s.shape[1])
    kth = -np.partition(-s, kk - 1, axis=1)[:, kk - 1:kk]
    rows, cols = np.nonzero(s >= kth)
    width = np.bincount(rows, minlength=len(q)).max()
    cs = np.full((len(q), width), -np.inf, np.float32)
    ci = np.full((len(q), width), -1, np.int64)
    pos = np.arange(rows.size) - np.searchsorted(rows, rows)
    cs[rows, pos], ci[rows, pos] = s[rows, cols], cols
    return topk_sorted(cs, ci, k)


def torch_topk(q: torch.Tensor, e: torch.Tensor, k: int):
    vals, idx = torch.topk(q @ e.T, k, dim=1)
    return vals.float().numpy(), idx.numpy()


def all_cores(fn):
    """``fn`` run with torch using every core (the other rows use the benchmark's thread setting)."""
    def call(*args):
        n = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            return fn(*args)
        finally:
            torch.set_num_threads(n)
    return call


def run(argv: list[str], quick: bool) -> Result:
    p = argparse.ArgumentParser(prog="python -m bench search")
    p.add_argument("--n", type=int, default=100_000 if quick else 1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--runs", type=int, default=3 if quick else 5)
    p.add_argument("--data", nargs="+", default=["random"] if quick else ["random", "structured"])
    a = p.parse_args(argv)
    import faiss

    from realm.index import ExactIndex, FilteredExactIndex

    res = Result("search", f"Exact top-{a.k} search, {a.queries} queries, d={a.dim}",
                 quick, argv)
    for kind in a.data:
        emb, q = make_data(kind, a.n, a.dim, a.queries, seed=a.n)
        s_ref, i_ref = oracle(q, emb, a.k)
        qt, et = torch.from_numpy(q), torch.from_numpy(emb)
        qb, eb = qt.bfloat16(), et.bfloat16()
        filtered = FilteredExactIndex(emb)
        flat = faiss.IndexFlatIP(a.dim)
        flat.add(emb)
        methods = {
            "ExactIndex fp32 (before)": ExactIndex(emb).search,
            "ExactIndex bf16": ExactIndex(emb, dtype="bf16").search,
            "FilteredExactIndex untiled (first version)":
                FilteredExactIndex(emb, tile=32768, merge_every=1).search,
            "FilteredExactIndex (after)": filtered.search,
            f"FilteredExactIndex, {os.cpu_count()} threads": all_cores(filtered.search),
            "faiss IndexFlatIP": lambda q_, k_: flat.search(q_, k_),
            "torch.topk(q @ E.T) fp32": lambda q_, k_: torch_topk(qt, et, k_),
            "torch.topk(q @ E.T) bf16": lambda q_, k_: torch_topk(qb, eb, k_),
        }
        outs = {name: fn(q, a.k) for name, fn in methods.items()}
        times = rounds({name: (lambda fn=fn: fn(q, a.k)) for name, fn in methods.items()}, a.runs)
        rows = res.table(f"{kind} data, N={a.n:,}",
                         ["method", "ms (median)", "ms (min)", "time / ExactIndex fp32", "ids = oracle",
                          "scores = oracle"])
        for name in methods:
            s, i = outs[name]
            rows.append([name, statistics.median(times[name]) * 1e3, min(times[name]) * 1e3,
                         ratio(times, name, "ExactIndex fp32 (before)"),
                         f"{np.mean(np.asarray(i) == i_ref):.4f}",
                         "identical" if np.array_equal(np.asarray(s, np.float32), s_ref) else
                         f"max diff {np.max(np.abs(np.asarray(s, np.float64) - s_ref)):.2g}"])
    res.note("ids = oracle: fraction of (query, rank) slots holding the oracle's id (ties by lower id; "
             "torch.topk and FAISS order ties arbitrarily, bf16 rows are approximate).")
    res.note("FilteredExactIndex untiled: the first version's geometry (one int8 product per 32,768-block "
             "chunk, candidates merged after every chunk). After: 8,192-block products reduced to group "
             "maxima while in cache, candidates merged in batches.")
    res.note("FilteredExactIndex keeps the float32 matrix and an int8 copy; its build time is not in the "
             "table (one pass over the matrix, like FAISS's add).")
    return res
