import json
import shutil

import numpy as np
import pytest
import torch

from realm.config import CorpusConfig, load_config
from realm.data.corpus import build_corpus
from realm.data.qa import QAExample
from realm.evaluation.qa import evaluate_qa, predict
from realm.index.bm25 import BM25Index
from realm.index.build import embed_blocks
from realm.models.reader import SpanReader, span_index
from realm.models.retriever import Retriever
from realm.retrieval import BM25Retrieval, DenseRetrieval
from realm.training.finetune import continuation_ids, correct_spans, finetune
from realm.training.logger import read_metrics

FIRST = ["Elsa", "Tomas", "Brina", "Oskar", "Mila", "Ferro", "Ysolde", "Dario", "Kesta", "Lorin", "Pell", "Anwen",
         "Corvin", "Idra", "Jessa", "Maro", "Nilda", "Quen", "Rusk", "Talia", "Ulric", "Vesna", "Wren", "Zarek"]
LAST = ["Mirrow", "Vell", "Quarn", "Adley", "Brask", "Coldry", "Dunmore", "Eskin", "Fallow", "Grime", "Holt", "Ivers"]
CITIES = ["Varnholt", "Quillbay", "Dunmere", "Kelpford"]
JOBS = ["cartographer", "baker", "sailor", "weaver", "miller", "glassblower"]
PEOPLE = [(f"{FIRST[i]} {LAST[i % len(LAST)]}", CITIES[i % len(CITIES)], JOBS[i % len(JOBS)]) for i in range(24)]
TRAIN = [QAExample(f"Where was {name} born?", (city,)) for name, city, _ in PEOPLE]



@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa_world")
    with open(root / "docs.jsonl", "w") as f:
        for i, (name, city, job) in enumerate(PEOPLE):
            text = f"{name} was born in {city}. {name} worked as a {job}."
            f.write(json.dumps({"id": f"p{i}", "title": name, "text": text}) + "\n")
    store, _ = build_corpus(root / "docs.jsonl", root / "corpus",
                            CorpusConfig(block_len=32, vocab_size=400, min_frequency=1), progress=False)
    return store


def setup(store, steps=30, **finetune):
    cfg = load_config("tiny")
    cfg.reader.top_k = 3
    cfg.finetune.steps, cfg.finetune.batch_size, cfg.finetune.lr = steps, 8, 2e-3
    for k, v in finetune.items():
        setattr(cfg.finetune, k, v)
    tok = store.tokenizer
    torch.manual_seed(0)
    retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
    reader = SpanReader.build(cfg.reader, tok.vocab_size, tok.pad_id)
    emb = embed_blocks(retriever.doc, store, bf16=False, progress=False)
    return cfg, retriever, reader, emb


def losses(run_dir):
    return {r["step"]: r["loss/total"] for r in read_metrics(run_dir / "metrics.jsonl")}


def test_correct_spans_rule(world):
    tok = world.tokenizer
    ans = tok.encode("Varnholt")
    cont = continuation_ids(tok)
    partial = [i for i in tok.hf.get_vocab().values() if i in set(cont.tolist())][0]
    a, b, c = (tok.encode(word)[0] for word in ("the", "in", "was"))  # whole-word tokens (no ## continuation)
    body = np.array([a, *ans, b, *ans, partial, c, *ans], dtype=np.int64)  # middle match continues a word
    seq_len, start = 40, 5
    num = sum(seq_len - w for w in range(10))
    out = correct_spans([body], torch.tensor([start]), seq_len, num, [[ans, tok.encode("x y z w q r s t u v w")]],
                        10, cont)
    w = len(ans)
    expected = {span_index(seq_len, start + 1, w), span_index(seq_len, start + len(body) - w, w)}
    assert set(out[0].nonzero().flatten().tolist()) == expected


