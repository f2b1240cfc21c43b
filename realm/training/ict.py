"""ICT warm start of the retriever (Inverse Cloze Task; Lee et al. 2019, used by REALM).

A random sentence of a block is the query; the block, with that sentence removed with probability
``remove_prob`` (0.9), is its positive; the other blocks of the batch are its negatives.

Recipe: ``setup`` (corpus, model, optimiser, resume) -> ``train`` -> save ``RUN/retriever/``.

Under ``torchrun`` each rank embeds its share of the global batch and the block embeddings are
all-gathered with their gradient (:func:`realm.distributed.all_gather_with_grad`), so every query still has
the whole global batch as negatives: the loss of N ranks is the loss of one process on the global batch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from realm import distributed
from realm.config import RunConfig
from realm.data.blocks import BlockStore
from realm.models.bert import autocast, bert_flops_per_token, use_attention
from realm.models.inputs import block_inputs, query_inputs
from realm.models.retriever import Retriever
from realm.training.losses import ict_accuracy, ict_loss
from realm.training.optim import due, make_optimizer, optimizer_step
from realm.training.parallel import Replicas, local_part, mean_metrics, metric_logger
from realm.training.run import begin_step, resume, save, start_run

log = logging.getLogger(__name__)


class ICTSampler:
    """Draws ICT (query sentence, block) pairs from the blocks that hold at least two sentences."""

    def __init__(self, store: BlockStore, query_len: int, remove_prob: float):
        self.store, self.query_len, self.remove_prob = store, query_len, remove_prob
        sents = np.asarray(store.sentences)
        self.bounds = np.searchsorted(sents[:, 0], np.arange(len(store) + 1))  # rows of block b: bounds[b]:bounds[b+1]
        counts = np.diff(self.bounds)
        self.eligible = np.flatnonzero(counts >= 2)
        if len(self.eligible) < 2:
            raise ValueError(f"{store.folder}: ICT needs blocks with at least two sentences; found {len(self.eligible)}")
        self.sents = sents

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[list, list, list, np.ndarray]:
        """Returns (queries, titles, bodies, block ids) as token-id lists."""
        n = min(batch_size, len(self.eligible))
        blocks = rng.choice(self.eligible, size=n, replace=False)
        queries, titles, bodies = [], [], []
        for b in blocks:
            body = self.store.body_ids(int(b))
            lo, hi = self.bounds[b], self.bounds[b + 1]
            _, s, e = self.sents[rng.integers(lo, hi)]
            queries.append(body[s:e].tolist())
            if rng.random() < self.remove_prob:
                body = np.concatenate([body[:s], body[e:]])
            titles.append(self.store.title_ids(int(b)).tolist())
            bodies.append(body.tolist())
        return queries, titles, bodies, blocks


def train_ict(cfg: RunConfig, store: BlockStore, run_dir: str | Path, progress: bool = True,
              retriever: Retriever | None = None) -> Retriever:
    """Train (or resume) ICT in ``run_dir``; returns the trained retriever (also saved there)."""
    # ---- setup
    run = start_run(cfg, store, run_dir)
    run_dir, device, tok, sp, dist = run.run_dir, run.device, run.tokenizer, run.specials, run.dist
    progress = progress and dist.is_main()
    if retriever is None:
        retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
    use_attention(retriever, cfg.retriever.encoder.attention)
    retriever.to(device).train()
    opt = make_optimizer(retriever.parameters(), cfg.ict.lr)
    start, _ = resume(run_dir, {"retriever": retriever}, opt, "ICT")
    replicas = Replicas({"retriever": retriever}, dist)
    sampler = ICTSampler(store, cfg.retriever.query_len, cfg.ict.remove_prob)
    dist.local_batch_size(min(cfg.ict.batch_size, len(sampler.eligible)))  # global; an error if it does not split
    flops_tok = 3 * bert_flops_per_token(retriever.query.bert.config, 64)
    logger = metric_logger(run_dir / "metrics.jsonl", cfg.ict.steps, "ICT", start, progress,
                          bar_keys=("loss/ict", "acc/ict", "perf/tokens_per_s"))
    # ---- train
    try:
        for step in range(start, cfg.ict.steps):
            t0 = time.time()
            lr, rng = begin_step(opt, step, cfg.seed, cfg.ict.lr, cfg.ict.warmup, cfg.ict.steps)
            queries, titles, bodies, _ = (local_part(x, dist) for x in sampler.sample(rng, cfg.ict.batch_size))
            q_in = {k: v.to(device) for k, v in query_inputs(queries, sp, cfg.retriever.query_len).items()}
            d_in = {k: v.to(device) for k, v in block_inputs(titles, bodies, sp).items()}
            loss, q, d = replicas.run(ict_step, retriever, q_in, d_in, cfg.ict.bf16)
            grad_norm = optimizer_step(opt, loss, retriever.parameters())
            dt = time.time() - t0
            tokens = int(q_in["attention_mask"].sum() + d_in["attention_mask"].sum())
            logger.log(step + 1, mean_metrics(
                {"loss/ict": loss.item(), "acc/ict": ict_accuracy(q, d).item(), "lr": lr, "grad_norm": grad_norm,
                 "perf/step_s": dt, "perf/tokens_per_s": tokens / dt, "perf/tflops": flops_tok * tokens / dt / 1e12},
                sums=("perf/tokens_per_s", "perf/tflops")))
            logger.advance()
            if due(step + 1, cfg.ict.checkpoint_every, cfg.ict.steps):  # mid-run too: ICT resumes like every recipe
                save(run, step + 1, {"retriever": retriever}, opt)
    finally:
        logger.close()
    # ---- save
    if dist.is_main():
        retriever.save(run_dir / "retriever")
    return retriever


def ict_step(retriever: Retriever, q_in: dict, d_in: dict, bf16: bool = False):
    """(loss, this rank's query embeddings, block embeddings with this rank's rows first) of one ICT step.

    In a job the other ranks' blocks follow this rank's as extra negatives (gathered with gradient); the
    cross-entropy does not depend on the order of the blocks, so each query's positive stays at its index."""
    with autocast(q_in["input_ids"].device, bf16):
        q, d = retriever.embed_queries(q_in), retriever.embed_blocks(d_in)
    q, d = q.float(), d.float()  # a no-op in fp32
    if distributed.world_size() > 1:
        everyone = distributed.all_gather_with_grad(d)
        mine = distributed.rank() * d.shape[0]
        d = torch.cat([d, everyone[:mine], everyone[mine + d.shape[0]:]])
    return ict_loss(q, d), q, d
