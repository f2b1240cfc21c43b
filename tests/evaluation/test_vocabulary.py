"""Question vocabulary against brute force: token counts by a Python loop over every block's ids."""
from collections import Counter

import numpy as np
import pytest

from realm.config import CorpusConfig
from realm.data.corpus import build_corpus
from realm.evaluation.vocabulary import corpus_token_counts, question_vocabulary, unseen_tokens
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    docs = [{"id": f"d{i}", "title": f"Person {name}", "text": f"{name} worked for {org}. {name} was born in {city}."}
            for i, (name, org, city) in enumerate([("Elsa Mirrow", "Quill Books", "Varnholt"),
                                                   ("Tomas Vell", "Dune Press", "Kelpford"),
                                                   ("Brina Quarn", "Quill Books", "Dunmere")] * 3)]
    s, _ = build_corpus(write_jsonl(root / "docs.jsonl", docs), root / "corpus",
                        CorpusConfig(block_len=8, title_len=4, vocab_size=120, min_frequency=1), progress=False)
    return s


def brute_counts(store) -> Counter:
    c = Counter()
    for b in range(len(store)):
        c.update(int(i) for i in store.body_ids(b))
        c.update(int(i) for i in store.title_ids(b))
    return c


def test_corpus_token_counts_match_a_loop_over_every_block(store):
    counts = corpus_token_counts(store, chunk=2)  # several chunks, the last one short
    brute = brute_counts(store)
    assert len(store) > 2
    assert counts.sum() == sum(brute.values()) > 0
    assert {i: int(n) for i, n in enumerate(counts) if n} == dict(brute)


def test_unseen_share_counts_tokens_the_corpus_never_has(store):
    tok, counts = store.tokenizer, corpus_token_counts(store)
    questions = ["Where was Elsa Mirrow born?", "Whom did Tomas Vell employ?", "Elsa Mirrow worked for Quill Books."]
    res = unseen_tokens(tok, questions, counts)
    ids = [tok.encode(q) for q in questions]
    brute = [[i for i in q if brute_counts(store)[i] == 0] for q in ids]
    assert res["tokens"] == sum(map(len, ids))
    assert res["unseen_share"] == pytest.approx(sum(map(len, brute)) / res["tokens"])
    assert 0 < res["unseen_share"] < 1
    assert res["questions_with_unseen"] == pytest.approx(np.mean([bool(b) for b in brute]))
    assert not brute[2]  # the corpus' own sentence has no unseen token


def test_training_questions_count_as_seen_for_the_other_splits(store):
    rep = question_vocabulary(store, {"train": ["Whom did Tomas Vell employ?"],
                                      "dev": ["Whom did Elsa Mirrow employ?"]})
    assert rep["dev"]["unseen_share"] > 0
    assert rep["dev"]["unseen_share_or_train"] == 0  # "whom", "did", "employ", "?" were in a training question
    assert "unseen_share_or_train" not in rep["train"]
