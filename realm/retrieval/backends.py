"""The MIPS backend over a block-embedding matrix, chosen by ``index.backend``.

===============  ==========================================================================
``exact``        :class:`realm.index.exact.ExactIndex` (torch, fp32): the reference
``exact-int8``   :class:`realm.index.exact_filtered.FilteredExactIndex`: int8 candidate scoring with a
                 proven error bound, candidates re-scored in float64; the same ids and scores as the numpy
                 oracle, 3-4x faster than ``exact`` over 1M blocks (``bench/RESULTS.md``), CPU only
``faiss-flat``   FAISS ``IndexFlatIP``: exact scores; of blocks tied at the k-th score it keeps any
``faiss-hnsw``   FAISS HNSW graph (``M=32, ef_construction=128, ef_search=256``): approximate
``faiss-ivfpq``  FAISS IVF-PQ with exact re-ranking of ``10 k`` candidates: approximate, compressed
===============  ==========================================================================

Every backend has ``search(vectors, k, exclude=None) -> (scores, ids)`` with the contract of
:mod:`realm.index` (descending score, ties by lower id, padding (-inf, -1)).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from realm.index.exact import ExactIndex
from realm.index.exact_filtered import FilteredExactIndex

BACKENDS = ("exact", "exact-int8", "faiss-flat", "faiss-hnsw", "faiss-ivfpq")


def build_backend(embeddings: np.ndarray | torch.Tensor, backend: str = "exact", device=None):
    """A searchable index over ``embeddings`` [N, d] (float32; a torch tensor stays on its device for
    ``exact``). FAISS backends run on the CPU whatever ``device`` is."""
    if backend not in BACKENDS:
        raise ValueError(f"index.backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(embeddings, np.ndarray) and embeddings.dtype == np.uint16:
        raise ValueError("embeddings hold bf16 bits: decode them with realm.index.store.to_float32 first")
    if backend == "exact":
        return ExactIndex(embeddings, device=device)
    if backend == "exact-int8":
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().cpu().numpy()
        return FilteredExactIndex(embeddings)
    from realm.index.faiss_index import FaissIndex  # faiss is imported only when asked for

    if backend == "faiss-flat":
        return FaissIndex(embeddings, "flat")
    if backend == "faiss-hnsw":
        return FaissIndex(embeddings, "hnsw")
    return FaissIndex(embeddings, "ivfpq", **ivfpq_params(int(embeddings.shape[0]), int(embeddings.shape[1])))


def ivfpq_params(num_blocks: int, dim: int) -> dict:
    """IVF-PQ build parameters that train on ``num_blocks`` vectors: ``m`` sub-quantizers dividing ``dim``
    (at most 16), codebooks of ``2**nbits <= num_blocks`` entries (at most 256), ``4 sqrt(N)`` cells (at most
    ``N / 39``, FAISS' training minimum) and ``4 sqrt(cells)`` of them visited per query."""
    m = max(d for d in range(1, min(16, dim) + 1) if dim % d == 0)
    nbits = max(1, min(8, int(math.log2(max(2, num_blocks)))))
    nlist = max(1, min(int(4 * math.sqrt(num_blocks)), num_blocks // 39))
    return {"m": m, "nbits": nbits, "nlist": nlist, "nprobe": min(nlist, max(16, round(4 * math.sqrt(nlist))))}
