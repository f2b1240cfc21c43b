"""Reading JSONL input line by line, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from realm.data.errors import InputError


def jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of ``path``.

    Raises :class:`InputError` (``FILE:LINE: ...``) at the first line that is not UTF-8, not JSON, or not a
    JSON object; the lines before it have been yielded.
    """
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, lineno, f"not valid UTF-8: byte {e.start}") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj
