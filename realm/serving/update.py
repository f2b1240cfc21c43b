"""Update a served run's knowledge: new documents -> new corpus version -> new index version.

REALM keeps its knowledge in the corpus, not in the weights, so changing what the model knows needs
no retraining: pack the new documents into blocks with the run's own tokenizer and block shape, embed
them with the run's (frozen) document encoder, and publish the pair as a new index version
(:func:`realm.serving.qa_run.add_corpus_version`). A running service picks it up through
``Answerer.reload`` (``POST /admin/reload``, or its ``LATEST`` watcher).

The new corpus folder is complete before the index version that names it is published, and the index
version is published atomically, so a service reloading at any moment sees either the old pair or the
new one.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from realm.config import CorpusConfig
from realm.data.corpus import build_corpus, corpus_summary
from realm.index.store import version_dir, version_number
from realm.serving.qa_run import IndexedCorpus, add_corpus_version, read_run_info

log = logging.getLogger(__name__)


def update_index_report(run_dir: str | Path, corpus_path: str | Path, skip_bad: bool = False, force: bool = False,
                        batch_size: int = 256, bf16: bool | None = None, device="cpu", progress: bool = False) -> dict:
    """Like :func:`update_index`, returning a summary dict.

    Fields: ``index_dir``, ``index_version``, ``previous_version``, ``unchanged`` (the documents give the
    corpus already served: nothing was published unless ``force``), ``corpus`` (counts and hashes),
    ``skipped`` (with ``skip_bad``: bad records and examples). ``bf16``: embed under bf16 autocast
    (default: as the served index was built).
    """
    from realm.models.retriever import Retriever

    run = Path(run_dir)
    read_run_info(run)
    current = IndexedCorpus.load(run)
    old = current.store
    tok_dir = old.folder / "tokenizer"
    cfg = CorpusConfig(block_len=int(old.manifest["block_len"]), title_len=int(old.manifest["title_len"]),
                       tokenizer=str(tok_dir))
    (run / "corpora").mkdir(parents=True, exist_ok=True)
    # build next to its destination (same file system), then add_corpus_version copies it into place
    with tempfile.TemporaryDirectory(prefix=".build-", dir=run / "corpora") as tmp:
        store, skipped = build_corpus(corpus_path, Path(tmp) / "corpus", cfg, skip_bad=skip_bad, progress=progress)
        if store.manifest["tokenizer_hash"] != old.manifest["tokenizer_hash"]:
            raise ValueError(f"the copied tokenizer hashes to {store.manifest['tokenizer_hash']}, the run's to "
                             f"{old.manifest['tokenizer_hash']}: refusing to mix token ids")
        summary = {"previous_version": current.manifest.version, "previous_corpus_hash": old.corpus_hash,
                   "corpus": corpus_summary(store)}
        if skipped is not None:
            summary["skipped"] = {"total": skipped.total, "summary": skipped.summary(),
                                  "examples": list(skipped.examples)}
        if store.corpus_hash == old.corpus_hash and not force:
            summary.update(unchanged=True, index_version=current.manifest.version,
                           index_dir=str(version_dir(run / "index", current.manifest.version)))
            log.info("corpus unchanged (%s): index v%d kept", store.corpus_hash, current.manifest.version)
            return summary
        retriever = Retriever.load(run / "retriever")
        if bf16 is None:
            bf16 = bool(current.manifest.extra.get("bf16", False))
        path = add_corpus_version(run, store, retriever, batch_size=batch_size, bf16=bf16, device=device,
                                  progress=progress)
    summary.update(unchanged=False, index_dir=str(path), index_version=version_number(path))
    return summary


def update_index(run_dir: str | Path, corpus_path: str | Path, skip_bad: bool = False, **kwargs) -> Path:
    """Publish ``corpus_path``'s documents as the run's new index version; returns its folder.

    ``corpus_path``: a corpus ``.jsonl`` / DPR ``.tsv`` / folder of ``.txt`` (as ``realm corpus build``
    reads). The run's tokenizer and block shape are reused and its document encoder re-embeds every
    block; nothing is trained. ``skip_bad``: skip bad records instead of failing. If the documents give
    exactly the corpus already served, nothing is published and the current version's folder is returned
    (``force=True`` re-publishes anyway).
    """
    return Path(update_index_report(run_dir, corpus_path, skip_bad=skip_bad, **kwargs)["index_dir"])
