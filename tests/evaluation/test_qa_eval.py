import json

import numpy as np
import pytest
import torch

from realm.config import CorpusConfig, load_config
from realm.data.corpus import build_corpus
from realm.data.qa import QAExample, exact_match
from realm.evaluation.qa import evaluate_qa, predict, span_to_text, write_predictions
from realm.evaluation.retrieval import answer_hits, recall_at_k
from realm.index.bm25 import BM25Index
from realm.index.build import embed_blocks
from realm.models.inputs import Specials, pair_inputs
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever
from realm.retrieval import BM25Retrieval, DenseRetrieval

PEOPLE = [("Elsa Mirrow", "Varnholt"), ("Tomas Vell", "Quillbay"), ("Brina Quarn", "Dunmere"),
          ("Oskar Adley", "Kelpford"), ("Mila Brask", "Varnholt"), ("Ferro Coldry", "Quillbay"),
          ("Ysolde Dunmore", "Dunmere"), ("Dario Eskin", "Kelpford")]
JOBS = ["cartographer", "glassblower", "weaver", "miller"]
EXAMPLES = [QAExample(f"Where was {n} born?", (c,)) for n, c in PEOPLE]



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A corpus whose small vocabulary splits words into pieces and strips accents (offsets must still map)."""
    root = tmp_path_factory.mktemp("qa_eval")
    with open(root / "docs.jsonl", "w", encoding="utf-8") as f:
        for i, (name, city) in enumerate(PEOPLE):
            text = f"{name} was born in {city}, Ostrava! {name} worked as a {JOBS[i % 4]} (née Álvarez)."
            f.write(json.dumps({"id": f"p{i}", "title": name, "text": text}, ensure_ascii=False) + "\n")
    store, _ = build_corpus(root / "docs.jsonl", root / "corpus",
                            CorpusConfig(block_len=16, vocab_size=150, min_frequency=1), progress=False)
    cfg = load_config("tiny")
    tok = store.tokenizer
    torch.manual_seed(0)
    retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id).eval()
    reader = SpanReader.build(cfg.reader, tok.vocab_size, tok.pad_id).eval()
    emb = embed_blocks(retriever.doc, store, bf16=False, progress=False)
    return store, DenseRetrieval(retriever, store, emb), reader, emb


def is_continuation(tok, i):
    return tok.hf.convert_ids_to_tokens(int(i)).startswith("##")


def test_span_to_text_maps_back_exactly(models):
    store, *_ = models
    tok = store.tokenizer
    split_words = 0
    for b in range(len(store)):
        text, body = store.block_text(b), store.body_ids(b)
        for ts in range(len(body)):
            for te in range(ts, min(ts + 4, len(body))):
                span, cs, ce = span_to_text(store, b, ts, te)
                assert span and span == text[cs:ce]
                ends_word = te + 1 == len(body) or not is_continuation(tok, body[te + 1])
                whole_words = not is_continuation(tok, body[ts]) and ends_word
                if whole_words:
                    assert tok.encode(span) == body[ts:te + 1].tolist()
                split_words += is_continuation(tok, body[te])
    assert split_words > 0  # the corpus really has multi-piece words


def check_record(store, reader, rec, k):
    ev = rec["evidence"]
    assert len(ev) == k
    assert sum(e["retrieval_prob"] for e in ev) == pytest.approx(1.0, abs=1e-5)
    assert [e["retrieval_score"] for e in ev] == sorted((e["retrieval_score"] for e in ev), reverse=True)
    assert rec["block"] in [e["block"] for e in ev]
    text = store.block_text(rec["block"])
    assert rec["prediction"] == text[rec["answer_start"]:rec["answer_end"]] != ""
    assert 0 <= rec["token_start"] <= rec["token_end"] < len(store.body_ids(rec["block"]))
    assert rec["token_end"] - rec["token_start"] < reader.max_span_width
    assert rec["correct"] == exact_match(rec["prediction"], rec["answers"])
    info = store.block_info(rec["block"])
    assert (rec["doc_id"], rec["title"]) == (info["doc_id"], info["title"])


def test_predict_dense_picks_best_joint_span(models):
    store, dense, reader, emb = models
    preds = predict(dense, reader, EXAMPLES, k=3, batch_size=3)
    assert [p["question"] for p in preds] == [e.question for e in EXAMPLES]
    sp = Specials.of(store.tokenizer)
    for rec in preds:
        check_record(store, reader, rec, 3)
        # brute force: read each evidence block alone; the best span + retrieval score is the prediction
        q = store.tokenizer.encode(rec["question"])
        best = []
        for e in rec["evidence"]:
            inputs, bs, be = pair_inputs([q], [store.body_ids(e["block"])], sp, reader.max_query_len)
            with torch.no_grad():
                out = reader(inputs, bs, be)
            c = int(out.span_logits[0].argmax())
            best.append((float(out.span_logits[0, c]) + e["retrieval_score"], e["block"],
                         int(out.starts[c] - bs[0]), int(out.ends[c] - bs[0])))
        score, block, ts, te = max(best)
        assert rec["score"] == pytest.approx(score, abs=1e-4)
        assert (rec["block"], rec["token_start"], rec["token_end"]) == (block, ts, te)


def test_evaluate_qa_dense_and_bm25(models, tmp_path):
    store, dense, reader, emb = models
    res = evaluate_qa(dense, reader, EXAMPLES, k=3, predictions_path=tmp_path / "p.jsonl")
    rows = [json.loads(line) for line in open(tmp_path / "p.jsonl", encoding="utf-8")]
    assert len(rows) == len(EXAMPLES) == res["questions"]
    assert res["exact_match"] == pytest.approx(np.mean([exact_match(r["prediction"], r["answers"]) for r in rows]))
    _, ids = dense.search([e.question for e in EXAMPLES], 3)
    expected = recall_at_k(answer_hits(store, ids, EXAMPLES), (1, 3))
    assert {k: res[k] for k in expected} == pytest.approx(expected)
    assert [[e["block"] for e in r["evidence"]] for r in rows] == ids.tolist()

    bm25 = BM25Retrieval(store, BM25Index.build(store.search_texts()))
    res = evaluate_qa(bm25, reader, EXAMPLES, k=3)
    assert res["retrieval"] == "bm25" and res["recall@3"] == 1.0  # names are unique
    for rec in predict(bm25, reader, EXAMPLES, k=3):
        check_record(store, reader, rec, 3)


def test_nothing_retrieved(models, tmp_path):
    store, _, reader, _ = models
    bm25 = BM25Retrieval(store)
    ex = [QAExample("qqqq zzzz?", ("Varnholt",)), EXAMPLES[0]]
    preds = predict(bm25, reader, ex, k=3)
    assert preds[0]["prediction"] == "" and preds[0]["block"] == -1 and preds[0]["evidence"] == []
    assert preds[0]["score"] is None and not preds[0]["correct"]
    assert preds[1]["prediction"] != ""
    path = write_predictions(tmp_path / "out" / "p.jsonl", preds)
    assert [json.loads(line)["question"] for line in open(path)] == [e.question for e in ex]
