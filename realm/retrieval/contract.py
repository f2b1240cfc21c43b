"""What every retrieval offers, dense or BM25.

``search`` is the evaluation/serving view (no gradient); ``retrieve`` is the reader's view: the top-k
block ids of a batch and the retrieval logits ``f(x, z)`` that the reader's joint score and the
fine-tuning loss use (with gradient into the query encoder for dense retrieval; constants for BM25).
Ties are broken by lower block id; missing results are padded with (score -inf, id -1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Searcher(Protocol):
    def search(self, questions: Sequence[str], k: int, exclude: Sequence[Iterable[int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [Q, k], ids int64 [Q, k]) by (score desc, id asc); ``exclude[i]``: ids never
        returned for question ``i``."""
        ...


@runtime_checkable
class Retrieval(Searcher, Protocol):
    kind: str  # "dense" | "bm25"

    def retrieve(self, questions: Sequence[str], question_ids: Sequence[Sequence[int]], k: int
                 ) -> tuple[np.ndarray, torch.Tensor]:
        """(block ids [B, k'] with -1 = none, retrieval logits [B, k']); ``k' = min(k, blocks)``."""
        ...
