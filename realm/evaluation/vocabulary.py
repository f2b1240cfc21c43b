"""Question vocabulary: how many of the questions' tokens occur anywhere in the corpus.

The retrievers of the built-in presets are trained from scratch on the corpus alone (ICT, then REALM), so a
token that never occurs in a block keeps the random embedding it was initialised with: no gradient reaches it.
On the built-in world 37% of the dev questions' tokens ("what", "did", "?", ...) never occur in a block.
Removing them from the questions raises zero-shot R@5 by 4-18 points
(docs/realm-pretraining-diagnosis.md, "What the questions' words do"). Fine-tuning trains those embeddings on
the training questions, so the dev and test figures are also given for tokens seen in neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from realm.data.blocks import BlockStore
from realm.data.tokenizer import WordPiece


def corpus_token_counts(store: BlockStore, chunk: int = 65536) -> np.ndarray:
    """[vocab] int64: how often each token id occurs in the blocks' bodies and titles (padding excluded)."""
    vocab = int(store.manifest["vocab_size"])
    counts = np.zeros(vocab, np.int64)
    for ids, lens in ((store.body, store.body_len), (store.title, store.title_len)):
        for s in range(0, len(store), chunk):
            part = np.asarray(ids[s:s + chunk])
            real = np.arange(part.shape[1]) < np.asarray(lens[s:s + chunk])[:, None]
            counts += np.bincount(part[real].astype(np.int64), minlength=vocab)[:vocab]
    return counts


def question_tokens(tok: WordPiece, questions: Sequence[str]) -> list[list[int]]:
    """Each question's WordPiece ids as the query encoder reads them ([UNK] included: if the corpus never
    produced it, its embedding is untrained too)."""
    return [list(tok.encode(q)) for q in questions]


def unseen_tokens(tok: WordPiece, questions: Sequence[str], counts: np.ndarray, top: int = 10) -> dict:
    """Share of the questions' tokens whose id has ``counts`` 0, share of questions with one, and the
    ``top`` most frequent such tokens (as text)."""
    ids = question_tokens(tok, questions)
    unseen = Counter(i for q in ids for i in q if counts[i] == 0)
    total = sum(len(q) for q in ids)
    return {"questions": len(ids), "tokens": total,
            "unseen_share": sum(unseen.values()) / total if total else 0.0,
            "questions_with_unseen": float(np.mean([any(counts[i] == 0 for i in q) for q in ids])) if ids else 0.0,
            "most_frequent_unseen": [[tok.backend.id_to_token(i), n] for i, n in unseen.most_common(top)]}


def question_vocabulary(store: BlockStore, questions: dict[str, Sequence[str]], train: str = "train") -> dict:
    """Per split, :func:`unseen_tokens` against the corpus; for the other splits also against the corpus plus
    the ``train`` split's questions (``*_or_train``: what fine-tuning leaves untrained)."""
    tok = store.tokenizer
    counts = corpus_token_counts(store)
    out = {split: unseen_tokens(tok, qs, counts) for split, qs in questions.items()}
    if train in questions:
        with_train = counts.copy()
        for q in question_tokens(tok, questions[train]):
            np.add.at(with_train, q, 1)
        for split, qs in questions.items():
            if split != train:
                out[split]["unseen_share_or_train"] = unseen_tokens(tok, qs, with_train)["unseen_share"]
    return out
