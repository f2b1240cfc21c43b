"""Build BERT inputs: queries ``[CLS] x [SEP]``, blocks ``[CLS] title [SEP] body [SEP]``, and
query-block pairs ``[CLS] x [SEP] body [SEP]`` for the knowledge-augmented encoder and the reader.

Sequences are right-padded; ``token_type_ids`` are 0 for the first segment, 1 for the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Specials:
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int

    @classmethod
    def of(cls, tokenizer) -> "Specials":
        return cls(tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id)


def _pad(seqs: list[list[int]], types: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    n, width = len(seqs), max(len(s) for s in seqs)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    tt = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for r, (s, t) in enumerate(zip(seqs, types)):
        ids[r, : len(s)] = s
        tt[r, : len(t)] = t
        mask[r, : len(s)] = 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask), "token_type_ids": torch.from_numpy(tt)}


def query_inputs(queries: Sequence[Sequence[int]], sp: Specials, max_len: int) -> dict[str, torch.Tensor]:
    """``[CLS] x [SEP]`` with ``x`` cut to ``max_len - 2`` tokens."""
    seqs = [[sp.cls_id, *list(q)[: max_len - 2], sp.sep_id] for q in queries]
    return _pad(seqs, [[0] * len(s) for s in seqs], sp.pad_id)


def block_inputs(titles: Sequence[Sequence[int]], bodies: Sequence[Sequence[int]], sp: Specials) -> dict[str, torch.Tensor]:
    """``[CLS] title [SEP] body [SEP]``: segment 0 for the title part, 1 for the body part.

    An empty title and body give the null block ``[CLS] [SEP] [SEP]``.
    """
    seqs, types = [], []
    for t, b in zip(titles, bodies):
        head = [sp.cls_id, *list(t), sp.sep_id]
        tail = [*list(b), sp.sep_id]
        seqs.append(head + tail)
        types.append([0] * len(head) + [1] * len(tail))
    return _pad(seqs, types, sp.pad_id)


def pair_inputs(queries: Sequence[Sequence[int]], bodies: Sequence[Sequence[int]], sp: Specials,
                max_query_len: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """``[CLS] x [SEP] body [SEP]``; also returns each row's body token range [start, end)."""
    seqs, types, starts, ends = [], [], [], []
    for q, b in zip(queries, bodies):
        head = [sp.cls_id, *list(q)[: max_query_len - 2], sp.sep_id]
        tail = [*list(b), sp.sep_id]
        seqs.append(head + tail)
        types.append([0] * len(head) + [1] * len(tail))
        starts.append(len(head))
        ends.append(len(head) + len(b))
    return _pad(seqs, types, sp.pad_id), torch.tensor(starts), torch.tensor(ends)


def store_block_inputs(store, block_ids: Sequence[int], sp: Specials) -> dict[str, torch.Tensor]:
    """Block inputs for rows of a :class:`~realm.data.blocks.BlockStore`; id -1 is the null block."""
    titles = [store.title_ids(int(i)) if i >= 0 else () for i in block_ids]
    bodies = [store.body_ids(int(i)) if i >= 0 else () for i in block_ids]
    return block_inputs(titles, bodies, sp)
