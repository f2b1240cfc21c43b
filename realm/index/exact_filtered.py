"""Exact MIPS by int8 candidate scoring, a proven error bound and float64 re-scoring.

Returns exactly what :func:`realm.index.exact.brute_force_search` (the numpy oracle:
float64 scores rounded to float32, score desc, lower id first, exclusions, -1/-inf
padding) returns, while the pass over the whole matrix runs on int8 products.

Why it is exact. Blocks are quantised once with one global scale ``se``
(``e = se*E8 + r_e``), each query with its own scale ``sq`` (``q = sq*Q8 + r_q``).
The int8 product ``D = Q8.E8`` is computed in int32 without rounding, and

    |q.e - sq*se*D| = |q8.r_e + r_q.e8 + r_q.r_e| <= |q8||r_e| + |r_q||e8| + |r_q||r_e| = err_q

(Cauchy-Schwarz, ``q8 = sq*Q8``, ``e8 = se*E8``; the norms use the largest block norms).
If ``L`` is the float32 exact score of the k-th best of any k valid blocks, the oracle's
k-th score ``v`` is >= ``L``, so every block of the answer (ties at ``v`` included) has
``q.e >= L - slack`` and hence ``D >= (L - slack - err_q) / (sq*se)``; ``slack`` covers
the float32 rounding of ``v`` and float64 summation. Every block passing that integer
test is re-scored in float64 (rounded to float32, as the oracle does) and merged into a
running top-k; ``L`` rises as the running k-th score rises. Blocks failing it cannot be
in the answer. Each re-scored block also checks ``|q.e - sq*se*D| <= err_q``; if that
ever fails (a broken int8 kernel) the search is redone by the float64 chunk path.

Threads: the int8 products and group maxima use torch's thread setting; the small selection
passes run on one thread. Each chunk's products are computed ``tile`` blocks at a time into
one buffer and reduced to group maxima (``group`` consecutive blocks) while still in cache;
only group maxima are compared with the threshold, and groups that pass are opened.
Candidates are re-scored in batches, which raise the threshold as they merge. A chunk with too many candidates (e.g. all
blocks equal) is scored in float64 directly. The first threshold comes from a strided
sample of blocks.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from realm.index.exact import Exclude, check_exclude, exclude_pairs, topk_sorted

_QMAX = 127
_INT32_MIN = -(2 ** 31)


def _to_float32(x) -> np.ndarray:
    """numpy (float, or uint16 = bf16 bit patterns) / torch -> float32 numpy [N, d].

    Float32 arrays (memmaps included) are used as they are, without a copy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x) if not isinstance(x, np.memmap) else x
    if x.dtype == np.uint16:  # bf16 bit patterns (see realm.index.store)
        x = (x.astype(np.uint32) << 16).view(np.float32)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x


