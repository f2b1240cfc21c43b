"""Several seeds: aggregation as mean ± sd against plain statistics, seeds parsing, resumability."""

import json
import statistics

import pytest

from realm.config import ConfigError, load_config
from realm.seeds import aggregate, format_tables, parse_seeds, run_seeds


def _report(seed, em):
    return {"systems": [{"system": "a", "test_em": em, "dev_em": em / 2, "zero_shot_recall5": None,
                         "finetuned_recall5": 0.5, "reading": {"probe/evidence_advantage": seed + 0.5}},
                        {"system": "b", "test_em": 1 - em, "dev_em": 0.1, "zero_shot_recall5": 0.2,
                         "finetuned_recall5": None, "reading": {}}],
            "retrieval_dev": [{"retriever": "BM25", "questions": 3, "recall@1": em, "recall@5": 1.0}]}


def test_aggregate_mean_and_sample_sd():
    ems = {0: 0.4, 1: 0.5, 2: 0.9}
    agg = aggregate({s: _report(s, em) for s, em in ems.items()})
    a = agg["systems"]["a"]
    assert a["test_em"]["mean"] == pytest.approx(statistics.mean(ems.values()))
    assert a["test_em"]["sd"] == pytest.approx(statistics.stdev(ems.values()))
    assert a["test_em"]["values"] == ems
    assert "zero_shot_recall5" not in a and a["reading_advantage"]["mean"] == pytest.approx(1.5)
    assert agg["retrieval_dev"]["BM25"]["recall@5"]["sd"] == 0.0
    text = format_tables(agg)
    assert "| a | 60.0 ± 26.5 |" in text and "| BM25 | 60.0 ± 26.5 | 100.0 ± 0.0 |" in text


def test_parse_seeds():
    assert parse_seeds("0,1, 2") == [0, 1, 2]
    for bad in ("0,0", "a,1", ""):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_run_seeds_runs_each_seed_once_and_resumes(tmp_path):
    calls = []

    def run_one(cfg, out):
        calls.append(cfg.seed)
        out.mkdir(parents=True)
        report = _report(cfg.seed, 0.1 * cfg.seed)
        (out / "results.json").write_text(json.dumps(report))
        return report

    cfg = load_config("tiny")
    run_seeds(cfg, [3, 4], tmp_path, run_one)
    assert calls == [3, 4] and cfg.seed == 0  # the caller's config is not changed
    agg = run_seeds(cfg, [3, 4, 5], tmp_path, run_one)  # finished seeds are read back, not rerun
    assert calls == [3, 4, 5]
    assert json.loads((tmp_path / "results-seeds.json").read_text())["seeds"] == [3, 4, 5]
    assert (tmp_path / "results-seeds.png").exists() and agg["systems"]["a"]["test_em"]["values"][5] == 0.5
