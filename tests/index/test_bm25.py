"""BM25Index (bm25s): rare-term ranking, stemming, exclusions, padding, no-pickle save/load."""
import json

import numpy as np
import pytest

from realm.index.bm25 import BM25Index

TEXTS = [
    "Elsa Mirrow The cartographer Elsa Mirrow drew maps of the Quill Coast.",
    "Varnholt Varnholt is a city founded by river traders in the province.",
    "Long one The archive of the Order holds many manuscripts and maps.",
    "Rivers The river flows through the city and the province to the coast.",
    "Zyxomancy Zyxomancy is an obscure practice mentioned in one manuscript only.",
    "Cities A city is a large settlement; many cities grew along rivers.",
]


@pytest.fixture(scope="module")
def index():
    return BM25Index.build(TEXTS)


def test_rare_term_ranks_its_document_first(index):
    scores, ids = index.search(["what is zyxomancy", "Quill Coast maps"], k=3)
    assert ids[0, 0] == 4 and ids[1, 0] == 0
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    for r in range(2):
        v = ids[r] >= 0
        assert np.all(np.diff(scores[r][v]) <= 0)


def test_stemming_matches_inflections(index):
    _, ids = index.search(["manuscript", "rivers flowing"], k=6)
    assert set(ids[0][ids[0] >= 0].tolist()) == {2, 4}  # "manuscripts" ~ "manuscript"
    assert ids[1, 0] == 3
    no_stem = BM25Index.build(TEXTS, stemmer=False)
    _, ids = no_stem.search(["manuscript"], k=6)
    assert set(ids[0][ids[0] >= 0].tolist()) == {4}


def test_exclusions_padding_and_unknown_terms(index):
    _, ids = index.search(["zyxomancy"], k=3, exclude=[[4]])
    assert 4 not in ids[0] and ids[0].tolist() == [-1, -1, -1]  # nothing else matches
    scores, ids = index.search(["the of and", "qwertyuiop"], k=2)  # stopwords / OOV only
    assert ids.tolist() == [[-1, -1], [-1, -1]] and np.all(np.isneginf(scores))
    _, ids = index.search(["city river province"], k=10, exclude=[[1, 3, 99, -5]])
    got = ids[0][ids[0] >= 0].tolist()
    assert 1 not in got and 3 not in got and got and len(got) == len(set(got))
    with pytest.raises(ValueError, match="exclude has"):
        index.search(["a", "b"], 1, exclude=[[0]])
    with pytest.raises(TypeError):
        index.search("zyxomancy", 1)


def test_keep_zero_fills_by_id():
    idx = BM25Index.build(TEXTS, keep_zero=True)
    scores, ids = idx.search(["zyxomancy"], k=4, exclude=[[0]])
    assert ids[0].tolist() == [4, 1, 2, 3] and scores[0, 1] == 0.0


def test_save_load_roundtrip_without_pickle(index, tmp_path):
    queries = ["zyxomancy", "city river", "maps of the coast", "nothing here"]
    before = index.search(queries, k=4, exclude=[[], [1], [], []])
    index.save(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert all(f.endswith((".npy", ".json")) for f in files), files
    for f in files:  # every array loads without pickle; every JSON parses
        if f.endswith(".npy"):
            assert np.load(tmp_path / f, allow_pickle=False).dtype != object
        else:
            json.loads((tmp_path / f).read_text())
    for mmap in (False, True):
        after = BM25Index.load(tmp_path, mmap=mmap).search(queries, k=4, exclude=[[], [1], [], []])
        np.testing.assert_array_equal(after[1], before[1])
        np.testing.assert_array_equal(after[0], before[0])
