"""Masking strategies for REALM pre-training queries (Guu et al. 2020, §3.4 and Table 2 ablations).

* :func:`salient_span_mask` — REALM's default: pick one salient span (named entity or date) of the
  sentence uniformly at random and replace *every* token overlapping it by ``[MASK]`` (no BERT
  80/10/10 replacement).
* :func:`random_token_mask` — ablation "random uniform masks": BERT-style uniformly random tokens.
* :func:`random_span_mask` — ablation "random span masks" (SpanBERT-like): one random contiguous span,
  its length drawn from given salient-span lengths or from a geometric distribution.

All functions are pure: numpy arrays in, a new :class:`MaskedExample` out; randomness only from the
``np.random.Generator`` passed in, so a seeded generator gives identical results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

__all__ = ["MaskedExample", "span_token_positions", "apply_mask", "salient_span_mask",
           "random_token_mask", "random_span_mask"]


@dataclass
class MaskedExample:
    """A masked query.

    Attributes:
        input_ids: ``[L]`` int64, the token ids with ``mask_id`` at ``positions``.
        positions: ``[N]`` int64, sorted masked positions (N ≥ 1).
        targets: ``[N]`` int64, original ids at ``positions``.
        span: the salient span that was masked (``salient_span_mask`` only), else ``None``.
    """

    input_ids: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    span: Optional[Any] = None


def _bounds(span: Any) -> tuple[int, int]:
    if hasattr(span, "start") and hasattr(span, "end"):
        return int(span.start), int(span.end)
    return int(span[0]), int(span[1])


def span_token_positions(offsets: Sequence[Sequence[int]], span: Any) -> np.ndarray:
    """Indices of tokens whose char range ``[s, e)`` overlaps the span ``[a, b)``: ``s < b and a < e``.

    Zero-width tokens (special tokens, which tokenizers give offsets ``(0, 0)``) never overlap.
    ``span`` is anything with ``.start``/``.end`` (e.g. :class:`realm.data.salient.Span`) or a pair.
    """
    a, b = _bounds(span)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    s, e = off[:, 0], off[:, 1]
    hit = (s < e) & (s < b) & (a < e)
    return np.nonzero(hit)[0].astype(np.int64)


def apply_mask(token_ids: Sequence[int], positions: Iterable[int], mask_id: int,
               span: Any = None) -> MaskedExample:
    """Replace ``token_ids[positions]`` by ``mask_id``; returns a :class:`MaskedExample`."""
    ids = np.asarray(token_ids, dtype=np.int64).copy()
    pos = np.unique(np.asarray(list(positions), dtype=np.int64))
    targets = ids[pos].copy()
    ids[pos] = mask_id
    return MaskedExample(input_ids=ids, positions=pos, targets=targets, span=span)


def salient_span_mask(
    token_ids: Sequence[int],
    offsets: Sequence[Sequence[int]],
    spans: Sequence[Any],
    mask_id: int,
    rng: np.random.Generator,
) -> Optional[MaskedExample]:
    """REALM salient span masking: mask all tokens of one salient span chosen uniformly at random.

    The choice is uniform over the spans that overlap at least one (non-zero-width) token — spans that
    fall outside the tokenised text (e.g. truncated away) are ignored.  Every overlapping token becomes
    ``mask_id`` (no 80/10/10).

    Args:
        token_ids: ``[L]`` token ids of the sentence.
        offsets: ``[L]`` ``(start, end)`` char offsets of each token in the sentence text.
        spans: salient char spans (``Span`` objects or ``(start, end)`` pairs) in the same text.
        mask_id: the ``[MASK]`` id.
        rng: numpy Generator.
    Returns:
        the :class:`MaskedExample` (its ``span`` is the chosen span), or ``None`` when no span maps to a
        token (the caller counts the sentence as skipped).
    """
    if len(offsets) != len(token_ids):
        raise ValueError(f"{len(token_ids)} token ids but {len(offsets)} offsets")
    eligible = []
    for sp in spans:
        pos = span_token_positions(offsets, sp)
        if pos.size:
            eligible.append((sp, pos))
    if not eligible:
        return None
    sp, pos = eligible[int(rng.integers(len(eligible)))]
    return apply_mask(token_ids, pos, mask_id, span=sp)


def random_token_mask(
    token_ids: Sequence[int],
    mask_id: int,
    rng: np.random.Generator,
    rate: float = 0.15,
    special_ids: Iterable[int] = (),
) -> Optional[MaskedExample]:
    """Uniform random token masking (ablation "random uniform masks"; BERT's selection, all → [MASK]).

    Masks ``n = clip(round(rate · C), 1, C)`` distinct positions drawn uniformly without replacement from
    the C positions whose id is not in ``special_ids``.  Returns ``None`` when C = 0.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be in [0, 1]")
    ids = np.asarray(token_ids, dtype=np.int64)
    cand = np.nonzero(~np.isin(ids, np.asarray(list(special_ids), dtype=np.int64)))[0]
    if cand.size == 0:
        return None
    n = int(min(cand.size, max(1, round(rate * cand.size))))
    pos = rng.choice(cand, size=n, replace=False)
    return apply_mask(ids, pos, mask_id)


def random_span_mask(
    token_ids: Sequence[int],
    mask_id: int,
    rng: np.random.Generator,
    mean_len: float = 2.0,
    span_lengths: Optional[Sequence[int]] = None,
    max_len: int = 10,
    special_ids: Iterable[int] = (),
) -> Optional[MaskedExample]:
    """Mask one random contiguous span of non-special tokens (ablation "random span masks").

    Length ``L``: drawn uniformly from ``span_lengths`` when given (pass the token lengths of observed
    salient spans to match their distribution), else ``L ~ Geometric(p = 1/mean_len)`` (support 1, 2, …,
    mean ``mean_len``); then clipped to ``[1, max_len]`` and to the longest run of consecutive
    non-special tokens.  The start is uniform over all positions where the whole span avoids special
    tokens.  Returns ``None`` when there is no non-special token.
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    ok = ~np.isin(ids, np.asarray(list(special_ids), dtype=np.int64))
    if not ok.any():
        return None
    if span_lengths is not None and len(span_lengths) > 0:
        length = int(span_lengths[int(rng.integers(len(span_lengths)))])
    else:
        if mean_len < 1:
            raise ValueError("mean_len must be >= 1")
        length = int(rng.geometric(1.0 / mean_len))
    # run[i] = number of consecutive non-special tokens starting at i
    run = np.zeros(ids.size + 1, dtype=np.int64)
    for i in range(ids.size - 1, -1, -1):
        run[i] = run[i + 1] + 1 if ok[i] else 0
    length = int(max(1, min(length, max_len, int(run.max()))))
    starts = np.nonzero(run[:-1] >= length)[0]
    s = int(starts[int(rng.integers(starts.size))])
    return apply_mask(ids, range(s, s + length), mask_id)
