"""The benchmark command's plumbing (not its figures: benchmarks are never unit tests)."""
import json

import numpy as np
import pytest

import bench.report as report
from bench.__main__ import main
from bench.search import oracle
from realm.index.exact import brute_force_search


@pytest.mark.parametrize("ints", [False, True])
def test_search_oracle_shortcut_equals_brute_force(ints):
    rng = np.random.default_rng(0)
    if ints:  # many exact ties at the cut
        emb, q = rng.integers(-2, 3, (2000, 4)).astype(np.float32), rng.integers(-2, 3, (6, 4)).astype(np.float32)
    else:
        emb, q = rng.standard_normal((2000, 16)).astype(np.float32), rng.standard_normal((6, 16)).astype(np.float32)
    for k in (1, 8, 2500):
        got, want = oracle(q, emb, k, chunk=300), brute_force_search(q, emb, k)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_results_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "BENCH", tmp_path)
    res = report.Result("demo", "A demo table", True, ["--n", "5"])
    rows = res.table("sizes", ["method", "ms"])
    rows.append(["x", 12.3456])
    res.note("a note")
    path = res.save()
    data = json.loads(path.read_text())
    assert data["command"] == "python -m bench demo --quick -- --n 5"
    assert data["machine"]["cores"] >= 1 and data["load_start"].count(" ") == 2
    md = report.write_markdown(["demo"]).read_text()
    assert "## A demo table (`demo`)" in md and "| x | 12.3 |" in md and "- a note" in md
    assert "`python -m bench demo --quick -- --n 5`" in md


def test_rounds_and_ratio():
    calls = []
    times = report.rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, runs=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then interleaved rounds
    assert report.ratio({"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 3.0]}, "a", "b") == 3.0
    assert report.percentile([5, 1, 3, 2, 4], 50) == 3


def test_cli_lists_and_rejects_unknown(capsys):
    assert main(["--list"]) == 0
    assert "search" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["nope"])
