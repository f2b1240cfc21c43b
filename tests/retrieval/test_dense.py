"""DenseRetrieval and BM25Retrieval: the searcher contract against the numpy reference, and the reader's
view (ids + retrieval logits with gradient into the query encoder only)."""

import numpy as np
import pytest
import torch

from realm.config import load_config
from realm.index.build import embed_blocks
from realm.index.faiss_index import FaissIndex
from realm.models.reader import INVALID_SPAN_SCORE
from realm.models.retriever import Retriever
from realm.retrieval import BM25Retrieval, DenseRetrieval, Retrieval, Searcher, embed_questions
from tests.retrieval.reference import reference_search

QUESTIONS = ["Where was Elsa Mirrow born?", "Who founded Varnholt?", "What does the Order of Quill hold?",
             "When did she marry Tomas Vell?"]


@pytest.fixture(scope="module")
def dense_parts(tiny_corpus):
    store, _ = tiny_corpus
    cfg = load_config("tiny")
    torch.manual_seed(0)
    retriever = Retriever.build(cfg.retriever, store.tokenizer.vocab_size, store.tokenizer.pad_id).eval()
    # an untrained document encoder gives near-identical embeddings (scores within 1e-4): spread them out,
    # so that the ranking is decided well above float32 rounding
    emb = embed_blocks(retriever.doc, store, bf16=False, progress=False)
    emb = (emb - emb.mean(0)) * 50 + np.random.default_rng(0).standard_normal(emb.shape).astype(np.float32)
    return store, retriever, emb.astype(np.float32)


@pytest.mark.parametrize("backend", ["exact", "faiss-flat"])
def test_dense_search_matches_the_reference(dense_parts, backend):
    store, retriever, emb = dense_parts
    dense = DenseRetrieval(retriever, store, emb, backend)
    assert isinstance(dense, Searcher) and isinstance(dense, Retrieval)
    q = embed_questions(retriever.query, store, QUESTIONS, retriever.query_len)
    exclude = [[0, 1], [], [5], list(range(len(store) - 2))]
    for k, ex in [(5, None), (5, exclude), (len(store) + 3, None)]:
        s, i = dense.search(QUESTIONS, k, ex)
        s_ref, i_ref = reference_search(q, emb, k, ex)
        np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-5)
        # float32 vs float64: blocks whose reference scores lie within 1e-4 of a neighbour's may swap
        gap = np.diff(np.where(np.isfinite(s_ref), s_ref, -1e9), axis=1)
        clear = np.ones_like(i, bool)
        clear[:, 1:] &= np.abs(gap) > 1e-4
        clear[:, :-1] &= np.abs(gap) > 1e-4
        clear |= ~np.isfinite(s_ref)  # padding: (-inf, -1) in both
        assert np.array_equal(i[clear], i_ref[clear]) and clear[:, :5].mean() > 0.9
        assert all(set(a) == set(b) for a, b in zip(i, i_ref)) or k <= 5


def test_hnsw_dense_search_recall(dense_parts):
    store, retriever, emb = dense_parts
    dense = DenseRetrieval(retriever, store, emb, "faiss-hnsw")
    assert isinstance(dense.index, FaissIndex) and dense.index.kind == "hnsw"
    q = embed_questions(retriever.query, store, QUESTIONS, retriever.query_len)
    _, ids = dense.search(QUESTIONS, 10)
    _, ref = reference_search(q, emb, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)]) >= 0.95


def test_retrieve_gives_logits_with_gradient_into_the_query_encoder(dense_parts):
    store, retriever, emb = dense_parts
    dense = DenseRetrieval(retriever, store, emb)
    q_ids = [e.ids for e in store.tokenizer.encode_batch(QUESTIONS)]
    ids, logits = dense.retrieve(QUESTIONS, q_ids, 4)
    assert np.array_equal(ids, dense.search(QUESTIONS, 4)[1])
    q = embed_questions(retriever.query, store, QUESTIONS, retriever.query_len)
    want = np.einsum("bd,bkd->bk", q.astype(np.float64), emb[ids].astype(np.float64))
    np.testing.assert_allclose(logits.detach().numpy(), want, rtol=1e-5, atol=1e-5)
    retriever.zero_grad()
    logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in retriever.query.parameters())
    assert dense.emb.grad is None  # the stored block embeddings are constants
    retriever.zero_grad()
    assert dense.retrieve(QUESTIONS, q_ids, 10 * len(store))[0].shape == (len(QUESTIONS), len(store))  # k capped


def test_bad_inputs_are_refused(dense_parts):
    store, retriever, emb = dense_parts
    with pytest.raises(ValueError, match="bf16 bits"):
        DenseRetrieval(retriever, store, emb.view(np.uint16)[:, ::2])
    with pytest.raises(ValueError, match="blocks"):
        DenseRetrieval(retriever, store, emb[:-1])


def test_bm25_contract_and_logits(tiny_corpus):
    store, _ = tiny_corpus
    bm25 = BM25Retrieval(store)
    assert isinstance(bm25, Retrieval) and bm25.kind == "bm25"
    questions = QUESTIONS + ["qqqq zzzz"]  # the last one shares no word with the corpus
    s, i = bm25.search(questions, 3, exclude=[[], [], [], [], []])
    assert np.array_equal(i, bm25.index.search(questions, 3)[1]) and (i[-1] == -1).all()
    first = int(i[0, 0])
    assert first not in bm25.search(questions[:1], 3, exclude=[[first]])[1][0]
    ids, logits = bm25.retrieve(questions, [[]] * len(questions), 3)
    assert np.array_equal(ids, i)
    assert np.array_equal(logits.numpy(), np.where(i >= 0, s, INVALID_SPAN_SCORE).astype(np.float32))
