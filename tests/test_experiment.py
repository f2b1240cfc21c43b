import json

import pytest

from realm.cli import main
from realm.data.world import generate_world, write_world


@pytest.mark.slow
def test_experiment_runs_unchanged_on_another_corpus(tmp_path):
    """`realm experiment` on a second world (other seed and size), through the real CLI."""
    paths = write_world(generate_world(70, seed=3), tmp_path / "w")
    out = tmp_path / "exp"
    code = main(["experiment", "--corpus", str(paths["corpus"]), "--train", str(paths["qa-train"]),
                 "--dev", str(paths["qa-dev"]), "--test", str(paths["qa-test"]), "--out", str(out),
                 "--preset", "tiny", "pretrain.refresh_mode=sync", "threads=1", "reading.steps=12",
                 "reading.probe_every=6", "reading.probe_rows=16", "pretrain.counterfactual=0.5",
                 "pretrain.probe_every=6", "finetune.counterfactual=0.5"])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    systems = {s["system"]: s for s in report["systems"]}
    assert set(systems) == {"closed_book", "bm25_reader", "ict_reader", "realm"}
    for name, s in systems.items():
        assert 0.0 <= s["test_em"] <= 1.0 and 0.0 <= s["dev_em"] <= 1.0, name
    for name in ("bm25_reader", "ict_reader", "realm"):
        assert 0.0 <= systems[name]["zero_shot_recall5"] <= 1.0
    assert report["questions"]["train"] > 0 and report["corpus"]["num_docs"] == 70
    names = [r["retriever"] for r in report["retrieval_dev"]]
    assert names == ["BM25", "dense, untrained", "dense, ICT", "dense, ICT + REALM pretraining"]
    assert all(0.0 <= r["recall@5"] <= r["recall@20"] <= 1.0 for r in report["retrieval_dev"])
    # the reading warm start is every system's starting point, and its probe is recorded per system
    for name in ("reading", "reading_baseline", "realm_pretrain"):
        assert (out / "stages" / name / "encoder" / "config.json").exists(), name
    for name, s in systems.items():
        assert {"probe/evidence_advantage", "probe/cf_advantage"} <= set(s["reading"]), name
    base = json.loads((out / "stages" / "reading" / "probe.json").read_text())
    # closed_book, bm25_reader and ict_reader start from the same continued encoder: the same probe
    assert systems["bm25_reader"]["reading"] == systems["ict_reader"]["reading"] == systems["closed_book"]["reading"]
    assert systems["realm"]["reading"] != base  # REALM pretraining changed the encoder it started from
    rows = [json.loads(line) for line in (out / "stages" / "realm_pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/recall@5" in r] == [0, 6, 12]
    table = (out / "results.md").read_text()
    assert "| realm |" in table and (out / "results.png").stat().st_size > 1000
    # the servable model folder is complete
    assert (out / "model" / "run.json").exists() and (out / "model" / "index" / "LATEST").exists()
    preds = [json.loads(line) for line in (out / "stages" / "realm" / "test_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == report["questions"]["test"] and all("evidence" in p for p in preds)
