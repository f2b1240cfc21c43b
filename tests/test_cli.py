"""The `realm` command line parses its arguments before importing anything heavy (torch, transformers, ...).

Behaviour checks, not timings (the timing lives in bench/bench_cli.py): every `--help` runs in a fresh
interpreter that then reports which heavy modules got imported.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "numpy", "tokenizers", "faiss", "bm25s", "fastapi", "realm.convert.hf_realm",
         "realm.config")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _command_paths(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    """Every command path of the parser: (), ("ask",), ("corpus",), ("corpus", "build"), ..."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _command_paths(sub, prefix + (name,))
    return paths


def test_every_help_imports_nothing_heavy():
    from realm.cli import build_parser

    paths = _command_paths(build_parser())
    assert {("ask",), ("serve",), ("convert", "from-hf-realm"), ("index", "update"), ("demo",)} <= set(paths)
    probe = f"""
import io, json, sys, contextlib
from realm.cli import main
helps = {{}}
for path in {[list(p) for p in paths]!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(path + ["--help"])
        except SystemExit as e:
            assert e.code == 0, (path, e.code)
    helps[" ".join(path)] = out.getvalue()
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "helps": helps}}))
"""
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["heavy"] == [], f"`realm ... --help` imported {report['heavy']}"
    for path, text in report["helps"].items():
        assert text.startswith(f"usage: realm {path}".rstrip()), path
    assert "--questions" in report["helps"]["ask"] and "--server" in report["helps"]["ask"]


def test_usage_error_imports_nothing_heavy():
    probe = f"""
import sys
from realm.cli import main
try:
    main(["ask"])
except SystemExit as e:
    print(e.code, [m for m in {HEAVY!r} if m in sys.modules])
"""
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert res.stdout.strip() == "2 []" and "RUN_DIR" in res.stderr


def test_python_dash_m_realm():
    res = subprocess.run([sys.executable, "-m", "realm", "--help"], capture_output=True, text=True, env=_env(),
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("usage: realm")
    for verb in ("ask", "serve", "demo", "convert", "index", "finetune", "evaluate"):
        assert verb in res.stdout


def test_convert_handlers_still_reach_the_converter(tmp_path, capsys):
    """The convert commands are registered without importing realm.convert; running one still works."""
    from realm.cli import main

    (tmp_path / "src").mkdir()
    assert main(["convert", "from-hf-realm", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_cli_makes_openmp_threads_sleep_unless_told_otherwise():
    # spinning OpenMP waits made 2-thread training 6-24x slower on a shared machine (bench/RESULTS-train.md)
    code = "import os, realm.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in _env().items() if k != "OMP_WAIT_POLICY"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.stdout.strip() == "PASSIVE", res.stderr
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, timeout=120)
    assert res.stdout.strip() == "ACTIVE", res.stderr
