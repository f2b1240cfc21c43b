"""Retrieval evaluation: recall@k = the fraction of questions with an answer string in a top-k block."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realm.data.blocks import BlockStore
from realm.data.qa import QAExample, has_answer
from realm.retrieval import Searcher

DEFAULT_KS = (1, 5, 20, 100)


def answer_hits(store: BlockStore, ids: np.ndarray, examples: Sequence[QAExample]) -> np.ndarray:
    """[Q, K] bool: does retrieved block ``ids[q, j]`` contain an answer of question ``q``?"""
    hits = np.zeros(ids.shape, dtype=bool)
    cache: dict[int, str] = {}
    for qi, ex in enumerate(examples):
        for j, b in enumerate(ids[qi]):
            if b < 0:
                continue
            text = cache.get(int(b))
            if text is None:
                text = cache[int(b)] = store.block_text(int(b))
            hits[qi, j] = has_answer(text, ex.answers)
    return hits


def recall_at_k(hits: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """recall@k from a [Q, K] hit matrix (k beyond the retrieved depth uses what was retrieved)."""
    if len(hits) == 0:
        return {f"recall@{k}": 0.0 for k in ks}
    return {f"recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def evaluate_retrieval(searcher: Searcher, store: BlockStore, examples: Sequence[QAExample],
                       ks: Sequence[int] = DEFAULT_KS, out: str | Path | None = None, name: str = "") -> dict:
    """Run ``searcher.search(questions, k)`` (:mod:`realm.retrieval`) and report recall@k for every k in ``ks``."""
    kmax = min(max(ks), len(store))
    _, ids = searcher.search([e.question for e in examples], kmax)
    result = {"retriever": name, "questions": len(examples), **recall_at_k(answer_hits(store, ids, examples), ks)}
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def format_table(rows: Sequence[dict], ks: Sequence[int] = DEFAULT_KS) -> str:
    head = "| retriever | questions | " + " | ".join(f"R@{k}" for k in ks) + " |"
    sep = "|---|---|" + "---|" * len(ks)
    lines = [head, sep]
    for r in rows:
        lines.append(f"| {r['retriever']} | {r['questions']} | " + " | ".join(f"{100 * r[f'recall@{k}']:.1f}" for k in ks) + " |")
    return "\n".join(lines)
