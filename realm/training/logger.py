"""One metric logger, several sinks: a JSONL file on disk (that tests and plots read back) and
a tqdm progress bar. Keys are namespaced (``loss/mlm``, ``index/version``, ``perf/tokens_per_s``).

On resume at ``start_step`` the file is first cut back to the rows of steps ``<= start_step`` (rows a
killed run logged after its last checkpoint, and a torn last line, would otherwise be duplicated)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tqdm import tqdm


class MetricLogger:
    def __init__(self, path: str | Path, total_steps: int, desc: str, start_step: int = 0, progress: bool = True,
                 bar_keys: tuple[str, ...] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _truncate_after(self.path, start_step)
        self._f = open(self.path, "a", encoding="utf-8")
        self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step", disable=not progress,
                        dynamic_ncols=True)
        self.bar_keys = bar_keys

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, "time": round(time.time(), 3), **{k: _plain(v) for k, v in metrics.items()}}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        shown = {k.split("/")[-1]: _short(row[k]) for k in self.bar_keys if k in row}
        if shown:
            self.bar.set_postfix(shown, refresh=False)

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
        self._f.close()


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _truncate_after(path: Path, step: int) -> None:
    """Keep only whole rows with ``row["step"] <= step`` (rewritten atomically)."""
    kept, changed = [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
                keep = line.endswith("\n") and isinstance(row, dict) and row.get("step", 0) <= step
            except (ValueError, RecursionError):
                keep = False
            if keep:
                kept.append(line)
            else:
                changed = changed or bool(line.strip())
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    return v


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else v
