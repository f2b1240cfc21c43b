"""Counterfactual span substitution: training rows that can only be solved by reading the block.

A 2-layer encoder trained from scratch on a few hundred articles stores the facts in its weights
instead of reading the block it is paired with (``docs/realm-pretraining-diagnosis.md``). These rows
take that option away: the masked span of a sentence is replaced, inside the paired block, by
another salient span of the same token length, and that replacement is the target. Nothing but
the block can tell the model which one it is.

Row kinds (:func:`make_rows`):
  ``own``       the sentence's own block, every occurrence of the span replaced; target = replacement
  ``evidence``  another document's block that contains the span, replaced the same way
                (falls back to ``own`` when no other document contains it)
  ``plain``     the empty block (REALM's null block); target = the real span: plain masked LM
  ``distractor`` a random block of another document that does not contain the span; target = the real
                span: a block is not always the answer, and the model must learn when not to copy

Everything here is a pure function of its arguments and the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ROW_KINDS = ("own", "evidence", "plain", "distractor")


def occurrences(body: np.ndarray, span: np.ndarray, continuation: np.ndarray | None = None) -> list[int]:
    """Start positions of every (non-overlapping, left to right) occurrence of ``span`` in ``body``.

    With ``continuation`` (sorted ids of ``##`` word pieces), an occurrence followed by a continuation
    piece is not one: "Varn" does not occur in "Varn ##holt".
    """
    body, span = np.asarray(body), np.asarray(span)
    n = len(span)
    out: list[int] = []
    if n == 0 or n > len(body):
        return out
    i = 0
    candidates = np.flatnonzero(body[: len(body) - n + 1] == span[0])
    for i in candidates:
        if out and i < out[-1] + n:
            continue
        if continuation is not None and i + n < len(body) and _is_in(body[i + n], continuation):
            continue
        if np.array_equal(body[i:i + n], span):
            out.append(int(i))
    return out


def _is_in(token: int, sorted_ids: np.ndarray) -> bool:
    j = np.searchsorted(sorted_ids, token)
    return bool(j < len(sorted_ids) and sorted_ids[j] == token)


def substitute(body: np.ndarray, span: np.ndarray, replacement: np.ndarray,
               continuation: np.ndarray | None = None) -> np.ndarray:
    """``body`` with every occurrence of ``span`` replaced by ``replacement`` (any length)."""
    body = np.asarray(body, dtype=np.int64)
    starts = occurrences(body, span, continuation)
    if not starts:
        return body.copy()
    parts, prev = [], 0
    for s in starts:
        parts += [body[prev:s], np.asarray(replacement, dtype=np.int64)]
        prev = s + len(span)
    parts.append(body[prev:])
    return np.concatenate(parts)


class SpanBank:
    """Salient spans of a corpus (token ids), grouped by length: the pool of replacements."""

    def __init__(self, spans: Sequence[Sequence[int]]):
        by_len: dict[int, set[tuple[int, ...]]] = {}
        for s in spans:
            t = tuple(int(x) for x in s)
            if t:
                by_len.setdefault(len(t), set()).add(t)
        self.by_len = {n: np.array(sorted(v), dtype=np.int64) for n, v in by_len.items()}

    @classmethod
    def from_pool(cls, pool) -> "SpanBank":
        """Every salient span of a :class:`~realm.training.mlm_examples.MaskedSentencePool` (salient masking)."""
        spans = []
        for ids, offsets, sent_spans in zip(pool.ids, pool.offsets, pool.spans):
            for sp in sent_spans:
                tok = [j for j, (s, e) in enumerate(offsets) if s < e and s < sp.end and sp.start < e]
                if tok:
                    spans.append(ids[tok[0]:tok[-1] + 1])
        return cls(spans)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_len.values())

    def replacement(self, span: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """A random bank span of the same length that differs from ``span``; None if there is none."""
        span = np.asarray(span, dtype=np.int64)
        pool = self.by_len.get(len(span))
        if pool is None:
            return None
        for _ in range(8):  # rejection: the bank rarely holds only the span itself
            cand = pool[int(rng.integers(len(pool)))]
            if not np.array_equal(cand, span):
                return cand
        others = [c for c in pool if not np.array_equal(c, span)]
        return others[int(rng.integers(len(others)))] if others else None


class EvidenceFinder:
    """Blocks of *other documents* whose body contains a token span (an inverted index on tokens)."""

    def __init__(self, bodies: Sequence[np.ndarray], block_doc: Sequence[int]):
        self.bodies = [np.asarray(b, dtype=np.int64) for b in bodies]
        self.block_doc = np.asarray(block_doc)
        by_token: dict[int, list[int]] = {}
        for i, body in enumerate(self.bodies):
            for t in np.unique(body):
                by_token.setdefault(int(t), []).append(i)
        self.by_token = {t: np.array(v) for t, v in by_token.items()}

    @classmethod
    def from_store(cls, store) -> "EvidenceFinder":
        return cls([store.body_ids(i) for i in range(len(store))], [store.block_doc[i] for i in range(len(store))])

    def find(self, span: np.ndarray, block: int) -> list[int]:
        """Blocks containing ``span`` whose document differs from ``block``'s document."""
        span = np.asarray(span)
        if len(span) == 0:
            return []
        # the rarest token of the span gives the shortest candidate list
        lists = [self.by_token.get(int(t)) for t in np.unique(span)]
        if any(v is None for v in lists):
            return []
        cands = min(lists, key=len)
        doc = self.block_doc[block]
        return [int(i) for i in cands if self.block_doc[i] != doc and occurrences(self.bodies[i], span)]


@dataclass
class Row:
    """One (masked sentence, block body) training row of the reading warm start."""

    query: object  # the MaskedQuery (its ``input_ids`` / ``positions`` are used as they are)
    body: np.ndarray  # the block body the row reads (empty: the null block)
    targets: np.ndarray  # what the masked positions must predict
    kind: str  # own | evidence | plain


def counterfactual_row(query, body: np.ndarray, bank: SpanBank, rng: np.random.Generator, kind: str) -> Row | None:
    """Replace the query's span in ``body`` by a same-length bank span, which becomes the target."""
    span = np.asarray(query.targets, dtype=np.int64)
    if not occurrences(body, span):
        return None
    repl = bank.replacement(span, rng)
    if repl is None:
        return None
    return Row(query, substitute(body, span, repl), repl.copy(), kind)


def make_rows(queries: Sequence, kinds: Sequence[str], store_bodies, finder: EvidenceFinder, bank: SpanBank,
              rng: np.random.Generator) -> list[Row]:
    """One row per query, of the kind asked for; a counterfactual row that cannot be made becomes ``plain``.

    ``store_bodies(i)`` returns block ``i``'s body token ids.
    """
    rows = []
    for q, kind in zip(queries, kinds):
        row = None
        if kind == "distractor":
            for _ in range(8):
                z = int(rng.integers(len(finder.bodies)))
                if finder.block_doc[z] != finder.block_doc[q.block] and not occurrences(store_bodies(z), q.targets):
                    row = Row(q, np.asarray(store_bodies(z), dtype=np.int64), np.asarray(q.targets, dtype=np.int64),
                              "distractor")
                    break
        if kind == "evidence":
            found = finder.find(q.targets, q.block)
            if found:
                row = counterfactual_row(q, store_bodies(found[int(rng.integers(len(found)))]), bank, rng, "evidence")
            kind = "own" if row is None else kind
        if kind == "own":
            row = counterfactual_row(q, store_bodies(q.block), bank, rng, "own")
        if row is None:
            row = Row(q, np.zeros(0, dtype=np.int64), np.asarray(q.targets, dtype=np.int64), "plain")
        rows.append(row)
    return rows


def draw_kinds(n: int, plain_share: float, evidence_share: float, rng: np.random.Generator,
               distractor_share: float = 0.0) -> list[str]:
    """Row kinds for a batch: ``plain_share`` plain rows, ``distractor_share`` distractor rows; of the
    others (counterfactual rows), ``evidence_share`` evidence rows and the rest own-block rows."""
    u = rng.random(n)
    v = rng.random(n)
    return ["plain" if a < plain_share else "distractor" if a < plain_share + distractor_share
            else "evidence" if b < evidence_share else "own" for a, b in zip(u, v)]


# --------------------------------------------------------------------------------------------------
# Counterfactual answers for reader fine-tuning

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")


def answer_kind(text: str) -> str:
    """A coarse answer type, so that a swapped answer looks like the original: date | year | number | name | text."""
    t = text.strip().lower()
    words = t.split()
    if any(m in words for m in _MONTHS) and any(w.isdigit() for w in words):
        return "date"
    if t.isdigit():
        return "year" if len(t) <= 4 else "number"
    if t.replace(",", "").replace(".", "").isdigit():
        return "number"
    return "name" if text[:1].isupper() else "text"


class AnswerBank:
    """Answers of the training questions, by :func:`answer_kind`, as (normalised text, token ids)."""

    def __init__(self, answers: Sequence[str], encode):
        by_kind: dict[str, dict[str, np.ndarray]] = {}
        for a in answers:
            ids = np.asarray(encode(a), dtype=np.int64)
            if len(ids):
                by_kind.setdefault(answer_kind(a), {})[a.strip().lower()] = ids
        self.by_kind = {k: sorted(v.items()) for k, v in by_kind.items()}

    def replacement(self, answer: str, rng: np.random.Generator) -> np.ndarray | None:
        """Token ids of another training answer of the same kind; None if the bank has no other."""
        pool = self.by_kind.get(answer_kind(answer), [])
        key = answer.strip().lower()
        others = [ids for text, ids in pool if text != key]
        return others[int(rng.integers(len(others)))] if others else None
