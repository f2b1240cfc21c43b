"""The cost curve: index build, bytes per block, search latency and recall, REALM step vs k, DDP 1 vs 2.

    python -m bench scale [--quick] [-- --sizes 10000 100000 1000000 5000000]
    python -m bench.scale --plot      (redraw bench/results/scale.png from bench/results/scale.json)

Per corpus size N (blocks of 128 dims):

* **build**: embedding N blocks with the demo preset's document encoder is a fixed cost per block, so its
  rate is measured once on a few thousand real blocks of the built-in world and scaled linearly; writing an
  index version (``realm.index.store.write_index_version``: memmap, fsync, checksum, atomic publish, verified
  read-back) is timed at every N, fp32 and bf16, on synthetic structured vectors (``bench.search.make_data``),
  and so is building each search backend (``realm.retrieval.build_backend``).
* **search**: 64 queries, top-8, median of the timed rounds after a warm-up; recall@8 against the float64
  oracle (``bench.search.oracle``) for ``exact``, ``exact-int8``, ``faiss-hnsw``, ``faiss-ivfpq``.
  A backend whose build is predicted (the largest measured size's build rate, x N log N) to exceed
  ``--build-budget`` seconds is skipped at that size; its build time is given as that extrapolation.
* **REALM step vs k**: the step of ``bench.bench_train`` (demo preset shapes, exact index) at top-k 2, 4, 8, 16,
  interleaved round by round; FLOPs counted per BERT pass.
* **DDP**: ``torchrun --nproc-per-node {1,2} -m realm reading --preset demo``, global tokens/s read from
  ``metrics.jsonl`` (median after the first steps), launches alternated.

Power laws ``y = c N^b`` are fitted (least squares in log-log) to every measured series and evaluated at the
paper's 13.3M blocks; the GPU estimate divides measured FLOP counts (and bytes, for search) by a stated
throughput.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import RESULTS, Result, load, rounds

PAPER_BLOCKS = 13_300_000
BACKENDS = ("exact", "exact-int8", "faiss-hnsw", "faiss-ivfpq")
# stated GPU assumptions for the estimate (H100 SXM datasheet figures)
GPU = {"name": "H100 SXM", "bf16_tflops_peak": 989.0, "achieved_share": 0.3, "hbm_tb_s": 3.35}


# ---------------------------------------------------------------------------------------------
# helpers


def fit_power(ns, ys) -> tuple[float, float]:
    """Least-squares fit of ``log y = log c + b log N``; returns ``(c, b)``."""
    b, logc = np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(ys, float)), 1)
    return float(math.exp(logc)), float(b)


def extrapolated_build(points: list[dict], name: str, n: int) -> float | None:
    """Build seconds of backend ``name`` at ``n`` blocks from the largest measured size's build rate, scaled
    by N log N (graph and tree insertion; linear work times a log factor): ``t_m (n/N_m) (ln n / ln N_m)``."""
    measured = [(p["n"], p["backends"][name]["build_s"]) for p in points
                if p["backends"].get(name, {}).get("measured")]
    if not measured:
        return None
    nm, tm = max(measured)
    return tm * (n / nm) * (math.log(n) / math.log(nm))


def recall_at_k(ids: np.ndarray, ref: np.ndarray) -> float:
    """Mean over queries of |found ∩ reference| / k."""
    return float(np.mean([len(set(a.tolist()) & set(r.tolist())) / len(r) for a, r in zip(ids, ref)]))


def held_bytes(index) -> int:
    """Bytes of the arrays an index object holds (numpy arrays and tensors among its attributes, each
    storage once) plus a FAISS index's serialized size."""
    import torch

    seen, total = set(), 0
    for v in vars(index).values():
        if isinstance(v, np.ndarray):
            key, size = (v.__array_interface__["data"][0], v.nbytes), v.nbytes
        elif isinstance(v, torch.Tensor):
            key, size = (v.untyped_storage().data_ptr(), v.untyped_storage().nbytes()), v.untyped_storage().nbytes()
        else:
            continue
        if key not in seen:
            seen.add(key)
            total += size
    if hasattr(index, "index") and type(index.index).__module__.startswith("faiss"):
        import faiss

        total += int(faiss.serialize_index(index.index).nbytes)
    return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# measurements


