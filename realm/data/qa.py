"""Question answering data (NQ-open JSONL) and the SQuAD/ORQA answer normalisation.

A QA file has one JSON object per line: ``{"question": str, "answer": [str, ...]}``; ``answers``
is accepted for ``answer``, and a single string for a one-element list.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from realm.data.errors import InputError, SkipReport, check_unicode, handle, parse_json_line
from realm.data.jsonl import jsonl_lines

MAX_QA_LINE_BYTES = 1 << 20  # one QA record (question + answers) may be at most 1 MiB

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


@dataclass(frozen=True)
class QAExample:
    question: str
    answers: tuple[str, ...]
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def normalize_answer(text: str) -> str:
    """Lower-case, remove punctuation, remove articles (a, an, the), collapse whitespace.

    The normalisation of the SQuAD v1.1 evaluation script, used by ORQA and REALM.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: list[str] | tuple[str, ...]) -> bool:
    """True if the normalised prediction equals any normalised gold answer."""
    if not answers:  # serving asks without gold answers: skip the normalisation
        return False
    pred = normalize_answer(prediction)
    return any(pred == normalize_answer(a) for a in answers)


def has_answer(text: str, answers: list[str] | tuple[str, ...]) -> bool:
    """True if any normalised answer occurs in the normalised text as a whole-token sequence."""
    if not answers:  # serving asks without gold answers: skip the normalisation
        return False
    tokens = normalize_answer(text).split()
    for a in answers:
        ans = normalize_answer(a).split()
        if not ans:
            continue
        n = len(ans)
        if any(tokens[i:i + n] == ans for i in range(len(tokens) - n + 1)):
            return True
    return False


def read_qa(path: str | Path, skip: SkipReport | None = None) -> list[QAExample]:
    """Read an NQ-open JSONL file; bad lines raise :class:`InputError` (or are counted in ``skip``)."""
    path = Path(path)
    out: list[QAExample] = []
    for lineno, line in jsonl_lines(path, MAX_QA_LINE_BYTES):
        try:
            if isinstance(line, InputError):
                raise line
            obj = parse_json_line(line, path, lineno)
            if not isinstance(obj, dict):
                raise InputError(path, lineno, "malformed record: expected a JSON object")
            q = obj.get("question")
            if q is None:
                raise InputError(path, lineno, "missing field 'question'")
            if not isinstance(q, str):
                raise InputError(path, lineno, f"bad question: expected a string, got {type(q).__name__}")
            if not q.strip():
                raise InputError(path, lineno, "empty question")
            check_unicode(q, "question", path, lineno)
            answers = obj.get("answer", obj.get("answers"))
            if answers is None:
                raise InputError(path, lineno, "missing field 'answer' (or 'answers')")
            if isinstance(answers, str):
                answers = [answers]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise InputError(path, lineno, "bad answer: expected a string or a list of strings")
            for a in answers:
                check_unicode(a, "answer", path, lineno)
            answers = [a for a in answers if a.strip()]
            if not answers:
                raise InputError(path, lineno, "empty answer list")
            extra = {k: v for k, v in obj.items() if k not in ("question", "answer", "answers")}
            out.append(QAExample(q.strip(), tuple(answers), f"{path}:{lineno}", extra))
        except InputError as e:
            handle(e, skip)
    return out
