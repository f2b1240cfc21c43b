"""Versioned index storage: round trip, LATEST, pruning, errors, concurrent readers."""
import json
import threading

import numpy as np
import pytest

import realm
from realm.index.store import (
    IndexCorruptError,
    IndexManifest,
    IndexMismatchError,
    IndexWriter,
    bf16_bits_to_float32,
    float32_to_bf16_bits,
    latest_version,
    open_index,
    to_float32,
    write_index_version,
)


def emb(n=10, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_roundtrip_and_manifest(tmp_path):
    e = emb()
    path = write_index_version(tmp_path, e, corpus_hash="abc", encoder="ckpt/enc",
                               encoder_step=7, extra={"note": "x"})
    assert path == tmp_path / "v000001" and latest_version(tmp_path) == 1
    for where in (tmp_path, path):
        arr, m = open_index(where, expect_corpus_hash="abc", expect_dim=4)
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
        np.testing.assert_array_equal(arr, e)
        assert (m.version, m.num_blocks, m.dim, m.dtype) == (1, 10, 4, "float32")
        assert (m.encoder, m.encoder_step, m.extra) == ("ckpt/enc", 7, {"note": "x"})
        assert m.format_version == 1 and m.realm_version == realm.__version__
        assert m.created_at.endswith("+00:00")
    arr, _ = open_index(tmp_path, mmap=False)
    assert not isinstance(arr, np.memmap)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp", "LATEST.tmp"))]


def test_bf16_storage(tmp_path):
    e = emb(50, 8)
    write_index_version(tmp_path, e, corpus_hash="h", dtype="bfloat16")
    arr, m = open_index(tmp_path)
    assert m.dtype == "bfloat16" and arr.dtype == np.uint16
    back = to_float32(arr, m)
    np.testing.assert_allclose(back, e, rtol=2 ** -8)
    np.testing.assert_array_equal(float32_to_bf16_bits(back), arr)  # idempotent
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, 0.0], np.float32)
    # round-to-nearest-even: 1+2^-8 is a tie -> 1.0; 1+3*2^-8 -> 1+2^-6 (even mantissa)
    assert bf16_bits_to_float32(float32_to_bf16_bits(x)).tolist() == \
        [1.0, 1.0, 1.015625, -2.5, np.inf, 0.0]


def test_latest_follows_newest_and_keep_prunes(tmp_path):
    for i in range(5):
        write_index_version(tmp_path, emb(seed=i), corpus_hash=f"h{i}", keep=2)
    assert latest_version(tmp_path) == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("v")) == \
        ["v000004", "v000005"]
    arr, m = open_index(tmp_path)
    assert m.version == 5 and m.corpus_hash == "h4"
    np.testing.assert_array_equal(arr, emb(seed=4))
    write_index_version(tmp_path, emb(seed=9), corpus_hash="h9", keep=1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("v")] == ["v000006"]
    assert latest_version(tmp_path / "nothing") is None


def test_mismatch_errors_name_values_and_folder(tmp_path):
    write_index_version(tmp_path, emb(), corpus_hash="corpusA")
    with pytest.raises(IndexMismatchError, match="corpusA.*corpusB") as ei:
        open_index(tmp_path, expect_corpus_hash="corpusB")
    assert "v000001" in str(ei.value) and isinstance(ei.value, ValueError)
    with pytest.raises(IndexMismatchError, match="dim=4.*dim=128"):
        open_index(tmp_path, expect_dim=128)


def test_corrupt_or_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no published index"):
        open_index(tmp_path / "empty")
    vdir = write_index_version(tmp_path, emb(), corpus_hash="h")
    mpath = vdir / "manifest.json"
    good = json.loads(mpath.read_text())
    mpath.write_text("{not json")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        open_index(tmp_path)
    mpath.write_text(json.dumps({**good, "num_blocks": 11}))
    with pytest.raises(IndexCorruptError, match=r"shape \(10, 4\).*\(11, 4\)"):
        open_index(vdir)
    mpath.write_text(json.dumps({k: v for k, v in good.items() if k != "dim"}))
    with pytest.raises(IndexCorruptError, match="lacks fields"):
        open_index(vdir)
    mpath.unlink()
    with pytest.raises(IndexCorruptError, match="incomplete"):
        open_index(tmp_path, retries=0)
    assert IndexManifest.from_dict(good).dim == 4


def test_writer_batches_and_failure_cleanup(tmp_path):
    e = emb(100, 6)
    with IndexWriter(tmp_path, 100, 6, corpus_hash="h", encoder_step=3) as w:
        for s in range(0, 100, 32):
            w.write(s, e[s:s + 32])
    assert w.path.name == "v000001"
    np.testing.assert_array_equal(open_index(w.path)[0], e)
    with pytest.raises(RuntimeError, match="boom"):
        with IndexWriter(tmp_path, 100, 6, corpus_hash="h") as w:
            w.write(0, e[:10])
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="never written"):
        with IndexWriter(tmp_path, 100, 6, corpus_hash="h") as w:
            w.write(0, e[:99])
    with pytest.raises(ValueError, match="outside"):
        with IndexWriter(tmp_path, 100, 6, corpus_hash="h") as w:
            w.write(95, e[:10])
    assert latest_version(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "LATEST", "v000001"]


def test_concurrent_reader_never_sees_partial_index(tmp_path):
    """A reader repeatedly opening LATEST while versions are written and pruned only ever
    sees complete, self-consistent versions (row values encode the version number)."""
    n, d, versions = 2000, 32, 25
    write_index_version(tmp_path, np.full((n, d), 1, np.float32), corpus_hash="v1", keep=2)
    done, seen, errors = threading.Event(), [], []

    def writer():
        try:
            for v in range(2, versions + 1):
                with IndexWriter(tmp_path, n, d, corpus_hash=f"v{v}", keep=2) as w:
                    for s in range(0, n, 500):
                        w.write(s, np.full((min(500, n - s), d), v, np.float32))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            done.set()

    def reader():
        while not done.is_set() or len(seen) < 5:
            try:
                arr, m = open_index(tmp_path, mmap=len(seen) % 2 == 0)
                vals = np.unique(np.asarray(arr))
                assert vals.tolist() == [m.version], (vals, m.version)
                assert m.corpus_hash == f"v{m.version}" and arr.shape == (n, d)
                seen.append(m.version)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
                return

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert seen == sorted(seen) and len(set(seen)) > 1  # LATEST only moves forward
    assert open_index(tmp_path)[1].version == versions
