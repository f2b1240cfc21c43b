"""Tests for the synthetic knowledge world (realm.data.world)."""
import hashlib
import json
import random
import re
from collections import Counter

import pytest

from realm.data import world_lexicon as L
from realm.data.world import (
    KINDS, Entity, _subject, MIN_ENTITIES, SCHEMA, build_questions, edit_fact, generate_world, read_world,
    render_documents, world_summary, write_world)


@pytest.fixture(scope="module")
def world():
    return generate_world(400, seed=7)


def sentences(text):
    return re.split(r"(?<=\.)\s+", text)


def ngrams(text, subject, n=4):
    """Word n-grams of ``text`` with the subject's name masked to one token."""
    text = re.sub(r"\b%s\b" % re.escape(subject), " ENT ", text)
    toks = re.findall(r"\w+", text.lower())
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def all_questions(w):
    return [q for split in ("train", "dev", "test") for q in w.questions[split]]


def askable(w):
    return {(e.id, r) for e in w.entities for r in e.attrs
            if r in L.QUESTION_TEMPLATES[e.kind]}


# ------------------------------------------------------------------ basics
def test_too_small_raises():
    with pytest.raises(ValueError, match="num_entities"):
        generate_world(MIN_ENTITIES - 1, seed=0)
    with pytest.raises(ValueError):
        generate_world(100, seed=0, split=(0.5, 0.5, 0.5))


@pytest.mark.parametrize("n", [MIN_ENTITIES, 50])
def test_small_worlds_have_every_kind(n):
    for seed in range(3):
        w = generate_world(n, seed)
        assert len(w.entities) == len(w.documents) == n
        assert {e.kind for e in w.entities} == set(KINDS)
        for q in all_questions(w):  # answers are in the article even for tiny worlds
            doc = next(d for d in w.documents if d["id"] == q["entity_id"])
            assert q["answer"][0] in doc["text"]


def test_files_deterministic(tmp_path):
    a = write_world(generate_world(120, seed=3), tmp_path / "a")
    b = write_world(generate_world(120, seed=3), tmp_path / "b")
    c = write_world(generate_world(120, seed=4), tmp_path / "c")
    assert set(a) == {"corpus", "qa-train", "qa-dev", "qa-test", "entities", "world"}
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["corpus"].read_bytes() != c["corpus"].read_bytes()
    assert a["qa-train"].read_bytes() != c["qa-train"].read_bytes()
    assert a["corpus"].read_text(encoding="utf-8").count("\n") == 120


def test_read_world_round_trip(tmp_path, world):
    write_world(world, tmp_path)
    back = read_world(tmp_path)
    assert back.seed == world.seed and back.entities == world.entities
    assert back.documents == world.documents and back.questions == world.questions


def test_names_unique_and_capitalised():
    w = generate_world(3000, seed=11)
    names = [e.name for e in w.entities]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Z][a-z]*( ([A-Z][a-z]+|of|for|from|over|to|in|and))*", name), name


def test_summary(world):
    s = world_summary(world)
    assert s["documents"] == 400 and sum(s["entities_by_kind"].values()) == 400
    assert all(s["entities_by_kind"][k] > 0 for k in KINDS)
    assert sum(s["questions"].values()) == len(askable(world))
    assert s["mean_article_words"] > 40


# ---------------------------------------------------------------- articles
def test_articles_shape(world):
    by_id = {e.id: e for e in world.entities}
    for d in world.documents:
        assert d["title"] == by_id[d["id"]].name
        assert 6 <= len(sentences(d["text"])) <= 14, d
        assert d["title"] in sentences(d["text"])[0]  # the lead sentence names the subject
        assert "{" not in d["text"] and "  " not in d["text"]


def test_templates_are_varied(world):
    for table in (L.FACT_TEMPLATES, L.QUESTION_TEMPLATES):
        for kind, rels in table.items():
            for rel, tpls in rels.items():
                assert len(set(tpls)) >= 3, (kind, rel)
    for rel, tpls in L.REVERSE_TEMPLATES.items():
        assert len(set(tpls)) >= 3, rel
    # ... and the world actually uses several wordings for one relation.
    starts = Counter(q["question"].split()[0] for q in all_questions(world)
                     if q["relation"] == "birthplace")
    assert len(starts) >= 3


