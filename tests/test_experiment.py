"""`realm experiment` end to end on a small, easy world, through the real CLI.

The world is easy for lexical retrieval (every question names one rare entity), so the systems must
order as the paper's reasoning says they would, even at this size: BM25 retrieves almost every
answer, a trained dense retriever beats an untrained one, and reading retrieved text beats answering
from the question alone. The files the run writes must agree with each other.
"""

import json
import shutil

import numpy as np
import pytest

from realm.cli import main
from realm.data.world import generate_world, write_world
from realm.serving.answer import Answerer

SYSTEMS = ("closed_book", "bm25_reader", "ict_reader", "realm")
OVERRIDES = ["pretrain.refresh_mode=sync", "threads=1", "reading.steps=12", "reading.probe_every=6",
             "reading.probe_rows=16", "pretrain.counterfactual=0.5", "pretrain.probe_every=6",
             "finetune.counterfactual=0.5", "ict.steps=100", "finetune.steps=200", "finetune.batch_size=8",
             "finetune.lr=2e-3"]


def experiment(paths, out, *extra):
    return main(["experiment", "--corpus", str(paths["corpus"]), "--train", str(paths["qa-train"]),
                 "--dev", str(paths["qa-dev"]), "--test", str(paths["qa-test"]), "--out", str(out),
                 "--preset", "tiny", *extra, *OVERRIDES])


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    paths = write_world(generate_world(70, seed=3), root / "w")
    assert experiment(paths, root / "exp") == 0
    return paths, root / "exp", json.loads((root / "exp" / "results.json").read_text())


@pytest.mark.slow
def test_systems_order_as_expected_on_an_easy_world(run):
    _, out, report = run
    systems = {s["system"]: s for s in report["systems"]}
    assert tuple(systems) == SYSTEMS
    recall = {r["retriever"]: r for r in report["retrieval_dev"]}
    assert list(recall) == ["BM25", "dense, untrained", "dense, ICT", "dense, ICT + REALM pretraining"]
    assert recall["BM25"]["recall@5"] >= 0.8
    assert recall["BM25"]["recall@5"] > recall["dense, untrained"]["recall@5"] + 0.3
    assert recall["dense, ICT"]["recall@5"] > recall["dense, untrained"]["recall@5"]

    def pooled_em(name):  # dev + test, weighted by questions
        q = report["questions"]
        return (systems[name]["dev_em"] * q["dev"] + systems[name]["test_em"] * q["test"]) / (q["dev"] + q["test"])

    assert pooled_em("bm25_reader") > pooled_em("closed_book")


