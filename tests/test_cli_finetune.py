"""`realm finetune` and `realm evaluate` through the CLI: fine-tune from a pretrain-style run folder, get a
servable run, evaluate it (tiny preset, random-initialised models: seconds)."""

import json

import pytest
import torch

from realm.cli import main
from realm.config import load_config
from realm.models.mlm import KnowledgeAugEncoder
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever
from realm.training.logger import read_metrics
from tests.helpers import tiny_world_corpus

STEPS = 4


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(corpus folder, world files, a run folder holding retriever/ and encoder/ as `realm pretrain` leaves it)."""
    root = tmp_path_factory.mktemp("cli_finetune")
    store, paths = tiny_world_corpus(root)
    cfg = load_config("tiny")
    tok = store.tokenizer
    torch.manual_seed(0)
    Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id).save(root / "pt" / "retriever")
    KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id).save(root / "pt" / "encoder")
    return root / "corpus", paths, root / "pt"


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
    corpus, paths, pt = pretrained
    out = tmp_path_factory.mktemp("ft") / "run"
    args = ["finetune", "--corpus", str(corpus), "--from", str(pt), "--qa", str(paths["qa-train"]),
            "--dev", str(paths["qa-dev"]), "--out", str(out), "--preset", "tiny", f"finetune.steps={STEPS}"]
    return out, args


def _run(capsys, args) -> dict:
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_finetune_makes_a_servable_run_that_evaluate_scores(finetuned, pretrained, capsys, tmp_path):
    out, args = finetuned
    _, paths, pt = pretrained
    result = _run(capsys, args)
    assert result["steps"] == STEPS and result["model"] == str(out / "model")
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, STEPS + 1))
    assert json.loads((out / "model" / "run.json").read_text())["top_k"] == load_config("tiny").reader.top_k
    # the exported reader is the fine-tuned one, and fine-tuning moved it away from the encoder it started from
    exported, trained = SpanReader.load(out / "model" / "reader"), SpanReader.load(out / "reader")
    for (k, a), b in zip(exported.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a, b), k
    start = KnowledgeAugEncoder.load(pt / "encoder").bert.state_dict()
    moved = [k for k, v in exported.bert.state_dict().items() if k in start and not torch.equal(v, start[k])]
    assert moved, "fine-tuning changed no reader weight"

    n_dev = sum(1 for line in paths["qa-dev"].read_text().splitlines() if line.strip())
    dev = result["dev"]
    assert dev["questions"] == n_dev and 0.0 <= dev["exact_match"] <= 1.0
    preds = tmp_path / "preds.jsonl"
    again = _run(capsys, ["evaluate", str(out / "model"), "--qa", str(paths["qa-dev"]), "--out", str(preds)])
    assert len(preds.read_text().splitlines()) == n_dev
    # `realm evaluate` on the exported run reproduces the metrics `realm finetune --dev` reported
    for key in ("exact_match", "questions", "index_version", "blocks", "k", *[k for k in dev if k.startswith("recall@")]):
        assert again[key] == dev[key], key
    assert (out / "dev_predictions.jsonl").read_text() == preds.read_text()


def test_finetune_rerun_resumes_instead_of_retraining(finetuned, capsys):
    out, args = finetuned
    if not (out / "model" / "run.json").exists():
        _run(capsys, args)
    rows = len(read_metrics(out / "metrics.jsonl"))
    assert _run(capsys, args)["steps"] == STEPS
    assert len(read_metrics(out / "metrics.jsonl")) == rows  # resumed at the last step: nothing retrained


def test_finetune_needs_a_starting_point(pretrained, tmp_path, capsys):
    corpus, paths, pt = pretrained
    base = ["finetune", "--corpus", str(corpus), "--qa", str(paths["qa-train"]), "--out", str(tmp_path / "x"),
            "--preset", "tiny"]
    assert main(base) == 2
    assert "--from RUN" in capsys.readouterr().err
    assert main([*base, "--from", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "x" / "metrics.jsonl").exists()
