"""The facts of the "people" world: families, friends and colleagues.

Real corpora are unkind to lexical matching in ways the encyclopedia world is
not: names share their parts and occur in many articles.  Here persons belong
to families that share a surname, a small pool of given names is reused across
families, spouses come from other (or unrelated same-surname) families, and
every person's facts name relatives, friends and colleagues.  Family firms are
named after their family.  A few cities and companies complete the world.

:func:`people_facts` is a pure function of ``(num_entities, seed)`` and returns
plain ``(id, kind, name, attrs)`` records; :mod:`realm.data.world` renders them.
List-valued relations (parents, children, siblings, friends, colleagues) hold
lists of person ids; a relation with no items is left out.
"""
from __future__ import annotations

import bisect
import random
from collections import deque

from realm.data import world_lexicon as L
from realm.data.world_lexicon import Namer

# kind -> (share of all entities, minimum count); persons take the rest
PLACE_SHARES = {"city": (0.08, 2), "company": (0.08, 2)}
MAX_FRIENDS = 4
MAX_COLLEAGUES = 3
CHILDREN_WEIGHTS = (1, 2, 3, 2.5, 1.5)  # 0..4 children per couple
MARRY_SHARE = 0.7
FAMILY_FIRM_SHARE = 0.4  # of people whose surname has a family firm, those who work there


def _kind_counts(n: int) -> dict:
    counts = {k: max(lo, int(share * n)) for k, (share, lo) in PLACE_SHARES.items()}
    counts["person"] = n - sum(counts.values())
    if counts["person"] < 8:
        raise ValueError("num_entities=%d is too small for a people world" % n)
    return counts


