"""Pack documents into fixed-length wordpiece blocks and store them as memory-mapped arrays.

A corpus folder holds::

    manifest.json          counts, lengths, tokenizer hash, corpus hash, format version
    body.npy  [N, L] int32 body token ids (padded with [PAD]);  body_len.npy [N]
    title.npy [N, T] int32 title token ids;                      title_len.npy [N]
    block_doc.npy [N] int32 document row;  block_chars.npy [N, 2] int64 char span in the doc text
    sentences.npy [S, 3] int32 (block, token start, token end) of every sentence piece
    sentence_chars.npy [S, 2] int64 char span of each sentence piece in its document
    docs.jsonl             the original documents (id, title, text, source), one per line
    tokenizer/             the HF tokenizer folder that made the ids

``doc.text[block_chars[i,0]:block_chars[i,1]]`` is block ``i``'s exact source text, and tokenizing
it gives exactly ``body[i, :body_len[i]]``. Blocks never cross documents; they break on sentence
boundaries, and a sentence longer than a block is split on word boundaries.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

from realm import __version__
from realm.data.ingest import Document
from realm.data.tokenizer import WordPiece

FORMAT_VERSION = 1
# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) before whitespace,
# or at a line break.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Char spans of the sentences of ``text`` (whitespace between sentences is excluded)."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end() if m.group(0)[0] != "\n" else m.start()
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


@dataclass
class PackedBlock:
    tok_start: int  # token range in the document's token sequence
    tok_end: int
    sentences: list[tuple[int, int]]  # token ranges (document-level) of sentence pieces


def _word_starts(word_ids: list[int | None]) -> list[bool]:
    """True where a token starts a new word (a safe place to cut)."""
    out, prev = [], object()
    for w in word_ids:
        out.append(w is None or w != prev)
        prev = w
    return out


def pack_document(sent_tok_spans: list[tuple[int, int]], word_start: list[bool], block_len: int) -> list[PackedBlock]:
    """Greedily pack sentences (token ranges) into blocks of at most ``block_len`` tokens.

    A sentence longer than ``block_len`` is cut into pieces at word starts (falling back to a hard
    cut only if a single word is longer than a block).
    """
    pieces: list[tuple[int, int]] = []
    for s, e in sent_tok_spans:
        while e - s > block_len:
            cut = s + block_len
            while cut > s and not word_start[cut]:
                cut -= 1
            if cut == s:
                cut = s + block_len
            pieces.append((s, cut))
            s = cut
        if e > s:
            pieces.append((s, e))
    blocks: list[PackedBlock] = []
    for s, e in pieces:
        if blocks and e - blocks[-1].tok_start <= block_len:
            blocks[-1].tok_end = e
            blocks[-1].sentences.append((s, e))
        else:
            blocks.append(PackedBlock(s, e, [(s, e)]))
    return blocks


def _sentence_token_spans(offsets: list[tuple[int, int]], sent_chars: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Map sentence char spans to token ranges (a token belongs to the sentence holding its start)."""
    starts = np.array([o[0] for o in offsets], dtype=np.int64)
    spans = []
    for cs, ce in sent_chars:
        a, b = int(np.searchsorted(starts, cs, "left")), int(np.searchsorted(starts, ce, "left"))
        if b > a:
            spans.append((a, b))
    return spans


