"""`realm evaluate` through the CLI, on a RealmForOpenQA checkpoint as released (object-array block records)
converted with `realm convert from-hf-realm`."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from realm.cli import main
from realm.data.qa import exact_match, has_answer
from realm.models.inputs import Specials, query_inputs
from realm.models.retriever import Retriever, relevance
from realm.serving.qa_run import IndexedCorpus

FIX = Path(__file__).parents[1] / "fixtures" / "hf_realm"
QA = [  # NQ-open style; the fixture's 6 blocks are about capitals, the seine and shakespeare
    {"question": "what is the capital of france ?", "answer": ["paris", "the capital"]},
    {"question": "who wrote hamlet ?", "answer": ["william shakespeare"]},
    {"question": "where does the seine river flow ?", "answer": ["Paris"]},
    {"question": "when was the eiffel tower built ?", "answer": ["1889"]},
    {"question": "what is the capital of italy ?", "answer": ["rome"]},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["convert", "from-hf-realm", str(FIX / "openqa_hub"), str(out)]) == 0  # no --allow-pickle
    return out


def _qa_file(tmp_path, rows=QA) -> Path:
    path = tmp_path / "nq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(capsys, run, qa, *extra) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--qa", str(qa), *extra]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert f"EM {result['exact_match']:.4f}" in captured.err  # the one-line summary
    return result


def test_evaluate_metrics_and_predictions(run, tmp_path, capsys):
    qa, preds_path = _qa_file(tmp_path), tmp_path / "preds.jsonl"
    result = _evaluate(capsys, run, qa, "--out", str(preds_path), "--k", "2", "--batch-size", "2")
    preds = [json.loads(line) for line in preds_path.read_text().splitlines()]
    assert result["questions"] == len(preds) == len(QA) and result["k"] == 2
    # independent reference: exact top-2 by inner product over the imported block_emb, scored by hand
    indexed = IndexedCorpus.load(run)
    store, emb = indexed.store, torch.from_numpy(indexed.embeddings)
    retriever = Retriever.load(run / "retriever").eval()
    sp = Specials.of(store.tokenizer)
    hits, correct = [], []
    for row, pred in zip(QA, preds):
        with torch.no_grad():
            q_ids = [store.tokenizer.encode(row["question"])]
            q = retriever.embed_queries(query_inputs(q_ids, sp, retriever.query_len))
        scores = relevance(q, emb)[0]
        top = scores.topk(2).indices.tolist()
        assert pred["question"] == row["question"] and [e["block"] for e in pred["evidence"]] == top
        for e, b in zip(pred["evidence"], top):
            assert e["text"] == store.block_text(b)
            assert e["retrieval_score"] == pytest.approx(float(scores[b]), abs=1e-5)
        hits.append([has_answer(store.block_text(b), row["answer"]) for b in top])
        assert pred["block"] in top and pred["prediction"] == store.block_text(pred["block"])[
            pred["answer_start"]:pred["answer_end"]]
        correct.append(exact_match(pred["prediction"], row["answer"]))
        assert pred["correct"] == correct[-1]
    assert result["recall@1"] == pytest.approx(sum(h[0] for h in hits) / len(QA))
    assert result["recall@2"] == pytest.approx(sum(any(h) for h in hits) / len(QA))
    assert result["exact_match"] == pytest.approx(sum(correct) / len(QA))
    assert 0 < result["recall@2"]  # the test scores something


def test_batching_does_not_change_predictions(run, tmp_path, capsys):
    qa = _qa_file(tmp_path)
    outs = []
    for bs in ("1", "4"):
        _evaluate(capsys, run, qa, "--out", str(tmp_path / f"p{bs}.jsonl"), "--batch-size", bs)
        outs.append([json.loads(line) for line in (tmp_path / f"p{bs}.jsonl").read_text().splitlines()])
    for a, b in zip(*outs):
        assert (a["prediction"], a["block"], a["token_start"], a["token_end"]) == \
            (b["prediction"], b["block"], b["token_start"], b["token_end"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_answer_is_the_ports_answer(run, tmp_path, capsys):
    """k = reader_beam_size (3): the converted checkpoint answers as RealmForOpenQA did in transformers 4.40.2."""
    ref = load_file(str(FIX / "outputs.safetensors"))
    qa = _qa_file(tmp_path, QA[:1])
    result = _evaluate(capsys, run, qa, "--out", str(tmp_path / "p.jsonl"))
    assert result["k"] == 3
    pred = json.loads((tmp_path / "p.jsonl").read_text())
    store = IndexedCorpus.load(run).store
    assert store.tokenizer.encode(pred["prediction"]) == ref["openqa/predicted_answer_ids"].tolist()
    assert [e["block"] for e in pred["evidence"]] == ref["openqa/retrieved_block_ids"].tolist()


def test_bad_inputs_are_clean_errors(run, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QA[0]) + "\n" + '{"question": "no answer field"}\n')
    assert main(["evaluate", str(run), "--qa", str(bad)]) == 2
    assert f"{bad}:2: missing field 'answer'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--qa", str(bad)]) == 2
    assert "not a realm QA run folder" in capsys.readouterr().err