def test_facts_appear_in_related_articles(world):
    by_id = {e.id: e for e in world.entities}
    text = {d["id"]: d["text"] for d in world.documents}
    born_in = {}
    for e in world.entities:
        if e.kind == "person":
            born_in.setdefault(e.attrs["birthplace"], []).append(e)
        if "founder" in e.attrs:  # founders' articles name what they founded
            founder = e.attrs["founder"]
            if sum(1 for x in world.entities if x.attrs.get("founder") == founder) == 1:
                assert e.name in text[founder]
    for city, people in born_in.items():
        first = people[0]  # the lowest id is always listed, with the birth date
        assert "%s (born %s)" % (first.name, first.attrs["birth_date"]) in text[city]
    assert any(by_id[c].kind == "city" for c in born_in)


# --------------------------------------------------------------- questions
def test_every_answer_in_own_article(world):
    text = {d["id"]: d["text"] for d in world.documents}
    for q in all_questions(world):
        assert set(q) == {"question", "answer", "entity_id", "relation"}
        assert q["answer"] and all(a in text[q["entity_id"]] for a in q["answer"]), q


def test_questions_name_entity_and_do_not_leak(world):
    by_id = {e.id: e for e in world.entities}
    for q in all_questions(world):
        assert by_id[q["entity_id"]].name in q["question"]
        assert q["answer"][0] not in q["question"]
        assert q["question"].endswith("?")
    years = [q for q in all_questions(world) if q["relation"].endswith("year")]
    assert years and all(re.fullmatch(r"\d{3,4}", q["answer"][0]) for q in years)
    dates = [q for q in all_questions(world) if q["relation"] == "birth_date"]
    assert dates and all(re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}", q["answer"][0])
                         for q in dates)


def test_ngram_check_can_fail():
    sent = "Elsa Mirrow was born in Varnholt."
    assert ngrams("Where was it that Elsa Mirrow was born in?", "Elsa Mirrow") & ngrams(
        sent, "Elsa Mirrow")
    assert not ngrams("Where was Elsa Mirrow born?", "Elsa Mirrow") & ngrams(sent, "Elsa Mirrow")


def test_question_wording_differs_from_article(world):
    by_id = {e.id: e for e in world.entities}
    text = {d["id"]: d["text"] for d in world.documents}
    checked = 0
    for q in all_questions(world):
        name = by_id[q["entity_id"]].name
        qgrams = ngrams(q["question"], name)
        for sent in sentences(text[q["entity_id"]]):
            if q["answer"][0] in sent:
                checked += 1
                shared = qgrams & ngrams(sent, name)
                assert not shared, (q["question"], sent, shared)
    assert checked >= len(all_questions(world))


@pytest.mark.parametrize("questions, facts", [
    (L.QUESTION_TEMPLATES, L.FACT_TEMPLATES), (L.PEOPLE_QUESTION_TEMPLATES, L.PEOPLE_FACT_TEMPLATES)])
def test_question_templates_differ_from_fact_templates(questions, facts):
    """Exhaustive version of the check above: every question wording against
    every wording of the same fact (lists of one item included), with every way
    of naming the subject."""
    for kind, rels in questions.items():
        ent = Entity("E0", kind, "Zed Quorn", {"gender": "female"})
        for rel, q_tpls in rels.items():
            for f_tpl in facts[kind][rel] + facts[kind].get(rel + "/1", ()):
                for mode in ("full", "short", "pronoun"):
                    sent = f_tpl.format(O="Value", a="a", **_subject(ent, mode, f_tpl))
                    for q_tpl in q_tpls:
                        q = q_tpl.format(E=ent.name)
                        assert not ngrams(q, ent.name) & ngrams(sent, ent.name), (q, sent)