def documents_hash(docs: Iterable[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        for part in (d.id, d.title, d.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()[:16]


def build_blocks(docs: list[Document], tokenizer: WordPiece, out_dir: str | Path, block_len: int, title_len: int,
                 batch_size: int = 256, progress: bool = True) -> "BlockStore":
    """Tokenize and pack ``docs`` into blocks under ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    body_rows, body_lens, title_rows, title_lens, block_doc, block_chars = [], [], [], [], [], []
    sent_rows, sent_chars_rows = [], []
    bar = tqdm(total=len(docs), desc="packing blocks", unit="doc", disable=not progress)
    for b0 in range(0, len(docs), batch_size):
        batch = docs[b0:b0 + batch_size]
        encs = tokenizer.encode_batch([d.text for d in batch])
        title_encs = tokenizer.encode_batch([d.title for d in batch])
        for j, (doc, enc, tenc) in enumerate(zip(batch, encs, title_encs)):
            ids, offsets = enc.ids, enc.offsets
            if not ids:
                continue
            sent_chars = split_sentences(doc.text)
            sent_toks = _sentence_token_spans(offsets, sent_chars)
            word_start = _word_starts(enc.word_ids) + [True]
            t_ids = tenc.ids[:title_len]
            for blk in pack_document(sent_toks, word_start, block_len):
                row = len(body_rows)
                body = ids[blk.tok_start:blk.tok_end]
                body_rows.append(body)
                body_lens.append(len(body))
                title_rows.append(t_ids)
                title_lens.append(len(t_ids))
                block_doc.append(b0 + j)
                block_chars.append((offsets[blk.tok_start][0], offsets[blk.tok_end - 1][1]))
                for s, e in blk.sentences:
                    sent_rows.append((row, s - blk.tok_start, e - blk.tok_start))
                    sent_chars_rows.append((offsets[s][0], offsets[e - 1][1]))
        bar.update(len(batch))
    bar.close()
    n = len(body_rows)
    body = np.full((n, block_len), tokenizer.pad_id, dtype=np.int32)
    title = np.full((n, max(title_len, 1)), tokenizer.pad_id, dtype=np.int32)
    for i, (b, t) in enumerate(zip(body_rows, title_rows)):
        body[i, :len(b)] = b
        title[i, :len(t)] = t
    arrays = {
        "body": body, "body_len": np.asarray(body_lens, np.int32), "title": title,
        "title_len": np.asarray(title_lens, np.int32), "block_doc": np.asarray(block_doc, np.int32),
        "block_chars": np.asarray(block_chars, np.int64).reshape(-1, 2),
        "sentences": np.asarray(sent_rows, np.int32).reshape(-1, 3),
        "sentence_chars": np.asarray(sent_chars_rows, np.int64).reshape(-1, 2),
    }
    for name, arr in arrays.items():
        np.save(out_dir / f"{name}.npy", arr)
    with open(out_dir / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "title": d.title, "text": d.text, "source": d.source}, ensure_ascii=False) + "\n")
    docs_h = documents_hash(docs)
    manifest = {
        "format_version": FORMAT_VERSION, "realm_version": __version__,
        "num_docs": len(docs), "num_blocks": n, "num_sentences": len(sent_rows),
        "block_len": block_len, "title_len": title_len,
        "mean_block_tokens": float(np.mean(body_lens)) if n else 0.0,
        "vocab_size": tokenizer.vocab_size, "tokenizer_hash": tokenizer.hash, "documents_hash": docs_h,
        "corpus_hash": hashlib.sha256(f"{docs_h}|{tokenizer.hash}|{block_len}|{title_len}".encode()).hexdigest()[:16],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return BlockStore(out_dir)


class BlockStore:
    """Read side of a corpus folder: arrays are memory-mapped, documents loaded on first use."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"{self.folder}: not a corpus folder (no manifest.json); run `realm corpus build`")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.folder}: corpus format {self.manifest.get('format_version')}, expected {FORMAT_VERSION}")
        load = lambda name: np.load(self.folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
        self.body, self.body_len = load("body"), load("body_len")
        self.title, self.title_len = load("title"), load("title_len")
        self.block_doc, self.block_chars = load("block_doc"), load("block_chars")
        self.sentences, self.sentence_chars = load("sentences"), load("sentence_chars")

    def __len__(self) -> int:
        return int(self.manifest["num_blocks"])

    @property
    def corpus_hash(self) -> str:
        return self.manifest["corpus_hash"]

    @cached_property
    def tokenizer(self) -> WordPiece:
        return WordPiece(self.folder / "tokenizer")

    @cached_property
    def docs(self) -> list[dict]:
        with open(self.folder / "docs.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def body_ids(self, i: int) -> np.ndarray:
        return np.asarray(self.body[i, : self.body_len[i]])

    def title_ids(self, i: int) -> np.ndarray:
        return np.asarray(self.title[i, : self.title_len[i]])

    def block_text(self, i: int) -> str:
        """The exact source text of block ``i``."""
        doc = self.docs[int(self.block_doc[i])]
        s, e = self.block_chars[i]
        return doc["text"][int(s):int(e)]

    def block_info(self, i: int) -> dict:
        doc = self.docs[int(self.block_doc[i])]
        s, e = (int(x) for x in self.block_chars[i])
        return {"block": int(i), "doc_id": doc["id"], "title": doc["title"], "char_start": s, "char_end": e,
                "text": doc["text"][s:e]}

    def block_sentences(self, i: int) -> np.ndarray:
        """Rows of ``sentences`` (block, tok_start, tok_end) belonging to block ``i``."""
        lo = int(np.searchsorted(self.sentences[:, 0], i, "left"))
        hi = int(np.searchsorted(self.sentences[:, 0], i, "right"))
        return np.asarray(self.sentences[lo:hi])

    def search_texts(self) -> list[str]:
        """Title + text of every block (what BM25 indexes)."""
        return [f"{self.docs[int(d)]['title']} {self.block_text(i)}" for i, d in enumerate(self.block_doc)]
