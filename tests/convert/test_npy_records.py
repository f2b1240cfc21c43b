"""block_records.npy without arbitrary pickle: what np.save writes for an object array of bytes loads,
anything that would call something else is refused before it runs."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from realm.convert.npy_records import UnsafeRecordsError, load_records, save_records

FIX = Path(__file__).parents[1] / "fixtures" / "hf_realm"
HUB = FIX / "openqa_hub" / "block_records.npy"  # transformers 4.40.2 + numpy 1.26.4: protocol 3


class _MakeDir:
    """Unpickling this calls os.mkdir(path): the proof that code ran is the folder it leaves behind."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def write_malicious(path: Path, marker: Path) -> None:
    """An object array whose pickle calls os.mkdir(marker) when fully unpickled."""
    records = np.empty(3, dtype=object)
    records[:] = [b"paris is the capital of france .", _MakeDir(marker), b"rome"]
    np.save(path, records, allow_pickle=True)


def object_array(texts) -> np.ndarray:
    records = np.empty(len(texts), dtype=object)
    records[:] = list(texts)
    return records


def test_hub_style_file_loads_without_pickle_and_writes_back_identically(tmp_path):
    records, info = load_records(HUB)
    assert info == {"dtype": "|O", "pickle_protocol": 3, "pickle_module": "numpy.core.multiarray"}
    reference = np.load(FIX / "openqa" / "block_records.npy", allow_pickle=False)  # the same texts, |S
    assert records.dtype == object and records.tolist() == reference.tolist()
    save_records(tmp_path / "out.npy", records.tolist(), info)
    assert (tmp_path / "out.npy").read_bytes() == HUB.read_bytes()


def test_numpy2_file_loads_and_writes_back_identically(tmp_path):
    texts = [b"", "\u00e9t\u00e9".encode(), b"x" * 70000, b"dup", b"dup"]  # > one pickle frame, non-ASCII
    np.save(tmp_path / "a.npy", object_array(texts), allow_pickle=True)  # what save_pretrained does on numpy 2
    records, info = load_records(tmp_path / "a.npy")
    assert info == {"dtype": "|O", "pickle_protocol": 4, "pickle_module": "numpy._core.multiarray"}
    assert records.tolist() == texts
    save_records(tmp_path / "b.npy", texts, info)
    assert (tmp_path / "b.npy").read_bytes() == (tmp_path / "a.npy").read_bytes()


def test_fixed_width_file_needs_no_pickle(tmp_path):
    records, info = load_records(FIX / "openqa" / "block_records.npy")
    assert info == {"dtype": records.dtype.str} and records.dtype.kind == "S"
    save_records(tmp_path / "s.npy", records.tolist(), info)
    assert (tmp_path / "s.npy").read_bytes() == (FIX / "openqa" / "block_records.npy").read_bytes()
    save_records(tmp_path / "longer.npy", records.tolist() + [b"y" * 500], info)  # wider than recorded: not cut
    assert np.load(tmp_path / "longer.npy")[-1] == b"y" * 500


def test_malicious_file_is_refused_and_nothing_runs(tmp_path):
    path, marker = tmp_path / "evil.npy", tmp_path / "pwned"
    write_malicious(path, marker)
    with pytest.raises(UnsafeRecordsError, match=r"evil\.npy: the pickle refers to posix\.mkdir.*refused"):
        load_records(path)
    assert not marker.exists()  # os.mkdir was never called
    np.load(path, allow_pickle=True)  # control: plain pickle does run the payload
    assert marker.is_dir()


def test_other_contents_are_refused_unless_pickle_is_allowed(tmp_path):
    cases = {
        "str": object_array(["paris", "rome"]),  # str records: the port would fail on .decode()
        "nested": object_array([b"a", [b"b"]]),
        "int": object_array([b"a", 3]),
        "2d": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
    }
    for name, arr in cases.items():
        np.save(tmp_path / f"{name}.npy", arr, allow_pickle=True)
        with pytest.raises(UnsafeRecordsError, match=f"{name}.npy"):
            load_records(tmp_path / f"{name}.npy")
    records, info = load_records(tmp_path / "str.npy", allow_pickle=True)  # the caller vouches for the file
    assert records.tolist() == ["paris", "rome"] and info == {"dtype": "|O"}


def test_malformed_pickle_is_a_clear_error(tmp_path):
    good = HUB.read_bytes()
    (tmp_path / "cut.npy").write_bytes(good[: len(good) - 40])
    with pytest.raises(UnsafeRecordsError, match="cut.npy: not a readable object-array pickle"):
        load_records(tmp_path / "cut.npy")
    header_end = good.index(b"\n") + 1  # a pickle of a plain dict where the array should be
    (tmp_path / "dict.npy").write_bytes(good[:header_end] + pickle.dumps({"a": b"b"}, protocol=3))
    with pytest.raises(UnsafeRecordsError, match="dict.npy: holds a dict"):
        load_records(tmp_path / "dict.npy")
