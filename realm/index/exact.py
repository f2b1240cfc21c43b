"""Exact maximum-inner-product search (MIPS).

Computes, for each query ``q_i``, the ``k`` block ids ``j`` with the largest
``s_ij = <q_i, e_j>`` (REALM's retrieval score ``f(x, z) = Embed_input(x)^T Embed_doc(z)``,
Guu et al. 2020, eq. 2), sorted by descending score with ties broken by lower id.
Excluded ids (e.g. the block a masked sentence was taken from) get score ``-inf``
*before* the top-k, so they can never be returned; if fewer than ``k`` non-excluded
blocks exist, results are padded with id ``-1`` / score ``-inf``.

* :func:`brute_force_search` - plain numpy (float64 scores, full argsort): the test oracle.
* :class:`ExactIndex` - torch, chunked matmul over the (possibly memory-mapped)
  embedding matrix with a running top-k merge; fp32 (reference) or bf16.
* :class:`realm.index.exact_filtered.FilteredExactIndex` - int8 candidate scoring with a
  proven error bound, float64 re-scoring: the oracle's results, several times faster.
"""
from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
import torch

Exclude = Sequence[Iterable[int]] | None


def check_exclude(exclude: Exclude, num_queries: int) -> None:
    """Raise ValueError unless ``exclude`` is None or has one id list per query."""
    if exclude is not None and len(exclude) != num_queries:
        raise ValueError(f"exclude has {len(exclude)} entries for {num_queries} queries")


