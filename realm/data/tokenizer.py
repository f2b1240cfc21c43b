"""WordPiece tokenizer: train one on a corpus (HF ``tokenizers``) or load an HF tokenizer folder.

The saved folder is an ordinary HF tokenizer folder (``vocab.txt``, ``tokenizer.json`` ...), so
``transformers.AutoTokenizer.from_pretrained(folder)`` loads it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class WordPiece:
    """A thin wrapper over a fast HF tokenizer: ids, char offsets and word ids, no specials added."""

    def __init__(self, folder: str | Path):
        from transformers import AutoTokenizer  # imported lazily: transformers is slow to import

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {self.folder}")
        self.hf = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        backend = getattr(self.hf, "backend_tokenizer", None) or getattr(self.hf, "_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ValueError(f"{self.folder}: a fast (Rust-backed) tokenizer is required")
        self.backend: Tokenizer = backend
        # Tokenizer folders may carry truncation/padding settings (sentence-transformers models cut at
        # 128 tokens and pad batches): corpus tokenization must see every token and nothing else.
        self.backend.no_truncation()
        self.backend.no_padding()
        self.pad_id = self.hf.pad_token_id
        self.cls_id = self.hf.cls_token_id
        self.sep_id = self.hf.sep_token_id
        self.mask_id = self.hf.mask_token_id
        self.unk_id = self.hf.unk_token_id
        self.vocab_size = len(self.hf)
        self.special_ids = frozenset(i for i in (self.pad_id, self.cls_id, self.sep_id, self.mask_id, self.unk_id) if i is not None)

    def encode_batch(self, texts: list[str]) -> list:
        """Encodings (``.ids``, ``.offsets``, ``.word_ids``) without special tokens."""
        return self.backend.encode_batch(list(texts), add_special_tokens=False)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)

    @property
    def hash(self) -> str:
        return tokenizer_hash(self)


def tokenizer_hash(tok: "WordPiece") -> str:
    """sha256 of what decides the token ids: the vocabulary in id order and the normaliser."""
    h = hashlib.sha256()
    vocab = sorted(tok.hf.get_vocab().items(), key=lambda kv: kv[1])
    h.update("\n".join(t for t, _ in vocab).encode("utf-8"))
    normalizer = tok.backend.normalizer
    h.update(repr(normalizer.__getstate__() if normalizer is not None else None).encode())
    return h.hexdigest()[:16]


def train_wordpiece(
    texts: Iterable[str], out_dir: str | Path, vocab_size: int = 8192, min_frequency: int = 2, lowercase: bool = True
) -> WordPiece:
    """Learn a BERT-style WordPiece vocabulary on ``texts`` (deterministically) and save an HF tokenizer folder."""
    from transformers import BertTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from realm.data.wordpiece_trainer import count_words, learn_vocab

    vocab = learn_vocab(count_words(texts, lowercase), vocab_size, min_frequency, SPECIAL_TOKENS)
    (out_dir / "vocab.txt").write_text("".join(tok + "\n" for tok in vocab), encoding="utf-8")
    hf = BertTokenizer(vocab=str(out_dir / "vocab.txt"), do_lower_case=lowercase, strip_accents=lowercase)
    hf.save_pretrained(str(out_dir))
    meta = {"trained_on": "corpus", "vocab_size": len(vocab), "min_frequency": min_frequency, "lowercase": lowercase}
    (out_dir / "realm_tokenizer.json").write_text(json.dumps(meta, indent=2))
    return WordPiece(out_dir)


def copy_tokenizer(src: str | Path, out_dir: str | Path) -> WordPiece:
    """Load an existing HF tokenizer folder and save a copy next to the corpus."""
    tok = WordPiece(src)
    tok.hf.save_pretrained(str(out_dir))
    if (Path(src) / "vocab.txt").exists():  # keep the plain vocabulary for tools that want it
        (Path(out_dir) / "vocab.txt").write_bytes((Path(src) / "vocab.txt").read_bytes())
    return WordPiece(out_dir)
