"""Input errors that say where (file, line) and what is wrong."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
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


def read_lines(f, path: str | Path, limit: int, first_lineno: int = 1) -> Iterator[tuple[int, bytes | InputError]]:
    """``(lineno, raw line)`` from binary file ``f``, holding at most ``limit`` bytes of one line in memory.

    A longer line is skipped to its end and yielded as an :class:`InputError` instead."""
    lineno = first_lineno - 1
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            size = len(raw)
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a chunk at a time
                raw = f.readline(1 << 20)
                size += len(raw)
            yield lineno, InputError(path, lineno, f"line too long: {size} bytes (limit {limit}; split the record)")
            continue
        yield lineno, raw


def parse_json_line(line: str, path: str | Path, lineno: int):
    """``json.loads`` with every failure as an :class:`InputError` at ``path:lineno``."""
    try:
        return json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as e:
        raise InputError(path, lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise InputError(path, lineno, "malformed JSON: nested too deeply") from None


def check_unicode(value: str, what: str, path: str | Path, lineno: int | None) -> str:
    """Refuse text that cannot be written back as UTF-8 (a lone surrogate such as ``"\\ud800"``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(path, lineno, f"bad {what}: lone surrogate U+{ord(value[e.start]):04X} at character "
                                       f"{e.start} (not valid Unicode text)") from None
    return value
