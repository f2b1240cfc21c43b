"""The built-in "knowledge world": a fictional encyclopedia plus QA pairs.

A world is a set of entities (people, places, organisations, works) with
relations between them, generated deterministically from ``(num_entities,
seed, style)``.  Two styles: ``encyclopedia`` (the default; every question
names one rare entity, which suits lexical retrieval) and ``people`` (families
sharing surnames, reused given names, relatives and friends named in each
other's articles, list-valued answers; see :mod:`realm.data.world_people`).  From the facts we render one article per entity and NQ-open style
questions whose answers occur verbatim in the article of the entity asked
about.  Since every name is invented, no pretrained model knows the facts.

Rendering is a pure function of the facts: every random choice made while
writing a sentence (template, way of naming the subject, position) comes from
a hash of ``(world seed, entity id, relation)``, so :func:`edit_fact` changes
only the sentences that state the edited fact.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from realm.data import world_lexicon as L
from realm.data.errors import InputError
from realm.data.world_lexicon import Namer, make_title
from realm.data.world_people import people_facts

FORMAT_VERSION = 1
MIN_ENTITIES = 20
MAX_SENTENCES = 14
MAX_LIST_ITEMS = 3

# kind -> (share of all entities, minimum count)
KIND_SHARES = {
    "country": (0.02, 1), "region": (0.05, 1), "city": (0.13, 2),
    "person": (0.42, 4), "company": (0.08, 3), "band": (0.04, 1),
    "university": (0.03, 1), "book": (0.10, 1), "album": (0.06, 1),
    "film": (0.07, 1),
}
KINDS = tuple(KIND_SHARES)
DESCRIPTOR = {k: "the " + k for k in KINDS}

_ORG = ("company", "university")
# kind -> relation -> value type ("entity" with allowed target kinds, or a
# literal type).  The first relation is the lead sentence of the article.
SCHEMA = {
    "person": {"occupation": "text", "birth_date": "date", "birthplace": ("city",),
               "employer": _ORG, "member_of": ("band",), "mentor": ("person",),
               "gender": "gender"},
    "city": {"region": ("region",), "founded_year": "year", "population": "number"},
    "region": {"country": ("country",), "capital": ("city",)},
    "country": {"language": "text", "capital": ("city",), "founded_year": "year"},
    "company": {"industry": "text", "founded_year": "year", "founder": ("person",),
                "headquarters": ("city",)},
    "band": {"genre": "text", "founded_year": "year", "founder": ("person",),
             "origin": ("city",)},
    "university": {"location": ("city",), "founded_year": "year", "founder": ("person",)},
    "book": {"genre": "text", "author": ("person",), "publication_year": "year",
             "publisher": ("company",)},
    "album": {"artist": ("band",), "release_year": "year", "label": ("company",)},
    "film": {"director": ("person",), "release_year": "year", "studio": ("company",),
             "filming_location": ("city",)},
}
# relations whose reverse-list items carry a year / birth date of the source
_ITEM_DETAIL = {"birthplace": "birth_date", "author": "publication_year",
                "artist": "release_year", "director": "release_year",
                "publisher": "publication_year", "label": "release_year",
                "studio": "release_year", "founder": "founded_year"}

_LITERAL_CHECKS = {
    "date": re.compile(r"[1-9]\d? (%s) \d{1,4}" % "|".join(L.MONTHS)),
    "year": re.compile(r"\d{1,4}"),
    "number": re.compile(r"\d{1,3}(,\d{3})*"),
    "text": re.compile(r"[^\n]+"),
    "gender": re.compile(r"female|male"),
}


@dataclass(frozen=True)
class Many:
    """Schema type of a list-valued relation: a list of ids of entities of ``kinds``."""
    kinds: tuple


# The people world's schema; list answers are explained at :func:`_answers`.
_PERSONS = Many(("person",))
PEOPLE_SCHEMA = {
    "person": {"occupation": "text", "birth_date": "date", "birthplace": ("city",),
               "hometown": ("city",), "employer": ("company",), "spouse": ("person",),
               "parents": _PERSONS, "children": _PERSONS, "siblings": _PERSONS,
               "friends": _PERSONS, "colleagues": _PERSONS, "acquaintances": _PERSONS,
               "gender": "gender"},
    "city": {"founded_year": "year", "population": "number"},
    "company": SCHEMA["company"],
}


@dataclass(frozen=True)
class Style:
    """What a world style writes: its schema and the wording of its articles and questions."""
    name: str
    schema: dict
    facts: dict  # kind -> relation -> fact templates
    questions: dict  # kind -> relation -> question templates (relations not here are not asked)
    reverse: dict  # relation -> sentences in the article of the entity pointed to
    fillers: dict  # kind -> fact-free sentences
    item_detail: dict  # reverse relation -> the source's fact shown in brackets after its name
    min_fillers: int  # filler sentences per article, at least
    max_sentences: int  # reverse-list sentences are dropped beyond this

    @property
    def kinds(self) -> tuple:
        return tuple(self.schema)

    def lead(self, kind: str) -> str:
        return next(iter(self.schema[kind]))


STYLES = {
    "encyclopedia": Style("encyclopedia", SCHEMA, L.FACT_TEMPLATES, L.QUESTION_TEMPLATES,
                          L.REVERSE_TEMPLATES, L.FILLERS, _ITEM_DETAIL, 3, MAX_SENTENCES),
    "people": Style("people", PEOPLE_SCHEMA, L.PEOPLE_FACT_TEMPLATES,
                    L.PEOPLE_QUESTION_TEMPLATES, L.PEOPLE_REVERSE_TEMPLATES, L.PEOPLE_FILLERS,
                    {"birthplace": "birth_date", "founder": "founded_year"}, 4, 20),
}


def _style(name: str) -> Style:
    if name not in STYLES:
        raise ValueError("unknown world style %r; choose from %s" % (name, ", ".join(STYLES)))
    return STYLES[name]


@dataclass
class Entity:
    id: str
    kind: str
    name: str
    attrs: dict = field(default_factory=dict)


@dataclass
class World:
    seed: int
    entities: list
    documents: list
    questions: dict
    style: str = "encyclopedia"
    recap: int = 0  # facts restated after each article's lead (generate_world)


def _h(seed: int, *parts: str) -> int:
    """Stable 64-bit hash of the seed and string parts."""
    data = ("%d|" % seed + "|".join(parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _is_entity_rel(kind: str, rel: str, style: Style) -> bool:
    return isinstance(style.schema[kind].get(rel), (tuple, Many))


def _targets(ent: Entity, rel: str, style: Style) -> list:
    """Ids of the entities ``ent``'s ``rel`` points to (none for a literal)."""
    vtype = style.schema[ent.kind].get(rel)
    v = ent.attrs[rel]
    return list(v) if isinstance(vtype, Many) else [v] if isinstance(vtype, tuple) else []