def embed_rate(data_root: Path, entities: int, runs: int) -> dict:
    """blocks/s and FLOPs per block of the demo document encoder (fp32 and bf16) on a built-in world."""
    import torch

    from bench.bench_train import _FlopCounter
    from realm.config import load_config
    from realm.data.corpus import build_corpus
    from realm.data.world import generate_world, write_world
    from realm.index.build import embed_blocks
    from realm.models.retriever import Retriever

    cfg = load_config("demo")
    paths = write_world(generate_world(entities, cfg.world.seed), data_root / "embed" / "world")
    store = build_corpus(paths["corpus"], data_root / "embed" / "corpus", cfg.corpus, progress=False)[0]
    torch.manual_seed(0)
    retriever = Retriever.build(cfg.retriever, store.tokenizer.vocab_size, store.tokenizer.pad_id).eval()
    counter = _FlopCounter(retriever.doc)
    out = {"blocks": len(store), "batch_size": cfg.index.batch_size}
    fns = {prec: (lambda b=(prec == "bf16"): embed_blocks(retriever.doc, store, batch_size=cfg.index.batch_size,
                                                        bf16=b, progress=False)) for prec in ("fp32", "bf16")}
    times = rounds(fns, runs)
    counter.take()
    embed_blocks(retriever.doc, store, bf16=False, progress=False)
    tokens, flops = counter.take()
    for prec, ts in times.items():
        out[f"{prec}_blocks_s"] = len(store) / statistics.median(ts)
    out["flops_per_block"] = flops / len(store)
    out["tokens_per_block"] = tokens / len(store)
    return out


def index_sizes(sizes: list[int], dim: int, queries: int, k: int, runs: int, budget: float,
                backends=BACKENDS) -> list[dict]:
    """Per N: index-version write time and disk bytes (fp32, bf16); per backend: build s, RAM bytes,
    search ms (median), recall@k vs the oracle; skipped builds get a power-law estimate."""
    from bench.search import make_data, oracle
    from realm.index.store import write_index_version
    from realm.retrieval import build_backend

    points: list[dict] = []
    for n in sizes:
        t_size = time.time()
        emb, q = make_data("structured", n, dim, queries, seed=n)
        row = {"n": n, "load": load(), "backends": {}}
        with tempfile.TemporaryDirectory(dir=os.environ.get("REALM_BENCH_TMP")) as tmp:
            for dtype in ("float32", "bfloat16"):
                t = time.perf_counter()
                path = write_index_version(Path(tmp) / dtype, emb, corpus_hash="bench", dtype=dtype)
                row[f"write_{dtype}_s"] = time.perf_counter() - t
                row[f"disk_{dtype}_bytes"] = folder_bytes(path)
                shutil.rmtree(Path(tmp) / dtype)
        ref = oracle(q, emb, k)[1] if backends else None
        for name in backends:
            predicted = extrapolated_build(points, name, n) or 0.0
            if predicted > budget:
                row["backends"][name] = {"measured": False, "build_s": predicted}
                print(f"  N={n:,} {name}: skipped, build predicted {predicted:.0f} s > {budget:.0f} s", flush=True)
                continue
            t, cpu = time.perf_counter(), time.process_time()
            index = build_backend(emb, name)
            build_s, build_cpu_s = time.perf_counter() - t, time.process_time() - cpu
            found = index.search(q, k)[1]
            cpu = time.process_time()
            times = rounds({name: lambda index=index: index.search(q, k)}, runs)[name]
            search_cpu = (time.process_time() - cpu) / (runs + 1)  # CPU seconds per call, the warm-up included
            row["backends"][name] = {"measured": True, "build_s": build_s, "build_cpu_s": build_cpu_s,
                                     "ram_bytes": held_bytes(index), "search_ms": statistics.median(times) * 1e3,
                                     "search_ms_min": min(times) * 1e3, "search_cpu_ms": search_cpu * 1e3,
                                     "recall": recall_at_k(np.asarray(found), ref)}
            print(f"  N={n:,} {name}: {row['backends'][name]}", flush=True)
            del index
        row["seconds"] = time.time() - t_size
        points.append(row)
        del emb
    return points


