"""``python -m bench [NAME ...] [--quick] [-- extra args]``: run benchmarks, write bench/results/ and RESULTS.md.

Without NAME the default set runs (search, latency). ``--list`` shows them all. Arguments after ``--``
go to the (single) named benchmark, e.g. ``python -m bench search -- --n 200000``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from bench.report import RESULTS, Result, write_markdown

# name -> (module, what it measures, in the default set)
BENCHMARKS = {
    "search": ("bench.search", "exact top-8 over 1M x 128: project vs FAISS flat vs torch.topk", True),
    "latency": ("bench.latency", "QA serving: questions/s, p50/p99 at batch 1 and 32, in-process and HTTP", True),
    "embed": ("bench.bench_embed", "index building: blocks/s of the document encoder, fp32 vs bf16", False),
    "ann": ("bench.bench_search", "approximate indexes (HNSW, IVF-PQ): latency, recall, build time", False),
    "serve": ("bench.bench_serve", "load test of `realm serve` with concurrent clients", False),
    "soak": ("bench.bench_soak", "soak test of `realm serve`: errors, latency, RSS over time", False),
    "cli": ("bench.bench_cli", "CLI start-up and `realm ask` cold start (needs --run)", False),
    "block-records": ("bench.bench_block_records", "loading an object-array block_records.npy", False),
    "scale": ("bench.scale", "cost curve: index build, search vs N (to 5M), REALM step vs k, DDP 1 vs 2", False),
    "refresh": ("bench.refresh", "index refresh during REALM pretraining: builder blocks/s, training slowdown", False),
    "train": ("bench.bench_train", "training steps of every stage: tokens/s, FLOP/s, phase shares, fp32 vs bf16", False),
}

# the older scripts: their own markdown tables go to bench/results/<name>.md (their committed
# bench/RESULTS-*.md files are kept as history); --quick passes these arguments
QUICK_ARGS = {
    "embed": ["--blocks", "2000", "--encoders", "2x128"],
    "ann": ["--sizes", "20000", "--data", "structured", "--runs", "3"],
    "serve": ["--requests", "200", "--max-batch", "16"],
    "soak": ["--seconds", "20"],
    "cli": [],
    "block-records": ["--records", "100000"],
    "train": ["--quick"],
}


def run_script(name: str, module, extra: list[str], quick: bool) -> Result:
    """Run an older benchmark script's ``main(argv)``; the JSON result points at its markdown."""
    out = RESULTS / f"{name}.md"
    RESULTS.mkdir(parents=True, exist_ok=True)
    res = Result(name, (module.__doc__ or name).strip().splitlines()[0], quick, extra)
    module.main([*(QUICK_ARGS[name] if quick else []), *extra, "--out", str(out)])
    res.note(f"tables: [bench/results/{name}.md](results/{name}.md), copied below")
    res.markdown(_demote_headings(out.read_text()))
    return res


def _demote_headings(md: str) -> str:
    """A script's own markdown inside a RESULTS.md section: its headings go below the section's ``##``."""
    out = []
    for line in md.splitlines():
        level = len(line) - len(line.lstrip("#"))
        out.append("#" * (3 - level) + line if 0 < level < 3 else line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)}")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs (a minute or two)")
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list:
        for name, (_, what, default) in BENCHMARKS.items():
            print(f"{name:14s} {'*' if default else ' '} {what}")
        return 0
    names = a.names or [n for n, (_, _, default) in BENCHMARKS.items() if default]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if extra and len(names) != 1:
        p.error("arguments after -- need exactly one NAME")
    for name in names:
        module = importlib.import_module(BENCHMARKS[name][0])
        print(f"== {name}", flush=True)
        # a module's run(argv, quick) returns a Result; an older script only has main(argv)
        result = module.run(extra, a.quick) if hasattr(module, "run") else \
            run_script(name, module, extra, a.quick)
        print(f"wrote {result.save()}", flush=True)
    print(f"wrote {write_markdown(list(BENCHMARKS))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