@pytest.mark.slow
def test_the_files_agree_with_each_other(run):
    paths, out, report = run
    systems = {s["system"]: s for s in report["systems"]}
    # every EM in results.json is the mean of the predictions file it came from
    for name, s in systems.items():
        for split in ("dev", "test"):
            preds = jsonl(out / "stages" / name / f"{split}_predictions.jsonl")
            assert len(preds) == report["questions"][split], (name, split)
            assert s[f"{split}_em"] == pytest.approx(np.mean([p["correct"] for p in preds])), (name, split)
    # zero-shot recall of a system = its retriever's row in the retrieval table
    recall = {r["retriever"]: r["recall@5"] for r in report["retrieval_dev"]}
    assert systems["bm25_reader"]["zero_shot_recall5"] == pytest.approx(recall["BM25"])
    assert systems["ict_reader"]["zero_shot_recall5"] == pytest.approx(recall["dense, ICT"])
    assert systems["realm"]["zero_shot_recall5"] == pytest.approx(recall["dense, ICT + REALM pretraining"])
    # the markdown table has one row per system, with the JSON's numbers
    table = (out / "results.md").read_text()
    for name, s in systems.items():
        assert f"| {name} | {100 * s['test_em']:.1f} | {100 * s['dev_em']:.1f} |" in table
    assert (out / "results.png").stat().st_size > 1000
    # the reading warm start is every system's starting point; its probe is recorded per system
    for name in ("reading", "reading_baseline", "realm_pretrain"):
        assert (out / "stages" / name / "encoder" / "config.json").exists(), name
    assert systems["bm25_reader"]["reading"] == systems["ict_reader"]["reading"] == systems["closed_book"]["reading"]
    assert {"probe/evidence_advantage", "probe/cf_advantage"} <= set(systems["realm"]["reading"])
    assert systems["realm"]["reading"] != systems["bm25_reader"]["reading"]  # REALM pretraining changed it
    rows = jsonl(out / "stages" / "realm_pretrain" / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/recall@5" in r] == [0, 6, 12]
    # and REALM's own task on a fixed set of masked sentences, at the same points
    assert all(0 <= r[next(k for k in r if k.startswith("probe/evidence@"))] <= 1 for r in rows if "eval/recall@5" in r)
    # the servable model is the realm system: it gives the realm system's test answers, with evidence
    test = jsonl(paths["qa-test"])[:5]
    preds = jsonl(out / "stages" / "realm" / "test_predictions.jsonl")[:5]
    with Answerer(out / "model") as answerer:
        answers = answerer.ask_many([q["question"] for q in test])
    assert [a["answer"] for a in answers] == [p["prediction"] for p in preds]
    assert all(a["evidence"] for a in answers)
    # the knowledge-update check ran on a copy of the servable model, which keeps its index version
    update = report["knowledge_update"]
    assert update["relation"] == "birthplace" and update["edits"] == min(20, update["right_before"])
    assert update["new_value_answered"] + update["old_value_answered"] <= update["edits"]
    assert answerers_version(out / "model") == 1
    assert f"{update['new_value_answered']} answered with the new value" in table
    # the questions' vocabulary against the corpus' (brute force in tests/evaluation/test_vocabulary.py)
    vocab = report["question_vocabulary"]
    assert set(vocab) == {"train", "dev", "test"} and "unseen_share_or_train" in vocab["dev"]
    assert 0 <= vocab["dev"]["unseen_share_or_train"] <= vocab["dev"]["unseen_share"] <= 1
    assert f"{100 * vocab['dev']['unseen_share']:.1f}% of the dev questions' tokens" in table


def answerers_version(run_dir):
    with Answerer(run_dir) as answerer:
        return answerer.index_version


@pytest.mark.slow
def test_a_system_scores_the_same_alone(run, tmp_path):
    """Each reader starts from its own seed: `--systems ict_reader` on the same stages = the full run's."""
    paths, out, report = run
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copytree(out / "corpus", alone / "corpus")
    for stage in ("reading", "reading_baseline", "ict"):
        shutil.copytree(out / "stages" / stage, alone / "stages" / stage)
    assert experiment(paths, alone, "--systems", "ict_reader", "experiment.ablations=") == 0
    assert (alone / "stages" / "ict_reader" / "test_predictions.jsonl").read_bytes() == \
        (out / "stages" / "ict_reader" / "test_predictions.jsonl").read_bytes()
    solo = json.loads((alone / "results.json").read_text())["systems"]
    full = {s["system"]: s for s in report["systems"]}["ict_reader"]
    assert [(s["system"], s["dev_em"], s["test_em"]) for s in solo] == [("ict_reader", full["dev_em"], full["test_em"])]


def test_a_stage_read_back_from_disk_runs_the_configured_attention_kernel(tiny_corpus, tmp_path):
    """A resumed experiment loads finished stages; they must embed and score with the same kernel as the run
    that trained them (in bf16, sdpa and eager round differently)."""
    from transformers import BertConfig

    from realm.config import load_config
    from realm.experiment import Stages
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.models.retriever import Retriever

    store, _ = tiny_corpus
    tok = store.tokenizer
    cfg = load_config("tiny", ["retriever.encoder.attention=eager", "reader.encoder.attention=eager"])
    Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id).save(tmp_path / "ict" / "retriever")
    KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id).save(tmp_path / "mlm_warm" / "encoder")
    stages = Stages(cfg, store, tmp_path, [], progress=False)
    for model in (stages.ict(), stages.shared_encoder()):
        kernels = {m.config._attn_implementation for m in model.modules()
                   if isinstance(getattr(m, "config", None), BertConfig)}
        assert kernels == {"eager"}
    fresh_load = Retriever.load(tmp_path / "ict" / "retriever")  # what the stage would have been without it
    assert {m.config._attn_implementation for m in fresh_load.modules()
            if isinstance(getattr(m, "config", None), BertConfig)} == {"sdpa"}
