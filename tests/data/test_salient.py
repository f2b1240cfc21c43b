"""Tests for realm.data.salient (expected spans written by hand)."""

import pytest

from realm.data.salient import (
    RulesTagger,
    Span,
    find_dates,
    find_salient_spans,
    get_tagger,
    resolve_overlaps,
)


def tagged(text, **kw):
    return [(text[s.start:s.end], s.label) for s in find_salient_spans(text, **kw)]


@pytest.mark.parametrize("text,expected", [
    ("Elsa Mirrow was born in Varnholt on 3 May 1881.",
     [("Elsa Mirrow", "NAME"), ("Varnholt", "NAME"), ("3 May 1881", "DATE")]),
    ("The Order of Quill was founded in 1873 by Tomas Vell.",
     [("Order of Quill", "NAME"), ("1873", "DATE"), ("Tomas Vell", "NAME")]),
    ("In March 1873, the University of Varnholt opened. She studied there in the 1870s.",
     [("March 1873", "DATE"), ("University of Varnholt", "NAME"), ("1870s", "DATE")]),
    ("The treaty was signed on March 14, 1873 in Paris.",
     [("March 14, 1873", "DATE"), ("Paris", "NAME")]),
    ("It rained on 14 March 1873. He stayed home.", [("14 March 1873", "DATE")]),
    ("Ludwig van Beethoven moved to Vienna in 1792.",
     [("Ludwig van Beethoven", "NAME"), ("Vienna", "NAME"), ("1792", "DATE")]),
    ("Tomas Vell's book sold 1,873 copies and cost 2500 marks.", [("Tomas Vell", "NAME")]),
    ("This is a plain sentence with no entities at all.", []),
    ("She said it was late. They left.", []),
    ("Varnholt is a small city.", [("Varnholt", "NAME")]),
    ("Later the Bank of England raised rates.", [("Bank of England", "NAME")]),
    ("I visited Berlin on Monday.", [("Berlin", "NAME")]),
])
def test_rules_tagger_expected_spans(text, expected):
    assert tagged(text) == expected


def test_offsets_are_char_offsets_sorted_and_disjoint():
    text = "Elsa Mirrow was born in Varnholt on 3 May 1881."
    spans = find_salient_spans(text)
    assert spans == [Span(0, 11, "NAME"), Span(24, 32, "NAME"), Span(36, 46, "DATE")]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


def test_dates_regex_variants():
    text = "Events: 1066, 3rd of May 1881, Dec. 1900, June 5, the 1990s, 12345, 3000, 1873.5."
    found = [text[s.start:s.end] for s in resolve_overlaps(find_dates(text))]
    assert found == ["1066", "3rd of May 1881", "Dec. 1900", "June 5", "1990s"]


def test_overlap_resolution_date_wins_then_longest():
    spans = [Span(0, 10, "NAME"), Span(5, 9, "DATE"), Span(12, 20, "NAME"), Span(12, 15, "NAME")]
    assert resolve_overlaps(spans) == [Span(5, 9, "DATE"), Span(12, 20, "NAME")]


def test_gazetteer_marks_exact_phrases():
    text = "the quill society met at varnholt hall in 1901."
    assert tagged(text) == [("1901", "DATE")]
    assert tagged(text, gazetteer={"quill society", "varnholt hall", "absent"}) == [
        ("quill society", "NAME"), ("varnholt hall", "NAME"), ("1901", "DATE")]
    # whole words only
    assert tagged("squill societyx", gazetteer={"quill society"}) == []


def test_get_tagger():
    tagger = get_tagger("rules", gazetteer={"quill"})
    assert isinstance(tagger, RulesTagger)
    assert tagger("a quill.") == [Span(2, 7, "NAME")]
    with pytest.raises(ValueError):
        get_tagger("nope")
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="spaCy"):
            get_tagger("spacy")
