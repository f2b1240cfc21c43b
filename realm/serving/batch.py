"""``realm ask RUN --questions FILE.jsonl --out answers.jsonl``: read a question file, answer it in batches.

Input: one JSON object per line, ``{"question": str, "id": str | int (optional)}`` (other fields, such as
an NQ-open ``answer``, are ignored; blank lines are skipped). Bad lines raise :class:`InputError`
(``FILE:LINE: what is wrong``) before any model is loaded. Output: one line per question, in input order,
the record ``realm ask --json`` prints, with the input's ``id`` first when it has one. The output file
appears only when every question is answered (written to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from realm.data.errors import InputError
from realm.data.jsonl import jsonl_objects

AskMany = Callable[[list[str], "int | None"], list[dict]]


def read_questions(path: str | Path) -> list[tuple[str | int | None, str]]:
    """``[(id or None, question)]`` from a JSONL file; raises :class:`InputError` on the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such file")
    out = []
    for lineno, obj in jsonl_objects(path):
        if "question" not in obj:
            raise InputError(path, lineno, "missing field 'question'")
        q = obj["question"]
        if not isinstance(q, str):
            raise InputError(path, lineno, f"'question' must be a string, got {type(q).__name__}")
        if not q.strip():
            raise InputError(path, lineno, "empty question")
        qid = obj.get("id")
        if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
            raise InputError(path, lineno, f"'id' must be a string or an integer, got {type(qid).__name__}")
        out.append((qid, q.strip()))
    if not out:
        raise InputError(path, None, "no questions in the file")
    return out


def answer_file(ask_many: AskMany, questions: list[tuple[str | int | None, str]], out: str | Path,
                k: int | None = None, batch_size: int = 16, progress: bool = True) -> int:
    """Answer ``questions`` ``batch_size`` at a time with ``ask_many(questions, k)``; write ``out`` (JSONL).

    A progress bar goes to stderr. Returns the number of answers written.
    """
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f, \
                tqdm(total=len(questions), desc="answering", unit="question", disable=not progress) as bar:
            for start in range(0, len(questions), batch_size):
                chunk = questions[start:start + batch_size]
                answers = ask_many([q for _, q in chunk], k)
                for (qid, _), record in zip(chunk, answers, strict=True):
                    if qid is not None:
                        record = {"id": qid, **record}
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                bar.update(len(chunk))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(questions)