def _kind_counts(n: int) -> dict:
    counts = {k: max(lo, int(share * n)) for k, (share, lo) in KIND_SHARES.items()}
    counts["person"] += n - sum(counts.values())
    if counts["person"] < KIND_SHARES["person"][1]:
        raise ValueError("num_entities=%d is too small" % n)
    return counts


# --------------------------------------------------------------- the facts
def _generate_entities(num_entities: int, seed: int) -> list:
    rng = random.Random(seed)
    namer = Namer(rng)
    counts = _kind_counts(num_entities)
    slots = [k for k in KINDS for _ in range(counts[k])]
    rng.shuffle(slots)
    width = max(6, len(str(num_entities)))
    ids = {k: [] for k in KINDS}
    for i, kind in enumerate(slots):
        ids[kind].append("E%0*d" % (width, i))
    ents: dict[str, Entity] = {}

    def add(kind, eid, name, **attrs):
        ents[eid] = Entity(eid, kind, name, attrs)
        return ents[eid]

    def pick(kind):
        return rng.choice(ids[kind])

    for eid in ids["country"]:
        add("country", eid, namer.unique(lambda: namer.word(L.COUNTRY_ENDINGS)),
            language=namer.word(L.LANGUAGE_ENDINGS),
            founded_year=str(rng.randint(1150, 1960)))
    for i, eid in enumerate(ids["region"]):  # every country gets a region first
        country = ids["country"][i] if i < len(ids["country"]) else pick("country")
        add("region", eid, namer.unique(lambda: namer.word(L.REGION_ENDINGS)), country=country)
    city_weight = []
    for i, eid in enumerate(ids["city"]):
        region = ids["region"][i] if i < len(ids["region"]) else pick("region")
        pop = int(10 ** rng.uniform(3, 6.5)) // 100 * 100 + 100
        add("city", eid, namer.unique(lambda: namer.word(L.CITY_ENDINGS)), region=region,
            founded_year=str(rng.randint(600, 1900)), population=f"{pop:,}")
        city_weight.append(pop ** 0.5)
    cities_of = {r: [] for r in ids["region"]}
    for c in ids["city"]:
        cities_of[ents[c].attrs["region"]].append(c)
    for r in ids["region"]:
        if cities_of[r]:
            ents[r].attrs["capital"] = rng.choice(cities_of[r])
    country_cities = {c: [] for c in ids["country"]}
    for r in ids["region"]:
        country_cities[ents[r].attrs["country"]].extend(cities_of[r])
    for c in ids["country"]:
        ents[c].attrs["capital"] = rng.choice(country_cities[c] or ids["city"])

    # people
    n_people = len(ids["person"])
    firsts = {g: [namer.word(ends, 1, 2) for _ in range(max(20, n_people // 15))]
              for g, ends in (("female", L.FEMALE_ENDINGS), ("male", L.MALE_ENDINGS))}
    surnames = [namer.word(L.SURNAME_ENDINGS, 1, 2) for _ in range(max(40, n_people // 3))]
    birthplaces = rng.choices(ids["city"], weights=city_weight, k=n_people)
    for eid, place in zip(ids["person"], birthplaces):
        gender = rng.choice(("female", "male"))
        name = namer.unique(lambda: rng.choice(firsts[gender]) + " " + rng.choice(surnames))
        month = rng.randrange(12)
        day = rng.randint(1, 28 if month == 1 else 30 + (month in (0, 2, 4, 6, 7, 9, 11)))
        musician = rng.random() < 0.12
        occ = rng.choice(L.MUSICIAN_OCCUPATIONS if musician else L.OCCUPATIONS)
        add("person", eid, name, occupation=occ, gender=gender, birthplace=place,
            birth_date="%d %s %d" % (day, L.MONTHS[month], rng.randint(1720, 1995)))
    people = ids["person"]
    year = {p: int(ents[p].attrs["birth_date"].rsplit(" ", 1)[1]) for p in people}
    by_year = sorted(people, key=lambda p: (year[p], p))
    years_sorted = [year[p] for p in by_year]
    musicians = [p for p in people if ents[p].attrs["occupation"] in L.MUSICIAN_OCCUPATIONS]

    def person_born(lo, hi, pool=None):
        for _ in range(20):
            p = rng.choice(pool or people)
            if lo <= year[p] <= hi:
                return p
        return p

    def founded(kind, eid, name, founder, **attrs):
        y = min(2023, year[founder] + rng.randint(20, 55))
        return add(kind, eid, name, founded_year=str(y), founder=founder, **attrs)

    media = list(L.COMPANY_SUFFIXES)  # every kind of work needs a publisher
    industries = media + [rng.choice(media) if rng.random() < 0.3 else rng.choice(L.INDUSTRIES)
                          for _ in range(len(ids["company"]) - len(media))]
    rng.shuffle(industries)
    for eid, ind in zip(ids["company"], industries):
        suffixes = L.COMPANY_SUFFIXES.get(ind, L.GENERAL_COMPANY_SUFFIXES)
        name = namer.unique(lambda: namer.word((), 1, 2) + " " + rng.choice(suffixes))
        founded("company", eid, name, rng.choice(people), industry=ind,
                headquarters=pick("city"))
    for eid in ids["band"]:
        name = namer.unique(lambda: rng.choice(("", "The ")) + namer.word((), 1, 2)
                            + " " + rng.choice(L.BAND_SUFFIXES))
        founded("band", eid, name, person_born(1880, 2000, musicians), genre=rng.choice(
            L.MUSIC_GENRES), origin=pick("city"))
    for eid in ids["university"]:
        pattern = rng.choice(L.UNIVERSITY_PATTERNS)
        name = namer.unique(lambda: pattern.format(w=namer.word((), 1, 2)))
        founded("university", eid, name, rng.choice(people), location=pick("city"))

    media_cos = {}  # industry -> (founding years, ids), sorted by year
    for ind in media:
        cos = sorted((int(ents[c].attrs["founded_year"]), c) for c in ids["company"]
                     if ents[c].attrs["industry"] == ind)
        media_cos[ind] = ([y for y, _ in cos], [c for _, c in cos])

    def company(ind, y):  # preferably one founded by year y
        years, cos = media_cos[ind]
        return cos[rng.randrange(bisect.bisect_right(years, y) or len(cos))]
    employers = ids["company"] + ids["university"]
    for p in people:
        a = ents[p].attrs
        if a["occupation"] in L.MUSICIAN_OCCUPATIONS:
            a["member_of"] = pick("band")
        else:
            a["employer"] = rng.choice(employers)
        if rng.random() < 0.6:  # a mentor born 12-45 years earlier
            lo = bisect.bisect_left(years_sorted, year[p] - 45)
            hi = bisect.bisect_right(years_sorted, year[p] - 12)
            if hi > lo:
                a["mentor"] = by_year[rng.randrange(lo, hi)]

    for eid in ids["book"]:
        author = rng.choice(people)
        y = min(2023, year[author] + rng.randint(20, 70))
        add("book", eid, make_title(namer, "book"), genre=rng.choice(L.BOOK_GENRES),
            author=author, publication_year=str(y), publisher=company("publishing", y))
    for eid in ids["album"]:
        band = pick("band")
        y = min(2023, int(ents[band].attrs["founded_year"]) + rng.randint(0, 30))
        add("album", eid, make_title(namer, "album"), artist=band, release_year=str(y),
            label=company("music recording", y))
    for eid in ids["film"]:
        director = person_born(1850, 1990)
        y = min(2023, max(1900, year[director] + rng.randint(25, 60)))
        add("film", eid, make_title(namer, "film"), director=director, release_year=str(y),
            studio=company("film production", y), filming_location=pick("city"))
    return [ents[e] for e in sorted(ents)]


# ------------------------------------------------------------------ writing
def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _article_a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _subject(ent: Entity, mode: str, template: str) -> dict:
    """Forms of the subject for ``template``; mode is 'full', 'short' (surname or
    "the city") or 'pronoun'.  A second mention inside one sentence is a pronoun."""
    if ent.kind == "person":
        fem = ent.attrs.get("gender") == "female"
        pron = ("she", "her", "her") if fem else ("he", "his", "him")
        if mode == "pronoun":
            s, p, o = pron
        else:
            s = o = ent.name if mode == "full" else ent.name.split()[-1]
            p = s + "'s"
            if "{p}" in template and ("{S}" in template or "{s}" in template or "{o}" in template):
                p = pron[1]
    else:
        s = o = ent.name if mode == "full" else DESCRIPTOR[ent.kind]
        p = s + "'s"
    return {"S": _cap(s), "s": s, "P": _cap(p), "p": p, "o": o, "N": ent.name}


def _mode(ent: Entity, x: int) -> str:
    x %= 100
    if ent.kind == "person":
        return "full" if x < 40 else "short" if x < 65 else "pronoun"
    return "full" if x < 60 else "short"


def _value(ent: Entity, rel: str, by_id: dict, style: Style) -> str:
    v = ent.attrs[rel]
    if isinstance(style.schema[ent.kind].get(rel), Many):
        return _join([by_id[i].name for i in v])
    return by_id[v].name if _is_entity_rel(ent.kind, rel, style) else v


def _fact_templates(ent: Entity, rel: str, style: Style) -> tuple:
    """A list of one item has its own wording ("Her only child was ...") where one exists."""
    table = style.facts[ent.kind]
    single = isinstance(style.schema[ent.kind].get(rel), Many) and len(ent.attrs[rel]) == 1
    return table.get(rel + "/1", table[rel]) if single else table[rel]


def _render(seed: int, ent: Entity, by_id: dict, incoming: dict, style: Style, recap: int = 0) -> str:
    """An article: the lead sentence, ``recap`` facts restated (see :func:`generate_world`), the body (facts and
    fillers in a hashed order), then reverse-list sentences while there is room."""
    eid, kind = ent.id, ent.kind
    templates, lead_rel = style.facts[kind], style.lead(kind)
    lead, body, restated = "", [], []
    for rel in style.schema[kind]:
        if rel not in ent.attrs or rel not in templates:
            continue
        h = _h(seed, eid, rel)
        tpls = _fact_templates(ent, rel, style)
        value = _value(ent, rel, by_id, style)
        tpl = tpls[h % len(tpls)]
        forms = _subject(ent, "full" if rel == lead_rel else _mode(ent, h >> 8), tpl)
        sent = _cap(tpl.format(O=value, a=_article_a(value), **forms))
        if rel == lead_rel:
            lead = sent
        else:
            body.append((h >> 32, sent))
            if recap > 0:
                other = tpls[(h + 1) % len(tpls)]  # the restatement uses another wording where there is one
                restated.append((h >> 32, _cap(other.format(O=value, a=_article_a(value),
                                                             **_subject(ent, "full", other)))))
    r = random.Random(_h(seed, eid, "filler"))
    fillers = style.fillers[kind]
    n_fill = min(len(fillers), max(style.min_fillers, 6 + r.randrange(3) - len(body)))
    for i in r.sample(range(len(fillers)), n_fill):
        mode = "short" if r.random() < 0.5 else "pronoun"
        body.append((r.getrandbits(32), fillers[i].format(**_subject(ent, mode, fillers[i]))))
    body.sort()
    # the facts told last in the body (most often in a later block) are restated next to the lead
    recap_sents = [t for _, t in sorted(restated)[len(restated) - min(recap, len(restated)):]]
    tail = []
    for rel, sources in incoming.get(eid, {}).items():
        h = _h(seed, eid, "rev", rel)
        items = []
        for src in sorted(sources)[:MAX_LIST_ITEMS]:
            s = by_id[src]
            detail = s.attrs.get(style.item_detail.get(rel, ""), "")
            if detail and rel == "birthplace":
                detail = "born " + detail
            items.append(s.name + (" (%s)" % detail if detail else ""))
        tpls = style.reverse[rel]
        tail.append((h >> 32, _cap(tpls[h % len(tpls)].format(T=ent.name, L=_join(items)))))
    tail.sort()
    room = style.max_sentences - 1 - len(body)
    return " ".join([lead] + recap_sents + [s for _, s in body] + [s for _, s in tail[:max(0, room)]])


def _incoming(entities: list, style: Style, targets=None) -> dict:
    """target id -> relation -> sorted source ids, for the relations that have reverse
    sentences (only for ``targets`` if given)."""
    inc: dict = {}
    for e in entities:  # entities are sorted by id, so source lists are too
        for rel in e.attrs:
            if rel in style.reverse and _is_entity_rel(e.kind, rel, style):
                for v in _targets(e, rel, style):
                    if targets is None or v in targets:
                        inc.setdefault(v, {}).setdefault(rel, []).append(e.id)
    return inc


def _document(seed, ent, by_id, incoming, style, recap: int = 0) -> dict:
    return {"id": ent.id, "title": ent.name, "text": _render(seed, ent, by_id, incoming, style, recap)}


def render_documents(seed: int, entities: list, style: str = "encyclopedia", recap: int = 0) -> list:
    """One article per entity, in entity order; a pure function of the facts."""
    st = _style(style)
    by_id = {e.id: e for e in entities}
    incoming = _incoming(entities, st)
    return [_document(seed, e, by_id, incoming, st, recap) for e in entities]


def _answers(ent: Entity, rel: str, by_id: dict, style: Style) -> list:
    """Gold answers.  For a list-valued fact (NQ-open style, any gold string counts):
    each item's name, then, for two or more items, the whole list as the article
    writes it ("A, B and C").  Each is one contiguous span of the subject's article,
    so a span reader can get exact match by naming any one item or the full list."""
    if isinstance(style.schema[ent.kind].get(rel), Many):
        names = [by_id[i].name for i in ent.attrs[rel]]
        return names + ([_join(names)] if len(names) > 1 else [])
    return [_value(ent, rel, by_id, style)]


def _question(seed: int, ent: Entity, rel: str, by_id: dict, style: Style, h=None) -> dict:
    tpls = style.questions[ent.kind][rel]
    h = _h(seed, ent.id, "q", rel) if h is None else h
    return {"question": tpls[h % len(tpls)].format(E=ent.name),
            "answer": _answers(ent, rel, by_id, style), "entity_id": ent.id, "relation": rel}


def build_questions(seed: int, entities: list, split=(0.8, 0.1, 0.1),
                    style: str = "encyclopedia") -> dict:
    """Questions for every askable fact, split at random (by hash) into train/dev/test
    with exact proportions; each split sorted by (entity id, relation)."""
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError("split must be three non-negative fractions summing to 1, got %r"
                         % (split,))
    st = _style(style)
    by_id = {e.id: e for e in entities}
    keyed = []  # (split key, question); the hash also picks the question's wording
    for e in entities:
        for rel in st.schema[e.kind]:
            if rel in e.attrs and rel in st.questions.get(e.kind, {}):
                h = _h(seed, e.id, "q", rel)
                keyed.append(((h >> 8, e.id, rel), _question(seed, e, rel, by_id, st, h)))
    keyed.sort(key=lambda kq: kq[0])
    qs = [q for _, q in keyed]
    n_train, n_dev = round(split[0] * len(qs)), round(split[1] * len(qs))
    cuts = {"train": qs[:n_train], "dev": qs[n_train:n_train + n_dev],
            "test": qs[n_train + n_dev:]}
    key = lambda q: (q["entity_id"], q["relation"])  # noqa: E731
    return {name: sorted(part, key=key) for name, part in cuts.items()}


def generate_world(num_entities: int, seed: int, split=(0.8, 0.1, 0.1),
                   style: str = "encyclopedia", recap: int = 0) -> World:
    """Generate a world of ``num_entities`` entities, deterministically from ``seed``.

    ``recap``: each article restates that many of its facts right after the lead sentence, with the subject's
    full name and another wording where there is one, as a Wikipedia lead restates the body. A fact is then
    told twice in its subject's article, most often in two different blocks: masked in one, it can be read
    in the other, so REALM's own-block exclusion leaves evidence about the same subject (0: each fact once)."""
    if isinstance(num_entities, bool) or not isinstance(num_entities, int) or num_entities < MIN_ENTITIES:
        raise InputError("world", None, "--entities (num_entities) must be an integer >= %d, got %r"
                         % (MIN_ENTITIES, num_entities))  # an InputError: the CLI prints it and exits with 2
    if isinstance(recap, bool) or not isinstance(recap, int) or recap < 0:
        raise InputError("world", None, "--recap must be an integer >= 0, got %r" % (recap,))
    _style(style)
    if style == "people":
        entities = [Entity(*rec) for rec in people_facts(num_entities, seed)]
    else:
        entities = _generate_entities(num_entities, seed)
    return World(seed=seed, entities=entities,
                 documents=render_documents(seed, entities, style, recap),
                 questions=build_questions(seed, entities, split, style), style=style, recap=recap)


# ------------------------------------------------------------------ editing
def _check_value(ent: Entity, relation: str, new_value, by_id: dict, style: Style) -> None:
    vtype = style.schema[ent.kind][relation]
    if isinstance(vtype, Many):
        ok = (isinstance(new_value, list) and new_value and len(set(new_value)) == len(new_value)
              and all(isinstance(v, str) and v in by_id and by_id[v].kind in vtype.kinds
                      and v != ent.id for v in new_value))
        if not ok:
            raise ValueError("%s.%s must be a non-empty list of distinct ids of other %s "
                             "entities, got %r" % (ent.kind, relation, "/".join(vtype.kinds),
                                                   new_value))
    elif isinstance(vtype, tuple):
        target = by_id.get(new_value) if isinstance(new_value, str) else None
        if target is None or target.kind not in vtype or new_value == ent.id:
            raise ValueError("%s.%s must be the id of another %s entity, got %r"
                             % (ent.kind, relation, "/".join(vtype), new_value))
    elif not isinstance(new_value, str) or not _LITERAL_CHECKS[vtype].fullmatch(new_value):
        raise ValueError("%s.%s needs a %s literal, got %r" % (ent.kind, relation, vtype,
                                                               new_value))


def edit_fact(world: World, entity_id: str, relation: str, new_value) -> World:
    """Return a new World in which ``entity_id``'s ``relation`` is ``new_value``.

    ``new_value`` is an entity id for relations between entities, a list of ids
    for list-valued ones (people world: children, friends ...), else a literal
    (e.g. "14 March 1873", "1873").  Articles mentioning the fact and the
    question asking about it are updated; everything else is left identical.
    A fact belongs to its subject: editing X's children leaves the children's
    own "parents" facts as they were.
    """
    style = _style(world.style)
    by_id = {e.id: e for e in world.entities}
    if entity_id not in by_id:
        raise ValueError("unknown entity id %r" % entity_id)
    ent = by_id[entity_id]
    if relation not in ent.attrs:
        raise ValueError("entity %s (%s) has no %r fact; it has: %s"
                         % (entity_id, ent.kind, relation, ", ".join(sorted(ent.attrs))))
    _check_value(ent, relation, new_value, by_id, style)
    new_ent = Entity(ent.id, ent.kind, ent.name, {**ent.attrs, relation: new_value})
    entities = [new_ent if e.id == entity_id else e for e in world.entities]
    by_id[entity_id] = new_ent
    # The entity's own article, and those of everything it points to (before and
    # after the edit), whose reverse sentences may mention it.
    affected = {entity_id} | {t for e in (ent, new_ent) for r in e.attrs
                              for t in _targets(e, r, style)}
    incoming = _incoming(entities, style, affected)
    documents = [_document(world.seed, by_id[d["id"]], by_id, incoming, style, world.recap)
                 if d["id"] in affected else d for d in world.documents]
    questions = {}
    for name, qs in world.questions.items():
        questions[name] = [_question(world.seed, new_ent, relation, by_id, style)
                           if q["entity_id"] == entity_id and q["relation"] == relation
                           else q for q in qs]
    return World(seed=world.seed, entities=entities, documents=documents, questions=questions,
                 style=world.style, recap=world.recap)


# ------------------------------------------------------------------ files
def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def world_summary(world: World) -> dict:
    kinds = {k: 0 for k in _style(world.style).kinds}
    for e in world.entities:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    docs = world.documents
    words = sum(len(d["text"].split()) for d in docs)
    return {"style": world.style, "seed": world.seed, "recap": world.recap, "num_entities": len(world.entities),
            "entities_by_kind": kinds, "documents": len(docs),
            "questions": {k: len(v) for k, v in world.questions.items()},
            "mean_article_words": round(words / max(1, len(docs)), 2)}


def write_world(world: World, out_dir) -> dict:
    """Write the world's files into ``out_dir``; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"corpus": out / "corpus.jsonl", "entities": out / "entities.jsonl",
             "world": out / "world.json"}
    _write_jsonl(paths["corpus"], sorted(world.documents, key=lambda d: d["id"]))
    for split in ("train", "dev", "test"):
        paths["qa-" + split] = out / ("qa-%s.jsonl" % split)
        _write_jsonl(paths["qa-" + split], sorted(
            world.questions.get(split, []), key=lambda q: (q["entity_id"], q["relation"])))
    _write_jsonl(paths["entities"], ({"id": e.id, "kind": e.kind, "name": e.name,
                                      "attrs": dict(sorted(e.attrs.items()))}
                                     for e in sorted(world.entities, key=lambda e: e.id)))
    meta = {"format_version": FORMAT_VERSION, **world_summary(world),
            "files": {k: p.name for k, p in paths.items()}}
    paths["world"].write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False)
                              + "\n", encoding="utf-8")
    return paths


def read_world(out_dir) -> World:
    """Load a world written by :func:`write_world`."""
    out = Path(out_dir)
    meta = json.loads((out / "world.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError("unsupported world format version %r" % meta.get("format_version"))
    entities = [Entity(r["id"], r["kind"], r["name"], r["attrs"])
                for r in _read_jsonl(out / "entities.jsonl")]
    questions = {s: _read_jsonl(out / ("qa-%s.jsonl" % s)) for s in ("train", "dev", "test")}
    style = meta.get("style", "encyclopedia")  # worlds written before styles existed
    _style(style)
    return World(seed=meta["seed"], entities=entities, documents=_read_jsonl(out / "corpus.jsonl"),
                 questions=questions, style=style, recap=int(meta.get("recap", 0)))
