"""open_version and IndexFollower: one way to open an index version, and to swap to a newer one."""

import numpy as np
import pytest

from realm.index.exact import ExactIndex
from realm.index.faiss_index import FaissIndex
from realm.index.store import IndexMismatchError, bf16_bits_to_float32, float32_to_bf16_bits, version_dir, \
    version_number, write_index_version
from realm.retrieval import IndexFollower, open_version
from tests.retrieval.reference import reference_search


def _publish(root, emb, **kw):
    return write_index_version(root, emb, corpus_hash="c1", **kw)


def test_version_folder_is_named_in_one_place(tmp_path):
    path = _publish(tmp_path, np.zeros((3, 4), np.float32))
    assert path == version_dir(tmp_path, 1) and version_number(path) == 1
    with pytest.raises(ValueError, match="not an index version folder"):
        version_number(tmp_path / "snapshots")


def test_open_version_decodes_and_searches(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((40, 8)).astype(np.float32)
    _publish(tmp_path, emb)
    _publish(tmp_path, float32_to_bf16_bits(emb))  # v2: stored as bf16 bits
    v = open_version(tmp_path, expect_corpus_hash="c1", expect_dim=8)
    assert v.version == 2 and v.path == version_dir(tmp_path, 2) and v.embeddings.dtype == np.float32
    assert np.array_equal(v.embeddings, bf16_bits_to_float32(float32_to_bf16_bits(emb)))
    assert isinstance(v.index, ExactIndex)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    assert np.array_equal(v.index.search(q, 4)[1], reference_search(q, v.embeddings, 4)[1])
    one = open_version(tmp_path, 1, backend="faiss-hnsw")  # by number, other backend
    assert one.version == 1 and np.array_equal(one.embeddings, emb) and isinstance(one.index, FaissIndex)
    same = open_version(version_dir(tmp_path, 1), backend=None)  # a version folder itself; no backend
    assert same.path == version_dir(tmp_path, 1) and same.index is None
    with pytest.raises(IndexMismatchError):
        open_version(tmp_path, expect_corpus_hash="other")
    with pytest.raises(IndexMismatchError):
        open_version(tmp_path, expect_dim=9)


def test_follower_swaps_only_to_a_newer_version(tmp_path):
    emb = np.eye(6, 4, dtype=np.float32)
    _publish(tmp_path, emb)
    follower = IndexFollower(tmp_path, expect_corpus_hash="c1", expect_dim=4)
    assert follower.version is None and follower.load() and follower.version == 1
    held = follower.current
    assert not follower.poll() and not follower.load()  # nothing newer
    _publish(tmp_path, 2 * emb, encoder_step=7)
    assert follower.poll() and follower.version == 2 and follower.staleness(10) == 3
    assert np.array_equal(follower.embeddings, 2 * emb)
    assert held.version == 1 and np.array_equal(held.embeddings, emb)  # a holder of the old one keeps it
    assert follower.load(1) and follower.version == 1  # an explicit version (resuming a checkpoint)
