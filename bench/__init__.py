"""Benchmarks of realm: ``python -m bench [NAME ...] [--quick]`` from the repository root.

Each benchmark writes ``bench/results/<name>.json``; every run regenerates ``bench/RESULTS.md`` from
all of them. Figures are medians of several timed runs after a warm-up; comparisons are ratios
measured round by round in the same run (the machine is shared, so absolute figures drift with its
load, which each table records). Benchmarks are never unit tests.
"""
