"""``realm experiment/demo --seeds 0,1,2``: the same experiment under several training seeds, as mean ± sd.

Each seed is a complete ``realm experiment`` in ``OUT/seed-N/`` (its own ``results.json``); the
corpus, the questions and the world are the same, only ``cfg.seed`` (initialisation, batch order,
masking) changes. ``OUT/results-seeds.json`` / ``.md`` / ``.png`` aggregate them: for each system
and metric, the mean, the sample standard deviation and the per-seed values.
"""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from realm.config import RunConfig

METRICS = (("test_em", "test EM", 100.0), ("dev_em", "dev EM", 100.0),
           ("zero_shot_recall5", "zero-shot R@5 (dev)", 100.0), ("finetuned_recall5", "fine-tuned R@5 (dev)", 100.0))


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; duplicates and non-integers are errors."""
    from realm.config import ConfigError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: expected distinct comma-separated integers, got {text!r}")
    return seeds


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(reports: dict[int, dict]) -> dict:
    """Per system: ``{metric: {"mean", "sd", "values"}}`` over the seeds' ``results.json`` reports."""
    systems: dict[str, dict] = {}
    for seed, report in reports.items():
        for s in report["systems"]:
            row = systems.setdefault(s["system"], {})
            values = {key: s.get(key) for key, _, _ in METRICS}
            values["reading_advantage"] = (s.get("reading") or {}).get("probe/evidence_advantage")
            for key, v in values.items():
                if v is not None:
                    row.setdefault(key, {"values": {}})["values"][seed] = v
    for row in systems.values():
        for stat in row.values():
            stat["mean"], stat["sd"] = mean_sd(stat["values"].values())
    retrieval: dict[str, dict] = {}
    for seed, report in reports.items():
        for r in report.get("retrieval_dev", []):
            for key, v in r.items():
                if key.startswith("recall@"):
                    retrieval.setdefault(r["retriever"], {}).setdefault(key, {"values": {}})["values"][seed] = v
    for row in retrieval.values():
        for stat in row.values():
            stat["mean"], stat["sd"] = mean_sd(stat["values"].values())
    return {"seeds": sorted(reports), "systems": systems, "retrieval_dev": retrieval}


def format_tables(agg: dict) -> str:
    def cell(row, key, scale):
        if key not in row:
            return "–"
        return f"{scale * row[key]['mean']:.1f} ± {scale * row[key]['sd']:.1f}"

    head = "| system | " + " | ".join(label for _, label, _ in METRICS) + " | reading advantage (nats) |"
    lines = [f"Seeds: {', '.join(map(str, agg['seeds']))} (mean ± sd)", "", head,
             "|" + "---|" * (len(METRICS) + 2)]
    for name, row in agg["systems"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row, k, s) for k, _, s in METRICS) + " | "
                     + (f"{row['reading_advantage']['mean']:+.2f} ± {row['reading_advantage']['sd']:.2f}"
                        if "reading_advantage" in row else "–") + " |")
    ks = sorted({k for row in agg["retrieval_dev"].values() for k in row}, key=lambda k: int(k.split("@")[1]))
    lines += ["", "Zero-shot retrieval on the dev questions (mean ± sd):", "",
              "| retriever | " + " | ".join(k.replace("recall@", "R@") for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for name, row in agg["retrieval_dev"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row, k, 100.0) for k in ks) + " |")
    return "\n".join(lines)


def run_seeds(cfg: RunConfig, seeds: Sequence[int], out: Path, run_one: Callable[[RunConfig, Path], dict]) -> dict:
    """``run_one(cfg_with_seed, OUT/seed-N)`` for each seed (each resumable), then the aggregate files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for seed in seeds:
        c = copy.deepcopy(cfg)
        c.seed = seed
        folder = out / f"seed-{seed}"
        done = folder / "results.json"
        reports[seed] = json.loads(done.read_text()) if done.exists() else run_one(c, folder)
    agg = aggregate(reports)
    (out / "results-seeds.json").write_text(json.dumps(agg, indent=2))
    text = format_tables(agg)
    (out / "results-seeds.md").write_text(text + "\n")
    try:
        from realm.training.plots import plot_bars

        names = list(agg["systems"])
        series = {label: [100 * agg["systems"][n][k]["mean"] if k in agg["systems"][n] else None for n in names]
                  for k, label, _ in METRICS[:3]}
        errors = {label: [100 * agg["systems"][n][k]["sd"] if k in agg["systems"][n] else 0.0 for n in names]
                  for k, label, _ in METRICS[:3]}
        plot_bars(names, series, out / "results-seeds.png", title=f"realm experiment, seeds {list(seeds)}",
                  ylabel="% (mean ± sd)", errors=errors)
    except Exception as e:  # a plot must never fail a finished run
        print(f"could not plot: {e}")
    print(text)
    return agg