def test_splits(world):
    keys = {name: [(q["entity_id"], q["relation"]) for q in qs]
            for name, qs in world.questions.items()}
    assert set(keys) == {"train", "dev", "test"}
    flat = [k for ks in keys.values() for k in ks]
    assert len(flat) == len(set(flat))  # disjoint, no duplicates
    assert set(flat) == askable(world)  # every askable fact asked once
    n = len(flat)
    for name, frac in zip(("train", "dev", "test"), (0.8, 0.1, 0.1)):
        assert abs(len(keys[name]) - frac * n) <= 1
        assert keys[name] == sorted(keys[name])
    # random, not by entity order: train is not simply a prefix
    assert max(keys["dev"] + keys["test"]) > min(keys["train"])
    custom = build_questions(world.seed, world.entities, split=(0.5, 0.25, 0.25))
    assert abs(len(custom["dev"]) - n / 4) <= 1


# ----------------------------------------------------------------- editing
def _person_with(world, rel):
    return next(e for e in world.entities if e.kind == "person" and rel in e.attrs)


def test_edit_fact_birthplace(world):
    by_id = {e.id: e for e in world.entities}
    text = {d["id"]: d["text"] for d in world.documents}
    born = {}
    for e in world.entities:
        if e.kind == "person":
            born.setdefault(e.attrs["birthplace"], []).append(e.id)
    # a person listed in their birthplace's article, moved to a city that will list them
    old_city = min(born)
    person = by_id[born[old_city][0]]
    new_city = next(e.id for e in world.entities if e.kind == "city" and e.id != old_city
                    and person.id in sorted(born.get(e.id, []) + [person.id])[:3])
    old_name, new_name = by_id[old_city].name, by_id[new_city].name
    mention = re.compile(r"\b%s\b" % re.escape(person.name))
    assert mention.search(text[old_city]) and not mention.search(text[new_city])

    new = edit_fact(world, person.id, "birthplace", new_city)
    new_text = {d["id"]: d["text"] for d in new.documents}
    # the question about the fact has the new answer, with the same wording
    q_old = next(q for q in all_questions(world)
                 if q["entity_id"] == person.id and q["relation"] == "birthplace")
    q_new = next(q for q in all_questions(new)
                 if q["entity_id"] == person.id and q["relation"] == "birthplace")
    assert q_new["answer"] == [new_name] and q_new["question"] == q_old["question"]
    # the person's article: the old sentence is gone, the new value is there,
    # every other sentence is unchanged
    old_s, new_s = sentences(text[person.id]), sentences(new_text[person.id])
    changed = [(a, b) for a, b in zip(old_s, new_s) if a != b]
    assert len(old_s) == len(new_s) and len(changed) == 1
    assert old_name in changed[0][0] and new_name in changed[0][1]
    assert changed[0][0] not in new_text[person.id]
    # the related cities' articles follow
    assert not mention.search(new_text[old_city])
    assert "%s (born %s)" % (person.name, person.attrs["birth_date"]) in new_text[new_city]
    # nothing unrelated changed, and the input world is untouched
    for d in new.documents:
        if d["id"] not in {person.id, old_city, new_city}:
            assert d["text"] == text[d["id"]]
    assert [e for e in new.entities if e.id != person.id] == [
        e for e in world.entities if e.id != person.id]
    assert by_id[person.id].attrs["birthplace"] == old_city
    assert [d["text"] for d in world.documents] == list(text.values())
    for name, qs in world.questions.items():
        assert [q for q in qs if q is not q_old] == [q for q in new.questions[name]
                                                     if q["entity_id"] != person.id
                                                     or q["relation"] != "birthplace"]


