"""REALM pretraining (Guu et al. 2020): salient-span masked LM with a learned, refreshed retriever.

Per step, for a batch of masked sentences x:
  1. embed x with the query encoder, search the current index for the top k-1 blocks
     (the sentence's own block excluded), add the null block;
  2. re-embed those k blocks with the current document encoder, so that the relevance scores
     f(x, z) and the gradients of log p(z|x) reach both encoders;
  3. read ``[CLS] x [SEP] z_body [SEP]`` with the knowledge-augmented encoder;
  4. loss = -mean_j log sum_z p(z|x) p(y_j|z, x)  (``losses.marginal_mlm_loss``).
Every ``refresh_every`` steps the document encoder is exported and the index re-embedded, either by
a separate builder process (async) or in-line (sync); the trainer swaps versions between steps.

Under ``torchrun`` (docs/distributed.md): DDP over the ranks, each taking its share of the global batch;
the initial, in-line and final indexes are built sharded (each rank embeds its share of the blocks) and
searched as a :class:`realm.index.sharded.ShardedIndex`. The asynchronous builder is one process, started
by rank 0; rank 0 decides when to swap and every rank switches to that version at the same step.

Recipe: setup -> train -> save (``RUN/retriever``, ``RUN/encoder``, ``RUN/index``, metrics, plot).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realm.config import RunConfig
from realm.data.blocks import BlockStore
from realm.index.sharded import build_sharded_index
from realm.models.bert import autocast, bert_flops_per_token, use_attention
from realm.models.inputs import Specials, block_inputs, pair_inputs, query_inputs, store_block_inputs
from realm.models.mlm import KnowledgeAugEncoder
from realm.models.retriever import Retriever, relevance
from realm.retrieval import IndexFollower, ShardedFollower, follower as make_follower
from realm.training.losses import evidence_advantage, ict_accuracy, marginal_mlm_loss, marginal_token_log_probs
from realm.training.checkpoint import step_generator
from realm.training.counterfactual import substitute
from realm.training.mlm_examples import MaskedQuery, MaskedSentencePool, contains_span, masked_targets
from realm.training.optim import due, make_optimizer, optimizer_step, unique_parameters
from realm.training.plots import plot_curves
from realm.training.ict import ICTSampler, ict_step
from realm.training.reading import ReadingData, rows_step
from realm.training.parallel import Replicas, global_counts, local_part, mean_metrics, mean_scale, metric_logger
from realm.training.run import begin_step, resume, save, start_run
from realm.training.refresh import IndexBuilderProcess, discard_future, export_snapshot

log = logging.getLogger(__name__)


def retrieval_queries(queries: list[MaskedQuery], store: BlockStore, sp: Specials, query_len: int,
                      query_title: bool = False, exclude: str = "block") -> tuple[list, int, list]:
    """What the retriever sees of masked ``queries``: (token ids, their max length, excluded block ids).

    ``query_title``: the sentence is preceded by its document's title and ``[SEP]`` (the length grows by
    ``title_len + 1``): a sentence that names its subject by a pronoun ("She worked for [MASK].") can then
    be matched to other articles that mention the subject, instead of being recalled by heart.
    ``exclude``: ``block`` never retrieves the sentence's own block (REALM); ``document`` none of its
    article's blocks. The others never hold the span, so they are negatives; learning to push a query's own
    article down is the opposite of what questions about its subject need."""
    if exclude not in ("block", "document"):
        raise ValueError(f"pretrain.exclude must be 'block' or 'document', got {exclude!r}")
    ids = [q.input_ids for q in queries]
    if query_title:
        ids = [[*store.title_ids(q.block).tolist(), sp.sep_id, *q.input_ids] for q in queries]
        query_len += int(store.manifest["title_len"]) + 1
    if exclude == "block":
        excluded = [[q.block] for q in queries]
    else:  # blocks are stored in document order, so an article's blocks are one contiguous range
        docs = store.block_doc
        excluded = [list(range(int(np.searchsorted(docs, docs[q.block], "left")),
                               int(np.searchsorted(docs, docs[q.block], "right")))) for q in queries]
    return ids, query_len, excluded


def realm_step(queries: list[MaskedQuery], retriever: Retriever, encoder: KnowledgeAugEncoder, index: IndexFollower,
               store: BlockStore, sp: Specials, top_k: int, query_len: int, device, bf16: bool = False,
               swaps: list | None = None, answerable_only: bool = False, query_title: bool = False,
               exclude: str = "block", evidence: str = "span"):
    """One forward pass of REALM on a batch; returns (loss, stats, candidate ids [B, k-1], tokens).

    ``swaps[b]`` (token ids of the masked span's length, or None) makes row ``b`` counterfactual: the span
    is replaced by it in every retrieved block the encoder reads, and it is the target. The model's memory
    of the corpus then cannot predict it; only a retrieved block that mentions the span can.
    ``answerable_only``: a counterfactual row none of whose candidates mentions the span cannot be predicted
    by any block; its tokens are left out of the loss (the loss stays a sum over kept tokens divided by
    all masked tokens, so batches and ranks weigh alike).
    ``query_title``, ``exclude``: what the retriever sees and never returns (:func:`retrieval_queries`).
    ``evidence="subject"``: a counterfactual swap is made only in blocks that mention the span *and* the
    sentence's subject (its article's title); a block that holds the span about another subject keeps the
    old span and cannot predict the target. Copying the value of a look-alike sentence about someone else
    (same wording, same value by chance) then does not pay; finding text about the subject does.
    """
    if evidence not in ("span", "subject"):
        raise ValueError(f"pretrain.evidence must be 'span' or 'subject', got {evidence!r}")
    B, K = len(queries), top_k
    q_ids = [q.input_ids for q in queries]
    r_ids, r_len, excluded = retrieval_queries(queries, store, sp, query_len, query_title, exclude)
    q_in = {k: v.to(device) for k, v in query_inputs(r_ids, sp, r_len).items()}
    with autocast(device, bf16):
        q_emb = retriever.embed_queries(q_in).float()  # [B, d]
    _, ids = index.index.search(q_emb.detach(), K - 1, exclude=excluded)  # [B, K-1]
    stored = getattr(index, "embeddings", None)  # None in a job: each rank holds only its shard
    if stored is not None and not any(p.requires_grad for p in retriever.doc.parameters()):
        # a frozen document tower: the index holds exactly its embeddings (as stored), no re-encoding
        null = _null_embedding(retriever, store, sp, device, bf16)
        cand = torch.from_numpy(stored[np.maximum(ids, 0)]).to(device).view(B, K - 1, -1)
        d_tokens = 0
    else:
        flat = ids.reshape(-1).tolist()
        d_in = {k: v.to(device) for k, v in store_block_inputs(store, flat + [-1], sp).items()}  # last: null block
        with autocast(device, bf16):
            d_emb = retriever.embed_blocks(d_in).float()
        cand = d_emb[:-1].view(B, K - 1, -1)
        null = d_emb[-1]
        d_tokens = int(d_in["attention_mask"].sum())
    logits = torch.cat([relevance(q_emb, cand), relevance(q_emb, null[None])], dim=1)  # [B, K]
    missing = torch.from_numpy(np.concatenate([ids < 0, np.zeros((B, 1), bool)], axis=1)).to(device)
    logits = logits.masked_fill(missing, -1e4)  # a corpus smaller than k: padded candidates get ~zero probability

    swaps = swaps or [None] * B
    # evidence: a candidate that mentions the span (and, with evidence="subject", the sentence's subject)
    def is_evidence(i: int, q: MaskedQuery) -> bool:
        if i < 0:
            return False
        body = store.body_ids(i)
        return contains_span(body, q.targets) and (evidence == "span" or contains_span(body, store.title_ids(q.block)))

    evidence_rows = [[is_evidence(int(i), q) for i in ids[b]] + [False] for b, q in enumerate(queries)]
    bodies = []
    for b in range(B):
        row = [store.body_ids(i) if i >= 0 else () for i in ids[b]] + [()]
        if swaps[b] is not None:  # the swap goes only where the evidence is: elsewhere the old span stays, useless
            row = [substitute(x, queries[b].targets, swaps[b]) if ev else x for x, ev in zip(row, evidence_rows[b])]
        bodies += row
    pair_in, _, _ = pair_inputs([q_ids[b] for b in range(B) for _ in range(K)], bodies, sp, query_len)
    pair_in = {k: v.to(device) for k, v in pair_in.items()}
    positions, targets, token_mask = masked_targets(queries, [q.targets if w is None else w
                                                              for q, w in zip(queries, swaps)])
    positions, targets, token_mask = positions.to(device), targets.to(device), token_mask.to(device)
    # does the encoder read? (the retriever learns only from blocks that change p(y|z,x))
    evidence = torch.tensor(evidence_rows, device=device)
    all_tokens = token_mask.sum()
    if answerable_only:
        unanswerable = torch.tensor([w is not None for w in swaps], device=device) & ~evidence.any(-1)
        token_mask = token_mask & ~unanswerable[:, None]
    with autocast(device, bf16):
        tlp, mlm_logits = encoder.target_log_probs(pair_in, positions.repeat_interleave(K, 0), targets.repeat_interleave(K, 0))
    tlp = tlp.view(B, K, -1)
    with torch.no_grad():
        marginal = marginal_token_log_probs(logits.detach(), mlm_logits.detach().float().view(B, K, tlp.shape[-1], -1))
        correct = marginal.argmax(-1) == targets
    loss, stats = marginal_mlm_loss(logits, tlp, token_mask, null_index=K - 1, marginal_pred_correct=correct)
    if answerable_only:
        loss = loss * token_mask.sum() / all_tokens.clamp(min=1)
        stats["answerable_rows"] = (~unanswerable).float().mean()
    real = torch.cat([~missing[:, :-1], torch.zeros(B, 1, dtype=torch.bool, device=device)], dim=1)
    stats["evidence_advantage"], stats["evidence_compared"] = evidence_advantage(tlp, token_mask, evidence, real)
    stats["evidence_rate"] = evidence.any(-1).float().mean()
    tokens = int(q_in["attention_mask"].sum() + pair_in["attention_mask"].sum()) + d_tokens
    return loss, stats, ids, tokens


@torch.no_grad()
def evidence_at_k(retriever: Retriever, index, store: BlockStore, sp: Specials, queries: list[MaskedQuery], k: int,
                  query_len: int, device, query_title: bool = False, exclude: str = "block") -> float:
    """REALM's own retrieval task: the share of masked ``queries`` whose top ``k`` blocks (what a REALM step
    excludes left out, see :func:`retrieval_queries`) hold a block that mentions the masked span."""
    if not queries:
        return float("nan")
    was = retriever.training
    retriever.eval()
    r_ids, r_len, excluded = retrieval_queries(queries, store, sp, query_len, query_title, exclude)
    q_in = {key: v.to(device) for key, v in query_inputs(r_ids, sp, r_len).items()}
    q_emb = retriever.embed_queries(q_in).float()
    retriever.train(was)
    _, ids = index.search(q_emb, k, exclude=excluded)
    return float(np.mean([any(z >= 0 and contains_span(store.body_ids(int(z)), q.targets) for z in row)
                          for row, q in zip(ids, queries)]))


def _null_embedding(retriever: Retriever, store: BlockStore, sp: Specials, device, bf16: bool) -> torch.Tensor:
    """The frozen document tower's embedding of the null block, computed once per state of its weights (the
    key is every parameter's in-place version counter: loading new weights changes it)."""
    key = (tuple(p._version for p in retriever.doc.parameters()), str(device), bf16)
    cached = getattr(retriever.doc, "_null_cache", None)
    if cached is None or cached[0] != key:
        with torch.no_grad(), autocast(device, bf16):
            null = retriever.embed_blocks({k: v.to(device) for k, v in
                                           store_block_inputs(store, [-1], sp).items()}).float()[0]
        retriever.doc._null_cache = cached = (key, null)
    return cached[1]