def test_dense_finetune_trains_query_encoder_only(world, tmp_path):
    cfg, retriever, reader, emb = setup(world, steps=30)
    emb_before = emb.copy()
    doc_before = {k: v.clone() for k, v in retriever.query.state_dict().items()}  # shared: doc == query
    em_before = evaluate_qa(DenseRetrieval(retriever, world, emb), reader, TRAIN, k=3)["exact_match"]
    summary = finetune(cfg, DenseRetrieval(retriever, world, emb), reader, TRAIN, tmp_path / "run",
                       progress=False)
    loss = list(losses(tmp_path / "run").values())
    assert len(loss) == 30 and np.isfinite(loss).all()
    assert np.mean(loss[-5:]) < 0.6 * np.mean(loss[:3])
    # the index and the document encoder are fixed; the query encoder was trained
    assert not retriever.shared
    assert np.array_equal(emb, emb_before)
    for k, v in retriever.doc.state_dict().items():
        assert torch.equal(v, doc_before[k]), k
    assert any(not torch.equal(v, doc_before[k]) for k, v in retriever.query.state_dict().items())
    np.testing.assert_allclose(embed_blocks(retriever.doc, world, bf16=False, progress=False), emb_before, atol=1e-6)
    # metrics, counts and saved artefacts
    row = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    for key in ("loss/reader", "loss/retriever", "train/no_correct_span", "lr", "perf/tokens_per_s"):
        assert key in row
    assert summary["questions_seen"] == 30 * 8
    assert 0 <= summary["questions_without_correct_span"] <= summary["questions_seen"]
    saved = Retriever.load(tmp_path / "run" / "retriever")
    assert not saved.shared
    np.testing.assert_allclose(embed_blocks(saved.doc, world, bf16=False, progress=False), emb_before, atol=1e-6)
    loaded = SpanReader.load(tmp_path / "run" / "reader")
    assert loaded.max_query_len == cfg.retriever.query_len
    # the reader learned to extract birthplaces (which one is right depends on a 30-step retriever: EM ~ 1/4)
    preds = predict(DenseRetrieval(saved, world, emb), loaded, TRAIN, k=3)
    assert np.mean([p["prediction"] in CITIES for p in preds]) >= 0.9
    assert np.mean([p["correct"] for p in preds]) > em_before


def test_frozen_query_encoder(world, tmp_path):
    cfg, retriever, reader, emb = setup(world, steps=3, train_query_encoder=False)
    before = {k: v.clone() for k, v in retriever.query.state_dict().items()}
    finetune(cfg, DenseRetrieval(retriever, world, emb), reader, TRAIN, tmp_path / "run", progress=False)
    for k, v in retriever.query.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bf16_autocast_runs(world, tmp_path):
    cfg, retriever, reader, emb = setup(world, steps=3)
    summary = finetune(cfg, DenseRetrieval(retriever, world, emb), reader, TRAIN, tmp_path / "run", progress=False,
                       bf16=True)
    assert all(np.isfinite(v) for v in losses(tmp_path / "run").values())
    assert summary["steps"] == 3 and np.isfinite(summary["loss/total"])


def test_the_configured_attention_kernel_applies_to_models_from_earlier_stages(world, tmp_path):
    """Models built with sdpa (as an earlier stage saved them) train with the kernel the config names."""
    cfg, retriever, reader, emb = setup(world, steps=2)
    cfg.retriever.encoder.attention = cfg.reader.encoder.attention = "eager"
    assert reader.bert.config._attn_implementation == "sdpa"
    finetune(cfg, DenseRetrieval(retriever, world, emb), reader, TRAIN, tmp_path / "run", progress=False, bf16=True)
    assert reader.bert.config._attn_implementation == "eager"
    assert {m.config._attn_implementation for m in retriever.modules() if hasattr(m, "config")} == {"eager"}


def test_resume_reproduces_uninterrupted_run(world, tmp_path):
    cfg, retriever, reader, emb = setup(world, steps=8)
    finetune(cfg, DenseRetrieval(retriever, world, emb), reader, TRAIN, tmp_path / "a", progress=False,
             checkpoint_every=4)
    full = losses(tmp_path / "a")
    # an "interrupted" run: only the step-4 checkpoint survives, fresh models are passed in
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step_000004", tmp_path / "b" / "checkpoints" / "step_000004")
    cfg, retriever, reader, _ = setup(world, steps=8)
    summary = finetune(cfg, DenseRetrieval(retriever, world, emb), reader, TRAIN, tmp_path / "b", progress=False)
    resumed = losses(tmp_path / "b")
    assert summary["start_step"] == 4 and sorted(resumed) == [5, 6, 7, 8]
    for step in resumed:
        assert resumed[step] == pytest.approx(full[step], rel=1e-5, abs=1e-6)


def test_bm25_reader_learns_to_extract(world, tmp_path):
    cfg, _, reader, _ = setup(world, steps=40)
    bm25 = BM25Index.build(world.search_texts())
    before = evaluate_qa(BM25Retrieval(world, bm25), reader, TRAIN, k=3)
    summary = finetune(cfg, BM25Retrieval(world, bm25), reader, TRAIN, tmp_path / "run", progress=False)
    loss = list(losses(tmp_path / "run").values())
    assert np.mean(loss[-5:]) < 0.3 * np.mean(loss[:3])
    after = evaluate_qa(BM25Retrieval(world, bm25), reader, TRAIN, k=3)
    assert after["recall@1"] == 1.0
    assert before["exact_match"] < 0.3 and after["exact_match"] >= 0.75
    assert summary["retrieval"] == "bm25"
    assert not (tmp_path / "run" / "retriever").exists()
