"""Reading JSONL input line by line, with errors that name the file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from realm.data.errors import InputError, parse_json_line, read_lines

MAX_LINE_BYTES = 1 << 20  # one record may be at most 1 MiB; a longer line is refused without being read whole


def jsonl_lines(path: str | Path, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str | InputError]]:
    """``(line number, decoded line)`` for each non-blank line; a line that is too long or not UTF-8 comes
    as an :class:`InputError` instead (raise it, or count it when skipping bad records)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    with open(path, "rb") as f:
        for lineno, raw in read_lines(f, path, limit):
            if isinstance(raw, InputError):
                yield lineno, raw
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, InputError(path, lineno, f"not valid UTF-8: byte {e.start}")
                continue
            if line.strip():
                yield lineno, line


def jsonl_objects(path: str | Path, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of ``path``.

    Raises :class:`InputError` (``FILE:LINE: ...``) at the first line that is too long, not UTF-8, not JSON
    (deep nesting included), or not a JSON object; the lines before it have been yielded.
    """
    for lineno, line in jsonl_lines(path, limit):
        if isinstance(line, InputError):
            raise line
        obj = parse_json_line(line, path, lineno)
        if not isinstance(obj, dict):
            raise InputError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