class _Family:
    """Grows the population: founding couples, their children, marriages."""

    def __init__(self, rng: random.Random, namer: Namer, ids: list):
        self.rng, self.namer, self.ids = rng, namer, ids
        n = len(ids)
        self.firsts = {g: [namer.word(ends, 1, 2) for _ in range(max(6, n // 40))]
                       for g, ends in (("female", L.FEMALE_ENDINGS), ("male", L.MALE_ENDINGS))}
        self.surnames = [namer.word(L.SURNAME_ENDINGS, 1, 2) for _ in range(max(5, n // 16))]
        self.people: list = []  # dicts in creation order
        self.couples: deque = deque()
        self.singles: list = []  # people waiting for a spouse
        self.founded = 0

    def room(self) -> int:
        return len(self.ids) - len(self.people)

    def person(self, gender, surname, year, parents=()) -> dict:
        rng = self.rng
        for _ in range(200):
            name = rng.choice(self.firsts[gender]) + " " + surname
            if name not in self.namer.names:
                break
        else:  # every given name is taken with this surname: invent one more
            self.firsts[gender].append(self.namer.word(
                L.FEMALE_ENDINGS if gender == "female" else L.MALE_ENDINGS, 1, 2))
            name = self.firsts[gender][-1] + " " + surname
        self.namer.names.add(name)
        p = {"id": self.ids[len(self.people)], "name": name, "surname": surname,
             "gender": gender, "year": year, "parents": list(parents), "spouse": None}
        self.people.append(p)
        return p

    def marry(self, a: dict, b: dict) -> None:
        a["spouse"], b["spouse"] = b, a
        self.couples.append((a, b) if a["gender"] == "male" else (b, a))

    def found(self) -> None:
        """A couple without recorded parents; the first ones start distinct families."""
        rng = self.rng
        surname = self.surnames[self.founded % len(self.surnames)]
        self.founded += 1
        year = rng.randint(1820, 1880)
        husband = self.person("male", surname, year)
        wife = self.person("female", rng.choice(self.surnames), year + rng.randint(-6, 6))
        self.marry(husband, wife)

    def find_match(self, p: dict):
        for q in self.singles:
            if (q["gender"] != p["gender"] and abs(q["year"] - p["year"]) <= 8
                    and q["surname"] != p["surname"]
                    and not _ids(q["parents"]) & _ids(p["parents"])):
                return q
        return None

    def wed(self, kid: dict) -> None:
        rng = self.rng
        match = self.find_match(kid)
        if match is not None:
            self.singles = [q for q in self.singles if q is not match]
            self.marry(kid, match)
        elif self.room() > 0 and rng.random() < 0.5:  # someone from outside the families
            gender = "female" if kid["gender"] == "male" else "male"
            self.marry(kid, self.person(gender, rng.choice(self.surnames),
                                        kid["year"] + rng.randint(-5, 5)))
        else:
            self.singles.append(kid)

    def grow(self) -> list:
        rng = self.rng
        while self.room() > 0:
            if not self.couples:
                if self.room() >= 2:
                    self.found()
                else:
                    self.person(rng.choice(("female", "male")), rng.choice(self.surnames),
                                rng.randint(1850, 1990))
                continue
            father, mother = self.couples.popleft()
            k = rng.choices(range(len(CHILDREN_WEIGHTS)), weights=CHILDREN_WEIGHTS)[0]
            kids = []
            for _ in range(min(k, self.room())):
                year = min(2015, mother["year"] + rng.randint(19, 40))
                kids.append(self.person(rng.choice(("female", "male")), father["surname"], year,
                                        (father, mother)))
            for kid in kids:
                if kid["year"] < 1995 and rng.random() < MARRY_SHARE:
                    self.wed(kid)
        return self.people


def _ids(people) -> set:
    return {p["id"] for p in people}


def _link(rng, people, groups, limit, want):
    """Symmetric links between people of one group born within 15 years of each other:
    each person asks for ``want()`` links, nobody gets more than ``limit``."""
    links = {p["id"]: [] for p in people}
    for group in groups:
        group = sorted(group, key=lambda p: (p["year"], p["id"]))
        years = [p["year"] for p in group]
        for p in group:
            lo = bisect.bisect_left(years, p["year"] - 15)
            hi = bisect.bisect_right(years, p["year"] + 15)
            for _ in range(want()):
                if len(links[p["id"]]) >= limit:
                    break
                q = group[rng.randrange(lo, hi)]
                if (q is p or q["id"] in links[p["id"]] or len(links[q["id"]]) >= limit
                        or q["id"] in _ids(p["parents"]) or p["id"] in _ids(q["parents"])
                        or q is p["spouse"] or _ids(q["parents"]) & _ids(p["parents"])):
                    continue
                links[p["id"]].append(q["id"])
                links[q["id"]].append(p["id"])
    return links


def people_facts(num_entities: int, seed: int) -> list:
    """The entities of a people world as ``(id, kind, name, attrs)``, sorted by id."""
    rng = random.Random(seed)
    namer = Namer(rng)
    counts = _kind_counts(num_entities)
    slots = [k for k in ("city", "company", "person") for _ in range(counts[k])]
    rng.shuffle(slots)
    width = max(6, len(str(num_entities)))
    ids = {k: [] for k in counts}
    for i, kind in enumerate(slots):
        ids[kind].append("E%0*d" % (width, i))
    out = []

    city_weight = []
    for eid in ids["city"]:
        pop = int(10 ** rng.uniform(3, 6.5)) // 100 * 100 + 100
        out.append((eid, "city", namer.unique(lambda: namer.word(L.CITY_ENDINGS)),
                    {"founded_year": str(rng.randint(600, 1900)), "population": f"{pop:,}"}))
        city_weight.append(pop ** 0.5)

    people = _Family(rng, namer, ids["person"]).grow()
    year_of = {p["id"]: p["year"] for p in people}

    # companies: family firms named after (and founded by) a family's founder, and others
    founders = [p for p in people if not p["parents"] and p["gender"] == "male"]
    firms = {}  # surname -> company id
    for i, eid in enumerate(ids["company"]):
        suffix = rng.choice(L.GENERAL_COMPANY_SUFFIXES)
        if i % 2 == 0 and founders:
            founder = founders.pop(rng.randrange(len(founders)))
            name = founder["surname"] + " " + suffix
            if name in namer.names:
                name = namer.unique(lambda: namer.word((), 1, 2) + " " + suffix)
            else:
                namer.names.add(name)
                firms.setdefault(founder["surname"], eid)
        else:
            founder = rng.choice(people)
            name = namer.unique(lambda: namer.word((), 1, 2) + " " + suffix)
        out.append((eid, "company", name, {
            "industry": rng.choice(L.INDUSTRIES), "founder": founder["id"],
            "founded_year": str(min(2023, founder["year"] + rng.randint(20, 50))),
            "headquarters": rng.choice(ids["city"])}))

    # where people were born and lived, and for whom they worked
    attrs = {}
    for p in people:
        parents = p["parents"]
        if parents and rng.random() < 0.7:
            birthplace = attrs[parents[1]["id"]]["hometown"]
        else:
            birthplace = rng.choices(ids["city"], weights=city_weight)[0]
        month = rng.randrange(12)
        day = rng.randint(1, 28 if month == 1 else 30 + (month in (0, 2, 4, 6, 7, 9, 11)))
        a = {"occupation": rng.choice(L.OCCUPATIONS + L.MUSICIAN_OCCUPATIONS),
             "gender": p["gender"], "birthplace": birthplace,
             "birth_date": "%d %s %d" % (day, L.MONTHS[month], p["year"]),
             "hometown": birthplace if rng.random() < 0.5 else rng.choice(ids["city"])}
        if p["year"] < 2000 and rng.random() < 0.85:
            firm = firms.get(p["surname"])
            a["employer"] = (firm if firm and rng.random() < FAMILY_FIRM_SHARE
                             else rng.choice(ids["company"]))
        attrs[p["id"]] = a

    children = {p["id"]: [] for p in people}
    for p in people:
        for parent in p["parents"]:
            children[parent["id"]].append(p["id"])
    by_birth = lambda pids: sorted(pids, key=lambda i: (year_of[i], i))  # noqa: E731
    friends = _link(rng, people, [people], MAX_FRIENDS, lambda: rng.choice((0, 1, 1, 2, 2, 3)))
    staff = {}
    for p in people:
        if "employer" in attrs[p["id"]]:
            staff.setdefault(attrs[p["id"]]["employer"], []).append(p)
    colleagues = _link(rng, people, [staff[c] for c in sorted(staff)], MAX_COLLEAGUES,
                       lambda: rng.choice((0, 1, 2)))
    for p in people:
        a, pid = attrs[p["id"]], p["id"]
        if p["spouse"] is not None:
            a["spouse"] = p["spouse"]["id"]
        lists = {"parents": [q["id"] for q in p["parents"]], "children": by_birth(children[pid]),
                 "siblings": by_birth(c for c in (children[p["parents"][0]["id"]]
                                                  if p["parents"] else ()) if c != pid),
                 "friends": friends[pid], "colleagues": colleagues[pid]}
        lists["acquaintances"] = sorted({q["id"] for q in rng.sample(people, min(
            len(people), rng.randint(1, 4)))} - {pid} - {i for v in lists.values() for i in v})
        a.update({rel: items for rel, items in lists.items() if items})
        out.append((pid, "person", p["name"], a))
    return sorted(out, key=lambda rec: rec[0])
