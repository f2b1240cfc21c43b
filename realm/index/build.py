"""Embed every block with a document encoder and publish the result as a new index version."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realm.data.blocks import BlockStore
from realm.index.store import IndexWriter
from realm.models.bert import autocast
from realm.models.inputs import Specials, store_block_inputs


@torch.inference_mode()
def embed_blocks(doc_encoder: torch.nn.Module, store: BlockStore, block_ids=None, batch_size: int = 256,
                 bf16: bool = True, device: str | torch.device = "cpu", progress: bool = True, sink=None) -> np.ndarray | None:
    """Embed blocks (default: all) in batches sorted by length; returns [N, d] float32.

    With ``sink`` (a callable ``sink(start, rows)``), rows are streamed out instead of returned.
    """
    sp = Specials.of(store.tokenizer)
    ids = np.arange(len(store)) if block_ids is None else np.asarray(block_ids)
    was_training = doc_encoder.training
    doc_encoder.eval()
    out = None
    bar = tqdm(total=len(ids), desc="embedding blocks", unit="block", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for s in range(0, len(ids), batch_size):
        batch = ids[s:s + batch_size]
        inputs = {k: v.to(device) for k, v in store_block_inputs(store, batch, sp).items()}
        with autocast(device, bf16):
            emb = doc_encoder(**inputs).float().cpu().numpy()
        if sink is not None:
            sink(s, emb)
        else:
            if out is None:
                out = np.empty((len(ids), emb.shape[1]), dtype=np.float32)
            out[s:s + len(batch)] = emb
        bar.update(len(batch))
        bar.set_postfix({"blocks/s": f"{(s + len(batch)) / max(time.time() - t0, 1e-9):.0f}"}, refresh=False)
    bar.close()
    doc_encoder.train(was_training)
    return out


def build_index(doc_encoder: torch.nn.Module, store: BlockStore, root: str | Path, *, encoder: str, encoder_step: int,
                batch_size: int = 256, bf16: bool = True, keep: int = 3, device="cpu", progress: bool = True,
                extra: dict | None = None) -> Path:
    """Embed every block of ``store`` and publish a new version under ``root``; returns its folder."""
    dim = doc_encoder.dense.out_features
    t0 = time.time()
    with IndexWriter(root, len(store), dim, corpus_hash=store.corpus_hash, encoder=encoder, encoder_step=encoder_step,
                     keep=keep, extra={"bf16": bf16, **(extra or {})}) as w:
        embed_blocks(doc_encoder, store, batch_size=batch_size, bf16=bf16, device=device, progress=progress, sink=w.write)
        w.fields["extra"]["seconds"] = round(time.time() - t0, 2)
        w.fields["extra"]["blocks_per_s"] = round(len(store) / max(time.time() - t0, 1e-9), 1)
    return w.path
