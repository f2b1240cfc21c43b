"""Following index versions in a ``torch.distributed`` job: every rank on the same version, switched together.

:class:`ShardedFollower` has the interface of :class:`realm.retrieval.IndexFollower` (``version``,
``manifest``, ``index``, ``load``, ``poll``, ``staleness``) for the ranks of a job. Rank 0 decides which
version is in use (it reads ``LATEST``) and broadcasts the number; every rank then opens that version, so
all ranks swap at the same call, i.e. at the same training step. :meth:`~ShardedFollower.poll` and
:meth:`~ShardedFollower.load` are collectives: every rank calls them at the same point of its loop.

* ``index.backend: exact`` (the default): the version is opened as a
  :class:`realm.index.sharded.ShardedIndex`. Rank ``r`` holds only its rows; ``index.search`` (also a
  collective) returns the single-process exact top-k, ties and exclusions included.
* any other backend: each rank opens the whole version with that backend (:func:`open_version`).

A version built by any number of ranks (one file, or W shards) opens on any number of ranks.
"""

from __future__ import annotations

from pathlib import Path

from realm import distributed
from realm.index.sharded import ShardedIndex
from realm.index.store import IndexManifest, latest_version, version_dir
from realm.retrieval.versions import open_version


class ShardedFollower:
    """The version in use under ``root`` on every rank of the job (see the module docstring)."""

    def __init__(self, root: str | Path, *, backend: str = "exact", device=None,
                 expect_corpus_hash: str | None = None, expect_dim: int | None = None):
        self.root, self.backend, self.device = Path(root), backend, device
        self.expect = {"expect_corpus_hash": expect_corpus_hash, "expect_dim": expect_dim}
        self.manifest: IndexManifest | None = None
        self.index = None

    @property
    def version(self) -> int | None:
        return self.manifest.version if self.manifest else None

    def _decide(self, version: int | None) -> int | None:
        """Rank 0's choice, on every rank: ``version`` if it still exists, else the latest (None: none)."""
        if distributed.is_main():
            if version is None:
                version = latest_version(self.root)
            elif not version_dir(self.root, version).is_dir():
                version = None
        return distributed.broadcast_object(version)

    def load(self, version: int | None = None) -> bool:
        """Switch every rank to ``version`` (default: rank 0's latest); True if the version in use changed.
        Raises FileNotFoundError on every rank when rank 0 does not find it."""
        chosen = self._decide(version)
        if chosen is None or (version is not None and chosen != version):
            what = f"index version {version}" if version is not None else "published index"
            raise FileNotFoundError(f"{self.root}: no {what}")
        return self._open(chosen)

    def poll(self) -> bool:
        """Every rank swaps to rank 0's latest published version if it differs; True if swapped."""
        chosen = self._decide(None)
        return chosen is not None and self._open(chosen)

    def _open(self, version: int) -> bool:
        if version == self.version:
            return False
        where = version_dir(self.root, version)
        if self.backend == "exact":
            index = ShardedIndex.open(where, **self.expect)
            manifest = index.manifest
        else:
            v = open_version(where, backend=self.backend, device=self.device, **self.expect)
            index, manifest = v.index, v.manifest
        self.index, self.manifest = index, manifest  # swapped together, between steps
        return True

    def staleness(self, step: int) -> int:
        """Training steps between ``step`` and the encoder that built the version in use."""
        return step - (self.manifest.encoder_step if self.manifest else 0)


def follower(root: str | Path, **kwargs):
    """The follower for this process: :class:`ShardedFollower` in a job, else an :class:`IndexFollower`."""
    from realm.retrieval.versions import IndexFollower

    return ShardedFollower(root, **kwargs) if distributed.world_size() > 1 else IndexFollower(root, **kwargs)
