"""The baseline encoder: masked-LM pretraining without retrieval (BERT's role in REALM's comparison).

The same BERT + MLM head as REALM's knowledge-augmented encoder (shape ``cfg.reader.encoder``),
pretrained on the same corpus sentences, with the same masking (``cfg.pretrain.masking``), steps, batch
size and learning rate as REALM pretraining, but reading only ``[CLS] masked sentence [SEP]``: no
retrieval. Loss = mean cross-entropy over the masked tokens (the MLM head runs at the masked positions
only). Every system of ``realm experiment`` starts from it: the readers of the ``bm25_reader`` and
``ict_reader`` baselines, the closed-book model, and REALM's own encoder.

Recipe: setup -> train -> save ``RUN/encoder/`` (an HF folder, :meth:`KnowledgeAugEncoder.save`),
resumable from ``RUN/checkpoints/`` like the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from realm.config import RunConfig
from realm.data.blocks import BlockStore
from realm.models.bert import autocast, bert_flops_per_token
from realm.models.inputs import Specials, query_inputs
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.mlm_examples import MaskedQuery, MaskedSentencePool, masked_targets
from realm.training.optim import due, optimizer_step
from realm.training.plots import plot_curves
from realm.training.parallel import Replicas, global_token_mean, local_part, mean_metrics, metric_logger
from realm.training.run import begin_step, save, start_encoder_run


def mlm_batch(queries: Sequence[MaskedQuery], sp: Specials, query_len: int):
    """(inputs ``[CLS] x [SEP]``, positions [B, M], targets [B, M], token mask [B, M])."""
    inputs = query_inputs([q.input_ids for q in queries], sp, query_len)
    return (inputs, *masked_targets(queries))


def masked_lm_loss(encoder: KnowledgeAugEncoder, batch, device, bf16: bool):
    """(loss = mean CE over the masked tokens, logits [B, M, V], targets, token mask, tokens read) of a built
    batch ``(inputs, positions, targets, mask)`` (:func:`mlm_batch`, :func:`~realm.training.reading.rows_batch`)."""
    inputs, positions, targets, mask = batch
    inputs = {k: v.to(device) for k, v in inputs.items()}
    positions, targets, mask = positions.to(device), targets.to(device), mask.to(device)
    with autocast(device, bf16):
        logp, logits = encoder.target_log_probs(inputs, positions, targets)
    loss = -(logp * mask).sum() / mask.sum().clamp(min=1)
    return loss, logits, targets, mask, int(inputs["attention_mask"].sum())


def mlm_step(encoder: KnowledgeAugEncoder, queries: Sequence[MaskedQuery], sp: Specials, query_len: int,
             device, bf16: bool = False, batch=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss = mean CE over masked tokens, masked accuracy, tokens read) for one batch.

    ``batch`` is :func:`mlm_batch` of ``queries`` when the caller built it already (e.g. ahead of time)."""
    loss, logits, targets, mask, tokens = masked_lm_loss(
        encoder, batch if batch is not None else mlm_batch(queries, sp, query_len), device, bf16)
    with torch.no_grad():
        acc = ((logits.argmax(-1) == targets) & mask).sum().float() / mask.sum().clamp(min=1)
    return loss, acc, tokens


def mlm_pretrain(cfg: RunConfig, store: BlockStore, run_dir: str | Path, progress: bool = True,
                 encoder: KnowledgeAugEncoder | None = None) -> KnowledgeAugEncoder:
    """Pretrain (or resume) the baseline encoder in ``run_dir``; returns it (also saved in ``RUN/encoder``)."""
    # ---- setup
    pc = cfg.pretrain
    query_len = cfg.retriever.query_len
    run, encoder, opt, modules, start = start_encoder_run(cfg, store, run_dir, encoder, pc.lr, query_len,
                                                          "baseline MLM pretraining")
    run_dir, device, sp, dist = run.run_dir, run.device, run.specials, run.dist
    progress = progress and dist.is_main()
    dist.local_batch_size(pc.batch_size)  # global: an error if it does not split
    replicas = Replicas(modules, dist)
    pool = MaskedSentencePool(store, pc.masking, pc.tagger, max_tokens=query_len - 2, progress=progress)
    if dist.is_main():
        (run_dir / "pool.json").write_text(json.dumps({"sentences": pool.stats.sentences, "kept": pool.stats.kept,
                                                   "skipped": pool.stats.skipped}, indent=2))
    flops_tok = 3 * bert_flops_per_token(encoder.bert.config, query_len)
    logger = metric_logger(run_dir / "metrics.jsonl", pc.steps, "MLM (no retrieval)", start, progress,
                          bar_keys=("loss/mlm", "acc/masked", "perf/tokens_per_s"))
    # ---- train
    try:
        for step in range(start, pc.steps):
            t0 = time.time()
            lr, rng = begin_step(opt, step, cfg.seed, pc.lr, pc.warmup, pc.steps)
            queries = local_part(pool.sample(rng, pc.batch_size), dist)
            loss, acc, tokens = replicas.run(mlm_step, encoder, queries, sp, query_len, device, pc.bf16)
            loss = global_token_mean(loss, sum(len(q.positions) for q in queries))
            grad_norm = optimizer_step(opt, loss, encoder.parameters())
            dt = time.time() - t0
            done = step + 1
            logger.log(done, mean_metrics({"loss/mlm": loss.item(), "acc/masked": acc.item(), "lr": lr,
                                           "grad_norm": float(grad_norm), "perf/step_s": dt,
                                           "perf/tokens_per_s": tokens / dt,
                                           "perf/tflops": flops_tok * tokens / dt / 1e12},
                                          sums=("perf/tokens_per_s", "perf/tflops")))
            logger.advance()
            if due(done, pc.checkpoint_every, pc.steps):
                save(run, done, modules, opt)
    finally:
        logger.close()
    # ---- save
    encoder.eval()
    if not dist.is_main():
        return encoder
    encoder.save(run_dir / "encoder")
    plot_curves(run_dir, ["loss/mlm", "acc/masked"], "baseline MLM pretraining (no retrieval)")
    return encoder
