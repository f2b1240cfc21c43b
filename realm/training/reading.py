"""Reading warm start (``cfg.reading``): a knowledge-augmented encoder that reads the block it is given.

BERT's role in REALM is played here by an encoder trained from scratch, which on a small corpus
memorises the facts rather than reading a paired block. This recipe trains it on counterfactual
rows (:mod:`realm.training.counterfactual`): the masked span, swapped inside the paired block for
another salient span of the same length, is the target, so only reading gets it right. A share of
rows (``plain_share``) read the null block and predict the real span: plain masked LM, so the encoder
still knows the corpus' language and facts. For the first ``curriculum_start`` of the steps the
counterfactual rows use the sentence's own block; after that ``evidence_share`` of them use another
document's block that mentions the span, which is what REALM's retriever will hand it.

Loss: mean cross-entropy over the masked tokens. Every ``probe_every`` steps the fixed
:class:`~realm.training.reading_probe.ReadingProbe` is measured and logged (``probe/*``).

Recipe: setup -> train -> save ``RUN/encoder`` (an HF folder), ``RUN/probe.json``, ``RUN/curves.png``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from realm.config import RunConfig
from realm.data.blocks import BlockStore
from realm.models.bert import bert_flops_per_token
from realm.models.inputs import pair_inputs
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.counterfactual import ROW_KINDS, EvidenceFinder, Row, SpanBank, draw_kinds, make_rows
from realm.training.encoder_mlm import masked_lm_loss
from realm.training.mlm_examples import MaskedSentencePool, TextPool, masked_targets
from realm.training.optim import due, optimizer_step
from realm.training.plots import plot_curves
from realm.training.reading_probe import ReadingProbe
from realm.training.parallel import Replicas, global_token_mean, local_part, mean_metrics, metric_logger
from realm.training.run import begin_step, save, start_encoder_run

log = logging.getLogger(__name__)


class ReadingData:
    """What the reading rows are made from: the salient sentence pool, the span bank, the evidence finder."""

    def __init__(self, store: BlockStore, query_len: int, progress: bool = False, probe_rows: int = 200,
                 questions: Sequence[str] = ()):
        self.store = store
        # training questions' text, for ``reading.question_share`` (None: none were given)
        self.questions = TextPool(store.tokenizer, questions, max_tokens=query_len - 2) if questions else None
        self.pool = MaskedSentencePool(store, "salient", max_tokens=query_len - 2, progress=progress)
        self.bank = SpanBank.from_pool(self.pool)
        self.finder = EvidenceFinder.from_store(store)
        self.query_len = query_len
        self.probe = ReadingProbe(store, self.pool, rows=probe_rows, bank=self.bank, finder=self.finder,
                                  query_len=query_len)

    def rows(self, rng, n: int, plain_share: float, evidence_share: float, distractor_share: float = 0.0,
             question_share: float = 0.0):
        """``n`` reading rows; ``question_share * n`` of them, rounded up or down at random so that a few rows
        per batch still get their share on average, are masked questions that read the null block (kind
        ``plain``) and come last; the rest come from the corpus' sentences."""
        m = int(question_share * n)
        if question_share * n - m > 0:  # no draw when the share is a whole number of rows
            m += int(rng.random() < question_share * n - m)
        if m and self.questions is None:
            raise ValueError("reading.question_share > 0 needs the training questions' text (realm experiment "
                             "passes them)")
        queries = self.pool.sample(rng, n - m)
        kinds = draw_kinds(n - m, plain_share, evidence_share, rng, distractor_share)
        rows = make_rows(queries, kinds, lambda i: self.finder.bodies[i], self.finder, self.bank, rng)
        empty = np.zeros(0, dtype=np.int64)
        return rows + [Row(q, empty, np.asarray(q.targets, dtype=np.int64), "plain")
                       for q in (self.questions.sample(rng, m) if m else [])]


def rows_batch(rows, sp, query_len: int):
    """(inputs ``[CLS] x [SEP] body [SEP]``, positions [B, M], targets [B, M], token mask [B, M]) of reading rows."""
    inputs, _, _ = pair_inputs([r.query.input_ids for r in rows], [r.body for r in rows], sp, query_len)
    return (inputs, *masked_targets([r.query for r in rows], [r.targets for r in rows]))


