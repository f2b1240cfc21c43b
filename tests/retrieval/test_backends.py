"""build_backend: each exact kind against the numpy reference (ties, exclusions, padding); HNSW and
IVF-PQ recall against exact search; the config names the backend."""

import numpy as np
import pytest

from realm.config import load_config
from realm.index.exact import ExactIndex
from realm.index.faiss_index import FaissIndex
from realm.retrieval import BACKENDS, build_backend
from realm.retrieval.backends import ivfpq_params
from tests.retrieval.reference import reference_search

EXACT_KINDS = ("exact", "exact-int8", "faiss-flat")


def integer_matrix(rng, n, d):
    """Small integers: every inner product is exact in float32, and ties are frequent."""
    return rng.integers(-2, 3, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("backend", EXACT_KINDS)
@pytest.mark.parametrize("n,k", [(50, 5), (7, 10), (300, 1)])
def test_exact_kinds_match_the_reference(backend, n, k):
    rng = np.random.default_rng(n)
    emb, q = integer_matrix(rng, n, 6), integer_matrix(rng, 9, 6)
    exclude = [rng.choice(n, size=rng.integers(0, 4), replace=False).tolist() for _ in range(len(q))]
    exclude[0] = list(range(n - 2))  # nearly everything excluded: padding
    index = build_backend(emb, backend)
    for ex in (None, exclude):
        s, i = index.search(q, k, ex)
        s_ref, i_ref = reference_search(q, emb, k, ex)
        assert np.array_equal(s, s_ref)
        if backend in ("exact", "exact-int8"):
            assert np.array_equal(i, i_ref)
        else:  # FAISS keeps an arbitrary subset of the blocks tied at the k-th score (see realm.retrieval.backends)
            kth = s_ref[:, -1:]
            assert np.array_equal(np.where(s_ref > kth, i, -2), np.where(s_ref > kth, i_ref, -2))
            full = q.astype(np.float64) @ emb.T.astype(np.float64)
            for row, ids in enumerate(i):
                assert all(ids[j] < 0 or full[row, ids[j]] == s_ref[row, j] for j in range(k))
                assert not set(ids.tolist()) & set((ex or [[]] * len(q))[row])
    if 1 < k <= n:  # the tie rule is really exercised
        assert sum(len(set(r)) < k for r in reference_search(q, emb, k)[0]) > 0


@pytest.mark.parametrize("backend", EXACT_KINDS)
def test_exact_kinds_on_real_valued_embeddings(backend):
    rng = np.random.default_rng(1)
    emb, q = rng.standard_normal((500, 16)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)
    s, i = build_backend(emb, backend).search(q, 10)
    s_ref, i_ref = reference_search(q, emb, 10)
    assert np.array_equal(i, i_ref)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-5)


def _recall(ids, ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref)])


@pytest.mark.parametrize("backend,bound", [("faiss-hnsw", 0.95), ("faiss-ivfpq", 0.85)])
def test_approximate_kinds_reach_high_recall(backend, bound):
    rng = np.random.default_rng(0)
    emb, q = rng.standard_normal((3000, 32)).astype(np.float32), rng.standard_normal((100, 32)).astype(np.float32)
    index = build_backend(emb, backend)
    assert isinstance(index, FaissIndex) and index.kind == backend.split("-")[1]
    _, ids = index.search(q, 10)
    _, ref = reference_search(q, emb, 10)
    assert _recall(ids, ref) >= bound
    _, ids = index.search(q, 10, exclude=[r[:3].tolist() for r in ref])  # exclusions still hold
    assert not any(set(a) & set(r[:3]) for a, r in zip(ids, ref))


def test_ivfpq_params_fit_small_corpora():
    for n, d in [(60, 32), (3000, 128), (10, 7)]:
        p = ivfpq_params(n, d)
        assert d % p["m"] == 0 and 2 ** p["nbits"] <= max(2, n) and 1 <= p["nprobe"] <= p["nlist"]
    emb = np.random.default_rng(0).standard_normal((60, 32)).astype(np.float32)  # the tiny world's size
    _, ids = build_backend(emb, "faiss-ivfpq").search(emb[:5], 3)
    assert (ids >= 0).all()


def test_config_selects_the_backend():
    emb = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    assert set(BACKENDS) == {"exact", "exact-int8", "faiss-flat", "faiss-hnsw", "faiss-ivfpq"}
    assert isinstance(build_backend(emb, load_config("tiny").index.backend), ExactIndex)
    cfg = load_config("tiny", ["index.backend=faiss-hnsw"])
    index = build_backend(emb, cfg.index.backend)
    assert isinstance(index, FaissIndex) and index.kind == "hnsw"
    with pytest.raises(ValueError, match="index.backend"):
        build_backend(emb, "annoy")
    with pytest.raises(ValueError, match="bf16 bits"):
        build_backend(emb.view(np.uint16)[:, :8], "exact")