def exclude_pairs(exclude: Exclude, num_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ``exclude`` to (query_idx, block_id) arrays sorted by block id.

    Ids outside ``[0, num_blocks)`` are ignored (they could never be returned anyway).
    """
    if exclude is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    qs, bs = [], []
    for qi, ids in enumerate(exclude):
        ids = np.fromiter((int(i) for i in ids), dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < num_blocks)]
        qs.append(np.full(ids.size, qi, np.int64))
        bs.append(ids)
    q = np.concatenate(qs) if qs else np.zeros(0, np.int64)
    b = np.concatenate(bs) if bs else np.zeros(0, np.int64)
    order = np.argsort(b, kind="stable")
    return q[order], b[order]


def topk_sorted(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of candidate lists by (score desc, id asc); pads with (-inf, -1).

    ``scores``/``ids`` are [Q, C]; entries with id -1 or score -inf count as missing.
    Shared helper for backends that post-filter candidates (FAISS, BM25).
    """
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    q, c = scores.shape
    missing = (ids < 0) | ~(scores > -np.inf)  # also catches NaN
    s = np.where(missing, -np.inf, scores)
    i = np.where(missing, np.iinfo(np.int64).max, ids)
    order = np.lexsort((i, -s), axis=-1) if c else np.zeros((q, 0), np.int64)
    order = order[:, :k]
    out_s = np.full((q, k), -np.inf, np.float32)
    out_i = np.full((q, k), -1, np.int64)
    out_s[:, : order.shape[1]] = np.take_along_axis(s, order, 1)
    out_i[:, : order.shape[1]] = np.take_along_axis(i, order, 1)
    out_i[~(out_s > -np.inf)] = -1
    return out_s, out_i


def brute_force_search(queries, embeddings, k: int, exclude: Exclude = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Oracle MIPS: full score matrix in float64, full stable sort. O(Q*N*d) memory-hungry."""
    q = np.asarray(queries, dtype=np.float64)
    e = np.asarray(embeddings, dtype=np.float64)
    check_exclude(exclude, q.shape[0])
    s = q @ e.T
    qi, bi = exclude_pairs(exclude, e.shape[0])
    s[qi, bi] = -np.inf
    ids = np.broadcast_to(np.arange(e.shape[0], dtype=np.int64), s.shape)
    return topk_sorted(s.astype(np.float32), ids, k)


def _as_tensor(x, dtype: torch.dtype, device) -> torch.Tensor:
    """numpy (float or uint16 bf16 bits) / torch -> tensor of ``dtype`` on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    x = np.ascontiguousarray(x)
    if x.dtype == np.uint16:  # raw bfloat16 bit patterns (see realm.index.store)
        x = x.view(np.int16)
    with warnings.catch_warnings():  # read-only memmaps: we never write through the view
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(x)
    if t.dtype == torch.int16:
        t = t.view(torch.bfloat16)
    return t.to(device=device, dtype=dtype)


def _merge(run_s, run_i, new_s, new_i, k):
    """Top-k of the union of two candidate sets by (score desc, id asc)."""
    s = torch.cat([run_s, new_s], 1)
    i = torch.cat([run_i, new_i], 1)
    o = torch.argsort(i, dim=1, stable=True)  # ids ascending, then a stable score sort
    s, i = s.gather(1, o), i.gather(1, o)
    o = torch.argsort(s, dim=1, descending=True, stable=True)[:, :k]
    return s.gather(1, o), i.gather(1, o)


def _chunk_topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row top-k column indices of ``s`` with exact lowest-index tie-breaking.

    ``torch.topk`` picks an arbitrary subset of elements tied with the k-th value;
    rows where such a tie straddles the cut (common in bf16) keep their entries > the
    k-th value and fill the remaining slots with the lowest-index columns == the k-th value.
    """
    if s.shape[1] == k:  # whole chunk is the answer; order fixed later by _merge
        idx = torch.arange(k, device=s.device).expand(s.shape[0], k).clone()
        return s.clone(), idx
    vals, idx = torch.topk(s, k + 1, dim=1)  # (k+1)-th == k-th  <=>  a tie straddles the cut
    ambiguous = vals[:, k] == vals[:, k - 1]
    vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    if ambiguous.any():
        rows = ambiguous.nonzero().flatten()
        sub, v, ix = s[rows], vals[rows], idx[rows]
        kth = v[:, -1:]
        # entries > kth are certainly in the top-k (and already in v); the remaining
        # slots go to the lowest-index columns whose score == kth
        n_gt = (v > kth).sum(1, keepdim=True)
        rank_key = torch.arange(sub.shape[1], 0, -1, device=s.device)  # lower col -> larger
        _, first_eq = torch.topk(torch.where(sub == kth, rank_key, 0), k, dim=1)
        j = torch.arange(k, device=s.device).expand_as(ix)
        fill = first_eq.gather(1, (j - n_gt).clamp(min=0))
        idx[rows] = torch.where(j < n_gt, ix, fill)
        vals[rows] = torch.where(j < n_gt, v, kth)
    return vals, idx


class ExactIndex:
    """Exact MIPS over ``embeddings`` [N, d] with torch.

    Args:
      embeddings: numpy array (may be a ``np.memmap``; float, or uint16 = bf16 bits) or
        torch tensor. In-memory inputs are converted once at construction; memmaps are
        converted chunk by chunk at search time (pass ``preload=True`` to load them).
      dtype: "fp32" (reference) or "bf16" (queries and blocks cast to bfloat16 and the
        scores come out of the matmul in bf16, i.e. ~2-3 significant digits: near-ties
        reorder and exact ties are frequent; they are broken by lower id as always).
      chunk_size: number of blocks per matmul; bounds memory at Q*chunk_size scores.
      device: defaults to the embeddings' device (torch input), else the queries'
        device at search time, else CPU. For accelerator search pass ``device=`` (or a
        tensor already there) so that preloaded embeddings are uploaded once.
    """

    def __init__(self, embeddings, dtype: str = "fp32", chunk_size: int = 65536,
                 device=None, preload: bool | None = None):
        if dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [N, d], got shape {tuple(embeddings.shape)}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.dtype = dtype
        self.torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
        self.chunk_size = int(chunk_size)
        self.num_blocks, self.dim = int(embeddings.shape[0]), int(embeddings.shape[1])
        if device is None and isinstance(embeddings, torch.Tensor):
            device = embeddings.device
        self.device = torch.device(device) if device is not None else None
        if preload is None:
            preload = not isinstance(embeddings, np.memmap)
        self._emb = _as_tensor(embeddings, self.torch_dtype, self.device or "cpu") \
            if preload else embeddings

    def _resolve_device(self, queries) -> torch.device:
        if self.device is not None:
            return self.device
        if isinstance(queries, torch.Tensor):
            return queries.device
        return torch.device("cpu")

    @torch.no_grad()
    def search(self, queries, k: int, exclude: Exclude = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores float32 [Q,k], ids int64 [Q,k]); see module docstring."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        device = self._resolve_device(queries)
        q = _as_tensor(queries, self.torch_dtype, device)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}], got {tuple(q.shape)}")
        nq = q.shape[0]
        check_exclude(exclude, nq)
        ex_q, ex_b = exclude_pairs(exclude, self.num_blocks)
        ex_q_t = torch.from_numpy(ex_q).to(device)
        run_s = torch.full((nq, 0), -float("inf"), dtype=torch.float32, device=device)
        run_i = torch.zeros((nq, 0), dtype=torch.int64, device=device)
        for start in range(0, self.num_blocks, self.chunk_size):
            end = min(start + self.chunk_size, self.num_blocks)
            chunk = self._emb[start:end]
            chunk = _as_tensor(chunk, self.torch_dtype, device)
            s = q @ chunk.T  # [Q, c], fp32 or bf16 (top-k runs on bf16 directly)
            lo, hi = np.searchsorted(ex_b, [start, end])
            if hi > lo:
                cols = torch.from_numpy(ex_b[lo:hi] - start).to(device)
                s[ex_q_t[lo:hi], cols] = -float("inf")
            vals, idx = _chunk_topk(s, min(k, end - start))
            run_s, run_i = _merge(run_s, run_i, vals.float(), idx + start, k)
        scores = np.full((nq, k), -np.inf, np.float32)
        ids = np.full((nq, k), -1, np.int64)
        n = run_s.shape[1]
        scores[:, :n] = run_s.cpu().numpy()
        ids[:, :n] = run_i.cpu().numpy()
        ids[~(scores > -np.inf)] = -1
        scores[ids < 0] = -np.inf
        return scores, ids

    def __len__(self) -> int:
        return self.num_blocks
