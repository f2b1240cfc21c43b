"""Salient-span tagging for REALM's salient span masking (Guu et al. 2020, §3.4 "Salient span masking").

The paper masks named entities (found with a BERT tagger trained on CoNLL-2003) and dates (found with a
regular expression).  The tagger was never released, so this module provides:

* :class:`RulesTagger` / :func:`find_salient_spans` — dependency-free: dates by regular expression,
  names by capitalisation rules, optional exact-match gazetteer;
* :class:`SpacyTagger` — spaCy NER (only if spaCy and a model are installed) plus the same date regex;
* :func:`get_tagger` — factory by name (``"rules"`` | ``"spacy"``).

Spans are character offsets ``[start, end)`` into the text, labelled ``"DATE"`` or ``"NAME"``.
Overlaps are resolved greedily: DATE beats NAME, then the longer span wins, then the earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

__all__ = ["Span", "find_salient_spans", "find_dates", "find_names", "find_gazetteer",
           "resolve_overlaps", "RulesTagger", "SpacyTagger", "get_tagger", "DATE", "NAME"]

DATE = "DATE"
NAME = "NAME"


@dataclass(frozen=True, order=True)
class Span:
    """A salient span: character offsets ``[start, end)`` and a label (``"DATE"`` or ``"NAME"``)."""

    start: int
    end: int
    label: str

    def text(self, s: str) -> str:
        return s[self.start:self.end]


# --------------------------------------------------------------------------------------------- dates
_MONTHS = ("January February March April May June July August September October November December"
           .split())
_MONTH_ABBR = "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec".split()
_MONTH = r"(?:" + "|".join(_MONTHS) + r"|(?:" + "|".join(_MONTH_ABBR) + r")\.?)"
_DAY = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})"
_NOT_NUM_BEFORE = r"(?<![\w,.\-/])"
_NOT_NUM_AFTER = r"(?![\w\-/]|[.,]\d)"
_DATE_PATTERNS = [
    # 14 March 1873 / 14th of March 1873 / 14 March
    rf"{_NOT_NUM_BEFORE}{_DAY}(?:\s+of)?\s+{_MONTH}(?:,?\s+{_YEAR})?{_NOT_NUM_AFTER}",
    # March 14, 1873 / March 14
    rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?{_NOT_NUM_AFTER}",
    # March 1873
    rf"\b{_MONTH},?\s+{_YEAR}{_NOT_NUM_AFTER}",
    # 1870s / 1870's
    rf"{_NOT_NUM_BEFORE}(?:1[0-9]{{2}}|20[0-9])0'?s\b",
    # a year standing alone, optionally with an era marker: 1873, AD 1000, 1066 AD
    rf"(?:\b(?:AD|A\.D\.)\s+)?{_NOT_NUM_BEFORE}{_YEAR}(?:\s+(?:AD|BC|CE|BCE)\b)?{_NOT_NUM_AFTER}",
]
_DATE_RE = [re.compile(p) for p in _DATE_PATTERNS]


def find_dates(text: str) -> list[Span]:
    """All regex date matches (possibly overlapping; see :func:`resolve_overlaps`)."""
    out = []
    for rx in _DATE_RE:
        for m in rx.finditer(text):
            s, e = m.span()
            # trailing "." of an abbreviated month at the end is kept; strip trailing spaces/commas
            while e > s and text[e - 1] in " ,":
                e -= 1
            out.append(Span(s, e, DATE))
    return out


# --------------------------------------------------------------------------------------------- names
# Lower-case words allowed *inside* a capitalised run ("University of Varnholt", "Ludwig van Beethoven").
CONNECTORS = frozenset("of de del della der den di da du van von la le the y bin ibn al zu".split())
# Words that, capitalised at the start of a sentence, are ordinary words rather than names.
COMMON_WORDS = frozenset("""
a an the this that these those there here it its he she they we i you his her their our your my me him
them us one some any each every all both either neither no not none many much more most few several
other another such what which who whom whose when where why how whatever whenever however
in on at by for from with without within into onto upon of to as about above below after before
during until till since between among through throughout across along around behind beyond near over
under against toward towards despite unlike like via per
and but or nor so yet if then than because although though while whereas unless once also thus hence
therefore meanwhile moreover furthermore nevertheless instead still later earlier today yesterday
tomorrow now soon often sometimes usually never always again only even just perhaps however indeed
is are was were be been being has have had do does did will would shall should may might must can could
born died after according following during despite located known called named based founded
first second third last next new old many early late most several two three four five six seven eight
nine ten yes oh well please let see note
""".split())
_WEEKDAYS = frozenset("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())
_NON_NAMES = frozenset(_MONTHS) | _WEEKDAYS | {"I"}
_TITLES = frozenset("Mr Mrs Ms Dr Prof St Sr Jr Gen Col Capt Lt Sgt Rev Hon Gov Sen Rep Mt Ft".split())

_WORD_RE = re.compile(r"[^\W\d_](?:[\w'’\-]*\w)?")


def _is_cap(word: str) -> bool:
    return word[0].isupper()


def _sentence_initial(text: str, start: int) -> bool:
    """True if the word at ``start`` begins the text or a line, or follows sentence-final punctuation
    (``.``, ``!``, ``?``, possibly with closing/opening quotes or brackets in between).  A period after
    an initial ("J.") or a title ("Dr.") is not a sentence end."""
    before = text[:start].rstrip().rstrip("\"'“‘([").rstrip()
    if not before or "\n" in text[len(before):start]:
        return True
    before = before.rstrip("\"'”’)]")
    if before.endswith(("!", "?")):
        return True
    if before.endswith("."):
        m = re.search(r"([^\W\d_]+)\.$", before)
        if m and (m.group(1) in _TITLES or (len(m.group(1)) == 1 and m.group(1).isupper())):
            return False
        return True
    return False


def find_names(text: str) -> list[Span]:
    """NAME spans by capitalisation rules.

    A run is a maximal sequence of capitalised words separated only by whitespace (or by ``". "`` after
    an initial or a title such as ``Dr.``), possibly containing lower-case connectors (:data:`CONNECTORS`)
    between two capitalised words.  Then:

    * a sentence-initial first word that is a common word (:data:`COMMON_WORDS`, or a word that also
      occurs in lower case elsewhere in the text) is dropped ("The Order of Quill" → "Order of Quill",
      "In Varnholt" → "Varnholt", "She" → nothing);
    * runs made only of month/weekday names or "I" are dropped (months are left to the date regex);
    * a trailing possessive ``'s`` is excluded.
    """
    words = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(text)]
    lower_vocab = {w for _, _, w in words if w.islower()}
    spans: list[Span] = []
    i = 0
    n = len(words)
    while i < n:
        s, e, w = words[i]
        if not _is_cap(w):
            i += 1
            continue
        run = [i]
        j = i + 1
        while j < n:
            gap = text[words[j - 1][1]:words[j][0]]
            prev = words[j - 1][2]
            if prev.endswith(("'s", "’s")):  # "Vell's Quill": possessive ends the run
                break
            joinable = gap.strip() == "" or (
                gap.strip() == "." and (prev in _TITLES or (len(prev) == 1 and prev.isupper())))
            if not joinable or "\n" in gap:
                break
            wj = words[j][2]
            if _is_cap(wj):
                run.append(j)
                j += 1
                continue
            # connector(s) followed by a capitalised word continue the run
            k = j
            while k < n and words[k][2] in CONNECTORS and text[words[k - 1][1]:words[k][0]].strip() == "":
                k += 1
            if k > j and k < n and _is_cap(words[k][2]) and text[words[k - 1][1]:words[k][0]].strip() == "":
                run.extend(range(j, k + 1))
                j = k + 1
                continue
            break
        i = j
        # drop a sentence-initial common first word
        first = words[run[0]]
        if _sentence_initial(text, first[0]) and (
                first[2].lower() in COMMON_WORDS or first[2].lower() in lower_vocab):
            run = run[1:]
            while run and not _is_cap(words[run[0]][2]):
                run = run[1:]
        if not run:
            continue
        if all(words[r][2].rstrip(".") in _NON_NAMES for r in run):
            continue
        start, end = words[run[0]][0], words[run[-1]][1]
        last = words[run[-1]][2]
        if last.endswith(("'s", "’s")):
            end -= 2
        elif last.endswith(("'", "’")):
            end -= 1
        if end > start:
            spans.append(Span(start, end, NAME))
    return spans


def find_gazetteer(text: str, gazetteer: Iterable[str], label: str = NAME) -> list[Span]:
    """Exact (case-sensitive) whole-word occurrences of each gazetteer phrase."""
    out = []
    for phrase in gazetteer:
        if not phrase:
            continue
        rx = re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)")
        out.extend(Span(m.start(), m.end(), label) for m in rx.finditer(text))
    return out


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a non-overlapping subset: DATE first, then longest, then earliest; sorted by start."""
    order = sorted(set(spans), key=lambda sp: (sp.label != DATE, -(sp.end - sp.start), sp.start))
    kept: list[Span] = []
    for sp in order:
        if sp.end <= sp.start:
            continue
        if all(sp.end <= k.start or k.end <= sp.start for k in kept):
            kept.append(sp)
    return sorted(kept)


