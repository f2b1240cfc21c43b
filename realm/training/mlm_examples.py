"""Pretraining examples: one corpus sentence with one span masked (salient, or an ablation mask).

The pool tokenizes and tags every sentence of the corpus once; each step then masks a fresh span
with that step's RNG. Sentences without a salient span are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from realm.data.blocks import BlockStore
from realm.data.salient import get_tagger
from realm.training.masking import MaskedExample, random_span_mask, random_token_mask, salient_span_mask

MASKINGS = ("salient", "uniform", "span")


@dataclass
class MaskedQuery:
    input_ids: np.ndarray  # the masked sentence (cropped to fit the query length)
    positions: np.ndarray  # masked positions within input_ids
    targets: np.ndarray  # original ids there
    block: int  # the block the sentence came from (never retrieved for it)


@dataclass
class PoolStats:
    sentences: int = 0
    kept: int = 0
    skipped: dict = field(default_factory=dict)


class MaskedSentencePool:
    def __init__(self, store: BlockStore, masking: str = "salient", tagger: str = "rules", max_tokens: int = 30,
                 progress: bool = True):
        if masking not in MASKINGS:
            raise ValueError(f"unknown masking '{masking}' (expected one of {', '.join(MASKINGS)})")
        self.masking, self.max_tokens = masking, max_tokens
        tok = store.tokenizer
        self.mask_id, self.special_ids = tok.mask_id, tuple(tok.special_ids)
        tag = get_tagger(tagger)
        sents = np.asarray(store.sentences)
        chars = np.asarray(store.sentence_chars)
        self.stats = PoolStats(sentences=len(sents))
        self.ids, self.offsets, self.spans, self.blocks = [], [], [], []
        span_lengths = []
        batch = 512
        bar = tqdm(total=len(sents), desc=f"tagging sentences ({masking})", unit="sent", disable=not progress)
        for s0 in range(0, len(sents), batch):
            rows = range(s0, min(s0 + batch, len(sents)))
            texts = []
            for r in rows:
                doc = store.docs[int(store.block_doc[sents[r, 0]])]
                texts.append(doc["text"][int(chars[r, 0]):int(chars[r, 1])])
            for r, text, enc in zip(rows, texts, tok.encode_batch(texts)):
                if len(enc.ids) < 2:
                    self._skip("shorter than 2 tokens")
                    continue
                spans = tag(text) if masking == "salient" else []
                if masking == "salient":
                    spans = [sp for sp in spans if any(s < sp.end and sp.start < e for s, e in enc.offsets)]
                    if not spans:
                        self._skip("no salient span")
                        continue
                    for sp in spans:
                        span_lengths.append(sum(1 for s, e in enc.offsets if s < sp.end and sp.start < e))
                self.ids.append(np.asarray(enc.ids, dtype=np.int64))
                self.offsets.append(enc.offsets)
                self.spans.append(spans)
                self.blocks.append(int(sents[r, 0]))
            bar.update(len(rows))
        bar.close()
        self.stats.kept = len(self.ids)
        self.span_lengths = span_lengths or [1, 2, 3]
        if not self.ids:
            raise ValueError(f"{store.folder}: no sentence usable for '{masking}' masking ({self.stats.skipped})")

    def _skip(self, why: str) -> None:
        self.stats.skipped[why] = self.stats.skipped.get(why, 0) + 1

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, i: int, rng: np.random.Generator) -> MaskedQuery | None:
        ids = self.ids[i]
        if self.masking == "salient":
            ex = salient_span_mask(ids, self.offsets[i], self.spans[i], self.mask_id, rng)
        elif self.masking == "uniform":
            ex = random_token_mask(ids, self.mask_id, rng, special_ids=self.special_ids)
        else:
            ex = random_span_mask(ids, self.mask_id, rng, span_lengths=self.span_lengths, special_ids=self.special_ids)
        if ex is None:
            return None
        return crop(ex, self.max_tokens, self.blocks[i])

    def sample(self, rng: np.random.Generator, batch_size: int) -> list[MaskedQuery]:
        out: list[MaskedQuery] = []
        while len(out) < batch_size:
            q = self.mask(int(rng.integers(len(self.ids))), rng)
            if q is not None:
                out.append(q)
        return out


class TextPool:
    """Masked-LM rows from free texts that are not blocks (e.g. training questions, never their answers):
    BERT's uniform masking (15% of tokens, at least one) and ``block = -1``. ``sample`` as the sentence pool's."""

    def __init__(self, tokenizer, texts, max_tokens: int = 30, rate: float = 0.15):
        self.mask_id, self.special_ids = tokenizer.mask_id, tuple(tokenizer.special_ids)
        self.max_tokens, self.rate = max_tokens, rate
        self.ids = [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(list(texts)) if e.ids]
        if not self.ids:
            raise ValueError("no text with a token to mask")

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, rng: np.random.Generator, batch_size: int) -> list[MaskedQuery]:
        out: list[MaskedQuery] = []
        while len(out) < batch_size:
            ex = random_token_mask(self.ids[int(rng.integers(len(self.ids)))], self.mask_id, rng, self.rate,
                                   special_ids=self.special_ids)
            if ex is not None:
                out.append(crop(ex, self.max_tokens, -1))
        return out


def contains_span(body, span) -> bool:
    """Does ``span`` (the masked tokens, in order) occur contiguously in ``body``?"""
    body, span = np.asarray(body), np.asarray(span)
    n = len(span)
    if n == 0 or n > len(body):
        return False
    starts = np.flatnonzero(body[: len(body) - n + 1] == span[0])  # cheap: compare only where the first token matches
    return any(np.array_equal(body[i:i + n], span) for i in starts)


def crop(ex: MaskedExample, max_tokens: int, block: int) -> MaskedQuery:
    """Cut a long sentence to a ``max_tokens`` window that keeps every masked position."""
    ids, pos = np.asarray(ex.input_ids), np.asarray(ex.positions)
    if len(ids) > max_tokens:
        lo, hi = int(pos.min()), int(pos.max())
        width = hi - lo + 1
        if width > max_tokens:  # a span longer than the window: keep its first max_tokens tokens
            keep = pos < lo + max_tokens
            pos, targets = pos[keep], np.asarray(ex.targets)[keep]
            start = lo
        else:
            start = max(0, min(lo - (max_tokens - width) // 2, len(ids) - max_tokens))
            targets = np.asarray(ex.targets)
        ids = ids[start:start + max_tokens]
        return MaskedQuery(ids, pos - start, targets, block)
    return MaskedQuery(ids, pos, np.asarray(ex.targets), block)


def masked_targets(queries, targets=None):
    """(positions [B, M] in ``[CLS] x ...`` inputs, targets [B, M], mask [B, M]) of masked queries.

    ``targets[b]`` replaces ``queries[b].targets`` (e.g. a counterfactual replacement of the same length).
    """
    import torch

    M = max(len(q.positions) for q in queries)
    positions = torch.zeros(len(queries), M, dtype=torch.long)
    out = torch.zeros(len(queries), M, dtype=torch.long)
    mask = torch.zeros(len(queries), M, dtype=torch.bool)
    for b, q in enumerate(queries):
        n = len(q.positions)
        positions[b, :n] = torch.as_tensor(np.asarray(q.positions) + 1, dtype=torch.long)  # +1 for [CLS]
        out[b, :n] = torch.as_tensor(np.asarray(q.targets if targets is None else targets[b]), dtype=torch.long)
        mask[b, :n] = True
    return positions, out, mask