def test_edit_literal_updates_related_article(world):
    text = {d["id"]: d["text"] for d in world.documents}
    city = next(e for e in world.entities if e.kind == "city")
    person = min(e.id for e in world.entities if e.attrs.get("birthplace") == city.id)
    new = edit_fact(world, person, "birth_date", "2 February 1902")
    new_text = {d["id"]: d["text"] for d in new.documents}
    assert "(born 2 February 1902)" in new_text[city.id]  # listed in the city's article
    assert "2 February 1902" in new_text[person]
    q = next(q for q in all_questions(new) if q["entity_id"] == person
             and q["relation"] == "birth_date")
    assert q["answer"] == ["2 February 1902"]
    assert sum(new_text[i] != text[i] for i in text) == 2


def test_edits_equal_fresh_render(world):
    rng = random.Random(0)
    w = world
    ids = [e.id for e in world.entities]
    for _ in range(25):
        eid = rng.choice(ids)
        e = next(x for x in w.entities if x.id == eid)
        rel = rng.choice(sorted(e.attrs))
        vtype = SCHEMA[e.kind][rel]
        if isinstance(vtype, tuple):
            value = rng.choice([x.id for x in w.entities if x.kind in vtype and x.id != e.id])
        else:
            value = {"date": "9 May 1899", "year": "1777", "number": "12,345",
                     "gender": "female", "text": "glassblower"}[vtype]
        w = edit_fact(w, e.id, rel, value)
        assert next(x for x in w.entities if x.id == e.id).attrs[rel] == value
    assert w.documents == render_documents(w.seed, w.entities)
    assert w.questions == build_questions(w.seed, w.entities)


def test_edit_fact_rejects_bad_input(world):
    person = _person_with(world, "birthplace")
    book = next(e.id for e in world.entities if e.kind == "book")
    for rel, value in [("birthplace", book), ("birthplace", "E999999"),
                       ("birth_date", "yesterday"), ("height", "2"),
                       ("birthplace", person.id)]:
        with pytest.raises(ValueError):
            edit_fact(world, person.id, rel, value)
    with pytest.raises(ValueError, match="unknown entity"):
        edit_fact(world, "nope", "birthplace", book)


# ------------------------------------------------------------------- scale
def test_twenty_thousand_entities():
    w = generate_world(20_000, seed=1)
    assert len(w.documents) == 20_000
    assert len({e.name for e in w.entities}) == 20_000


# -------------------------------------------------------- the people world
# sha256 of the default (encyclopedia) world's entities, documents and questions,
# computed with the code from before world styles existed (commit e988334).
DEFAULT_WORLD_SHA256 = {
    (20, 1): "94d0a3fc18838be4c0dc9f3a422414a672159800826e067d69c8a53062ff4586",
    (300, 0): "e19d7995d7754d24979efbb6a07ea2dbe6f14d4d9445620ad4db96cf86cc2c62",
}


