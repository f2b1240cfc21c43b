"""FilteredExactIndex (int8 candidates + float64 re-scoring) is bit-identical to the oracle."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realm.index.exact import brute_force_search
from realm.index.exact_filtered import FilteredExactIndex
from realm.index.store import float32_to_bf16_bits


def assert_identical(index, queries, emb, k, exclude):
    s, i = index.search(queries, k, exclude)
    s_ref, i_ref = brute_force_search(queries, emb, k, exclude)
    assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == (len(queries), k)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(s, s_ref)
    assert index.fallbacks == 0


@st.composite
def problems(draw):
    n = draw(st.integers(1, 300))
    d = draw(st.integers(1, 24))
    q = draw(st.integers(1, 6))
    k = draw(st.integers(1, n + 5))
    seed = draw(st.integers(0, 2**31))
    kind = draw(st.sampled_from(["gauss", "ints", "dups", "scaled", "lowrank"]))
    ex_ids = st.lists(st.integers(-3, n + 3), max_size=n + 2)
    exclude = draw(st.none() | st.lists(ex_ids, min_size=q, max_size=q))
    geometry = dict(chunk_size=draw(st.integers(1, 128)), group=draw(st.integers(1, 16)),
                    sample=draw(st.integers(1, 64)), tile=draw(st.integers(1, 64)),
                    merge_every=draw(st.none() | st.integers(1, 64)))
    return n, d, q, k, seed, kind, exclude, geometry


def make(kind, n, d, q, rng):
    if kind == "ints":  # exact scores, many exact ties at the cut
        return (rng.integers(-2, 3, (n, d)).astype(np.float32),
                rng.integers(-2, 3, (q, d)).astype(np.float32))
    emb = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((q, d)).astype(np.float32)
    if kind == "dups":  # duplicated rows: equal scores under different ids
        emb = emb[rng.integers(0, max(1, n // 3), n)]
        queries[0] = emb[0]
    elif kind == "scaled":  # very different norms per block and per coordinate
        emb *= np.exp(rng.uniform(-6, 6, (n, 1))).astype(np.float32)
        queries *= np.exp(rng.uniform(-3, 3, (1, d))).astype(np.float32)
    elif kind == "lowrank":  # a shared direction: scores concentrated, many candidates
        emb = 5 + 0.01 * emb
    return emb, queries


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_identical_to_oracle(problem):
    n, d, q, k, seed, kind, exclude, geometry = problem
    rng = np.random.default_rng(seed)
    emb, queries = make(kind, n, d, q, rng)
    assert_identical(FilteredExactIndex(emb, **geometry), queries, emb, k, exclude)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 12), ulps=st.integers(1, 4))
def test_adversarial_near_ties_below_int8_and_bf16_resolution(seed, k, ulps):
    """Blocks whose scores differ by a few float32 ulps (far below one int8 or bf16 step):
    the int8 scores cannot separate them, only the re-scoring can."""
    rng = np.random.default_rng(seed)
    d, n = 16, 400
    base = rng.standard_normal(d).astype(np.float32)
    emb = np.repeat(base[None], n, 0)
    # nudge one coordinate by a few ulps in both directions: near-ties and exact ties
    steps = rng.integers(-ulps, ulps + 1, n)
    emb[:, 0] = base[0] + steps * np.spacing(np.abs(base[0]))
    emb[rng.integers(0, n, 50)] += rng.standard_normal((50, d)).astype(np.float32)
    queries = np.stack([np.eye(d, dtype=np.float32)[0], base, -base])
    exclude = [rng.integers(0, n, 5).tolist(), [], list(range(0, n, 2))]
    assert_identical(FilteredExactIndex(emb, chunk_size=64, group=8, sample=16),
                     queries, emb, k, exclude)


def test_large_random_matches_oracle_and_candidates_stay_few():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((20000, 64)).astype(np.float32)
    queries = rng.standard_normal((16, 64)).astype(np.float32)
    exclude = [rng.integers(0, 20000, 30).tolist() for _ in range(16)]
    assert_identical(FilteredExactIndex(emb, chunk_size=4096), queries, emb, 8, exclude)


def test_zero_queries_and_blocks_tie_everywhere():
    emb = np.zeros((50, 4), np.float32)
    emb[7] = 1.0
    queries = np.zeros((2, 4), np.float32)
    queries[1] = -1.0
    assert_identical(FilteredExactIndex(emb, chunk_size=16, group=4), queries, emb, 5,
                     [[0, 3], [7]])


def test_inputs_bf16_bits_torch_and_memmap(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((4, 16)).astype(np.float32)
    bits = float32_to_bf16_bits(emb)
    rounded = (bits.astype(np.uint32) << 16).view(np.float32)
    assert_identical(FilteredExactIndex(bits), queries, rounded, 5, None)
    assert_identical(FilteredExactIndex(torch.from_numpy(emb)), torch.from_numpy(queries),
                     emb, 5, None)
    np.save(tmp_path / "e.npy", emb)
    mm = np.load(tmp_path / "e.npy", mmap_mode="r")
    assert_identical(FilteredExactIndex(mm, chunk_size=100), queries, emb, 5, None)


def test_int8_product_is_exact_at_the_extremes():
    """The error bound assumes exact int32 accumulation (no int16 saturation)."""
    for a, b in [(127, 127), (-127, 127), (-127, -127)]:
        x = torch.full((33, 128), a, dtype=torch.int8)
        y = torch.full((128, 40), b, dtype=torch.int8)
        assert torch._int_mm(x, y).unique().tolist() == [128 * a * b]


def test_errors():
    with pytest.raises(ValueError, match="row 1 is not finite"):
        FilteredExactIndex(np.array([[0.0], [np.nan]], np.float32))
    idx = FilteredExactIndex(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="queries must be"):
        idx.search(np.zeros((1, 5), np.float32), 1)
    with pytest.raises(ValueError, match="exclude has"):
        idx.search(np.zeros((2, 4), np.float32), 1, exclude=[[0]])
    with pytest.raises(ValueError, match="k must be"):
        idx.search(np.zeros((1, 4), np.float32), 0)


def test_broken_int8_kernel_is_caught_and_search_redone_in_float64(monkeypatch):
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    index = FilteredExactIndex(emb, chunk_size=64, sample=300)
    real = torch._int_mm

    def broken(a, b, out=None):
        if out is None:
            return real(a, b) + 1000
        real(a, b, out=out)
        return out.add_(1000)

    monkeypatch.setattr(torch, "_int_mm", broken)
    s, i = index.search(queries, 4)
    assert index.fallbacks == 1
    s_ref, i_ref = brute_force_search(queries, emb, 4)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(s, s_ref)


def test_width_limits():
    with pytest.raises(ValueError, match="embedding width"):
        FilteredExactIndex(np.zeros((3, 0), np.float32))


def test_chunks_where_most_pairs_pass_are_scored_in_float64(monkeypatch):
    """All blocks equal: every group passes every threshold, so whole chunks go through the float64 path
    (and ties resolve to the lowest ids, as in the oracle)."""
    emb = np.tile(np.float32([0.5, -1.0, 2.0, 0.25]), (10000, 1))
    queries = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    index = FilteredExactIndex(emb, chunk_size=2048)
    used = []
    real = FilteredExactIndex._float64_chunk
    monkeypatch.setattr(FilteredExactIndex, "_float64_chunk", lambda self, *a: used.append(1) or real(self, *a))
    assert_identical(index, queries, emb, 6, [[0, 1]] * 8)
    assert len(used) >= 2
