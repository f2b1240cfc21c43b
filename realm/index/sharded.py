"""An index split over the ranks of a ``torch.distributed`` job: sharded building and exact search.

**Building** (:class:`ShardedWriter`, :func:`build_sharded_index`): rank ``r`` of ``W`` embeds the contiguous
rows :func:`realm.distributed.row_range` ``(N, r, W)`` and writes them to its own file
``shard-0000r-of-0000W.npy`` inside one temporary folder (rank 0 creates it and tells the others its name;
the folder must be on a file system every rank sees). Each rank flushes and fsyncs its file and reports its
size and sha256; after that barrier rank 0 alone writes the manifest (``format_version`` 2, ``shards`` =
``[{file, start, rows}]`` in row order, ``files`` = the records, ``extra.seconds`` = the slowest rank's
time) and publishes the folder with the usual
atomic protocol of :mod:`realm.index.store`. If any rank fails, every rank raises and nothing is published.
A single process (no process group) writes an ordinary one-file version (``format_version`` 1), readable by
every reader as before.

**Loading** (:meth:`ShardedIndex.open`): an index built with ``W`` shards opens on any number ``R`` of ranks,
one included. Rank 0 resolves ``LATEST`` once and every rank opens that version; rank ``r`` reads only the
rows ``row_range(N, r, R)`` (the parts of the shard files that cover them; a range inside one shard stays
memory-mapped).

**Searching** (:meth:`ShardedIndex.search`): every rank passes its *own* queries (counts may differ). The
queries and their exclusions are all-gathered; each rank runs :class:`realm.index.exact.ExactIndex` over its
rows for all of them (exclusions and results shifted between global and local ids); the per-rank top-k
lists are all-gathered and merged by (score desc, id asc) with :func:`realm.index.exact.topk_sorted`.
Because ranges are contiguous, a rank's lower local id is a lower global id, so the result is the
single-process exact search's, ties included, padded with (-inf, -1). Every rank must call ``search``
the same number of times (it is a collective).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from realm import distributed
from realm.index.exact import Exclude, ExactIndex, topk_sorted
from realm.index.store import (
    LATEST_FILE,
    MANIFEST_FILE,
    SHARDED_FORMAT_VERSION,
    IndexWriter,
    _STORAGE_DTYPE,
    _version_name,
    file_record,
    fsync_path,
    latest_version,
    open_index,
    publish_folder,
    storage_rows,
)


def shard_file(rank: int, world: int) -> str:
    return f"shard-{rank:05d}-of-{world:05d}.npy"


class ShardedWriter:
    """Collective counterpart of :class:`realm.index.store.IndexWriter` (same arguments): every rank enters
    it, writes the rows ``[w.start, w.end)`` with ``w.write(global_start, rows)``, and leaves it; then
    ``w.path`` is the published version on every rank. Without a process group it *is* an IndexWriter."""

    def __init__(self, root, num_blocks: int, dim: int, **writer_kwargs):
        self.root, self.num_blocks, self.dim = Path(root), int(num_blocks), int(dim)
        self.kwargs = writer_kwargs
        self.dist = distributed.current()
        self.start, self.end = self.dist.row_range(self.num_blocks)
        self.path: Path | None = None
        self._single = IndexWriter(root, num_blocks, dim, **writer_kwargs) if not self.dist.distributed else None
        self.dtype = writer_kwargs.get("dtype", "float32")
        self.extra = self._single.extra if self._single else dict(writer_kwargs.get("extra") or {})

    def __enter__(self) -> "ShardedWriter":
        if self._single:
            self._single.__enter__()
            return self
        if self.dtype not in _STORAGE_DTYPE:
            raise ValueError(f"dtype must be one of {sorted(_STORAGE_DTYPE)}, got {self.dtype!r}")
        tmp = error = None
        if self.dist.is_main():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = self.root / f".tmp-{uuid.uuid4().hex}"
                tmp.mkdir()
            except OSError as e:
                error = f"rank 0 cannot create a folder under {self.root}: {e}"
        tmp, error = distributed.broadcast_object((str(tmp), error))
        if error:
            raise OSError(error)
        self._tmp = Path(tmp)
        self._t0 = time.time()
        self._file = shard_file(self.dist.rank, self.dist.world_size)
        self._arr = np.lib.format.open_memmap(self._tmp / self._file, mode="w+", dtype=_STORAGE_DTYPE[self.dtype],
                                              shape=(self.end - self.start, self.dim))
        self._written = np.zeros(self.end - self.start, dtype=bool)
        return self

    def write(self, start: int, rows) -> None:
        """Store ``rows`` at global rows ``start:start+n`` (inside this rank's ``[self.start, self.end)``)."""
        if self._single:
            return self._single.write(start, rows)
        rows = storage_rows(rows, self.dim, self.dtype)
        lo, hi = start - self.start, start - self.start + rows.shape[0]
        if lo < 0 or start + rows.shape[0] > self.end:
            raise ValueError(f"rank {self.dist.rank} owns rows [{self.start}, {self.end}), "
                             f"got [{start}, {start + rows.shape[0]})")
        self._arr[lo:hi] = rows
        self._written[lo:hi] = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._single:
            self._single.fields["extra"] = self.extra
            out = self._single.__exit__(exc_type, exc, tb)
            self.path = self._single.path
            return out
        record = None
        error = f"rank {self.dist.rank}: {exc_type.__name__}: {exc}" if exc_type else None
        if error is None:
            try:
                record = self._finish_shard()
            except Exception as e:  # reported to every rank below, then raised here
                error, exc = f"rank {self.dist.rank}: {type(e).__name__}: {e}", e
        self._arr = None
        reports = distributed.all_gather_object((error, record))
        errors = [e for e, _ in reports if e]
        path = None
        if self.dist.is_main():
            try:
                if not errors:
                    path = str(self._publish([r for _, r in reports]))
            except Exception as e:
                errors.append(f"rank 0 publishing: {type(e).__name__}: {e}")
            finally:
                if self._tmp.exists():
                    shutil.rmtree(self._tmp, ignore_errors=True)
        path, errors = distributed.broadcast_object((path, errors))
        if errors:
            if exc_type is not None:
                return False  # this rank's own exception propagates
            raise RuntimeError("sharded index not published: " + "; ".join(errors)) from exc
        self.path = Path(path)
        return False

    def _finish_shard(self) -> dict:
        if not self._written.all():
            missing = np.flatnonzero(~self._written) + self.start
            raise ValueError(f"{missing.size} of rows [{self.start}, {self.end}) were never written "
                             f"(first: {missing[:5].tolist()})")
        self._arr.flush()
        self._arr = None
        fsync_path(self._tmp / self._file)
        return {"file": self._file, "start": self.start, "rows": self.end - self.start,
                "seconds": time.time() - self._t0, **file_record(self._tmp / self._file)}

    def _publish(self, records: list[dict]) -> Path:
        fields = {k: v for k, v in self.kwargs.items() if k not in ("keep", "dtype", "extra")}
        fields["encoder"] = str(fields.get("encoder", ""))
        fsync_path(self._tmp)
        seconds = max(r["seconds"] for r in records)  # the slowest rank's time from entering the writer
        self.extra.update(seconds=round(seconds, 2), blocks_per_s=round(self.num_blocks / max(seconds, 1e-9), 1),
                          shards=len(records))
        return publish_folder(
            self.root, self._tmp, keep=self.kwargs.get("keep", 3), num_blocks=self.num_blocks, dim=self.dim,
            dtype=self.dtype, format_version=SHARDED_FORMAT_VERSION, extra=self.extra,
            shards=[{"file": r["file"], "start": r["start"], "rows": r["rows"]} for r in records],
            files={r["file"]: {"size": r["size"], "sha256": r["sha256"]} for r in records}, **fields)


def build_sharded_index(doc_encoder: torch.nn.Module, store, root: str | Path, *, encoder: str, encoder_step: int,
                        batch_size: int = 256, bf16: bool = True, keep: int = 3, device="cpu", progress: bool = True,
                        extra: dict | None = None) -> Path:
    """:func:`realm.index.build.build_index` on every rank of the job: each embeds its share of the blocks.
    Call it on every rank; returns the published version folder on every rank."""
    from realm.index.build import build_index, embed_blocks  # (transformers: imported only to build)

    if not distributed.current().distributed:
        return build_index(doc_encoder, store, root, encoder=encoder, encoder_step=encoder_step,
                           batch_size=batch_size, bf16=bf16, keep=keep, device=device, progress=progress, extra=extra)
    dim = doc_encoder.dense.out_features
    with ShardedWriter(root, len(store), dim, corpus_hash=store.corpus_hash, encoder=encoder,
                       encoder_step=encoder_step, keep=keep, extra={"bf16": bf16, **(extra or {})}) as w:
        embed_blocks(doc_encoder, store, np.arange(w.start, w.end), batch_size=batch_size, bf16=bf16, device=device,
                     progress=progress and w.dist.is_main(), sink=lambda s, rows: w.write(w.start + s, rows))
    return w.path


class ShardedIndex:
    """This rank's contiguous part of an index, searched collectively (see the module docstring)."""

    def __init__(self, embeddings, start: int, num_blocks: int, manifest=None, dtype: str = "fp32",
                 chunk_size: int = 65536):
        self.dist = distributed.current()
        self.start, self.num_blocks, self.manifest = int(start), int(num_blocks), manifest
        self.local = ExactIndex(embeddings, dtype=dtype, chunk_size=chunk_size,
                                device=self.dist.device if self.dist.backend == "nccl" else None)
        self.dim = self.local.dim

    @classmethod
    def open(cls, path, expect_corpus_hash: str | None = None, expect_dim: int | None = None,
             verify: bool = True, dtype: str = "fp32", chunk_size: int = 65536) -> "ShardedIndex":
        """Open an index root (its ``LATEST`` as resolved by rank 0) or one version folder, on every rank."""
        path = Path(path)
        vdir = None
        if distributed.is_main():
            if (path / MANIFEST_FILE).exists() and not (path / LATEST_FILE).exists():
                vdir = str(path)
            else:
                v = latest_version(path)
                vdir = str(path / _version_name(v)) if v is not None else None
        vdir = distributed.broadcast_object(vdir)
        if vdir is None:
            raise FileNotFoundError(f"{path} holds no published index")
        _, manifest = open_index(vdir, rows=(0, 0), verify=False)  # the manifest alone
        d = distributed.current()
        lo, hi = d.row_range(manifest.num_blocks)
        emb, manifest = open_index(vdir, expect_corpus_hash, expect_dim, verify=verify, rows=(lo, hi))
        return cls(emb, lo, manifest.num_blocks, manifest, dtype=dtype, chunk_size=chunk_size)

    def search(self, queries, k: int, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Global exact top-``k`` of this rank's ``queries`` [Q, d] (collective; see the module docstring)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = torch.as_tensor(np.asarray(queries, dtype=np.float32) if not isinstance(queries, torch.Tensor)
                            else queries.detach().float().cpu())
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}], got {tuple(q.shape)}")
        if exclude is not None and len(exclude) != q.shape[0]:
            raise ValueError(f"exclude has {len(exclude)} entries for {q.shape[0]} queries")
        if not self.dist.distributed:
            return self.local.search(q, k, exclude)
        all_q = distributed.all_gather_rows(q)
        pairs = distributed.all_gather_rows(_exclusion_pairs(exclude))
        offsets = np.cumsum([0] + [len(x) for x in all_q])
        total = int(offsets[-1])
        local_exclude = [[] for _ in range(total)]
        for r, p in enumerate(pairs):
            for qi, bid in p.tolist():
                local_exclude[offsets[r] + qi].append(bid - self.start)
        s, i = self.local.search(torch.cat(all_q), k, local_exclude) if total else (
            np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))
        i = np.where(i >= 0, i + self.start, -1)
        s_all = distributed.all_gather(torch.from_numpy(s)).numpy()  # [R, total, k]
        i_all = distributed.all_gather(torch.from_numpy(i)).numpy()
        me = slice(offsets[self.dist.rank], offsets[self.dist.rank + 1])
        cand_s = np.concatenate(list(s_all[:, me]), axis=1)  # [Q, R*k]
        cand_i = np.concatenate(list(i_all[:, me]), axis=1)
        return topk_sorted(cand_s, cand_i, k)

    def __len__(self) -> int:
        return self.num_blocks


def _exclusion_pairs(exclude: Exclude) -> torch.Tensor:
    """``exclude`` as an int64 ``[P, 2]`` tensor of (query index, global block id)."""
    pairs = [(qi, int(b)) for qi, ids in enumerate(exclude or []) for b in ids]
    return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)


__all__ = ["ShardedIndex", "ShardedWriter", "build_sharded_index", "shard_file"]
