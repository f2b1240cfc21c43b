"""Index-building throughput: blocks/s of the document encoder, fp32 vs bf16 autocast.

    python -m bench embed -- [--blocks 20000] [--encoders 2x128 4x256] [--out bench/RESULTS-embed.md]

Blocks come from a generated world (``realm world``) packed with 64-token bodies; the throughput of
a 100k or 1M-block index is ``blocks / (blocks/s)``: embedding is a fixed cost per block, so a
sample of the corpus measures it (the table also gives the projected time for 100k and 1M blocks).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from realm.config import CorpusConfig, EncoderConfig, RetrieverConfig
from realm.data.blocks import BlockStore
from realm.data.corpus import build_corpus
from realm.data.world import generate_world, write_world
from realm.index.build import embed_blocks
from realm.models.retriever import Retriever


def corpus(tmp: Path, entities: int) -> BlockStore:
    paths = write_world(generate_world(entities, seed=0), tmp / "world")
    return build_corpus(paths["corpus"], tmp / "corpus", CorpusConfig(block_len=64, title_len=12, vocab_size=8192),
                        progress=False)[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, default=20000, help="blocks embedded per measurement")
    p.add_argument("--encoders", nargs="+", default=["2x128", "4x256"], help="LAYERSxHIDDEN")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", type=Path, default=Path("bench/RESULTS-embed.md"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = corpus(Path(tmp), max(200, a.blocks // 2))
        n = min(a.blocks, len(store))
        rows = []
        for spec in a.encoders:
            layers, hidden = (int(x) for x in spec.split("x"))
            enc = EncoderConfig(layers=layers, hidden=hidden, heads=max(2, hidden // 64), intermediate=4 * hidden,
                                max_positions=128)
            torch.manual_seed(0)
            retriever = Retriever.build(RetrieverConfig(encoder=enc), store.tokenizer.vocab_size).eval()
            for bf16 in (False, True):
                embed_blocks(retriever.doc, store, block_ids=range(min(512, n)), bf16=bf16, progress=False)  # warm-up
                t0 = time.perf_counter()
                embed_blocks(retriever.doc, store, block_ids=range(n), batch_size=a.batch_size, bf16=bf16, progress=False)
                rate = n / (time.perf_counter() - t0)
                rows.append((spec, "bf16" if bf16 else "fp32", n, rate, 1e5 / rate, 1e6 / rate / 60))
                print(rows[-1], flush=True)
    load = os.getloadavg()
    lines = [
        "# Index building: document-encoder throughput",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average at the end {load[0]:.2f} (1 min). Blocks: 64-token bodies "
        f"+ titles from the built-in world, batch {a.batch_size}, `torch.inference_mode`. "
        "100k/1M columns are projections from the measured rate (embedding cost is linear in blocks).",
        "",
        "| encoder (layers x hidden) | precision | blocks measured | blocks/s | 100k blocks (s) | 1M blocks (min) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {s} | {prec} | {n} | {rate:,.0f} | {t100k:.0f} | {t1m:.1f} |" for s, prec, n, rate, t100k, t1m in rows]
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
