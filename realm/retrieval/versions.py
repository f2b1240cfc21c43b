"""Opening index versions, and following the newest one.

:func:`open_version` is the one way to go from a published index version (:mod:`realm.index.store`)
to something searchable: verify and read it, decode bf16 to a private float32 copy in memory, and
build the backend named by ``index.backend``. :class:`IndexFollower` holds the version in use and
swaps in a newer one with a single reference assignment, after it is completely loaded; the trainer
(between steps) and the services (between batches) follow ``LATEST`` this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realm.index.store import (LATEST_FILE, MANIFEST_FILE, IndexManifest, latest_version, open_index, to_float32,
                               version_dir)
from realm.retrieval.backends import build_backend


@dataclass
class IndexVersion:
    """One published index version, loaded: ``index`` is None when no backend was asked for."""

    path: Path
    manifest: IndexManifest
    embeddings: np.ndarray  # [N, d] float32, in memory (a private copy)
    index: object | None = None

    @property
    def version(self) -> int:
        return self.manifest.version


def open_version(path: str | Path, version: int | None = None, *, backend: str | None = "exact", device=None,
                 expect_corpus_hash: str | None = None, expect_dim: int | None = None) -> IndexVersion:
    """Open ``path`` (an index root: ``version``, default the one ``LATEST`` names; or one version folder).

    Checksums are verified and the corpus hash / dimension checked when given (see
    :func:`realm.index.store.open_index` for the errors). ``backend=None``: no search structure is built.
    """
    path = Path(path)
    where = path if version is None else version_dir(path, version)
    emb, manifest = open_index(where, expect_corpus_hash=expect_corpus_hash, expect_dim=expect_dim)
    embeddings = np.array(to_float32(emb, manifest), dtype=np.float32)
    index = build_backend(embeddings, backend, device) if backend is not None else None
    is_root = (where / LATEST_FILE).exists() or not (where / MANIFEST_FILE).exists()
    return IndexVersion(version_dir(where, manifest.version) if is_root else where, manifest, embeddings, index)


class IndexFollower:
    """The index version in use under ``root``; :meth:`poll` swaps in a newer published one."""

    def __init__(self, root: str | Path, *, backend: str = "exact", device=None, expect_corpus_hash: str | None = None,
                 expect_dim: int | None = None):
        self.root, self.backend, self.device = Path(root), backend, device
        self.expect = {"expect_corpus_hash": expect_corpus_hash, "expect_dim": expect_dim}
        self.current: IndexVersion | None = None

    @property
    def version(self) -> int | None:
        return self.current.version if self.current else None

    @property
    def manifest(self) -> IndexManifest | None:
        return self.current.manifest if self.current else None

    @property
    def embeddings(self) -> np.ndarray | None:
        return self.current.embeddings if self.current else None

    @property
    def index(self):
        return self.current.index if self.current else None

    def load(self, version: int | None = None) -> bool:
        """Load ``version`` (default: the latest); True if the version in use changed."""
        if version is None:
            latest = latest_version(self.root)
            if latest is not None and latest == self.version:
                return False
        elif version == self.version:
            return False
        new = open_version(self.root, version, backend=self.backend, device=self.device, **self.expect)
        if new.version == self.version:
            return False
        self.current = new  # one assignment: a reader holding the old version keeps it
        return True

    def poll(self) -> bool:
        """Swap in a newer published version if there is one; True if swapped."""
        latest = latest_version(self.root)
        return latest is not None and latest != self.version and self.load()

    def staleness(self, step: int) -> int:
        """Training steps between ``step`` and the encoder that built the version in use."""
        return step - (self.manifest.encoder_step if self.manifest else 0)
