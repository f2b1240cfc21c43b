"""The knowledge-augmented encoder: BERT + MLM head reading ``[CLS] masked x [SEP] z_body [SEP]``.

It is an HF ``BertForMaskedLM`` (decoder tied to the word embeddings), saved as an ordinary HF
folder. The MLM head runs only at the masked positions (gather first, then the head): computing it
at every position costs 3-4x the whole step on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertForMaskedLM

from realm.config import EncoderConfig
from realm.models.bert import bert_config, load_hf_bert_config


class KnowledgeAugEncoder(nn.Module):
    def __init__(self, mlm: BertForMaskedLM):
        super().__init__()
        self.mlm = mlm

    @property
    def bert(self):
        return self.mlm.bert

    @classmethod
    def build(cls, cfg: EncoderConfig, vocab_size: int, pad_id: int = 0) -> "KnowledgeAugEncoder":
        if cfg.init_from:
            return cls.load(cfg.init_from)
        mlm = BertForMaskedLM(bert_config(cfg, vocab_size, pad_id))
        mlm.config._attn_implementation = cfg.attention
        return cls(mlm)

    def masked_logits(self, inputs: dict[str, torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
        """MLM logits [N, M, V] at ``positions`` [N, M] of each row (padding positions may be 0)."""
        hidden = self.mlm.bert(**inputs).last_hidden_state  # [N, L, H]
        idx = positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return self.mlm.cls(hidden.gather(1, idx))

    def target_log_probs(self, inputs, positions, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(target) [N, M], logits [N, M, V]) at the masked positions."""
        logits = self.masked_logits(inputs, positions)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return logp, logits

    def save(self, folder: str | Path) -> None:
        self.mlm.save_pretrained(str(folder), safe_serialization=True)

    @classmethod
    def load(cls, folder: str | Path) -> "KnowledgeAugEncoder":
        config = load_hf_bert_config(folder)
        mlm = BertForMaskedLM.from_pretrained(str(folder), config=config, local_files_only=True, attn_implementation="sdpa")
        return cls(mlm)
