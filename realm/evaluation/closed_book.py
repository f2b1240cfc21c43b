"""Answers and exact match of a closed-book QA model (:mod:`realm.training.closed_book`).

Prediction = per-slot argmax of the MLM head over ``[CLS] question [SEP] [MASK]*A [SEP]``, cut at the
first ``[SEP]``/``[PAD]``, decoded with the corpus tokenizer; correct = SQuAD/ORQA exact match.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from realm.data.blocks import BlockStore
from realm.data.qa import QAExample, exact_match
from realm.evaluation.qa import write_predictions
from realm.models.bert import autocast
from realm.models.closed_book import ClosedBookQA, decode_slots, slot_inputs
from realm.models.inputs import Specials


@torch.inference_mode()
def predict_closed_book(model: ClosedBookQA, store: BlockStore, examples: Sequence[QAExample],
                        batch_size: int = 64, device: str | torch.device = "cpu", bf16: bool = False) -> list[dict]:
    """One record per example: question, answers, prediction, correct (exact match), tokens (slot ids)."""
    device = torch.device(device)
    tok = store.tokenizer
    sp = Specials.of(tok)
    was_training = model.training
    model.to(device).eval()
    preds: list[dict] = []
    try:
        for s in range(0, len(examples), batch_size):
            batch = list(examples[s:s + batch_size])
            q_ids = [e.ids for e in tok.encode_batch([ex.question for ex in batch])]
            inputs, positions = slot_inputs(q_ids, model.answer_slots, sp, model.query_len)
            with autocast(device, bf16):
                logits = model.slot_logits({k: v.to(device) for k, v in inputs.items()}, positions.to(device))
            for ex, (text, ids) in zip(batch, decode_slots(logits.argmax(-1).cpu(), tok, sp)):
                preds.append({"question": ex.question, "answers": list(ex.answers), "prediction": text,
                              "correct": exact_match(text, ex.answers), "tokens": ids})
    finally:
        model.train(was_training)
    return preds


def evaluate_closed_book(model: ClosedBookQA, store: BlockStore, examples: Sequence[QAExample],
                         batch_size: int = 64, device: str | torch.device = "cpu",
                         predictions_path: str | Path | None = None, bf16: bool = False) -> dict:
    """``{"em", "exact_match", "n", "questions"}``; optionally writes the predictions as JSONL."""
    preds = predict_closed_book(model, store, examples, batch_size, device, bf16)
    if predictions_path is not None:
        write_predictions(predictions_path, preds)
    em = float(np.mean([p["correct"] for p in preds])) if preds else 0.0
    return {"em": em, "exact_match": em, "n": len(preds), "questions": len(preds)}
