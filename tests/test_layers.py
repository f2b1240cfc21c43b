"""The pipeline's layering holds: `lint-imports` with the contracts in pyproject.toml passes.

config <- data <- models <- index <- retrieval <- training <- evaluation <- serving <- convert <- top
(experiment, pipeline, seeds, cli): an import points down only, and no two modules of a package import
each other, directly or round a loop. Imports inside functions count (second test).
"""

import logging
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def keep_logging():
    """import-linter's CLI reconfigures logging (its dictConfig disables every logger that exists):
    restore the state, or later tests in this process lose the package's log records."""
    manager = logging.root.manager
    before = {name: (lg.disabled, lg.level, lg.propagate, lg.handlers[:])
              for name, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = (logging.root.level, logging.root.handlers[:])
    yield
    for name, (disabled, level, propagate, handlers) in before.items():
        lg = manager.loggerDict[name]
        lg.disabled, lg.level, lg.propagate, lg.handlers = disabled, level, propagate, handlers
    logging.root.level, logging.root.handlers = root


def test_realm_imports_follow_the_layers(capsys):
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "BROKEN" not in report and "kept" in report


PROBE_CONFIG = """
[tool.importlinter]
root_package = "probe"

[[tool.importlinter.contracts]]
name = "layers"
type = "layers"
containers = ["probe"]
layers = ["high", "low"]

[[tool.importlinter.contracts]]
name = "acyclic"
type = "acyclic_siblings"
ancestors = ["probe"]
"""


LAZY_UP = "def f():\n    from probe import high\n    return high\n"
LAZY_BACK = "def f():\n    from probe.low import a\n    return a\n"


@pytest.mark.parametrize("files, broken, edge", [
    ({"low/__init__.py": LAZY_UP}, "layers", "probe.low -> probe.high"),  # an upward import inside a function
    ({"low/b.py": LAZY_BACK}, "acyclic", ".b -> .a"),  # a cycle closed by an import inside a function
    ({}, None, None),  # downward and sideways imports only
])
def test_lazy_imports_are_checked_like_top_level_ones(tmp_path, monkeypatch, capsys, files, broken, edge):
    layout = {"__init__.py": "", "high.py": "from probe import low\n", "low/__init__.py": "",
              "low/a.py": "from probe.low import b\n", "low/b.py": "X = 1\n", **files}
    for name, text in layout.items():
        (tmp_path / "probe" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "probe" / name).write_text(text)
    (tmp_path / "pyproject.toml").write_text(PROBE_CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    if broken is None:
        assert code == 0, report
    else:
        assert code == 1 and f"{broken} BROKEN" in report and edge in report, report
