"""BM25 sparse retrieval over block texts, backed by the ``bm25s`` library.

Score (bm25s ``method="lucene"``, Robertson & Zaragoza 2009)::

    BM25(q, D) = sum_{t in q} IDF(t) * tf(t,D)*(k1+1) / (tf(t,D) + k1*(1 - b + b*|D|/avgdl))
    IDF(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Text is lower-cased, split on ``\\w+``, English stopwords removed (bm25s' list) and,
if ``stemmer=True`` and PyStemmer is installed, Snowball-English stemmed. Blocks are
indexed as ``title + " " + text`` by the caller.

Same ``search`` contract as the dense backends: (scores float32 [Q,k], ids int64 [Q,k])
by (score desc, id asc), ``exclude`` ids scored ``-inf`` before top-k, padding
(-inf, -1). Blocks sharing no term with the query (score 0) are *not* results unless
``keep_zero=True`` (then they fill in by ascending id).

Storage: ``save(dir)`` writes bm25s' own format (``*.npy`` numeric CSC arrays saved
with ``allow_pickle=False``, vocab/params as JSON) plus ``realm_bm25.json`` holding the
tokenizer config; ``load`` reads arrays with ``allow_pickle=False``. No pickle anywhere.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import bm25s
import logging as _logging

_logging.getLogger("bm25s").setLevel(_logging.WARNING)  # its index build logs at DEBUG
import numpy as np

from realm.index.exact import Exclude, check_exclude, topk_sorted

try:
    from bm25s.stopwords import STOPWORDS_EN as _STOPWORDS
except ImportError:  # pragma: no cover - older bm25s
    _STOPWORDS = ("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in",
                  "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the",
                  "their", "then", "there", "these", "they", "this", "to", "was", "will", "with")

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_CONFIG_FILE = "realm_bm25.json"


def _make_stemmer(use: bool):
    if not use:
        return None
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


def tokenize(text: str, stopwords: frozenset, stemmer=None) -> list[str]:
    """Lower-case ``\\w+`` tokens minus ``stopwords``, stemmed with ``stemmer`` if given."""
    toks = [t for t in _WORD_RE.findall(text.lower()) if t not in stopwords]
    return stemmer.stemWords(toks) if stemmer is not None else toks


class BM25Index:
    """Lexical BM25 index; build with :meth:`build`, reopen with :meth:`load`."""

    def __init__(self, retriever: "bm25s.BM25", stemmer: bool, stopwords: Sequence[str],
                 keep_zero: bool = False):
        self.retriever = retriever
        self.use_stemmer = bool(stemmer)
        self._stemmer = _make_stemmer(stemmer)
        self.stopwords = frozenset(stopwords)
        self.keep_zero = keep_zero
        self.num_blocks = int(retriever.scores["num_docs"])

    # ------------------------------------------------------------ tokenizer
    def tokenize(self, text: str) -> list[str]:
        """This index's tokenizer (see :func:`tokenize`)."""
        return tokenize(text, self.stopwords, self._stemmer)

    @classmethod
    def build(cls, texts: Sequence[str], stemmer: bool = True, k1: float = 1.5,
              b: float = 0.75, stopwords: Sequence[str] = _STOPWORDS,
              keep_zero: bool = False) -> "BM25Index":
        """Index ``texts`` (block id = position in the list)."""
        if len(texts) == 0:
            raise ValueError("cannot build a BM25 index over zero texts")
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        stem, stop = _make_stemmer(stemmer), frozenset(stopwords)
        corpus_tokens = [tokenize(t, stop, stem) for t in texts]
        retriever.index(corpus_tokens, show_progress=False)
        return cls(retriever, stemmer, stopwords, keep_zero)

    # ------------------------------------------------------------ search
    def scores(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` against every block: float32 [N]."""
        ids = self.retriever.get_tokens_ids(self.tokenize(query))
        if not ids:
            return np.zeros(self.num_blocks, np.float32)
        return np.asarray(self.retriever.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int, exclude: Exclude = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` blocks per query string; see module docstring for the contract."""
        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings, not a single string")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        check_exclude(exclude, len(queries))
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        kk = min(k, self.num_blocks)
        for row, query in enumerate(queries):
            s = self.scores(query)
            if not self.keep_zero:
                s[s <= 0] = -np.inf
            if exclude is not None:
                ex = np.fromiter((int(i) for i in exclude[row]), dtype=np.int64)
                s[ex[(ex >= 0) & (ex < self.num_blocks)]] = -np.inf
            kth = s[np.argpartition(-s, kk - 1)[kk - 1]]
            cand = np.flatnonzero(s >= kth) if kth > -np.inf else np.flatnonzero(s > -np.inf)
            out_s[row], out_i[row] = (a[0] for a in topk_sorted(s[cand][None], cand[None], k))
        return out_s, out_i

    # ------------------------------------------------------------ io
    def save(self, directory) -> Path:
        """Write bm25s arrays + JSON and ``realm_bm25.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(directory), allow_pickle=False, show_progress=False)
        config = {"stemmer": self.use_stemmer, "stemmer_available": self._stemmer is not None,
                  "stopwords": sorted(self.stopwords), "keep_zero": self.keep_zero,
                  "num_blocks": self.num_blocks, "bm25s_version": bm25s.__version__}
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=1))
        return directory

    @classmethod
    def load(cls, directory, mmap: bool = False) -> "BM25Index":
        """Reopen an index written by :meth:`save` (arrays read with allow_pickle=False)."""
        directory = Path(directory)
        config = json.loads((directory / _CONFIG_FILE).read_text())
        retriever = bm25s.BM25.load(str(directory), mmap=mmap, allow_pickle=False,
                                    show_progress=False)
        self = cls(retriever, config["stemmer"], config["stopwords"], config["keep_zero"])
        if self.use_stemmer and config["stemmer_available"] and self._stemmer is None:
            raise RuntimeError(f"{directory} was built with PyStemmer, which is not installed")
        return self

    def __len__(self) -> int:
        return self.num_blocks