def realm_steps(data_root: Path, ks: list[int], steps: int, bf16: bool) -> list[dict]:
    """A REALM step (``bench.bench_train``'s harness, demo shapes) at each top-k, interleaved."""
    from bench.bench_train import Stage, _build_data, _fix_realm_forward

    _build_data(data_root)
    stage = Stage("realm", "demo", data_root)
    runs: dict[int, list[dict]] = {k: [] for k in ks}
    for k in ks:  # warm-up
        stage.cfg.pretrain.top_k = k
        stage.step(10_000 + k, bf16)
    for i in range(steps):
        for k in ks:
            stage.cfg.pretrain.top_k = k
            runs[k].append(_fix_realm_forward(stage.step(i, bf16)))
    out = []
    for k, rs in runs.items():
        med = {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        out.append({"k": k, "step_s": med["step_s"], "retrieval_s": med["retrieval_s"], "tokens": med["tokens"],
                    "flops": med["flops"], "tflops": statistics.median(r["flops"] / r["step_s"] for r in rs) / 1e12,
                    "batch_size": stage.cfg.pretrain.batch_size})
    return out


def ddp_scaling(data_root: Path, nprocs: list[int], steps: int, launches: int, skip: int) -> list[dict]:
    """Global tokens/s of the demo reading stage under torchrun with each number of processes."""
    from realm.training.logger import read_metrics

    corpus = data_root / "demo" / "corpus"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    got: dict[int, list[float]] = {n: [] for n in nprocs}
    step_s: dict[int, list[float]] = {n: [] for n in nprocs}
    for launch in range(launches):
        for n in nprocs:
            run = data_root / f"ddp{n}-{launch}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                   "-m", "realm", "reading", "--preset", "demo", "--corpus", str(corpus), "--out", str(run),
                   f"reading.steps={steps}", f"reading.probe_every={10 * steps}", "reading.checkpoint_every=0"]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            rows = read_metrics(run / "metrics.jsonl")[skip:]
            got[n] += [r["perf/tokens_per_s"] for r in rows]
            step_s[n] += [r["perf/step_s"] for r in rows]
            print(f"  DDP {n} process(es), launch {launch}: {statistics.median(got[n]):,.0f} tokens/s", flush=True)
    return [{"nproc": n, "tokens_per_s": statistics.median(got[n]), "step_s": statistics.median(step_s[n]),
             "steps_timed": len(got[n])} for n in nprocs]


# ---------------------------------------------------------------------------------------------
# report