@contextmanager
def _one_thread():
    """Run small element-wise passes on one thread: on a shared 2-core machine an OpenMP region
    waiting for a descheduled second thread took 20x longer (amax of 2M ints: 25 ms vs 1.2 ms)."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def _quantize(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """round(x / scale) as int8 in [-127, 127]; ``scale`` broadcasts against ``x``."""
    return np.clip(np.rint(x / scale), -_QMAX, _QMAX).astype(np.int8)


class FilteredExactIndex:
    """Exact MIPS over ``embeddings`` [N, d] (float, bf16 bits, or torch); see module doc.

    Memory: the float32 matrix (kept as given, memmaps stay on disk) plus an int8 copy
    (N*d bytes). ``chunk_size`` blocks are filtered per pass, ``tile`` blocks per int8 product;
    ``group`` blocks share one maximum in the threshold test; ``sample`` blocks (strided) give
    the first threshold; candidates are re-scored every ``merge_every`` of them.
    """

    def __init__(self, embeddings, chunk_size: int = 32768, group: int = 32,
                 sample: int = 32768, tile: int = 8192,
                 merge_every: int | None = None):
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [N, d], got shape {tuple(embeddings.shape)}")
        if chunk_size < 1 or group < 1 or sample < 1 or tile < 1:
            raise ValueError("chunk_size, group, sample and tile must be >= 1")
        self.chunk_size = max(group, chunk_size // group * group)
        self.tile = min(self.chunk_size, max(group, tile // group * group))
        if merge_every is not None and merge_every < 1:
            raise ValueError("merge_every must be >= 1")
        self.merge_every = merge_every  # candidates between merges; None: max(4096, 8*k*Q)
        self.group = int(group)
        self._emb = _to_float32(embeddings)
        self.num_blocks, self.dim = map(int, self._emb.shape)
        if not 1 <= self.dim < 2 ** 31 // _QMAX ** 2:  # int32 products must not overflow
            raise ValueError(f"embedding width must be in [1, {2 ** 31 // _QMAX ** 2}), got {self.dim}")
        n = self.num_blocks
        amax = 0.0
        for s in range(0, n, 65536):
            part = np.asarray(self._emb[s:s + 65536], np.float64)
            if not np.isfinite(part).all():
                bad = s + int(np.flatnonzero(~np.isfinite(part).all(1))[0])
                raise ValueError(f"embeddings row {bad} is not finite")
            amax = max(amax, float(np.abs(part).max(initial=0.0)))
        self.scale = amax / _QMAX if amax > 0 else 1.0
        # zero columns up to a multiple of 8 leave every product unchanged and give the
        # int8 kernel standard strides (torch._int_mm misreads a [1, n] operand)
        self._width = -(-self.dim // 8) * 8
        codes = np.zeros((n, self._width), np.int8)
        res_max = code_max = norm_max = 0.0
        for s in range(0, n, 65536):
            part = np.asarray(self._emb[s:s + 65536], np.float64)
            c = _quantize(part, self.scale)
            codes[s:s + len(c), :self.dim] = c
            e8 = c * self.scale
            res_max = max(res_max, float(np.linalg.norm(part - e8, axis=1).max(initial=0)))
            code_max = max(code_max, float(np.linalg.norm(e8, axis=1).max(initial=0)))
            norm_max = max(norm_max, float(np.linalg.norm(part, axis=1).max(initial=0)))
        self._codes = torch.from_numpy(codes)
        self._res_max, self._code_max, self._norm_max = res_max, code_max, norm_max
        step = max(1, n // max(1, sample))
        self._sample_ids = np.arange(0, n, step, dtype=np.int64)
        self._sample_codes_t = self._codes[torch.from_numpy(self._sample_ids)].T.contiguous()
        self.fallbacks = 0  # searches redone by the float64 path (bound check failed)

    def __len__(self) -> int:
        return self.num_blocks

    # -- exact scoring ------------------------------------------------------------
    def _exact(self, q64: np.ndarray, qs: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """float64 dot products of (query qs[i], block ids[i]); float32 of it = the oracle's."""
        rows = np.asarray(self._emb[ids], np.float64)
        return np.einsum("ij,ij->i", rows, q64[qs])

    def _float64_chunk(self, q64, start, end, ex_keys, nq):
        """All (query, block) pairs of blocks [start, end) with oracle scores, exclusions -inf."""
        s = (q64 @ np.asarray(self._emb[start:end], np.float64).T).astype(np.float32)
        ids = np.broadcast_to(np.arange(start, end, dtype=np.int64), s.shape)
        if ex_keys.size:
            keys = ids * nq + np.arange(nq, dtype=np.int64)[:, None]
            s[np.isin(keys, ex_keys)] = -np.inf
        return s, ids

    def _search_float64(self, q64, k, ex_keys):
        nq = q64.shape[0]
        run_s = np.full((nq, k), -np.inf, np.float32)
        run_i = np.full((nq, k), -1, np.int64)
        for start in range(0, self.num_blocks, self.chunk_size):
            end = min(start + self.chunk_size, self.num_blocks)
            s, ids = self._float64_chunk(q64, start, end, ex_keys, nq)
            run_s, run_i = topk_sorted(np.concatenate([run_s, s], 1),
                                       np.concatenate([run_i, ids], 1), k)
        return run_s, run_i

    # -- search -------------------------------------------------------------------
    @torch.no_grad()
    def search(self, queries, k: int, exclude: Exclude = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores float32 [Q,k], ids int64 [Q,k]), identical to the oracle."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q64 = np.asarray(_to_float32(queries), np.float64)
        if q64.ndim != 2 or q64.shape[1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}], got {tuple(q64.shape)}")
        if not np.isfinite(q64).all():
            raise ValueError("queries contain inf or nan")
        nq = q64.shape[0]
        check_exclude(exclude, nq)
        ex_q, ex_b = exclude_pairs(exclude, self.num_blocks)
        ex_keys = np.unique(ex_b * nq + ex_q)
        n_ex = np.bincount(ex_q, minlength=nq) if nq else np.zeros(0, np.int64)
        if nq == 0 or self.num_blocks == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)

        # queries: per-row scale, codes and the error bound err_q
        qmax = np.abs(q64).max(1)
        sq = np.where(qmax > 0, qmax / _QMAX, 1.0)
        qcodes = _quantize(q64, sq[:, None])
        q8 = qcodes * sq[:, None]
        q8n, rqn = np.linalg.norm(q8, axis=1), np.linalg.norm(q64 - q8, axis=1)
        err = (q8n * self._res_max + rqn * self._code_max + rqn * self._res_max) * (1 + 1e-6)
        err += 1e-12 * np.linalg.norm(q64, axis=1) * self._norm_max + 1e-37
        unit = sq * self.scale  # score of one int step, per query
        qc = torch.zeros((nq, self._width), dtype=torch.int8)  # [Q, d padded]
        qc[:, :self.dim] = torch.from_numpy(qcodes)
        qt = qc.T.contiguous()

        def thresholds(low: np.ndarray) -> torch.Tensor:
            """Smallest int32 product that can still reach a score >= low (per query)."""
            slack = 2.0 ** -22 * np.abs(low) + err
            with np.errstate(invalid="ignore"):
                t = (low - slack) / unit
            t = np.where(np.isfinite(t), np.floor(t - 1e-9 * np.abs(t)) - 1, _INT32_MIN)
            return torch.from_numpy(np.clip(t, _INT32_MIN, 2 ** 31 - 1).astype(np.int32))

        # first threshold: exact k-th best of the int8 top (k + excluded) of a sample
        d_s = torch._int_mm(qc, self._sample_codes_t)  # [Q, S]
        kk = min(d_s.shape[1], k + int(n_ex.max(initial=0)))
        with _one_thread():
            top = d_s.topk(kk, dim=1).indices.numpy()  # [Q, kk] sample rows
        ids0 = self._sample_ids[top]
        qs0 = np.repeat(np.arange(nq), kk)
        s0 = self._exact(q64, qs0, ids0.ravel()).astype(np.float32).reshape(nq, kk)
        s0[np.isin(ids0 * nq + np.arange(nq)[:, None], ex_keys)] = -np.inf
        low = np.sort(s0, 1)[:, ::-1][:, k - 1].astype(np.float64) if kk >= k \
            else np.full(nq, -np.inf)

        found = self._scan(q64, qt, k, ex_keys, low, thresholds, unit, err)
        if found is None:  # an int8 product broke the error bound
            self.fallbacks += 1
            return self._search_float64(q64, k, ex_keys)
        return found

    def _scan(self, q64, qt, k, ex_keys, low, thresholds, unit, err):
        """Top-k over all blocks, or None if the int8 kernel broke the error bound; ``low``
        (a lower bound on each query's k-th best score) and ``thresholds`` start the filter.

        Candidates are collected chunk by chunk and re-scored in batches (``merge``): each
        merge raises the thresholds, and fewer merges mean fewer small numpy calls."""
        nq = q64.shape[0]
        thr = thresholds(low)
        run_s = np.full((nq, k), -np.inf, np.float32)
        run_i = np.full((nq, k), -1, np.int64)
        g, cap, tile = self.group, max(4096, self.chunk_size * nq // 2), self.tile
        pending, n_pending = [], 0
        flush_at = self.merge_every or max(4096, 8 * k * nq)

        def merge() -> bool:
            """Re-score the pending candidates exactly, merge them into the running top-k and
            raise the thresholds; False if the int8 kernel broke the error bound."""
            nonlocal pending, n_pending, run_s, run_i, low, thr
            if not pending:
                return True
            qs, blocks, dv = (torch.cat(t).numpy() for t in zip(*pending))
            pending, n_pending = [], 0
            keep = (blocks < self.num_blocks) & np.isin(blocks * nq + qs, ex_keys, invert=True)
            qs, blocks, dv = qs[keep], blocks[keep], dv[keep].astype(np.float64)
            exact = self._exact(q64, qs, blocks)
            if np.any(np.abs(exact - unit[qs] * dv) > err[qs]):  # the bound assumed an exact int8 kernel
                return False
            s, ids = _pad_by_query(qs, blocks, exact.astype(np.float32), nq)
            run_s, run_i = topk_sorted(np.concatenate([run_s, s], 1),
                                       np.concatenate([run_i, ids], 1), k)
            low = np.maximum(low, run_s[:, k - 1].astype(np.float64))
            thr = thresholds(low)
            return True

        buf = torch.empty((self.chunk_size, nq), dtype=torch.int32)  # int8 products of a chunk
        gmax = torch.empty((self.chunk_size // g, nq), dtype=torch.int32)  # their group maxima
        for start in range(0, self.num_blocks, self.chunk_size):
            end = min(start + self.chunk_size, self.num_blocks)
            c = end - start
            ng = -(-c // g)
            if c % g:  # the last group of the index is short: pad it with the smallest int
                buf[c:ng * g] = _INT32_MIN
            # products tile by tile, each reduced to group maxima while it is still in cache
            for a in range(0, c, tile):
                b = min(a + tile, c)
                torch._int_mm(self._codes[start + a:start + b], qt, out=buf[a:b])
                torch.amax(buf[a:-(-b // g) * g].view(-1, g, nq), 1, out=gmax[a // g:-(-b // g)])
            d = buf[:ng * g].view(ng, g, nq)
            hit = (gmax[:ng] >= thr).nonzero()  # [m, 2]: (group, query)
            if hit.shape[0] == 0:
                continue
            if hit.shape[0] * g > cap:  # degenerate data (e.g. many equal scores)
                if not merge():
                    return None
                s, ids = self._float64_chunk(q64, start, end, ex_keys, nq)
                run_s, run_i = topk_sorted(np.concatenate([run_s, s], 1),
                                           np.concatenate([run_i, ids], 1), k)
                low = np.maximum(low, run_s[:, k - 1].astype(np.float64))
                thr = thresholds(low)
                continue
            grp, qq = hit[:, 0], hit[:, 1]
            with _one_thread():
                vals = d[grp, :, qq]  # [m, g]
                mi, gi = (vals >= thr[qq][:, None]).nonzero().unbind(1)
                pending.append((qq[mi], start + grp[mi] * g + gi, vals[mi, gi]))
            n_pending += len(mi)
            if n_pending > flush_at and not merge():
                return None
        if not merge():
            return None
        return run_s, run_i


def _pad_by_query(qs: np.ndarray, ids: np.ndarray, scores: np.ndarray, nq: int):
    """Scatter (query, id, score) triples into [nq, P] rows padded with (-inf, -1)."""
    order = np.argsort(qs, kind="stable")
    qs, ids, scores = qs[order], ids[order], scores[order]
    counts = np.bincount(qs, minlength=nq)
    width = max(1, int(counts.max(initial=0)))
    pos = np.arange(qs.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out_s = np.full((nq, width), -np.inf, np.float32)
    out_i = np.full((nq, width), -1, np.int64)
    out_s[qs, pos] = scores
    out_i[qs, pos] = ids
    return out_s, out_i

