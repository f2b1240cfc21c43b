"""Input errors that say where (file, line) and what is wrong."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class InputError(ValueError):
    """Bad input data. ``str(err)`` reads ``FILE:LINE: what is wrong``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")


@dataclass
class SkipReport:
    """What ``--skip-bad`` skipped, and why: nothing is dropped silently."""

    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, err: InputError) -> None:
        self.reasons[re.split(r"[:('\"]", err.message, maxsplit=1)[0].strip()] += 1
        if len(self.examples) < 20:
            self.examples.append(str(err))

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped 0 bad records"
        parts = ", ".join(f"{n} {why}" for why, n in self.reasons.most_common())
        return f"skipped {self.total} bad records ({parts})"


def handle(err: InputError, skip: SkipReport | None) -> None:
    """Raise ``err`` unless the caller opted into skipping, in which case record it."""
    if skip is None:
        raise err
    skip.add(err)
