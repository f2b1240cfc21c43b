"""Training curves beside the logger: a finished run gets RUN/curves.png, and a plot never fails a run."""

import json

from realm.training.plots import plot_curves


def test_plot_curves_writes_png(tmp_path):
    rows = [{"step": s, "loss/mlm": 5.0 - 0.1 * s, "acc/masked": 0.01 * s} for s in range(1, 21)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_curves(tmp_path, ["loss/mlm", "acc/masked", "not/logged"], "t")
    assert out == tmp_path / "curves.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_curves_failure_is_logged_not_raised(tmp_path, caplog):
    assert plot_curves(tmp_path / "missing", ["loss/mlm"], "t") is None  # no metrics.jsonl
    assert "could not plot curves" in caplog.text
    assert not (tmp_path / "missing" / "curves.png").exists()