def _wait_for_fresher_index(follower: IndexFollower | ShardedFollower, builder: IndexBuilderProcess | None, step: int,
                            max_staleness: int, timeout_s: float = 1800) -> bool:
    """Bounded staleness: block until the builder publishes an index at most ``max_staleness`` behind.
    In a job every rank waits (``builder`` is rank 0's; ``poll`` is a collective)."""
    t0, swapped = time.time(), False
    while follower.staleness(step) > max_staleness:
        if builder is not None:
            builder.ensure_alive()  # a crashed builder is restarted (bounded), then raises
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"no fresh index after {timeout_s:.0f} s")
        swapped = follower.poll() or swapped
        time.sleep(0.05)
    return swapped


def _step_loss(queries: list[MaskedQuery], swaps, rows, retriever: Retriever, encoder: KnowledgeAugEncoder,
               index, store: BlockStore, sp: Specials, pc, query_len: int, device, ict=None):
    """This rank's loss of one pretraining step (its REALM queries + its reading rows) as its share of the
    global batch's loss: each mean over masked tokens is scaled by ``world * local tokens / global tokens``
    (:func:`realm.training.parallel.mean_scale`; 1 in one process). Returns (loss, stats, tokens, reading stats)."""
    n_query = sum(len(q.positions) for q in queries)
    n_rows = sum(len(r.query.positions) for r in rows) if rows else 0
    all_query, all_rows = global_counts(n_query, n_rows)
    loss, stats, _, tokens = realm_step(queries, retriever, encoder, index, store, sp, pc.top_k, query_len, device,
                                        pc.bf16, swaps=swaps, answerable_only=pc.answerable_only,
                                        query_title=pc.query_title, exclude=pc.exclude, evidence=pc.evidence)
    loss = loss * mean_scale(n_query, all_query)
    read_stats: dict = {}
    if rows:
        read_loss, read_stats, read_tokens = rows_step(encoder, rows, sp, query_len, device, pc.bf16)
        loss = loss + pc.reading_rows / pc.batch_size * mean_scale(n_rows, all_rows) * read_loss
        tokens += read_tokens
        read_stats = {f"reading/{k}": v for k, v in read_stats.items()} | {"reading/loss": read_loss.item()}
    if ict is not None:  # the retriever's warm-start objective on (sentence, own block) pairs, as an anchor
        q_in, d_in = ({k: v.to(device) for k, v in x.items()} for x in ict)
        ict_l, q, d = ict_step(retriever, q_in, d_in, pc.bf16)
        loss = loss + pc.ict_weight * ict_l
        tokens += int(q_in["attention_mask"].sum() + d_in["attention_mask"].sum())
        read_stats = read_stats | {"ict/loss": ict_l.item(), "ict/acc": ict_accuracy(q, d).item()}
    return loss, stats, tokens, read_stats


