"""The corpus recipe: documents -> tokenizer -> blocks, as ``realm corpus build`` runs it."""

from __future__ import annotations

import logging
from pathlib import Path

from realm.config import CorpusConfig
from realm.data.blocks import BlockStore, build_blocks
from realm.data.errors import InputError, SkipReport
from realm.data.ingest import read_documents
from realm.data.tokenizer import copy_tokenizer, train_wordpiece

log = logging.getLogger(__name__)


def build_corpus(input_path: str | Path, out_dir: str | Path, cfg: CorpusConfig, skip_bad: bool = False,
                 progress: bool = True) -> tuple[BlockStore, SkipReport | None]:
    """Read documents, train (or copy) the WordPiece tokenizer, and pack blocks into ``out_dir``."""
    out_dir = Path(out_dir)
    skip = SkipReport() if skip_bad else None
    docs = list(read_documents(input_path, skip))
    if not docs:
        raise InputError(input_path, None, "no usable documents")
    tok_dir = out_dir / "tokenizer"
    if cfg.tokenizer:
        tok = copy_tokenizer(cfg.tokenizer, tok_dir)
    else:
        texts = (piece for d in docs for piece in (d.title, d.text))
        tok = train_wordpiece(texts, tok_dir, cfg.vocab_size, cfg.min_frequency, cfg.lowercase)
    store = build_blocks(docs, tok, out_dir, cfg.block_len, cfg.title_len, progress=progress)
    return store, skip


def corpus_summary(store: BlockStore) -> dict:
    m = store.manifest
    keys = ("num_docs", "num_blocks", "num_sentences", "block_len", "mean_block_tokens", "vocab_size",
            "tokenizer_hash", "corpus_hash")
    return {k: m[k] for k in keys}