def find_salient_spans(text: str, gazetteer: Optional[Iterable[str]] = None) -> list[Span]:
    """Rule-based salient spans of ``text``: regex dates, capitalised-name runs, gazetteer phrases.

    >>> [s.text(t) for t in ["Elsa Mirrow was born in Varnholt on 3 May 1881."]
    ...  for s in find_salient_spans(t)]
    ['Elsa Mirrow', 'Varnholt', '3 May 1881']
    """
    cands = find_dates(text) + find_names(text)
    if gazetteer:
        cands += find_gazetteer(text, gazetteer)
    return resolve_overlaps(cands)


# -------------------------------------------------------------------------------------------- taggers
class RulesTagger:
    """Callable ``text -> list[Span]`` wrapping :func:`find_salient_spans`."""

    name = "rules"

    def __init__(self, gazetteer: Optional[Iterable[str]] = None):
        self.gazetteer = frozenset(gazetteer) if gazetteer else None

    def __call__(self, text: str) -> list[Span]:
        return find_salient_spans(text, self.gazetteer)


class SpacyTagger:
    """spaCy NER entities as NAME spans, plus regex dates (spaCy DATE entities are kept only if they
    contain a digit, so "yesterday" or "the summer" are not masked)."""

    name = "spacy"
    NAME_LABELS = frozenset({"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "WORK_OF_ART",
                             "LAW", "LANGUAGE", "PRODUCT"})

    def __init__(self, model: str = "en_core_web_sm", gazetteer: Optional[Iterable[str]] = None):
        try:
            import spacy  # type: ignore
        except ImportError as exc:  # pragma: no cover - depends on environment
            raise ImportError("SpacyTagger needs spaCy: `pip install spacy` and a model, e.g. "
                              "`python -m spacy download en_core_web_sm`; or use get_tagger('rules')"
                              ) from exc
        try:
            self.nlp = spacy.load(model, disable=["parser", "lemmatizer"])
        except OSError as exc:  # pragma: no cover - depends on environment
            raise ImportError(f"spaCy model {model!r} is not installed: "
                              f"`python -m spacy download {model}`") from exc
        self.gazetteer = frozenset(gazetteer) if gazetteer else None

    def __call__(self, text: str) -> list[Span]:  # pragma: no cover - depends on environment
        cands = find_dates(text)
        for ent in self.nlp(text).ents:
            if ent.label_ in self.NAME_LABELS:
                cands.append(Span(ent.start_char, ent.end_char, NAME))
            elif ent.label_ == "DATE" and any(c.isdigit() for c in ent.text):
                cands.append(Span(ent.start_char, ent.end_char, DATE))
        if self.gazetteer:
            cands += find_gazetteer(text, self.gazetteer)
        return resolve_overlaps(cands)


def get_tagger(name: str = "rules", **kwargs) -> Callable[[str], list[Span]]:
    """Tagger factory: ``"rules"`` → :class:`RulesTagger`, ``"spacy"`` → :class:`SpacyTagger`
    (raises ImportError with install instructions when spaCy or its model is missing)."""
    if name == "rules":
        return RulesTagger(**kwargs)
    if name == "spacy":
        return SpacyTagger(**kwargs)
    raise ValueError(f"unknown tagger {name!r}; expected 'rules' or 'spacy'")
