"""Search functions with one signature, ``search(questions: list[str], k) -> (scores, ids)``,
for dense retrievers (exact MIPS over an index) and BM25, so evaluations treat them alike."""

from __future__ import annotations

from pathlib import Path

from realm.data.blocks import BlockStore
from realm.index.bm25 import BM25Index
from realm.index.build import embed_blocks
from realm.index.exact import ExactIndex
from realm.index.store import open_index, to_float32
from realm.models.retriever import Retriever
from realm.evaluation.retrieval import embed_questions


def dense_searcher(retriever: Retriever | str | Path, store: BlockStore, index: str | Path | None = None,
                   embeddings=None, device="cpu", bf16: bool = True):
    """Exact MIPS with ``retriever``'s query encoder over ``index`` (or freshly embedded blocks)."""
    if not isinstance(retriever, Retriever):
        retriever = Retriever.load(retriever)
    if embeddings is None:
        if index is not None:
            emb, manifest = open_index(index, expect_corpus_hash=store.corpus_hash,
                                       expect_dim=retriever.doc.dense.out_features)
            embeddings = to_float32(emb, manifest)
        else:
            embeddings = embed_blocks(retriever.doc, store, bf16=bf16, device=device, progress=False)
    exact = ExactIndex(embeddings)

    def search(questions, k):
        q = embed_questions(retriever.query, store, questions, retriever.query_len, device=device)
        return exact.search(q, k)

    return search


def bm25_searcher(store: BlockStore, index: BM25Index | None = None):
    index = index or BM25Index.build(store.search_texts())

    def search(questions, k):
        return index.search(list(questions), k)

    return search
