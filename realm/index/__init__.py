"""MIPS indexes over block embeddings (exact torch, FAISS), BM25, and versioned storage.

Every searcher has ``search(queries, k, exclude=None) -> (scores float32 [Q,k],
ids int64 [Q,k])``: descending score, ties by lower id, ``exclude[i]`` ids never
returned for query ``i``, missing results padded with (-inf, -1).
"""
from realm.index.bm25 import BM25Index
from realm.index.exact import ExactIndex, brute_force_search, topk_sorted
from realm.index.exact_filtered import FilteredExactIndex
from realm.index.faiss_index import FaissIndex
from realm.index.store import (
    IndexCorruptError,
    IndexManifest,
    IndexMismatchError,
    IndexStoreError,
    IndexWriter,
    bf16_bits_to_float32,
    float32_to_bf16_bits,
    latest_version,
    open_index,
    to_float32,
    write_index_version,
)

__all__ = [
    "BM25Index", "ExactIndex", "FaissIndex", "FilteredExactIndex", "brute_force_search", "topk_sorted",
    "IndexCorruptError", "IndexManifest", "IndexMismatchError", "IndexStoreError",
    "IndexWriter", "bf16_bits_to_float32", "float32_to_bf16_bits", "latest_version",
    "open_index", "to_float32", "write_index_version",
]
