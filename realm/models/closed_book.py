"""The closed-book QA model: the knowledge-augmented encoder's MLM head fills A answer slots.

Input ``[CLS] question [SEP] [MASK]*A [SEP]`` (slots in segment 1); output per slot = argmax of the MLM
head, read up to the first ``[SEP]``/``[PAD]``. Trained by :mod:`realm.training.closed_book`, scored by
:mod:`realm.evaluation.closed_book`.

Saved layout (a folder)::

    config.json + model.safetensors   the encoder (an HF ``BertForMaskedLM`` folder)
    closed_book.json                  answer_slots, query_len
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from realm.models.inputs import Specials, pair_inputs
from realm.models.mlm import KnowledgeAugEncoder

CLOSED_BOOK_FILE = "closed_book.json"


def slot_inputs(question_ids: Sequence[Sequence[int]], slots: int, sp: Specials, query_len: int):
    """(``[CLS] question [SEP] [MASK]*A [SEP]`` inputs, slot positions [N, A])."""
    inputs, start, _ = pair_inputs(question_ids, [[sp.mask_id] * slots] * len(question_ids), sp, query_len)
    return inputs, start.unsqueeze(1) + torch.arange(slots).unsqueeze(0)


def decode_slots(pred_ids: torch.Tensor, tokenizer, sp: Specials) -> list[tuple[str, list[int]]]:
    """Per row: (text, token ids) of the argmax slots, cut at the first [SEP] or [PAD]."""
    out = []
    for row in pred_ids.tolist():
        ids = []
        for t in row:
            if t in (sp.sep_id, sp.pad_id):
                break
            ids.append(int(t))
        out.append((tokenizer.decode(ids).strip(), ids))
    return out


class ClosedBookQA(nn.Module):
    """A knowledge-augmented encoder answering from the question alone, with its slot count A and the
    question length it reads."""

    def __init__(self, encoder: KnowledgeAugEncoder, answer_slots: int, query_len: int):
        super().__init__()
        self.encoder = encoder
        self.answer_slots, self.query_len = int(answer_slots), int(query_len)

    def slot_logits(self, inputs: dict[str, torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
        """MLM logits [N, A, V] at the answer slots ``positions`` [N, A]."""
        return self.encoder.masked_logits(inputs, positions)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.encoder.save(folder)
        meta = {"answer_slots": self.answer_slots, "query_len": self.query_len}
        (folder / CLOSED_BOOK_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ClosedBookQA":
        folder = Path(folder)
        meta_path = folder / CLOSED_BOOK_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder}: not a closed-book model folder (no {CLOSED_BOOK_FILE})")
        meta = json.loads(meta_path.read_text())
        return cls(KnowledgeAugEncoder.load(folder), meta["answer_slots"], meta["query_len"])
