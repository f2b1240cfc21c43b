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


def test_scale_power_law_fit_and_recall():
    from bench.scale import fit_power, fits, recall_at_k

    ns = [1e4, 1e5, 1e6]
    c, b = fit_power(ns, [3.0 * n ** 1.5 for n in ns])
    assert c == pytest.approx(3.0) and b == pytest.approx(1.5)
    ids, ref = np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([[4, 3, 9, 1], [0, 10, 11, 12]])
    assert recall_at_k(ids, ref) == pytest.approx((3 / 4 + 0) / 2)
    # fits: sizes >= 100k when two of them exist (the 10k point, off the line, is left out)
    pts = [{"n": n, "write_float32_s": t, "write_bfloat16_s": t, "disk_float32_bytes": 512 * n,
            "disk_bfloat16_bytes": 256 * n, "backends": {"exact": {"measured": True, "build_s": 1e-5,
                                                                    "search_ms": t, "ram_bytes": 512 * n}}}
           for n, t in ((10_000, 50.0), (100_000, 1.0), (1_000_000, 10.0))]
    f = fits(pts)
    assert f["search exact (ms)"]["b"] == pytest.approx(1.0) and f["search exact (ms)"]["sizes"] == "100,000-1,000,000"
    assert f["disk bfloat16 (bytes)"]["at_paper"] == pytest.approx(256 * 13_300_000)
    assert "build exact (s)" not in f  # wrapping an array: nothing to fit


def test_scale_held_bytes_counts_shared_storage_once():
    import torch

    from bench.scale import held_bytes

    class Holder:
        pass

    h = Holder()
    a = np.zeros((100, 8), np.float32)
    h.arr, h.same, h.tensor, h.codes, h.other = a, torch.from_numpy(a), torch.from_numpy(a), np.zeros(10, np.int8), 3
    assert held_bytes(h) == a.nbytes + 10


def test_refresh_step_classification_against_brute_force():
    """A step is 'during' a build when >= half of it overlaps builds, 'outside' when it overlaps none."""
    from bench.refresh import build_intervals, split_steps

    log = ("[index-builder pid 7] built v0002 from snapshot step 10 in 2.00 s (from 100.000 to 102.000)\n"
           "noise\n[index-builder pid 7] built v0003 from snapshot step 20 in 1.50 s (from 105.000 to 106.500)\n")
    builds = build_intervals(log)
    assert builds == [(100.0, 102.0), (105.0, 106.5)]
    rows = [{"step": 1, "time": 99.0, "perf/step_s": 1.0},   # [98, 99]: outside
            {"step": 2, "time": 100.4, "perf/step_s": 1.0},  # [99.4, 100.4]: 0.4 inside: neither
            {"step": 3, "time": 101.5, "perf/step_s": 1.0},  # inside
            {"step": 4, "time": 105.6, "perf/step_s": 1.0},  # [104.6, 105.6]: 0.6 inside
            {"step": 5, "time": 108.0, "perf/step_s": 1.0},  # outside
            {"step": 6, "time": 108.5}]                       # no timing: skipped
    during, outside = split_steps(rows, builds)
    assert during == [1.0, 1.0] and outside == [1.0, 1.0]


def test_every_benchmark_module_has_the_entry_point_the_command_calls():
    """``python -m bench NAME`` calls ``run(argv, quick)`` (returns a Result) or else the script's ``main(argv)``."""
    import importlib
    import inspect

    from bench.__main__ import BENCHMARKS

    for name, (module_name, _, _) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        if hasattr(module, "run"):
            assert list(inspect.signature(module.run).parameters)[:2] == ["argv", "quick"], name
        else:
            assert callable(module.main), name


def test_a_scripts_own_tables_are_copied_into_results_md(tmp_path, monkeypatch):
    from bench.__main__ import _demote_headings

    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "BENCH", tmp_path)
    res = report.Result("script", "A script", False, [])
    res.markdown(_demote_headings("# Title\n\n## Part\n\n| a |\n|---|\n| 1 |\n### Deep"))
    res.save()
    md = report.write_markdown(["script"]).read_text()
    assert "### Title" in md and "### Part" in md and "### Deep" in md and "| 1 |" in md
    assert "\n# Title" not in md and "\n## Part" not in md
