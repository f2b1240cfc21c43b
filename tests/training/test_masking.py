"""Tests for realm.training.masking."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realm.data.salient import Span
from realm.training.masking import (
    MaskedExample,
    random_span_mask,
    random_token_mask,
    salient_span_mask,
    span_token_positions,
)

FAST = settings(max_examples=30, deadline=None)
MASK = 103
CLS, SEP = 101, 102


def _whitespace_tokens(text):
    """Toy word-piece tokenizer: words split into pieces of <= 3 chars, with char offsets."""
    offsets, pos = [], 0
    for word in text.split(" "):
        for k in range(0, len(word), 3):
            offsets.append((pos + k, pos + min(k + 3, len(word))))
        pos += len(word) + 1
    ids = [1000 + 7 * i for i in range(len(offsets))]
    return ids, offsets


def brute_overlap(offsets, span):
    a, b = (span.start, span.end) if isinstance(span, Span) else span
    return [i for i, (s, e) in enumerate(offsets) if e > s and any(a <= c < b for c in range(s, e))]


def test_salient_span_masks_exactly_the_span_tokens():
    text = "Elsa Mirrow was born in Varnholt on 3 May 1881."
    ids, offsets = _whitespace_tokens(text)
    ids, offsets = [CLS] + ids + [SEP], [(0, 0)] + offsets + [(0, 0)]
    spans = [Span(0, 11, "NAME"), Span(24, 32, "NAME"), Span(36, 46, "DATE")]
    seen = set()
    for seed in range(40):
        ex = salient_span_mask(ids, offsets, spans, MASK, np.random.default_rng(seed))
        assert isinstance(ex, MaskedExample) and ex.span in spans
        expect = brute_overlap(offsets, ex.span)
        assert ex.positions.tolist() == expect
        assert ex.targets.tolist() == [ids[i] for i in expect]
        for i, t in enumerate(ex.input_ids.tolist()):
            assert t == (MASK if i in expect else ids[i])
        assert ex.input_ids.dtype == np.int64 and ex.positions.dtype == np.int64
        seen.add(ex.span)
    assert seen == set(spans)  # uniform choice reaches every span


def test_salient_span_none_when_no_span_maps_to_tokens():
    ids, offsets = [CLS, 5, 6, SEP], [(0, 0), (0, 3), (4, 7), (0, 0)]
    rng = np.random.default_rng(0)
    assert salient_span_mask(ids, offsets, [], MASK, rng) is None
    assert salient_span_mask(ids, offsets, [(20, 25)], MASK, rng) is None  # truncated away
    ex = salient_span_mask(ids, offsets, [(20, 25), (5, 6)], MASK, rng)
    assert ex.positions.tolist() == [2]
    with pytest.raises(ValueError):
        salient_span_mask(ids, offsets[:2], [(0, 1)], MASK, rng)


def test_salient_span_deterministic():
    ids, offsets = _whitespace_tokens("a bb ccc dddd eeeee ffffff")
    spans = [(0, 1), (2, 4), (9, 19), (20, 26)]
    a = [salient_span_mask(ids, offsets, spans, MASK, np.random.default_rng(7)) for _ in range(3)]
    assert all(np.array_equal(x.input_ids, a[0].input_ids) for x in a)


@FAST
@given(words=st.lists(st.text("abcdefgh", min_size=1, max_size=8), min_size=1, max_size=12),
       raw_spans=st.lists(st.tuples(st.integers(0, 80), st.integers(1, 10)), max_size=5),
       seed=st.integers(0, 2**31))
def test_salient_span_hypothesis(words, raw_spans, seed):
    text = " ".join(words)
    ids, offsets = _whitespace_tokens(text)
    spans = [(a, a + w) for a, w in raw_spans]
    ex = salient_span_mask(ids, offsets, spans, MASK, np.random.default_rng(seed))
    mappable = [sp for sp in spans if brute_overlap(offsets, sp)]
    if not mappable:
        assert ex is None
        return
    assert ex.span in mappable
    assert ex.positions.tolist() == brute_overlap(offsets, ex.span)
    assert span_token_positions(offsets, ex.span).tolist() == ex.positions.tolist()
    assert (ex.input_ids[ex.positions] == MASK).all()
    assert ex.targets.tolist() == [ids[i] for i in ex.positions]
    untouched = np.setdiff1d(np.arange(len(ids)), ex.positions)
    assert (ex.input_ids[untouched] == np.asarray(ids)[untouched]).all()


@FAST
@given(n=st.integers(1, 60), rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_random_token_mask_properties(n, rate, seed):
    ids = [CLS] + list(range(2000, 2000 + n)) + [SEP, 0, 0]
    ex = random_token_mask(ids, MASK, np.random.default_rng(seed), rate=rate,
                           special_ids=(CLS, SEP, 0))
    assert len(ex.positions) == min(n, max(1, round(rate * n)))
    assert len(set(ex.positions.tolist())) == len(ex.positions)
    assert all(ids[p] not in (CLS, SEP, 0) for p in ex.positions)
    assert ex.targets.tolist() == [ids[p] for p in ex.positions]
    assert (ex.input_ids[ex.positions] == MASK).sum() == len(ex.positions)
    assert (np.asarray(ids) != ex.input_ids).sum() == len(ex.positions)


def test_random_token_mask_rate_and_determinism():
    ids = [CLS] + list(range(2000, 2100)) + [SEP]
    ex = random_token_mask(ids, MASK, np.random.default_rng(3), special_ids=(CLS, SEP))
    assert len(ex.positions) == 15
    ex2 = random_token_mask(ids, MASK, np.random.default_rng(3), special_ids=(CLS, SEP))
    assert np.array_equal(ex.positions, ex2.positions)
    assert random_token_mask([CLS, SEP], MASK, np.random.default_rng(0), special_ids=(CLS, SEP)) is None


@FAST
@given(n=st.integers(1, 30), mean_len=st.floats(1.0, 5.0),
       lengths=st.none() | st.lists(st.integers(1, 6), min_size=1, max_size=4),
       seed=st.integers(0, 2**31))
def test_random_span_mask_properties(n, mean_len, lengths, seed):
    ids = [CLS] + list(range(3000, 3000 + n)) + [SEP, 0]
    ex = random_span_mask(ids, MASK, np.random.default_rng(seed), mean_len=mean_len,
                          span_lengths=lengths, max_len=5, special_ids=(CLS, SEP, 0))
    pos = ex.positions.tolist()
    assert pos == list(range(pos[0], pos[0] + len(pos)))  # contiguous
    assert 1 <= len(pos) <= min(5, n)
    if lengths is not None:
        assert len(pos) in {min(L, 5, n) for L in lengths}
    assert all(ids[p] not in (CLS, SEP, 0) for p in pos)
    assert ex.targets.tolist() == [ids[p] for p in pos]


def test_random_span_respects_special_tokens_between_segments():
    ids = [CLS, 1, 2, SEP, 3, 4, 5, SEP]
    for seed in range(30):
        ex = random_span_mask(ids, MASK, np.random.default_rng(seed), span_lengths=[3],
                              special_ids=(CLS, SEP))
        assert ex.positions.tolist() == [4, 5, 6]
    lens = [len(random_span_mask(list(range(500, 600)), MASK, np.random.default_rng(s),
                                 mean_len=3.0, max_len=100).positions) for s in range(300)]
    assert 2.5 < np.mean(lens) < 3.5  # geometric with mean 3
    assert random_span_mask([CLS, SEP], MASK, np.random.default_rng(0), special_ids=(CLS, SEP)) is None
