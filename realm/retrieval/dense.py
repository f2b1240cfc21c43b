"""Dense retrieval: the retriever's query encoder + a MIPS backend over the block embeddings.

``search`` (evaluation, serving) embeds the questions without gradient in batches of 256 and returns
the backend's top-k. ``retrieve`` (the reader's view, fine-tuning and QA) embeds one batch (under bf16
autocast if asked; with gradient when the query encoder trains), takes the top-k ids from the backend
and returns the retrieval logits ``f(x, z) = Embed_query(x) . e_z`` against the stored (frozen) block
embeddings, so the gradient reaches the query encoder only. REALM pretraining, whose logits need fresh
document embeddings, uses :meth:`DenseRetrieval.top_k` on query vectors it computed itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from realm.data.blocks import BlockStore
from realm.models.bert import autocast
from realm.models.inputs import Specials, query_inputs
from realm.models.retriever import Retriever, relevance
from realm.retrieval.backends import build_backend

QUESTION_BATCH = 256


@torch.inference_mode()
def embed_questions(query_encoder: torch.nn.Module, store: BlockStore, questions: Sequence[str], query_len: int,
                    batch_size: int = QUESTION_BATCH, bf16: bool = False, device="cpu") -> np.ndarray:
    """[Q, d] float32 query embeddings (eval mode, no gradient; the encoder's mode is restored)."""
    tok = store.tokenizer
    sp = Specials.of(tok)
    was_training = query_encoder.training
    query_encoder.eval()
    out = []
    for s in range(0, len(questions), batch_size):
        ids = [e.ids for e in tok.encode_batch(list(questions[s:s + batch_size]))]
        inputs = {k: v.to(device) for k, v in query_inputs(ids, sp, query_len).items()}
        with autocast(device, bf16):
            out.append(query_encoder(**inputs).float().cpu().numpy())
    query_encoder.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


class DenseRetrieval:
    """Top-k blocks for questions by inner product with ``embeddings`` [N, d] (float32).

    ``backend``: ``index.backend`` (see :mod:`realm.retrieval.backends`), built once here. ``bf16``: autocast
    the query encoder. The embeddings are kept as a tensor on ``device`` (the exact backend shares it).
    """

    kind = "dense"

    def __init__(self, retriever: Retriever, store: BlockStore, embeddings, backend: str = "exact",
                 device: torch.device | str = "cpu", bf16: bool = False):
        emb = embeddings if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
        if emb.dtype == np.uint16:
            raise ValueError("embeddings hold bf16 bits: convert with realm.index.store.to_float32 first")
        if emb.ndim != 2 or emb.shape[0] != len(store):
            raise ValueError(f"embeddings have shape {tuple(emb.shape)}; the corpus has {len(store)} blocks")
        self.retriever, self.store, self.device, self.bf16 = retriever, store, torch.device(device), bf16
        if isinstance(emb, torch.Tensor):
            self.emb = emb.detach().to(self.device, torch.float32)
        else:
            self.emb = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)).to(self.device)
        self.backend = backend
        self.index = build_backend(self.emb, backend, self.device)

    # ---- constructors
    @classmethod
    def from_index(cls, retriever: Retriever | str | Path, store: BlockStore, index: str | Path,
                   backend: str = "exact", device="cpu", bf16: bool = False) -> "DenseRetrieval":
        """Over a published index (root or version folder) built for ``store``'s corpus."""
        from realm.retrieval.versions import open_version

        retriever = retriever if isinstance(retriever, Retriever) else Retriever.load(retriever)
        v = open_version(index, backend=None, expect_corpus_hash=store.corpus_hash,
                         expect_dim=retriever.doc.dense.out_features)
        return cls(retriever, store, v.embeddings, backend, device, bf16)

    @classmethod
    def from_corpus(cls, retriever: Retriever | str | Path, store: BlockStore, backend: str = "exact", device="cpu",
                    block_bf16: bool = True, batch_size: int = 256, bf16: bool = False) -> "DenseRetrieval":
        """Over ``store``'s blocks, embedded now by ``retriever``'s document encoder (bf16 autocast if
        ``block_bf16``)."""
        from realm.index.build import embed_blocks

        retriever = retriever if isinstance(retriever, Retriever) else Retriever.load(retriever)
        emb = embed_blocks(retriever.doc, store, batch_size=batch_size, bf16=block_bf16, device=device, progress=False)
        return cls(retriever, store, emb, backend, device, bf16)

    # ---- searching
    def top_k(self, query_emb, k: int, exclude: Sequence[Iterable[int]] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The backend's top-``k`` for query vectors [Q, d] (no gradient)."""
        if isinstance(query_emb, torch.Tensor):
            query_emb = query_emb.detach()
        return self.index.search(query_emb, k, exclude)

    def search(self, questions: Sequence[str], k: int, exclude: Sequence[Iterable[int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        q = embed_questions(self.retriever.query, self.store, questions, self.retriever.query_len, bf16=self.bf16,
                            device=self.device)
        return self.top_k(q, k, exclude)

    def retrieve(self, questions: Sequence[str], question_ids: Sequence[Sequence[int]], k: int
                 ) -> tuple[np.ndarray, torch.Tensor]:
        """(block ids [B, k'] (-1 = none), logits [B, k'] with gradient into the query encoder if it trains)."""
        sp = Specials.of(self.store.tokenizer)
        q_in = {n: v.to(self.device) for n, v in query_inputs(question_ids, sp, self.retriever.query_len).items()}
        with autocast(self.device, self.bf16):  # no graph is built when the query encoder is frozen
            q = self.retriever.embed_queries(q_in).float()
        _, ids = self.top_k(q, min(k, len(self.store)))
        block_emb = self.emb[torch.from_numpy(ids).to(self.device)]  # constants: the index is frozen
        return ids, relevance(q, block_emb)

    def __len__(self) -> int:
        return len(self.store)