def world_sha256(w):
    blob = json.dumps([w.documents, w.questions, [(e.id, e.kind, e.name, e.attrs) for e in w.entities]],
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("n, seed", sorted(DEFAULT_WORLD_SHA256))
def test_default_style_unchanged(n, seed):
    w = generate_world(n, seed)
    assert w.style == "encyclopedia"
    assert world_sha256(w) == DEFAULT_WORLD_SHA256[n, seed]
    assert world_sha256(generate_world(n, seed, style="encyclopedia")) == DEFAULT_WORLD_SHA256[n, seed]


@pytest.fixture(scope="module")
def people():
    return generate_world(400, seed=5, style="people")


def persons(w):
    return [e for e in w.entities if e.kind == "person"]


def test_unknown_style_raises():
    with pytest.raises(ValueError, match="unknown world style 'novel'"):
        generate_world(100, 0, style="novel")


def test_people_files_deterministic(tmp_path, people):
    a = write_world(generate_world(150, seed=2, style="people"), tmp_path / "a")
    b = write_world(generate_world(150, seed=2, style="people"), tmp_path / "b")
    c = write_world(generate_world(150, seed=3, style="people"), tmp_path / "c")
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["corpus"].read_bytes() != c["corpus"].read_bytes()
    assert json.loads(a["world"].read_text())["style"] == "people"
    write_world(people, tmp_path / "p")
    back = read_world(tmp_path / "p")
    assert back == people and back.style == "people"


@pytest.mark.parametrize("n", [MIN_ENTITIES, 60, 3000])
def test_people_world_sizes(n):
    w = generate_world(n, seed=0, style="people")
    assert len(w.entities) == len(w.documents) == n
    assert {e.kind for e in w.entities} == {"person", "city", "company"}
    assert len({e.name for e in w.entities}) == n  # full names are unique ...
    assert {q["relation"] for q in all_questions(w)} >= {"birth_date", "hometown", "spouse"}
    kind = {e.id: e.kind for e in w.entities}
    assert {kind[q["entity_id"]] for q in all_questions(w)} == {"person"}  # questions ask about people


def test_people_answers_in_own_article(people):
    text = {d["id"]: d["text"] for d in people.documents}
    qs = all_questions(people)
    assert len(qs) > 8 * len(persons(people))
    for q in qs:
        assert q["answer"] and all(a in text[q["entity_id"]] for a in q["answer"]), q
        assert q["question"].endswith("?") or q["question"].endswith(".")
        assert not any(re.search(r"\b%s\b" % re.escape(a), q["question"]) for a in q["answer"]), q


def test_people_list_answers(people):
    by_id = {e.id: e for e in people.entities}
    text = {d["id"]: d["text"] for d in people.documents}
    lists = Counter()
    for q in all_questions(people):
        value = by_id[q["entity_id"]].attrs[q["relation"]]
        if not isinstance(value, list):
            assert len(q["answer"]) == 1
            continue
        names = [by_id[i].name for i in value]
        whole = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        # every item is a gold answer, and so is the whole list as the article writes it
        assert q["answer"] == (names if len(names) == 1 else names + [whole])
        assert whole in text[q["entity_id"]]
        lists[q["relation"], min(len(names), 2)] += 1
    for rel in ("parents", "children", "siblings", "friends", "colleagues"):
        assert lists[rel, 2] > 0, rel  # list-valued answers of two or more items occur
    assert lists["children", 1] > 0 and lists["siblings", 1] > 0
    assert not any(q["relation"] == "acquaintances" for q in all_questions(people))


def test_people_families_are_consistent(people):
    by_id = {e.id: e for e in people.entities}
    for e in persons(people):
        a = e.attrs
        for child in a.get("children", []):
            assert e.id in by_id[child].attrs["parents"]
        if "parents" in a:
            father, mother = (by_id[p] for p in a["parents"])
            assert father.attrs["spouse"] == mother.id and mother.attrs["spouse"] == father.id
            assert e.name.split()[-1] == father.name.split()[-1]  # children take the father's surname
            assert a.get("siblings", []) == [c for c in father.attrs["children"] if c != e.id]
        if "spouse" in a:
            assert by_id[a["spouse"]].attrs["spouse"] == e.id
        for friend in a.get("friends", []):
            assert e.id in by_id[friend].attrs["friends"]
        for c in a.get("colleagues", []):
            assert by_id[c].attrs["employer"] == a["employer"] and e.id in by_id[c].attrs["colleagues"]
        for rel in ("parents", "children", "siblings", "friends", "colleagues", "acquaintances"):
            assert e.id not in a.get(rel, []) and len(set(a.get(rel, []))) == len(a.get(rel, []))


def _full_name_spread(w):
    """Per question about a person: in how many other articles the person's full name occurs."""
    by_id = {e.id: e for e in w.entities}
    spread = []
    for q in all_questions(w):
        name = by_id[q["entity_id"]].name
        if by_id[q["entity_id"]].kind == "person":
            spread.append(sum(name in d["text"] for d in w.documents if d["id"] != q["entity_id"]))
    return spread


def test_people_names_overlap(people):
    ps = persons(people)
    surnames = Counter(e.name.split()[-1] for e in ps)
    firsts = Counter(e.name.split()[0] for e in ps)
    assert sum(surnames[e.name.split()[-1]] >= 3 for e in ps) >= 0.95 * len(ps)  # families
    assert sum(firsts[e.name.split()[0]] >= 5 for e in ps) >= 0.8 * len(ps)  # reused given names
    # a person's full name occurs in many other articles (relatives, friends, colleagues) ...
    spread = _full_name_spread(people)
    assert sum(s >= 5 for s in spread) >= 0.9 * len(spread)
    # ... unlike in the encyclopedia world, where the measure stays low
    easy = _full_name_spread(generate_world(400, seed=5))
    assert sum(s >= 5 for s in easy) <= 0.5 * len(easy)


def test_people_articles_shape(people):
    by_id = {e.id: e for e in people.entities}
    for d in people.documents:
        sents = sentences(d["text"])
        assert d["title"] == by_id[d["id"]].name and d["title"] in sents[0]
        assert 5 <= len(sents) <= 20, d
        assert "{" not in d["text"] and "  " not in d["text"]


def test_people_edit_list_fact(people):
    by_id = {e.id: e for e in people.entities}
    text = {d["id"]: d["text"] for d in people.documents}
    parent = next(e for e in persons(people) if len(e.attrs.get("children", [])) >= 2)
    new_kids = [e.id for e in persons(people) if e.id != parent.id
                and e.id not in parent.attrs["children"]][:3]
    new = edit_fact(people, parent.id, "children", new_kids)
    assert new.style == "people"
    new_text = {d["id"]: d["text"] for d in new.documents}
    old_s, new_s = sentences(text[parent.id]), sentences(new_text[parent.id])
    changed = [(a, b) for a, b in zip(old_s, new_s) if a != b]
    assert len(old_s) == len(new_s) and len(changed) == 1  # only the sentence stating the fact
    names = [by_id[i].name for i in new_kids]
    assert all(n in changed[0][1] for n in names)
    assert all(by_id[c].name not in changed[0][1] for c in parent.attrs["children"])
    assert [d for d in new.documents if d["id"] != parent.id] == [
        d for d in people.documents if d["id"] != parent.id]
    q = next(q for q in all_questions(new) if q["entity_id"] == parent.id
             and q["relation"] == "children")
    assert q["answer"] == names + [", ".join(names[:2]) + " and " + names[2]]
    # a list of one uses the singular wording
    one = edit_fact(people, parent.id, "children", new_kids[:1])
    one_text = next(d["text"] for d in one.documents if d["id"] == parent.id)
    assert any(w in one_text for w in ("only child", "one child", "parent of " + names[0]))


def test_people_edit_city_updates_reverse_lists():
    w = generate_world(120, seed=4, style="people")
    person = next(e for e in persons(w) if "employer" in e.attrs)
    old_co = person.attrs["employer"]
    new_co = next(e.id for e in w.entities if e.kind == "company" and e.id != old_co)
    new = edit_fact(w, person.id, "employer", new_co)
    changed = {d["id"] for d, o in zip(new.documents, w.documents) if d != o}
    assert person.id in changed and changed <= {person.id, old_co, new_co}
    assert new.documents == render_documents(w.seed, new.entities, "people")


def test_people_edits_equal_fresh_render(people):
    rng = random.Random(1)
    w = people
    ps = [e.id for e in persons(people)]
    companies = [e.id for e in people.entities if e.kind == "company"]
    cities = [e.id for e in people.entities if e.kind == "city"]
    for _ in range(25):
        eid = rng.choice(ps)
        e = next(x for x in w.entities if x.id == eid)
        rel = rng.choice(sorted(e.attrs))
        value = e.attrs[rel]
        if isinstance(value, list):
            value = rng.sample([p for p in ps if p != e.id], rng.randint(1, 3))
        elif rel in ("birthplace", "hometown"):
            value = rng.choice(cities)
        elif rel == "employer":
            value = rng.choice(companies)
        elif rel == "spouse":
            value = rng.choice([p for p in ps if p != e.id])
        else:
            value = {"birth_date": "9 May 1899", "gender": "female", "occupation": "glassblower"}[rel]
        w = edit_fact(w, e.id, rel, value)
    assert w.documents == render_documents(w.seed, w.entities, "people")
    assert w.questions == build_questions(w.seed, w.entities, style="people")


def test_people_edit_rejects_bad_lists(people):
    person = next(e for e in persons(people) if "friends" in e.attrs)
    city = next(e.id for e in people.entities if e.kind == "city")
    other = next(e.id for e in persons(people) if e.id != person.id)
    for value in ([], [city], [person.id], [other, other], other, ["E999999"]):
        with pytest.raises(ValueError, match="friends"):
            edit_fact(people, person.id, "friends", value)


def test_cli_world_style_and_people_preset(tmp_path, capsys):
    from realm.cli import main
    from realm.config import load_config

    assert main(["world", "--entities", "60", "--seed", "2", "--style", "people", "--out",
                 str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["style"] == "people"
    back = read_world(tmp_path)
    assert back == generate_world(60, 2, style="people")
    people_cfg, demo = load_config("people"), load_config("demo")
    assert (people_cfg.name, people_cfg.world.style, people_cfg.world.entities) == ("people", "people", 500)
    assert demo.world.style == "encyclopedia"
    for section in ("corpus", "retriever", "ict", "pretrain", "reader", "finetune"):
        assert getattr(people_cfg, section) == getattr(demo, section), section


@pytest.mark.parametrize("recap", [1, 3])
def test_recap_restates_the_last_body_facts_after_the_lead(recap, tmp_path):
    """``recap=N``: each article is the recap-free article with N sentences inserted after the lead; each names
    the subject in full and states one of the subject's facts whose body sentence is among the last N fact
    sentences of the body (a brute-force reading of the recap-free article); questions are unchanged."""
    plain, rec = generate_world(150, seed=3), generate_world(150, seed=3, recap=recap)
    assert rec.questions == plain.questions and rec.recap == recap
    by_id = {e.id: e for e in plain.entities}
    restated = 0
    for a, b in zip(plain.documents, rec.documents):
        ent, sa, sb = by_id[a["id"]], sentences(a["text"]), sentences(b["text"])
        lead_rel = next(iter(SCHEMA[ent.kind]))
        values = {r: by_id[v].name if isinstance(SCHEMA[ent.kind][r], tuple) else v
                  for r, v in ent.attrs.items() if r != lead_rel and r in L.FACT_TEMPLATES[ent.kind]}
        # the body's facts in article order (by the first sentence that tells each one)
        first = {}
        for i, s in enumerate(sa[1:]):
            for r, v in values.items():
                if v in s and r != "gender":
                    first.setdefault(r, i)
        body_facts = sorted(first, key=first.get)
        n = min(recap, len(body_facts))
        assert sb[0] == sa[0] and sb[1 + n:] == sa[1:]  # the lead, then the recap, then the article as before
        for s in sb[1:1 + n]:
            assert ent.name in s
            told = [r for r, v in values.items() if v in s]
            assert told and set(told) <= set(body_facts[-recap:]) | {"gender"}
        restated += n
    assert restated > 100
    w = read_world(write_world(rec, tmp_path)["world"].parent)  # the recap survives a round trip
    assert w.recap == recap and w.documents == sorted(rec.documents, key=lambda d: d["id"])


def test_edits_of_a_recap_world_change_every_mention():
    """An edited fact is restated with its new value too: the edited world equals a fresh render with recap."""
    w = generate_world(150, seed=4, recap=3)
    person = next(e for e in w.entities if e.kind == "person")
    city = next(e for e in w.entities if e.kind == "city" and e.id != person.attrs["birthplace"])
    old = next(e for e in w.entities if e.id == person.attrs["birthplace"]).name
    new = edit_fact(w, person.id, "birthplace", city.id)
    assert new.documents == render_documents(new.seed, new.entities, recap=3)
    article = next(d["text"] for d in new.documents if d["id"] == person.id)
    assert old not in article and article.count(city.name) == 2
    with pytest.raises(ValueError, match="recap"):
        generate_world(150, seed=4, recap=-1)
