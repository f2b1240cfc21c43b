"""The knowledge retriever: p(z|x) = softmax_z f(x, z), f(x, z) = Embed_input(x) . Embed_doc(z).

Embed = BERT's [CLS] vector (or its pooler output) -> dense to ``proj_dim`` -> LayerNorm (REALM).

Saved layout (a folder)::

    retriever.json              proj_dim, share_encoders, use_pooler, query_len, vocab_size
    query_encoder/              an ordinary HF BertModel folder (config.json + model.safetensors)
    query_projection.safetensors
    doc_encoder/, doc_projection.safetensors   (only when the encoders are not shared)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertModel

from realm.config import RetrieverConfig
from realm.models.bert import build_bert, load_hf_bert
from realm.models.modes import SkipRedundantModeSwitch


POOLINGS = ("cls", "mean")


class Embedder(nn.Module):
    """Embed(x) = LayerNorm(W h + b); ``h`` = the [CLS] vector (REALM), BERT's pooler output
    (``use_pooler``, as HF's REALM port), or the masked mean of the last layer (``pooling="mean"``)."""

    def __init__(self, bert: BertModel, proj_dim: int, use_pooler: bool = False, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if use_pooler and pooling != "cls":
            raise ValueError("use_pooler projects the [CLS] pooler output: it needs pooling='cls'")
        self.bert = bert
        self.use_pooler = use_pooler
        self.pooling = pooling
        hidden = bert.config.hidden_size
        self.dense = nn.Linear(hidden, proj_dim)
        self.norm = nn.LayerNorm(proj_dim, eps=bert.config.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if self.use_pooler:
            h = out.pooler_output
        elif self.pooling == "mean":
            mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).unsqueeze(-1)
            mask = mask.to(out.last_hidden_state.dtype)
            h = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            h = out.last_hidden_state[:, 0]
        return self.norm(self.dense(h))

    def projection_state(self) -> dict[str, torch.Tensor]:
        return {f"dense.{k}": v for k, v in self.dense.state_dict().items()} | {
            f"norm.{k}": v for k, v in self.norm.state_dict().items()}

    def load_projection_state(self, state: dict[str, torch.Tensor]) -> None:
        self.dense.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("dense.")})
        self.norm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("norm.")})


def relevance(query_emb: torch.Tensor, block_emb: torch.Tensor) -> torch.Tensor:
    """f(x, z): inner products. ``[Q, d] x [N, d] -> [Q, N]`` or ``[Q, d] x [Q, K, d] -> [Q, K]``."""
    if block_emb.dim() == 3:
        return torch.einsum("qd,qkd->qk", query_emb, block_emb)
    return query_emb @ block_emb.T


class Retriever(SkipRedundantModeSwitch):
    def __init__(self, query: Embedder, doc: Embedder | None = None, query_len: int = 32):
        super().__init__()
        self.query = query
        self.doc = doc if doc is not None else query
        self.query_len = query_len

    @property
    def shared(self) -> bool:
        return self.doc is self.query

    @classmethod
    def build(cls, cfg: RetrieverConfig, vocab_size: int, pad_id: int = 0) -> "Retriever":
        def embedder():
            return Embedder(build_bert(cfg.encoder, vocab_size, pad_id, pooler=cfg.use_pooler), cfg.proj_dim,
                            cfg.use_pooler, cfg.pooling)

        q = embedder()
        return cls(q, None if cfg.share_encoders else embedder(), cfg.query_len)

    def embed_queries(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.query(**inputs)

    def embed_blocks(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.doc(**inputs)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"proj_dim": self.query.dense.out_features, "share_encoders": self.shared,
                "use_pooler": self.query.use_pooler, "pooling": self.query.pooling, "query_len": self.query_len,
                "vocab_size": self.query.bert.config.vocab_size}
        (folder / "retriever.json").write_text(json.dumps(meta, indent=2))
        parts = [("query", self.query)] + ([] if self.shared else [("doc", self.doc)])
        for name, emb in parts:
            emb.bert.save_pretrained(str(folder / f"{name}_encoder"), safe_serialization=True)
            save_file({k: v.contiguous() for k, v in emb.projection_state().items()},
                      str(folder / f"{name}_projection.safetensors"))

    @classmethod
    def load(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "Retriever":
        folder = Path(folder)
        meta_path = folder / "retriever.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder}: not a retriever checkpoint (no retriever.json)")
        meta = json.loads(meta_path.read_text())

        def embedder(name):
            bert = load_hf_bert(folder / f"{name}_encoder", pooler=meta["use_pooler"])
            emb = Embedder(bert, meta["proj_dim"], meta["use_pooler"], meta.get("pooling", "cls"))
            emb.load_projection_state(load_file(str(folder / f"{name}_projection.safetensors")))
            return emb

        q = embedder("query")
        model = cls(q, None if meta["share_encoders"] else embedder("doc"), meta["query_len"])
        return model.to(map_location)

    def untie(self) -> None:
        """Give the document side its own copy of the weights (e.g. before freezing it)."""
        if self.shared:
            import copy

            self.doc = copy.deepcopy(self.query)