def pretrain(cfg: RunConfig, store: BlockStore, run_dir: str | Path, retriever: Retriever | None = None,
             encoder: KnowledgeAugEncoder | None = None, progress: bool = True,
             stop_at: int | None = None, evaluate: Callable[[Retriever], dict] | None = None,
             reading: ReadingData | None = None) -> tuple[Retriever, KnowledgeAugEncoder]:
    """Run (or resume) REALM pretraining in ``run_dir``.

    ``stop_at`` ends this invocation after that step with a checkpoint (as a pre-empted job would);
    a later call resumes from it. Every ``pretrain.probe_every`` steps (and at the start and the end)
    the reading probe is measured and ``evaluate(retriever)`` (e.g. zero-shot recall on dev
    questions) is logged under ``eval/``. ``pretrain.reading_rows`` counterfactual reading rows
    (:mod:`realm.training.reading`) join each batch, their loss added with weight rows / batch size.
    """
    # ---- setup
    pc = cfg.pretrain
    run = start_run(cfg, store, run_dir)
    run_dir, device, tok, sp, dist = run.run_dir, run.device, run.tokenizer, run.specials, run.dist
    progress = progress and dist.is_main()
    dist.local_batch_size(pc.batch_size)  # batch sizes are global: an error if they do not split
    if pc.reading_rows:
        dist.local_batch_size(pc.reading_rows)
    need = cfg.retriever.query_len + store.manifest["block_len"] + 1
    if need > cfg.reader.encoder.max_positions:
        raise ValueError(f"query_len + block_len + 1 = {need} exceeds reader.encoder.max_positions "
                         f"{cfg.reader.encoder.max_positions}")
    retriever = retriever or Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
    encoder = encoder or KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id)
    if not pc.train_doc_encoder:  # the block embeddings stay those of the starting retriever
        if retriever.shared:
            retriever.untie()
        retriever.doc.requires_grad_(False)
    use_attention(retriever, cfg.retriever.encoder.attention)  # also for models loaded from earlier stages
    use_attention(encoder, cfg.reader.encoder.attention)
    retriever.to(device).train()
    encoder.to(device).train()
    opt = make_optimizer(encoder.parameters(), pc.lr,
                         scaled={"retriever": (list(retriever.parameters()), pc.retriever_lr_scale)})
    modules = {"retriever": retriever, "encoder": encoder}
    start, state = resume(run_dir, modules, opt, "pretraining")
    replicas = Replicas(modules, dist)
    if dist.is_main():
        discard_future(run_dir, start if state else -1)  # what a killed run made after its last checkpoint
    dist.barrier()
    ic = cfg.index
    interval = max(1, pc.refresh_every * pc.stale_factor)
    if pc.refresh_mode not in ("async", "sync"):
        raise ValueError(f"pretrain.refresh_mode must be 'async' or 'sync', got {pc.refresh_mode!r}")
    if pc.exclude not in ("block", "document"):
        raise ValueError(f"pretrain.exclude must be 'block' or 'document', got {pc.exclude!r}")
    if pc.max_staleness and pc.max_staleness < interval:
        raise ValueError(f"pretrain.max_staleness ({pc.max_staleness}) must be >= the refresh interval ({interval})")
    # the builder starts first: its imports overlap with tagging the corpus and the initial index
    # a frozen document tower never makes the index stale: no refreshes, no builder
    refresh = pc.train_doc_encoder
    asynchronous = pc.refresh_mode == "async" and refresh
    builder = IndexBuilderProcess(run_dir, store.folder, ic.batch_size, ic.bf16, ic.keep_versions) \
        if asynchronous and dist.is_main() else None
    try:
        pool = MaskedSentencePool(store, pc.masking, pc.tagger, max_tokens=cfg.retriever.query_len - 2,
                                  progress=progress)
        if dist.is_main():
            (run_dir / "pool.json").write_text(json.dumps(
                {"sentences": pool.stats.sentences, "kept": pool.stats.kept, "skipped": pool.stats.skipped}, indent=2))
        index_root = run_dir / "index"
        follower = make_follower(index_root, backend=ic.backend, device=device, expect_corpus_hash=store.corpus_hash,
                                 expect_dim=retriever.doc.dense.out_features)
        if state.get("index_version") is not None:
            try:
                follower.load(state["index_version"])
            except FileNotFoundError:  # pruned since: the newest is the best we have
                follower.load()
        else:
            build_sharded_index(retriever.doc, store, index_root, encoder="initial", encoder_step=start,
                                batch_size=ic.batch_size, bf16=ic.bf16, keep=ic.keep_versions, device=device,
                                progress=progress)
            follower.load()
    except BaseException:
        if builder is not None:
            builder.stop()
        raise
    ict_sampler = ICTSampler(store, cfg.retriever.query_len, cfg.ict.remove_prob) if pc.ict_rows else None
    if pc.ict_rows:
        dist.local_batch_size(pc.ict_rows)
    if reading is None and (pc.reading_rows or pc.probe_every or pc.counterfactual):
        reading = ReadingData(store, cfg.retriever.query_len, progress=False, probe_rows=cfg.reading.probe_rows)

    # a fixed set of masked sentences: does retrieval improve on REALM's own task? (evaluated on one process:
    # a sharded index's search is a collective)
    own_task = pool.sample(step_generator(cfg.seed + 104_729, 0), cfg.reading.probe_rows) \
        if pc.probe_every and dist.world_size == 1 else []

    def measure() -> dict:
        out = reading.probe.measure(encoder, device) if reading is not None else {}
        if own_task:
            out[f"probe/evidence@{pc.top_k - 1}"] = evidence_at_k(retriever, follower.index, store, sp, own_task,
                                                                  pc.top_k - 1, cfg.retriever.query_len, device,
                                                                  pc.query_title, pc.exclude)
        if evaluate is not None:
            was = retriever.training
            retriever.eval()
            out.update({f"eval/{k}": v for k, v in evaluate(retriever).items()})
            retriever.train(was)
        return out

    flops_tok = 3 * bert_flops_per_token(encoder.bert.config, cfg.retriever.query_len + store.manifest["block_len"])
    logger = metric_logger(run_dir / "metrics.jsonl", pc.steps, "REALM", start, progress,
                          bar_keys=("loss/mlm", "retrieval/utility", "index/version", "perf/tokens_per_s"))
    if start == 0 and pc.probe_every and dist.is_main():
        logger.log(0, measure())
    # ---- train
    try:
        for step in range(start, pc.steps):
            if stop_at is not None and step >= stop_at:
                save(run, step, modules, opt, {"index_version": follower.version})
                return retriever, encoder
            swapped = follower.poll() if asynchronous else False  # in a job: rank 0 decides, all ranks swap
            if asynchronous and pc.max_staleness and follower.staleness(step) > pc.max_staleness:
                swapped = _wait_for_fresher_index(follower, builder, step, pc.max_staleness) or swapped
            if swapped and dist.is_main():
                tqdm.write(f"step {step}: swapped in index v{follower.version} "
                           f"(built from step {follower.manifest.encoder_step}, {follower.staleness(step)} steps behind)")
            t0 = time.time()
            lr, rng = begin_step(opt, step, cfg.seed, pc.lr, pc.warmup, pc.steps)
            if step < pc.retriever_freeze_steps:  # the retriever waits until the encoder can use blocks
                for g in opt.param_groups:
                    if g.get("name") == "retriever":
                        g["lr"] = 0.0
            # the global batch, drawn alike on every rank; each keeps its share
            queries = pool.sample(rng, pc.batch_size)
            swaps = None
            if pc.counterfactual > 0:
                swaps = local_part([reading.bank.replacement(q.targets, rng) if rng.random() < pc.counterfactual
                                    else None for q in queries], dist)
            queries = local_part(queries, dist)
            rows = local_part(reading.rows(rng, pc.reading_rows, cfg.reading.plain_share, cfg.reading.evidence_share,
                                           cfg.reading.distractor_share, cfg.reading.question_share),
                              dist) if pc.reading_rows else None
            ict = None
            if pc.ict_rows:
                ict_q, ict_t, ict_b, _ = (local_part(x, dist) for x in ict_sampler.sample(rng, pc.ict_rows))
                ict = (query_inputs(ict_q, sp, cfg.retriever.query_len), block_inputs(ict_t, ict_b, sp))
            loss, stats, tokens, read_stats = replicas.run(_step_loss, queries, swaps, rows, retriever, encoder, follower,
                                                           store, sp, pc, cfg.retriever.query_len, device, ict)
            grad_norm = optimizer_step(opt, loss, unique_parameters(retriever, encoder))
            dt = time.time() - t0
            done = step + 1
            logger.log(done, mean_metrics({
                "loss/mlm": loss.item(), "acc/masked": stats["masked_accuracy"].item(),
                "retrieval/utility": stats["retrieval_utility"].item(),
                "retrieval/entropy": stats["retrieval_entropy"].item(),
                "retrieval/evidence_rate": stats["evidence_rate"].item(),
                "retrieval/evidence_advantage": stats["evidence_advantage"].item() if stats["evidence_compared"] else None,
                "retrieval/answerable_rows": stats["answerable_rows"].item() if "answerable_rows" in stats else None,
                "index/version": follower.version, "index/staleness": follower.staleness(step) if refresh else 0,
                "index/swapped": int(swapped), "lr": lr, "grad_norm": float(grad_norm), "perf/step_s": dt,
                "perf/tokens_per_s": tokens / dt, "perf/tflops": flops_tok * tokens / dt / 1e12, **read_stats},
                sums=("perf/tokens_per_s", "perf/tflops"))
                | (measure() if dist.is_main() and pc.probe_every and (done % pc.probe_every == 0 or done == pc.steps)
                   else {}))
            logger.advance()
            if refresh and done % interval == 0 and done < pc.steps:
                if not asynchronous:
                    build_sharded_index(retriever.doc, store, index_root, encoder=f"step {done}", encoder_step=done,
                                        batch_size=ic.batch_size, bf16=ic.bf16, keep=ic.keep_versions, device=device,
                                        progress=False)
                    follower.load()
                elif builder is not None:  # rank 0: the replicas are identical, one snapshot serves them all
                    builder.ensure_alive()
                    export_snapshot(retriever, run_dir, done)
            if due(done, pc.checkpoint_every, pc.steps):
                save(run, done, modules, opt, {"index_version": follower.version})
    finally:
        logger.close()
        if builder is not None:
            builder.stop()
    # ---- save
    if dist.is_main():
        retriever.save(run_dir / "retriever")
        encoder.save(run_dir / "encoder")
    if refresh:  # else the index in use is already that of the final document tower
        build_sharded_index(retriever.doc, store, index_root, encoder=str(run_dir / "retriever"),
                            encoder_step=pc.steps, batch_size=ic.batch_size, bf16=ic.bf16, keep=ic.keep_versions,
                            device=device, progress=progress)
    if not dist.is_main():
        return retriever, encoder
    plot_curves(run_dir, ["loss/mlm", "retrieval/utility", "retrieval/entropy", "retrieval/evidence_advantage",
                          "retrieval/evidence_rate", f"probe/evidence@{pc.top_k - 1}", "probe/evidence_advantage",
                          "eval/recall@5", "index/staleness"],
                "REALM pretraining")
    return retriever, encoder