def _series(points: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """Measured series by name: (N values, y values)."""
    out: dict[str, tuple[list[int], list[float]]] = {}

    def add(name, n, y):
        out.setdefault(name, ([], []))
        out[name][0].append(n)
        out[name][1].append(y)

    for p in points:
        n = p["n"]
        for dtype in ("float32", "bfloat16"):
            add(f"write {dtype} (s)", n, p[f"write_{dtype}_s"])
            add(f"disk {dtype} (bytes)", n, p[f"disk_{dtype}_bytes"])
        for name, b in p["backends"].items():
            if b["measured"]:
                add(f"search {name} (ms)", n, b["search_ms"])
                add(f"build {name} (s)", n, b["build_s"])
                add(f"RAM {name} (bytes)", n, b["ram_bytes"])
    return out


FIT_FROM = 100_000  # fits use the sizes from here up when there are two (below, fixed costs dominate)


def fits(points: list[dict]) -> dict[str, dict]:
    """Power-law fit of every series with 2+ points (those >= FIT_FROM when there are 2 of them):
    exponent, constant, value at the paper's size. Series under 10 ms (wrapping an array) are not fitted."""
    out = {}
    for name, (ns, ys) in _series(points).items():
        big = [(n, y) for n, y in zip(ns, ys) if n >= FIT_FROM]
        if len(big) >= 2:
            ns, ys = (list(v) for v in zip(*big))
        if len(ns) >= 2 and min(ys) > 0 and not (name.endswith("(s)") and max(ys) < 0.01):
            c, b = fit_power(ns, ys)
            out[name] = {"c": c, "b": b, "at_paper": c * PAPER_BLOCKS ** b, "sizes": f"{min(ns):,}-{max(ns):,}"}
    return out


def plot(data: dict, path: Path) -> Path:
    """Log-log: search latency, build time and memory vs blocks; measured points and fitted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, fit = _series(data["points"]), fits(data["points"])
    groups = [("search latency, 64 queries top-8 (ms)", "search "), ("build time (s)", ("build ", "write ")),
              ("memory (bytes)", ("RAM ", "disk "))]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    grid = np.geomspace(min(min(ns) for ns, _ in series.values()), PAPER_BLOCKS, 50)
    for ax, (title, prefix) in zip(axes, groups):
        names = [name for name in sorted(series) if name.startswith(prefix)]
        for i, name in enumerate(names):
            ns, ys = series[name]
            color = f"C{i % 10}"
            label = name.rsplit(" (", 1)[0]
            if name in fit:
                f = fit[name]
                ax.plot(grid, f["c"] * grid ** f["b"], "--", color=color, lw=1)
                label += f"  ~N^{f['b']:.2f}"
            ax.plot(ns, ys, "o", color=color, label=label)
        if title.startswith("build"):  # embedding (projected from the measured rate) and skipped builds
            rate = data["embed"]["bf16_blocks_s"]
            ax.plot(grid, grid / rate, "-", color="k", lw=1,
                    label=f"embed blocks, demo encoder bf16 ({rate:,.0f} blocks/s measured, x N)")
            for name in BACKENDS:
                ext = [(p["n"], extrapolated_build(data["points"], name, p["n"])) for p in data["points"]
                       if name in p["backends"] and not p["backends"][name]["measured"]]
                if ext:
                    ax.plot(*zip(*ext), "x", color="k", ms=8, label=f"build {name}: extrapolated")
        ax.axvline(PAPER_BLOCKS, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="blocks (N), 128 dims", title=title)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"realm cost curve ({data['machine']}, shared; load {data['load']}); dotted line: 13.3M blocks; "
                 "dashed: fitted power laws; wall times: see the load and CPU-share notes in RESULTS.md", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt_bytes(x: float) -> str:
    for unit, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= s:
            return f"{x / s:.2f} {unit}"
    return f"{x:.0f} B"


def report(res: Result, a, embed: dict, points: list[dict], steps: list[dict], ddp: list[dict]) -> None:
    rows = res.table(f"Embedding with the demo document encoder ({embed['blocks']} real blocks of the built-in world, "
                     f"batch {embed['batch_size']})",
                     ["precision", "blocks/s", "FLOPs/block", "tokens/block", "100k blocks (s, projected)",
                      "1M (min, projected)", "13.3M (h, projected)"])
    for prec in ("fp32", "bf16"):
        r = embed[f"{prec}_blocks_s"]
        rows.append([prec, r, f"{embed['flops_per_block']:.3g}", embed["tokens_per_block"], 1e5 / r, 1e6 / r / 60,
                     PAPER_BLOCKS / r / 3600])
    rows = res.table("Index versions (write_index_version: memmap, fsync, sha256, atomic publish, verified read-back)",
                     ["N", "write fp32 (s)", "write bf16 (s)", "disk fp32 (bytes/block)", "disk bf16 (bytes/block)",
                      "embed bf16 (s, projected)", "load"])
    for p in points:
        n = p["n"]
        rows.append([f"{n:,}", p["write_float32_s"], p["write_bfloat16_s"], p["disk_float32_bytes"] / n,
                     p["disk_bfloat16_bytes"] / n, n / embed["bf16_blocks_s"], p["load"]])
    rows = res.table(f"Search backends: {a.queries} queries, top-{a.k}, d={a.dim}, structured vectors",
                     ["N", "backend", "build (s)", "build (CPU s)", "RAM (bytes/block)", "ms (median)", "ms (min)",
                      "CPU ms/search", f"recall@{a.k}"])
    for p in points:
        for name, b in p["backends"].items():
            if b["measured"]:
                rows.append([f"{p['n']:,}", name, b["build_s"], b.get("build_cpu_s", "-"), b["ram_bytes"] / p["n"],
                             b["search_ms"], b["search_ms_min"], b.get("search_cpu_ms", "-"), f"{b['recall']:.4f}"])
            else:
                rows.append([f"{p['n']:,}", name, f"~{extrapolated_build(points, name, p['n']):,.0f} (extrapolated, "
                             "not built)", "-", "-", "-", "-", "-", "-"])
    rows = res.table(f"REALM step vs k (demo preset shapes, batch {steps[0]['batch_size']}, "
                     f"{'bf16' if a.bf16 else 'fp32'}, exact index)",
                     ["k", "s/step", "retrieval (ms)", "tokens/step", "GFLOPs/step", "TFLOP/s",
                      f"GPU ms/step (est., {GPU['name']})"])
    gpu_flops = GPU["bf16_tflops_peak"] * GPU["achieved_share"] * 1e12
    for s in steps:
        rows.append([s["k"], s["step_s"], s["retrieval_s"] * 1e3, s["tokens"], s["flops"] / 1e9, s["tflops"],
                     s["flops"] / gpu_flops * 1e3])
    if ddp:
        base = ddp[0]["tokens_per_s"]
        rows = res.table("DDP: torchrun -m realm reading --preset demo (global batch 32), gloo, OMP_NUM_THREADS=1 "
                         "per rank", ["processes", "tokens/s (global, median)", "s/step", "steps timed",
                                      "tokens/s vs 1 process"])
        for d in ddp:
            rows.append([d["nproc"], d["tokens_per_s"], d["step_s"], d["steps_timed"], d["tokens_per_s"] / base])
    fit = res.data["fits"]
    rows = res.table(f"Scaling laws fitted to the measured sizes (y = c N^b), evaluated at {PAPER_BLOCKS:,} blocks",
                     ["series", "b", "fitted on N", "at 13.3M"])
    for name, f in sorted(fit.items()):
        v = f["at_paper"]
        rows.append([name, f"{f['b']:.2f}", f["sizes"], _fmt_bytes(v) if "bytes" in name else f"{v:,.1f}"])
    # the paper's index: what a user needs
    d, n = a.dim, PAPER_BLOCKS
    rows = res.table(f"Extrapolation to the paper's index: {n:,} blocks x {d} dims",
                     ["what", "this CPU (measured rates, extrapolated)", f"GPU estimate ({GPU['name']})"])
    emb_flops = embed["flops_per_block"] * n
    gpu_bw = GPU["hbm_tb_s"] * 1e12
    rows.append(["embed all blocks (demo L2/H128 doc encoder, bf16)",
                 f"{n / embed['bf16_blocks_s'] / 3600:.2f} h at {embed['bf16_blocks_s']:,.0f} blocks/s",
                 f"{emb_flops / gpu_flops:.1f} s ({emb_flops:.3g} FLOPs)"])
    rows.append(["index version on disk, fp32 / bf16", f"{_fmt_bytes(4 * n * d)} / {_fmt_bytes(2 * n * d)}", "same"])
    for name in ("exact", "exact-int8", "faiss-ivfpq", "faiss-hnsw"):
        ram, srch, bld = (fit.get(f"{w} {name} ({u})") for w, u in (("RAM", "bytes"), ("search", "ms"),
                                                                       ("build", "s")))
        if srch is None:
            continue
        big_fit = bld is not None and int(bld["sizes"].split("-")[0].replace(",", "")) >= FIT_FROM
        build = bld["at_paper"] if big_fit else extrapolated_build(points, name, n) if name != "exact" else 0.0
        how = "power law" if big_fit else "N log N from the largest measured size" if name != "exact" else "none"
        n_m, b_m = max((p["n"], p["backends"][name]) for p in points
                       if p["backends"].get(name, {}).get("measured"))
        cpu = (f"RAM {_fmt_bytes(ram['at_paper'])}, build {build:,.0f} s ({how}), search "
               f"{b_m['search_ms'] * n / n_m:,.0f} ms (linear from N={n_m:,}; power law {srch['at_paper']:,.0f} ms)")
        gpu = "-"
        if name == "exact":
            byts, flops = 2 * n * d, 2 * a.queries * n * d
            gpu = (f"bf16 matrix {_fmt_bytes(byts)} in HBM; search >= {1e3 * max(byts / gpu_bw, flops / gpu_flops):.2f}"
                   f" ms (bound: reading it at {GPU['hbm_tb_s']} TB/s)")
        rows.append([f"{name}: 64 queries top-{a.k}", cpu, gpu])
    k8 = next((s for s in steps if s["k"] == 8), steps[-1])
    rows.append([f"REALM step, k={k8['k']} (demo shapes)", f"{k8['step_s']:.2f} s (independent of N but for retrieval)",
                 f"{k8['flops'] / gpu_flops * 1e3:.2f} ms of compute ({k8['flops'] / 1e9:.1f} GFLOPs)"])
    res.note(f"GPU estimate: an {GPU['name']} at {GPU['achieved_share']:.0%} of its {GPU['bf16_tflops_peak']:.0f} "
             f"TFLOP/s dense bf16 peak ({gpu_flops / 1e12:.0f} TFLOP/s achieved) and {GPU['hbm_tb_s']} TB/s HBM; FLOPs "
             "are the measured counts of this run (every BERT pass, bert_flops_per_token). Small L2/H128 models "
             "reach far less than 30% of a GPU's peak, and kernel launches dominate a ms-scale step: read these as "
             "lower bounds. No GPU was measured.")
    res.note("Embedding is measured on the real blocks of a built-in world and scaled linearly (a fixed cost "
             "per block of block_len tokens); index writes, backend builds and searches are measured at every "
             "size on synthetic structured vectors (rank-32 latent + noise, bench.search.make_data).")
    res.note(f"Builds predicted to take over {a.build_budget:.0f} s were skipped: their build time is extrapolated "
             "from the largest measured size's build rate, x N log N (marked extrapolated); the 13.3M build "
             "figures use the same rule unless two sizes >= 100k were measured (then the fitted power law). HNSW: M=32, efConstruction "
             "128, efSearch 256; IVF-PQ: realm.retrieval.backends.ivfpq_params (re-ranked with the fp32 vectors).")
    res.note("RAM bytes: the arrays and tensors each backend holds (+ the FAISS index serialized), the fp32 "
             "matrix included where the backend keeps it (exact, exact-int8, IVF-PQ re-ranking).")
    res.note(f"Plot: [bench/results/scale.png](results/scale.png). Total wall time {res.data['seconds']:.0f} s.")


def _parser(quick: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench scale")
    p.add_argument("--sizes", type=int, nargs="+",
                   default=[10_000, 100_000] if quick else [10_000, 100_000, 1_000_000, 5_000_000])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--runs", type=int, default=2 if quick else 3)
    p.add_argument("--build-budget", type=float, default=300.0, help="skip a backend build predicted to take longer")
    p.add_argument("--embed-entities", type=int, default=400 if quick else 1500)
    p.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--realm-steps", type=int, default=2 if quick else 4)
    p.add_argument("--bf16", action="store_true", help="REALM steps under bf16 autocast (default fp32, as the demo)")
    p.add_argument("--ddp-steps", type=int, default=15 if quick else 30)
    p.add_argument("--ddp-launches", type=int, default=1 if quick else 2)
    p.add_argument("--no-ddp", action="store_true")
    p.add_argument("--backends", nargs="*", choices=BACKENDS, default=list(BACKENDS),
                   help="search backends to build and time (none: index versions only)")
    return p


def run(argv: list[str], quick: bool) -> Result:
    a = _parser(quick).parse_args(argv)
    t0 = time.time()
    res = Result("scale", f"Cost curve: index build, search, REALM step vs k, DDP (N up to {max(a.sizes):,})",
                 quick, argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("embedding rate", flush=True)
        embed = embed_rate(root, a.embed_entities, a.runs)
        print(f"  {embed}", flush=True)
        points = index_sizes(a.sizes, a.dim, a.queries, a.k, a.runs, a.build_budget, a.backends)
        print("REALM step vs k", flush=True)
        steps = realm_steps(root, a.ks, a.realm_steps, a.bf16)
        print(f"  {steps}", flush=True)
        ddp = [] if a.no_ddp else ddp_scaling(root, [1, 2], a.ddp_steps, a.ddp_launches, skip=5)
    res.data.update(seconds=time.time() - t0, embed=embed, points=points, realm_steps=steps, ddp=ddp)
    return _render(res, a, load())


def _render(res: Result, a, load_end: str) -> Result:
    """Tables, notes and plot from the raw measurements in ``res.data``."""
    d = res.data
    d.update(tables=[], notes=[], gpu_assumption=GPU, fits=fits(d["points"]))
    report(res, a, d["embed"], d["points"], d["realm_steps"], d["ddp"])
    for text in d.get("provenance", []):  # where merged measurements came from (set by hand, kept)
        res.note(text)
    m = d["machine"]
    plot({"points": d["points"], "embed": d["embed"], "machine": f"{m['cpu']}, {m['cores']} cores",
          "load": f"{d['load_start']} -> {load_end}"}, RESULTS / "scale.png")
    return res


def main(argv: list[str] | None = None) -> int:
    """``--render``: rebuild the tables, notes and plot of results/scale.json from its raw measurements
    (after a change to the report; nothing is measured again), then RESULTS.md."""
    p = argparse.ArgumentParser(prog="python -m bench.scale")
    p.add_argument("--render", action="store_true", help="re-render results/scale.json's tables and the plot")
    a = p.parse_args(argv)
    if not a.render:
        p.error("run the benchmark with `python -m bench scale`; this entry point only re-renders (--render)")
    from bench.__main__ import BENCHMARKS
    from bench.report import write_markdown

    res = Result.__new__(Result)
    res.data = json.loads((RESULTS / "scale.json").read_text())
    command = res.data["command"].split()
    argv_run = command[command.index("--") + 1:] if "--" in command else []
    load_end = res.data["load_end"]
    _render(res, _parser("--quick" in command).parse_args(argv_run), load_end)
    path = RESULTS / "scale.json"  # written as measured: Result.save would stamp today's load as load_end
    path.with_suffix(".json.tmp").write_text(json.dumps(res.data, indent=1) + "\n")
    os.replace(path.with_suffix(".json.tmp"), path)
    print(path, write_markdown(list(BENCHMARKS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
