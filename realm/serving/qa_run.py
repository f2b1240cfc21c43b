"""A servable open-QA run folder: what ``realm ask``, ``realm serve`` and ``realm index update`` read.

Layout::

    RUN/run.json                 format version, top_k, the search backend (``index.backend``), what produced it
    RUN/retriever/               query + document encoders (``Retriever.save``)
    RUN/reader/                  span reader (``SpanReader.save``)
    RUN/corpora/<corpus_hash>/   corpus folders (``BlockStore``), one per corpus version
    RUN/index/vNNNNNN/           index versions; ``manifest.extra["corpus_dir"]`` names the corpus folder
    RUN/index/LATEST

A corpus folder is complete before the index version that refers to it is published, and the index
version is published atomically, so a reader that follows ``LATEST`` always gets a consistent
(corpus, embeddings) pair. Updating the corpus never retrains anything: the run's document encoder
re-embeds the new blocks.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realm.data.blocks import BlockStore
from realm.data.errors import InputError
from realm.index.store import IndexCorruptError, IndexManifest, file_record, latest_version, verify_files
from realm.retrieval.backends import BACKENDS
from realm.retrieval.versions import IndexVersion, open_version

FORMAT_VERSION = 1
RUN_FILE = "run.json"
CORPUS_FILES = "files.json"  # in each RUN/corpora/<hash>/: size and sha256 of its files, verified at load


def export_qa_run(out: str | Path, retriever, reader, store: BlockStore, top_k: int = 5, source: str = "",
                  batch_size: int = 256, bf16: bool = True, device="cpu", progress: bool = False,
                  backend: str = "exact") -> Path:
    """Write a servable run: models, a copy of the corpus, and an index embedded by the document encoder.

    ``backend`` (``index.backend``) is recorded in ``run.json``: the services search with it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    retriever.save(out / "retriever")
    reader.save(out / "reader")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    (out / RUN_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, "kind": "realm-openqa", "top_k": top_k,
                                            "backend": backend, "source": source, "created_at": _now()}, indent=2))
    add_corpus_version(out, store, retriever, batch_size=batch_size, bf16=bf16, device=device, progress=progress)
    return out


def add_corpus_version(run: str | Path, store: BlockStore, retriever=None, batch_size: int = 256, bf16: bool = True,
                       device="cpu", progress: bool = True) -> Path:
    """Copy ``store`` into ``RUN/corpora/<hash>`` and publish an index of it; returns the index version dir."""
    from realm.index.build import build_index
    from realm.models.retriever import Retriever

    run = Path(run)
    retriever = retriever or Retriever.load(run / "retriever")
    rel = Path("corpora") / store.corpus_hash
    dest = run / rel
    if not (dest / "manifest.json").exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(store.folder, tmp)
        records = {p.relative_to(tmp).as_posix(): file_record(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / CORPUS_FILES).write_text(json.dumps(records, indent=1))
        tmp.rename(dest)
    # the corpus pointer is part of the manifest published atomically with the embeddings
    return build_index(retriever.doc, BlockStore(dest), run / "index", encoder=str(run / "retriever"), encoder_step=0,
                       batch_size=batch_size, bf16=bf16, device=device, progress=progress,
                       extra={"corpus_dir": rel.as_posix()})


@dataclass
class IndexedCorpus:
    """One consistent (corpus, index version) pair, as published together."""

    store: BlockStore
    index: IndexVersion  # embeddings [N, d] float32 in memory + manifest (the search backend is built by the user)

    @property
    def embeddings(self) -> np.ndarray:
        return self.index.embeddings

    @property
    def manifest(self) -> IndexManifest:
        return self.index.manifest

    @classmethod
    def load(cls, run: str | Path, version: int | None = None) -> "IndexedCorpus":
        """The version ``LATEST`` names (or ``version``), with its corpus (checksums verified)."""
        run = Path(run)
        root = run / "index"
        indexed = open_version(root, version, backend=None)
        manifest = indexed.manifest
        corpus_dir = manifest.extra.get("corpus_dir")
        if not corpus_dir:
            raise ValueError(f"{root}: index v{manifest.version} does not name its corpus (extra.corpus_dir)")
        if not isinstance(corpus_dir, str) or not _inside(run, run / corpus_dir):
            raise IndexCorruptError(f"{root}: index v{manifest.version} names corpus_dir {corpus_dir!r}, which is "
                                    f"not a folder inside the run folder {run}")
        folder = run / corpus_dir
        try:
            if (folder / CORPUS_FILES).exists():
                verify_files(folder, json.loads((folder / CORPUS_FILES).read_text()))
            store = BlockStore(folder)
            _ = store.docs, store.tokenizer, store.corpus_hash  # read the lazily-read parts now
        except IndexCorruptError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError) as e:
            raise IndexCorruptError(f"{folder}: damaged corpus folder ({type(e).__name__}: {e})") from None
        if store.corpus_hash != manifest.corpus_hash:
            raise ValueError(f"{run / corpus_dir}: corpus hash {store.corpus_hash} != index's {manifest.corpus_hash}")
        return cls(store, indexed)


def _inside(run: Path, path: Path) -> bool:
    """True if ``path`` (symlinks resolved) lies inside ``run``: every file the service reads must."""
    try:
        path.resolve().relative_to(run.resolve())
    except ValueError:
        return False
    return path.resolve() != run.resolve()


def read_run_info(run: str | Path) -> dict:
    path = Path(run) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run}: not a realm QA run folder (no {RUN_FILE}); "
                                f"`realm experiment`/`realm demo` write one to OUT/model")
    try:
        info = json.loads(path.read_text())
    except (ValueError, RecursionError) as e:
        raise InputError(path, None, f"not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(info, dict):
        raise InputError(path, None, "not a JSON object")
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {info.get('format_version')}, expected {FORMAT_VERSION}")
    return info


def run_backend(info: dict) -> str:
    """The search backend a run's ``run.json`` names (runs written before it was recorded: ``exact``)."""
    backend = info.get("backend", "exact")
    if backend not in BACKENDS:
        raise ValueError(f"{RUN_FILE}: unknown backend {backend!r}; one of {BACKENDS}")
    return backend


def current_version(run: str | Path) -> int | None:
    return latest_version(Path(run) / "index")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
