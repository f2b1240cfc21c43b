"""The text ``realm ask`` prints for an answer record (standard library only: ``--server`` answers load no torch)."""

from __future__ import annotations


def highlight(text: str, start: int | None, end: int | None, style: str = "brackets") -> str:
    """``text`` with ``[start, end)`` marked: ``style`` "ansi" (bold) or "brackets" (``[[...]]``)."""
    if start is None or end is None or not 0 <= start <= end <= len(text):
        return text
    left, right = ("\033[1m", "\033[0m") if style == "ansi" else ("[[", "]]")
    return text[:start] + left + text[start:end] + right + text[end:]


def format_answer(out: dict, style: str = "brackets", max_evidence: int | None = None) -> str:
    """Human-readable text of an :meth:`Answerer.ask` result (what ``realm ask`` prints)."""
    lines = []
    if out["answer"] is None:
        lines.append("answer: (none: nothing readable was retrieved)")
    else:
        lines.append(f"answer: {out['answer']}")
        lines.append(f"score:  {out['score']:.3f}  (joint span + retrieval logit)")
    lines.append(f"index:  v{out['index_version']} (corpus {out['corpus_hash']}), top-{out['k']} evidence:")
    for e in out["evidence"][:max_evidence]:
        prob = e["retrieval_prob"] or 0.0
        bar = "#" * int(round(prob * 20))
        mark = "  <- answer" if e["answer_start"] is not None else ""
        lines.append(f"[{e['rank']}] {e['title']} ({e['doc_id']})  p={prob:.3f} {bar}{mark}")
        lines.append("    " + highlight(e["text"], e["answer_start"], e["answer_end"], style).replace("\n", "\n    "))
    return "\n".join(lines)
