"""BERT backbones from HF ``transformers``, sized by :class:`EncoderConfig` or loaded from a folder.

Every encoder in ``realm`` (query/document embedders, the knowledge-augmented encoder, the reader)
is an HF ``BertModel`` with ``attn_implementation="sdpa"``, so its weights load in HF tools.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from realm.config import EncoderConfig

log = logging.getLogger(__name__)
hf_logging.disable_progress_bar()  # our own progress bars only
hf_logging.set_verbosity_error()


def bert_config(cfg: EncoderConfig, vocab_size: int, pad_id: int = 0) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate, hidden_act=cfg.hidden_act, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, max_position_embeddings=cfg.max_positions, type_vocab_size=2,
        layer_norm_eps=cfg.layer_norm_eps, pad_token_id=pad_id,
    )


def load_hf_bert_config(folder: str | Path) -> BertConfig:
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: not an HF model folder (no config.json)")
    return BertConfig.from_pretrained(str(folder), local_files_only=True)


def build_bert(cfg: EncoderConfig, vocab_size: int, pad_id: int = 0, pooler: bool = False) -> BertModel:
    """A randomly initialised BERT, or the weights of ``cfg.init_from`` (a local HF BERT folder)."""
    if cfg.init_from:
        return load_hf_bert(cfg.init_from, vocab_size, pooler)
    model = BertModel(bert_config(cfg, vocab_size, pad_id), add_pooling_layer=pooler)
    model.config._attn_implementation = cfg.attention
    return model


def load_hf_bert(folder: str | Path, vocab_size: int | None = None, pooler: bool = False) -> BertModel:
    """Load BERT weights from a local HF folder (safetensors, or a ``.bin`` read with weights_only=True)."""
    folder = Path(folder)
    config = load_hf_bert_config(folder)
    if vocab_size is not None and config.vocab_size != vocab_size:
        raise ValueError(
            f"{folder}: vocabulary size {config.vocab_size} != corpus tokenizer's {vocab_size}; build the corpus "
            f"with this model's tokenizer (corpus.tokenizer={folder})"
        )
    model = BertModel.from_pretrained(str(folder), config=config, add_pooling_layer=pooler, local_files_only=True,
                                      attn_implementation="sdpa", use_safetensors=None)
    log.info("loaded BERT weights from %s", folder)
    return model


ATTENTION = ("sdpa", "eager")


def use_attention(model: torch.nn.Module, impl: str) -> torch.nn.Module:
    """Switch the attention kernel of every BERT inside ``model``: ``sdpa`` (torch's fused kernel) or ``eager``
    (matmul + softmax). The weights are untouched; the outputs agree up to rounding. Returns ``model``."""
    if impl not in ATTENTION:
        raise ValueError(f"attention {impl!r} is not one of {', '.join(ATTENTION)}")
    for m in model.modules():
        if isinstance(getattr(m, "config", None), BertConfig):
            m.config._attn_implementation = impl
    return model


def bert_flops_per_token(cfg: BertConfig, seq_len: int) -> float:
    """Forward FLOPs per token of a BERT encoder (2 x multiply-adds; attention included).

    Per layer: QKV+output projections 4*h*h, feed-forward 2*h*i, attention scores and mixing
    2*seq*h; each multiply-add counts as 2 FLOPs. Training (forward+backward) is 3x this.
    """
    h, i, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return 2.0 * n * (4 * h * h + 2 * h * i + 2 * seq_len * h)


def autocast(device: torch.device | str, enabled: bool):
    """bf16 autocast on any device type (a no-op context when disabled)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)
