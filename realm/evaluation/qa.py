"""Open-domain QA evaluation: retrieve top-k blocks, read them, predict a span, score exact match.

The prediction is the (block, span) pair with the highest joint logit ``span logit + retrieval logit``
(the quantity the reader is trained to softmax over, ORQA/REALM), among candidate spans inside the
block bodies. The span's tokens are mapped back to the ORIGINAL block text through the tokenizer's
character offsets, so ``prediction == store.block_text(block)[answer_start:answer_end]`` exactly.

Exact match uses the SQuAD/ORQA normalisation (:func:`realm.data.qa.exact_match`); recall@k is
computed over the very blocks the reader read (:func:`realm.data.qa.has_answer`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from realm.data.blocks import BlockStore
from realm.data.qa import QAExample, exact_match, has_answer
from realm.evaluation.retrieval import recall_at_k
from realm.models.bert import autocast
from realm.models.inputs import Specials
from realm.models.reader import SpanReader, reader_inputs
from realm.retrieval import Retrieval


def span_to_text(store: BlockStore, block: int, tok_start: int, tok_end: int) -> tuple[str, int, int]:
    """Body tokens ``[tok_start, tok_end]`` (inclusive) of ``block`` -> (exact text, char start, char end)."""
    text = store.block_text(block)
    offsets = store.tokenizer.encode_batch([text])[0].offsets
    start, end = offsets[tok_start][0], offsets[tok_end][1]
    return text[start:end], int(start), int(end)


@torch.inference_mode()
def predict(retrieval: Retrieval, reader: SpanReader, examples: Sequence[QAExample], k: int = 5, batch_size: int = 8,
            device: str | torch.device = "cpu", bf16: bool = False) -> list[dict]:
    """One prediction record per example (see :func:`write_predictions` for the fields).

    ``retrieval``: a :class:`realm.retrieval.DenseRetrieval` or :class:`~realm.retrieval.BM25Retrieval`
    (its ``store`` is the corpus read); ``bf16``: autocast the reader.
    """
    device = torch.device(device)
    store = retrieval.store
    tok = store.tokenizer
    sp = Specials.of(tok)
    was_training = [(m, m.training) for m in (reader, getattr(retrieval, "retriever", None))
                    if isinstance(m, torch.nn.Module)]
    for m, _ in was_training:
        m.eval()
    reader.to(device)
    preds: list[dict] = []
    try:
        for s in range(0, len(examples), batch_size):
            batch = list(examples[s:s + batch_size])
            questions = [e.question for e in batch]
            q_ids = [e.ids for e in tok.encode_batch(questions)]
            ids, ret_logits = retrieval.retrieve(questions, q_ids, k)
            bsz, kk = ids.shape
            inputs, body_start, body_end, _ = reader_inputs(reader, q_ids, ids, store, sp)
            with autocast(device, bf16):
                out = reader({n: v.to(device) for n, v in inputs.items()}, body_start, body_end)
            span = out.span_logits.view(bsz, kk, -1).float().cpu()
            valid = out.valid.view(bsz, kk, -1).cpu() & torch.from_numpy(ids >= 0)[:, :, None]
            ret = ret_logits.float().cpu()
            joint = torch.where(valid, span + ret[:, :, None], torch.tensor(float("-inf")))
            probs = torch.softmax(ret, dim=-1)
            for r, ex in enumerate(batch):
                preds.append(_record(store, ex, ids[r], ret[r], probs[r], joint[r], out.starts, out.ends,
                                     body_start.view(bsz, kk)[r]))
    finally:
        for m, mode in was_training:
            m.train(mode)
    return preds


def _record(store, ex: QAExample, ids, ret, probs, joint, starts, ends, body_start) -> dict:
    evidence = []
    for j, b in enumerate(ids):
        if b < 0:
            continue
        info = store.block_info(int(b))
        evidence.append({"block": int(b), "doc_id": info["doc_id"], "title": info["title"], "text": info["text"],
                         "retrieval_score": float(ret[j]), "retrieval_prob": float(probs[j]),
                         "has_answer": has_answer(info["text"], ex.answers)})
    rec = {"question": ex.question, "answers": list(ex.answers), "prediction": "", "score": None,
           "correct": False, "block": -1, "doc_id": None, "title": None, "answer_start": -1, "answer_end": -1,
           "token_start": -1, "token_end": -1, "evidence": evidence}
    flat = int(joint.reshape(-1).argmax())
    j, c = divmod(flat, joint.shape[1])
    if not torch.isfinite(joint[j, c]):
        return rec  # nothing readable was retrieved
    b = int(ids[j])
    offset = int(body_start[j])
    ts, te = int(starts[c]) - offset, int(ends[c]) - offset
    text, cs, ce = span_to_text(store, b, ts, te)
    info = store.block_info(b)
    rec.update(prediction=text, score=float(joint[j, c]), correct=exact_match(text, ex.answers), block=b,
               doc_id=info["doc_id"], title=info["title"], answer_start=cs, answer_end=ce, token_start=ts,
               token_end=te)
    return rec


def evaluate_qa(retrieval: Retrieval, reader: SpanReader, examples: Sequence[QAExample], k: int = 5,
                batch_size: int = 8, device: str | torch.device = "cpu", predictions_path: str | Path | None = None,
                bf16: bool = False) -> dict:
    """Exact match and recall@{1,k} (over the blocks the reader read); optionally writes predictions."""
    preds = predict(retrieval, reader, examples, k, batch_size, device, bf16)
    if predictions_path is not None:
        write_predictions(predictions_path, preds)
    kk = max((len(p["evidence"]) for p in preds), default=0)
    hits = np.zeros((len(preds), max(kk, 1)), dtype=bool)
    for i, p in enumerate(preds):
        for j, e in enumerate(p["evidence"]):
            hits[i, j] = e["has_answer"]
    em = float(np.mean([p["correct"] for p in preds])) if preds else 0.0
    return {"retrieval": retrieval.kind, "questions": len(preds), "exact_match": em, **recall_at_k(hits, sorted({1, k}))}


def write_predictions(path: str | Path, preds: Sequence[dict]) -> Path:
    """JSONL, one record per question: question, answers, prediction, score, correct, block, doc_id, title,
    answer_start/answer_end (char offsets in the block text), token_start/token_end (inclusive body token
    indices of the span), evidence (block, doc_id, title, text,
    retrieval_score, retrieval_prob = softmax over the k retrieval logits, has_answer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    return path
