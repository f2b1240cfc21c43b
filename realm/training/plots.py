"""Plots a person would rather look at than read: training curves and result bars (matplotlib, Agg).

They sit beside the metric logger whose ``metrics.jsonl`` they draw. matplotlib is imported on the first
plot, not with this module, so that a training recipe importing :func:`plot_curves` stays light.
"""

from __future__ import annotations

import logging
from pathlib import Path

from realm.training.logger import read_metrics

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_metrics(metrics_path: str | Path, keys: list[str], out: str | Path, title: str = "") -> Path:
    """One panel per metric key against the step (raw and a moving average)."""
    plt = _pyplot()
    rows = read_metrics(metrics_path)
    keys = [k for k in keys if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
        steps, vals = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(steps, vals, alpha=0.3, lw=1)
        ax.plot(steps, _smooth(vals, max(1, len(vals) // 20)), lw=2)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_bars(labels: list[str], series: dict[str, list[float]], out: str | Path, title: str = "", ylabel: str = "",
              errors: dict[str, list[float]] | None = None) -> Path:
    """Grouped bar chart: one group per label, one bar per series (values in %; None = not applicable);
    ``errors`` (same shape as ``series``) draws error bars, e.g. the sd over seeds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(labels), 3.6))
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        shown = [float("nan") if v is None else v for v in vals]  # None: not applicable, no bar
        err = (errors or {}).get(name)
        bars = ax.bar(xs, [0.0 if v != v else v for v in shown], width, label=name,
                      yerr=None if err is None else [0.0 if v != v else e for v, e in zip(shown, err)], capsize=2)
        ax.bar_label(bars, labels=["" if v != v else f"{v:.1f}" for v in shown], fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_curves(run_dir: str | Path, keys: list[str], title: str) -> Path | None:
    """``RUN/curves.png`` from ``RUN/metrics.jsonl``; a failure is logged, never raised (a plot must not
    fail a finished run). Returns the image path, or None when it could not be drawn."""
    run_dir = Path(run_dir)
    try:
        return plot_metrics(run_dir / "metrics.jsonl", keys, run_dir / "curves.png", title=title)
    except Exception as e:
        log.warning("could not plot curves: %s", e)
        return None
