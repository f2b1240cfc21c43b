"""Load time of an object-array ``block_records.npy`` (what transformers' RealmRetriever writes).

    python -m bench block-records -- [--records 1000000] [--mean-bytes 700] [--out bench/RESULTS-block-records.md]

Writes a synthetic file of ``--records`` random ASCII byte strings (lengths uniform in
[mean/2, 3*mean/2]) in numpy 1.x's flavour (pickle protocol 3, as the hub uploads), then times
``realm.convert.npy_records.load_records`` (restricted unpickler, no code runs) against
``np.load(allow_pickle=True)`` (full pickle). Each is timed ``--runs`` times; the median is
extrapolated linearly to the 13,353,718 records of the released REALM corpus.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from realm.convert.npy_records import load_records, save_records

REALM_RECORDS = 13_353_718


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--mean-bytes", type=int, default=700)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-block-records.md"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.mean_bytes // 2, 3 * args.mean_bytes // 2 + 1, size=args.records)
    pool = rng.integers(97, 123, size=int(lengths.max()) + args.records, dtype=np.uint8).tobytes()
    texts = [pool[i:i + n] for i, n in enumerate(lengths.tolist())]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "block_records.npy"
        t0 = time.perf_counter()
        save_records(path, texts, {"dtype": "|O", "pickle_protocol": 3, "pickle_module": "numpy.core.multiarray"})
        write_s = time.perf_counter() - t0
        size = path.stat().st_size
        del texts
        rows = []
        for name, fn in (("restricted unpickler (load_records)", lambda: load_records(path)[0]),
                         ("np.load(allow_pickle=True)", lambda: np.load(path, allow_pickle=True))):
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                records = fn()
                times.append(time.perf_counter() - t0)
                assert len(records) == args.records
                del records
            rows.append((name, statistics.median(times), min(times), os.getloadavg()[0]))
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    scale = REALM_RECORDS / args.records
    lines = [
        "# Object-array block_records.npy load time (`bench/bench_block_records.py`)", "",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, shared with "
        f"other jobs (load average at the end of each row below)",
        f"- versions: python {platform.python_version()}, numpy {np.__version__}",
        f"- file: {args.records:,} records, {args.mean_bytes} bytes mean, {size / 2**30:.2f} GiB, pickle protocol 3 "
        f"(written in {write_s:.1f} s); peak RSS of the process {rss_gib:.1f} GiB",
        f"- command: `python -m bench block-records -- --records {args.records} --mean-bytes {args.mean_bytes}`",
        "", f"| loader | median s | min s | extrapolated to {REALM_RECORDS:,} records (s) | load 1m |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {med:.2f} | {mn:.2f} | {med * scale:.0f} | {load:.1f} |" for n, med, mn, load in rows], ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
