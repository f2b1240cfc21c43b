"""FAISS-backed MIPS (inner-product metric) with exact or approximate search.

``kind``:

* ``"flat"``  - ``IndexFlatIP``: exact brute force (same result as
  :class:`realm.index.exact.ExactIndex` up to float summation order).
* ``"hnsw"``  - ``IndexHNSWFlat(d, M, METRIC_INNER_PRODUCT)``: graph search; recall
  grows with ``ef_search`` (and ``M``/``ef_construction`` at build time). Scores are
  exact inner products of the returned vectors; only *which* blocks are found is
  approximate.
* ``"ivfpq"`` - ``IndexIVFPQ``: ``nlist`` k-means cells, ``m`` sub-quantizers of
  ``nbits`` bits (``m*nbits/8`` bytes per vector), ``nprobe`` cells visited. Without
  re-ranking, scores are PQ approximations and the ranking is noisy. With
  ``rerank=True`` the top ``k*rerank_factor`` PQ candidates are re-scored with the
  original vectors (exact inner products, re-sorted): this fixes the *ordering* among
  the candidates, but a true neighbour that PQ placed outside the candidate list, or
  that lives in an unvisited cell, is still missed; recall is bounded by the candidate
  recall@(k*rerank_factor) and then rises with ``nprobe`` and ``rerank_factor``.
  Re-ranking keeps a reference to the original embeddings (memmap-friendly), so
  :meth:`FaissIndex.load` must be given them again.

All kinds return (scores float32 [Q,k], ids int64 [Q,k]) sorted by (score desc, id asc);
``exclude`` ids are removed by over-fetching ``k + max(len(excluded))`` and filtering;
missing results are padded with (-inf, -1).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import faiss
import numpy as np

from realm.index.exact import Exclude, check_exclude, topk_sorted

_DEFAULTS = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 128, "ef_search": 256},
    "ivfpq": {"nlist": None, "m": 16, "nbits": 8, "nprobe": 16, "rerank": True,
              "rerank_factor": 10, "train_size": None, "seed": 0},
}
_INDEX_FILE, _META_FILE = "index.faiss", "faiss_meta.json"


def _to_f32(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == np.uint16:  # bf16 bit patterns (realm.index.store)
        x = (x.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


class FaissIndex:
    """FAISS inner-product index over ``embeddings`` [N, d]; see module docstring.

    Build-time params: hnsw ``M``, ``ef_construction``; ivfpq ``nlist`` (default
    ``4*sqrt(N)``), ``m``, ``nbits``, ``train_size``, ``seed``. Search-time params
    (changeable with :meth:`set_search_params`): hnsw ``ef_search``; ivfpq ``nprobe``,
    ``rerank``, ``rerank_factor``.
    """

    def __init__(self, embeddings, kind: str = "flat", add_batch: int = 65536, **params):
        if kind not in _DEFAULTS:
            raise ValueError(f"kind must be one of {sorted(_DEFAULTS)}, got {kind!r}")
        unknown = set(params) - set(_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"unknown params for kind={kind!r}: {sorted(unknown)}")
        self.kind = kind
        self.params = {**_DEFAULTS[kind], **params}
        n, d = int(embeddings.shape[0]), int(embeddings.shape[1])
        self.num_blocks, self.dim = n, d
        self._emb = embeddings if kind == "ivfpq" else None  # only needed for rerank
        self.index = self._build_empty(n, d, embeddings)
        for s in range(0, n, add_batch):
            self.index.add(_to_f32(embeddings[s:s + add_batch]))
        self._apply_search_params()

    # ---------------------------------------------------------------- build
    def _build_empty(self, n: int, d: int, embeddings) -> "faiss.Index":
        p, ip = self.params, faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(p["M"]), ip)
            index.hnsw.efConstruction = int(p["ef_construction"])
            return index
        if d % p["m"]:
            raise ValueError(f"ivfpq: dim {d} must be divisible by m={p['m']}")
        if p["nlist"] is None:
            p["nlist"] = max(1, min(int(4 * math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, int(p["nlist"]), int(p["m"]), int(p["nbits"]), ip)
        self._quantizer = quantizer  # keep alive (the IVF index only borrows it)
        ntrain = p["train_size"] or min(n, max(64 * p["nlist"], 64 * 2 ** p["nbits"]))
        rng = np.random.default_rng(p["seed"])
        sample = np.sort(rng.choice(n, size=min(n, ntrain), replace=False))
        index.train(_to_f32(embeddings[sample]))
        return index

    def set_search_params(self, **params) -> None:
        """Change search-time params (hnsw: ef_search; ivfpq: nprobe, rerank, rerank_factor)."""
        allowed = {"hnsw": {"ef_search"}, "ivfpq": {"nprobe", "rerank", "rerank_factor"},
                   "flat": set()}[self.kind]
        bad = set(params) - allowed
        if bad:
            raise ValueError(f"not search-time params for kind={self.kind!r}: {sorted(bad)}")
        self.params.update(params)
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = int(self.params["ef_search"])
        elif self.kind == "ivfpq":
            self.index.nprobe = int(self.params["nprobe"])

    # ---------------------------------------------------------------- search
    def search(self, queries, k: int, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product search; see module docstring for the contract."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _to_f32(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}], got {q.shape}")
        check_exclude(exclude, q.shape[0])
        ex_sets = [set(int(i) for i in e) for e in exclude] if exclude is not None else None
        extra = max((len(e) for e in ex_sets), default=0) if ex_sets else 0
        fetch = min(k + extra, self.num_blocks)
        rerank = self.kind == "ivfpq" and self.params["rerank"]
        if rerank:
            fetch = min(fetch * int(self.params["rerank_factor"]), self.num_blocks)
        if fetch == 0:
            return topk_sorted(np.zeros((q.shape[0], 0)), np.zeros((q.shape[0], 0)), k)
        scores, ids = self.index.search(q, fetch)
        ids = ids.astype(np.int64)
        if ex_sets:
            for row, ex in enumerate(ex_sets):
                if ex:
                    ids[row, np.isin(ids[row], list(ex))] = -1
        if rerank:
            scores = self._exact_scores(q, ids)
        return topk_sorted(scores, ids, k)

    def _exact_scores(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Inner products of each query with its candidate blocks (-inf where id < 0)."""
        if self._emb is None:
            raise ValueError("rerank=True needs the original embeddings; "
                             "pass embeddings= to FaissIndex.load")
        valid = ids >= 0
        uniq, inv = np.unique(ids[valid], return_inverse=True)
        vecs = _to_f32(self._emb[uniq]) if uniq.size else np.zeros((0, self.dim), np.float32)
        out = np.full(ids.shape, -np.inf, np.float32)
        rows = np.nonzero(valid)[0]
        out[valid] = np.einsum("nd,nd->n", q[rows], vecs[inv])
        return out

    # ---------------------------------------------------------------- io
    def save(self, directory) -> Path:
        """Write ``index.faiss`` (faiss.write_index) and ``faiss_meta.json`` to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / _INDEX_FILE))
        meta = {"kind": self.kind, "params": self.params, "num_blocks": self.num_blocks,
                "dim": self.dim, "faiss_version": faiss.__version__}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory, embeddings=None) -> "FaissIndex":
        """Read an index written by :meth:`save`. ``embeddings`` is required for ivfpq rerank."""
        directory = Path(directory)
        meta = json.loads((directory / _META_FILE).read_text())
        self = cls.__new__(cls)
        self.kind, self.params = meta["kind"], meta["params"]
        self.num_blocks, self.dim = int(meta["num_blocks"]), int(meta["dim"])
        self.index = faiss.read_index(str(directory / _INDEX_FILE))
        if self.index.ntotal != self.num_blocks or self.index.d != self.dim:
            raise ValueError(f"{directory}: faiss index has {self.index.ntotal}x{self.index.d}, "
                             f"meta says {self.num_blocks}x{self.dim}")
        if embeddings is not None and tuple(embeddings.shape) != (self.num_blocks, self.dim):
            raise ValueError(f"embeddings shape {tuple(embeddings.shape)} does not match the "
                             f"index {self.num_blocks}x{self.dim} in {directory}")
        self._emb = embeddings
        self._apply_search_params()
        return self

    def __len__(self) -> int:
        return self.num_blocks
