"""Read a corpus of documents: JSONL ``{id,title,text}``, DPR-style TSV, or a folder of ``.txt``.

Every bad record raises :class:`InputError` naming the file and line, unless the caller passes a
:class:`SkipReport` (the CLI's ``--skip-bad``), which counts what was skipped and why. A document may
be at most :data:`MAX_DOC_BYTES` (one line of JSONL/TSV or one ``.txt`` file): memory per document is
bounded, and a longer one is a bad record ("line too long" / "document too large").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from realm.data.errors import InputError, SkipReport, check_unicode, handle, parse_json_line, read_lines

MAX_DOC_BYTES = 4 << 20  # 4 MiB: the longest Wikipedia article is ~1.3 MB of text


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    source: str  # "file:line" it came from


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "txt-folder"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".tsv":
        return "tsv"
    raise InputError(path, None, f"unknown corpus format '{suffix}' (expected .jsonl, .tsv or a folder of .txt)")


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, lineno, f"not valid UTF-8: byte {e.start}") from None


def _check_doc(doc_id, title, text, path: Path, lineno: int | None) -> Document:
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InputError(path, lineno, f"bad id: expected a string or an integer, got {type(doc_id).__name__} "
                                       f"{str(doc_id)[:40]}")
    if str(doc_id).strip() == "":
        raise InputError(path, lineno, "empty id: every document needs a non-empty 'id'")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise InputError(path, lineno, f"bad title: expected a string, got {type(title).__name__}")
    if not isinstance(text, str):
        raise InputError(path, lineno, f"bad text: expected a string, got {type(text).__name__}")
    for what, value in (("id", str(doc_id)), ("title", title), ("text", text)):
        check_unicode(value, what, path, lineno)
    if text.strip() == "":
        raise InputError(path, lineno, f"empty text: document '{doc_id}' has no text")
    where = f"{path}:{lineno}" if lineno is not None else str(path)
    return Document(str(doc_id), title.strip(), text, where)


def _read_jsonl(path: Path, limit: int = MAX_DOC_BYTES) -> Iterator[Document | InputError]:
    with open(path, "rb") as f:
        for lineno, raw in read_lines(f, path, limit):
            try:
                if isinstance(raw, InputError):
                    raise raw
                line = _decode(raw, path, lineno)
                if not line.strip():
                    continue
                obj = parse_json_line(line, path, lineno)
                if not isinstance(obj, dict):
                    raise InputError(path, lineno, "malformed record: expected a JSON object")
                if "id" not in obj:
                    raise InputError(path, lineno, "missing field 'id'")
                text = obj.get("text", obj.get("contents"))
                if text is None:
                    raise InputError(path, lineno, "missing field 'text' (or 'contents')")
                yield _check_doc(obj["id"], obj.get("title", ""), text, path, lineno)
            except InputError as e:
                yield e


def _read_tsv(path: Path, limit: int = MAX_DOC_BYTES) -> Iterator[Document | InputError]:
    with open(path, "rb") as f:
        header_raw = f.readline(1 << 16)
        try:
            header = _decode(header_raw, path, 1).rstrip("\r\n").split("\t")
        except InputError as e:
            yield e
            return
        cols = {name.strip().lower(): i for i, name in enumerate(header)}
        missing = [c for c in ("id", "text") if c not in cols]
        if missing:
            yield InputError(path, 1, f"missing field {missing[0]!r} in TSV header (expected id, text, title)")
            return
        for lineno, raw in read_lines(f, path, limit, first_lineno=2):
            try:
                if isinstance(raw, InputError):
                    raise raw
                line = _decode(raw, path, lineno).rstrip("\r\n")
                if not line.strip():
                    continue
                row = next(csv.reader(io.StringIO(line), delimiter="\t"))
                if len(row) != len(header):
                    raise InputError(path, lineno, f"malformed row: {len(row)} columns, header has {len(header)}")
                title = row[cols["title"]] if "title" in cols else ""
                yield _check_doc(row[cols["id"]], title, row[cols["text"]], path, lineno)
            except InputError as e:
                yield e


def _read_txt_folder(path: Path, limit: int = MAX_DOC_BYTES) -> Iterator[Document | InputError]:
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        yield InputError(path, None, "no .txt files in folder")
    for file in files:
        try:
            size = file.stat().st_size
            if size > limit:
                raise InputError(file, None, f"document too large: {size} bytes (limit {limit}; split the file)")
            text = _decode(file.read_bytes(), file, None)
            doc_id = file.relative_to(path).with_suffix("").as_posix()
            yield _check_doc(doc_id, file.stem.replace("_", " "), text, file, None)
        except InputError as e:
            yield e


def read_documents(path: str | Path, skip: SkipReport | None = None,
                   max_doc_bytes: int = MAX_DOC_BYTES) -> Iterator[Document]:
    """Yield documents from ``path``; duplicate ids are an error (or skipped with ``skip``).

    A document over ``max_doc_bytes`` is a bad record (never read into memory whole)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file or folder")
    reader = {"jsonl": _read_jsonl, "tsv": _read_tsv, "txt-folder": _read_txt_folder}[detect_format(path)]
    seen: dict[str, str] = {}
    for item in reader(path, max_doc_bytes):
        if isinstance(item, InputError):
            handle(item, skip)
            continue
        if item.id in seen:
            file, _, line = item.source.rpartition(":")
            handle(InputError(file or item.source, int(line) if line.isdigit() else None,
                              f"duplicate id '{item.id}' (first seen at {seen[item.id]})"), skip)
            continue
        seen[item.id] = item.source
        yield item
