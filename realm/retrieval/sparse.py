"""BM25 retrieval behind the retrieval contract: the BM25 scores are the (constant) retrieval logits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from realm.data.blocks import BlockStore
from realm.index.bm25 import BM25Index
from realm.models.reader import INVALID_SPAN_SCORE


class BM25Retrieval:
    """Lexical retrieval over ``store``'s blocks (title + text); ``index``: a prebuilt :class:`BM25Index`."""

    kind = "bm25"

    def __init__(self, store: BlockStore, index: BM25Index | None = None, device: torch.device | str = "cpu"):
        self.store, self.device = store, torch.device(device)
        self.index = index if index is not None else BM25Index.build(store.search_texts())

    def search(self, questions: Sequence[str], k: int, exclude: Sequence[Iterable[int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(list(questions), k, exclude)

    def retrieve(self, questions: Sequence[str], question_ids: Sequence[Sequence[int]], k: int
                 ) -> tuple[np.ndarray, torch.Tensor]:
        """(block ids [B, k'], BM25 scores [B, k'] as logits; a missing block scores ``INVALID_SPAN_SCORE``)."""
        scores, ids = self.search(questions, min(k, len(self.store)))
        scores = np.where(ids >= 0, scores, INVALID_SPAN_SCORE).astype(np.float32)
        return ids, torch.from_numpy(scores).to(self.device)

    def __len__(self) -> int:
        return len(self.store)
