"""Sharded index: 2 gloo ranks build, load and search; the answers are single-process exact search's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realm.index.exact import ExactIndex, brute_force_search
from realm.index.sharded import ShardedIndex, ShardedWriter
from realm.index.store import (
    SHARDED_FORMAT_VERSION,
    IndexCorruptError,
    latest_version,
    open_index,
    write_index_version,
)
from tests.dist_helpers import launch

# name -> (num_blocks, dim, kind, k, local chunk size). "int" (small integers: ties everywhere) and "dyadic"
# (multiples of 1/4) make every dot product exact in float32, whatever the order of summation, so scores must
# be bit-identical; for "gauss" a BLAS kernel may round a dot product differently for another matrix shape
# (ExactIndex itself does, between chunk sizes), so its scores are compared to 1 ulp and its ids exactly.
CASES = {"ties": (37, 6, "int", 5, 4), "dyadic": (41, 16, "dyadic", 7, 5), "gauss": (50, 16, "gauss", 7, 8),
         "tiny": (3, 4, "int", 6, 2)}
NUM_QUERIES, RANK0_QUERIES = 8, 3  # rank 0 asks 3 questions, rank 1 asks 5


def make_case(name: str, seed: int):
    n, d, kind, k, _ = CASES[name]
    rng = np.random.default_rng(seed)
    if kind == "int":
        emb = rng.integers(-2, 3, (n, d)).astype(np.float32)
        q = rng.integers(-2, 3, (NUM_QUERIES, d)).astype(np.float32)
    elif kind == "dyadic":
        emb = rng.integers(-8, 9, (n, d)).astype(np.float32) / 4
        q = rng.integers(-8, 9, (NUM_QUERIES, d)).astype(np.float32) / 4
    else:
        emb = rng.normal(size=(n, d)).astype(np.float32)
        q = rng.normal(size=(NUM_QUERIES, d)).astype(np.float32)
    # per query: 0-3 excluded ids, some out of range (ignored), across both shards
    exclude = [rng.integers(-2, n + 2, rng.integers(0, 4)).tolist() for _ in range(NUM_QUERIES)]
    return emb, q, exclude, k


def _ranks(d, root: str) -> None:
    """Runs on each rank: build each case with 2 shards, open it, search this rank's queries."""
    from pathlib import Path

    root = Path(root)
    for name in CASES:
        emb, q, exclude, k = make_case(name, seed=len(name))
        with ShardedWriter(root / name, len(emb), emb.shape[1], corpus_hash=name, encoder="test") as w:
            mid = (w.start + w.end) // 2  # two writes per rank
            w.write(w.start, emb[w.start:mid])
            w.write(mid, emb[mid:w.end])
        assert w.path == root / name / "v000001"
        idx = ShardedIndex.open(root / name, expect_corpus_hash=name, chunk_size=CASES[name][4])
        assert (idx.start, len(idx)) == ((0, len(emb)) if d.rank == 0 else ((len(emb) + 1) // 2, len(emb)))
        mine = slice(0, RANK0_QUERIES) if d.rank == 0 else slice(RANK0_QUERIES, NUM_QUERIES)
        s, i = idx.search(q[mine], k, exclude[mine])
        np.savez(root / name / f"rank{d.rank}.npz", scores=s, ids=i)
    # an index written by one process (format 1), searched on 2 ranks
    emb, q, exclude, k = make_case("dyadic", seed=99)
    idx = ShardedIndex.open(root / "single", chunk_size=8)
    mine = slice(0, RANK0_QUERIES) if d.rank == 0 else slice(RANK0_QUERIES, NUM_QUERIES)
    s, i = idx.search(q[mine], k, exclude[mine])
    np.savez(root / "single" / f"rank{d.rank}.npz", scores=s, ids=i)
    # a rank that leaves rows unwritten: every rank raises, nothing is published
    try:
        with ShardedWriter(root / "failed", 10, 2, corpus_hash="x") as w:
            if d.rank == 0:
                w.write(w.start, np.ones((w.end - w.start, 2)))
        outcome = "published"
    except RuntimeError as e:
        outcome = str(e)
    (root / "failed" / f"rank{d.rank}.txt").write_text(outcome)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    emb, *_ = make_case("dyadic", seed=99)
    write_index_version(root / "single", emb, corpus_hash="dyadic")
    launch(_ranks, 2, str(root))
    return root


def gathered(folder):
    parts = [np.load(folder / f"rank{r}.npz") for r in (0, 1)]
    return np.concatenate([p["scores"] for p in parts]), np.concatenate([p["ids"] for p in parts])


@pytest.mark.slow  # the 2 spawned ranks take ~15-20 s to start on this shared machine (shared fixture)
@pytest.mark.parametrize("name", list(CASES))
def test_two_shard_search_equals_single_process_exact(two_ranks, name):
    emb, q, exclude, k = make_case(name, seed=len(name))
    s, i = gathered(two_ranks / name)
    want_s, want_i = ExactIndex(emb).search(q, k, exclude)
    np.testing.assert_array_equal(i, want_i)
    if CASES[name][2] == "gauss":
        np.testing.assert_allclose(s, want_s, rtol=3e-7, atol=0)
    else:
        np.testing.assert_array_equal(s, want_s)
    np.testing.assert_array_equal(i, brute_force_search(q, emb, k, exclude)[1])  # the float64 oracle too
    for row, ex in zip(i, exclude):
        assert not (set(row.tolist()) - {-1}) & set(ex)
    if name == "tiny":
        assert (i == -1).any()  # k > blocks: padded
    if name == "ties":  # the case exercises tie-breaking across the shard boundary
        assert any(len(set(r)) < k for r in want_s.tolist())


@pytest.mark.slow
def test_one_process_index_searched_on_two_ranks(two_ranks):
    emb, q, exclude, k = make_case("dyadic", seed=99)
    s, i = gathered(two_ranks / "single")
    want_s, want_i = ExactIndex(emb).search(q, k, exclude)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(s, want_s)


@pytest.mark.slow
def test_two_shard_index_loads_in_one_process(two_ranks):
    emb, q, exclude, k = make_case("ties", seed=len("ties"))
    arr, manifest = open_index(two_ranks / "ties", expect_corpus_hash="ties")
    assert manifest.format_version == SHARDED_FORMAT_VERSION
    assert [(s["start"], s["rows"]) for s in manifest.shards] == [(0, 19), (19, 18)]
    assert sorted(manifest.files) == [s["file"] for s in manifest.shards]
    np.testing.assert_array_equal(arr, emb)
    part, _ = open_index(two_ranks / "ties", rows=(15, 25))  # a range across the shard boundary
    np.testing.assert_array_equal(part, emb[15:25])
    idx = ShardedIndex.open(two_ranks / "ties")  # no process group: one rank holds everything
    assert (idx.start, idx.local.num_blocks) == (0, len(emb))
    for got, want in zip(idx.search(q, k, exclude), ExactIndex(emb).search(q, k, exclude)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_failed_rank_publishes_nothing(two_ranks):
    for r in (0, 1):
        text = (two_ranks / "failed" / f"rank{r}.txt").read_text()
        assert "not published" in text and "rank 1" in text and "never written" in text
    assert latest_version(two_ranks / "failed") is None
    assert not list((two_ranks / "failed").glob(".tmp-*"))


@pytest.mark.slow
def test_damaged_or_inconsistent_shards_are_refused(two_ranks, tmp_path):
    import shutil

    vdir = tmp_path / "v"
    shutil.copytree(two_ranks / "gauss" / "v000001", vdir)
    manifest = json.loads((vdir / "manifest.json").read_text())
    shard = vdir / manifest["shards"][1]["file"]
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 1
    shard.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="sha256"):
        open_index(vdir)
    open_index(vdir, rows=(0, 10))  # rank 0's rows do not need the damaged file
    bad = dict(manifest, shards=[dict(manifest["shards"][0], rows=3), manifest["shards"][1]])
    (vdir / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(IndexCorruptError, match="shards"):
        open_index(vdir, verify=False)


def test_writer_without_a_group_writes_the_one_file_format(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    with ShardedWriter(tmp_path, 6, 2, corpus_hash="h") as w:
        assert (w.start, w.end) == (0, 6)
        w.write(0, emb)
    manifest = json.loads((w.path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and "shards" not in manifest
    assert sorted(p.name for p in w.path.iterdir()) == ["embeddings.npy", "manifest.json"]
    np.testing.assert_array_equal(open_index(tmp_path)[0], emb)


def _build_ranks(d, corpus: str, retriever: str, root: str) -> None:
    from realm.data.blocks import BlockStore
    from realm.index.sharded import build_sharded_index
    from realm.models.retriever import Retriever

    path = build_sharded_index(Retriever.load(retriever).doc, BlockStore(corpus), root, encoder="r", encoder_step=3,
                               batch_size=16, bf16=False, progress=False)
    assert path.name == "v000001"


@pytest.mark.slow
def test_two_ranks_embed_the_corpus_as_one_process_does(tiny_corpus, tmp_path):
    from realm.config import load_config
    from realm.index.build import build_index
    from realm.models.retriever import Retriever

    import torch

    store, _ = tiny_corpus
    torch.manual_seed(0)
    retriever = Retriever.build(load_config("tiny").retriever, store.tokenizer.vocab_size, store.tokenizer.pad_id)
    retriever.save(tmp_path / "retriever")
    build_index(retriever.doc, store, tmp_path / "one", encoder="r", encoder_step=3, batch_size=16, bf16=False,
                progress=False)
    launch(_build_ranks, 2, str(store.folder), str(tmp_path / "retriever"), str(tmp_path / "two"))
    one, m1 = open_index(tmp_path / "one")
    two, m2 = open_index(tmp_path / "two", expect_corpus_hash=store.corpus_hash)
    assert (m1.format_version, m2.format_version, len(m2.shards)) == (1, SHARDED_FORMAT_VERSION, 2)
    assert (m2.encoder, m2.encoder_step, m2.extra["shards"]) == ("r", 3, 2)
    # the same blocks in other batches (other padding): equal up to float rounding
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)