def rows_step(encoder: KnowledgeAugEncoder, rows, sp, query_len: int, device, bf16: bool, batch=None):
    """(loss = mean CE over masked tokens, per-kind stats, tokens read) for reading rows.

    ``batch`` is :func:`rows_batch` of ``rows`` when the caller built it already (e.g. ahead of time)."""
    loss, logits, targets, mask, tokens = masked_lm_loss(
        encoder, batch if batch is not None else rows_batch(rows, sp, query_len), device, bf16)
    stats = {}
    with torch.no_grad():
        right = ((logits.argmax(-1) == targets) | ~mask).all(-1)
        for kind in ROW_KINDS:
            sel = torch.tensor([r.kind == kind for r in rows], device=device)
            if sel.any():
                stats[f"acc/{kind}"] = right[sel].float().mean().item()
                stats[f"share/{kind}"] = sel.float().mean().item()
    return loss, stats, tokens


def reading_warmup(cfg: RunConfig, store: BlockStore, run_dir: str | Path, encoder: KnowledgeAugEncoder | None = None,
                   progress: bool = True, data: ReadingData | None = None) -> KnowledgeAugEncoder:
    """Train (or resume) the reading warm start in ``run_dir``; returns the encoder (also in ``RUN/encoder``)."""
    # ---- setup
    rc = cfg.reading
    query_len = cfg.retriever.query_len
    need = query_len + store.manifest["block_len"] + 1  # [CLS] x [SEP] body [SEP]
    run, encoder, opt, modules, start = start_encoder_run(cfg, store, run_dir, encoder, rc.lr, need,
                                                          "reading warm start")
    run_dir, device, sp, dist = run.run_dir, run.device, run.specials, run.dist
    progress = progress and dist.is_main()
    dist.local_batch_size(rc.batch_size)  # global: an error if it does not split
    replicas = Replicas(modules, dist)
    data = data or ReadingData(store, query_len, progress, rc.probe_rows)
    if dist.is_main():
        (run_dir / "probe_rows.json").write_text(json.dumps(data.probe.sizes()))
    flops_tok = 3 * bert_flops_per_token(encoder.bert.config, need)
    logger = metric_logger(run_dir / "metrics.jsonl", rc.steps, "reading warm start", start, progress,
                          bar_keys=("loss/mlm", "acc/own", "probe/evidence_advantage", "perf/tokens_per_s"))
    curriculum = int(rc.curriculum_start * rc.steps)
    last_probe: dict = {}
    # ---- train
    try:
        for step in range(start, rc.steps):
            t0 = time.time()
            lr, rng = begin_step(opt, step, cfg.seed, rc.lr, rc.warmup, rc.steps)
            rows = local_part(data.rows(rng, rc.batch_size, rc.plain_share,
                                        rc.evidence_share if step >= curriculum else 0.0, rc.distractor_share,
                                        rc.question_share), dist)
            loss, stats, tokens = replicas.run(rows_step, encoder, rows, sp, query_len, device, rc.bf16)
            loss = global_token_mean(loss, sum(len(r.query.positions) for r in rows))
            grad_norm = optimizer_step(opt, loss, encoder.parameters())
            dt = time.time() - t0
            done = step + 1
            metrics = {"loss/mlm": loss.item(), **stats, "lr": lr, "grad_norm": float(grad_norm), "perf/step_s": dt,
                       "perf/tokens_per_s": tokens / dt, "perf/tflops": flops_tok * tokens / dt / 1e12}
            metrics = mean_metrics(metrics, sums=("perf/tokens_per_s", "perf/tflops"))
            if due(done, rc.probe_every, rc.steps) and dist.is_main():
                last_probe = data.probe.measure(encoder, device, bf16=False)
                metrics.update(last_probe)
            logger.log(done, metrics)
            logger.advance()
            if due(done, rc.checkpoint_every, rc.steps):
                save(run, done, modules, opt)
    finally:
        logger.close()
    # ---- save
    encoder.eval()
    if not dist.is_main():
        return encoder
    encoder.save(run_dir / "encoder")
    if not last_probe:  # resumed after the last step: measure the saved encoder
        last_probe = data.probe.measure(encoder, device)
    (run_dir / "probe.json").write_text(json.dumps(last_probe, indent=2))
    plot_curves(run_dir, ["loss/mlm", "acc/own", "acc/evidence", "acc/plain", "acc/distractor",
                          "probe/evidence_advantage", "probe/cf_advantage"],
                "reading warm start (counterfactual span substitution)")
    return encoder
