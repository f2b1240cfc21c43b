"""Open-domain QA fine-tuning (ORQA's recipe, reused by REALM §3.5 / §4).

For a batch of questions: retrieve the top-k blocks from a FIXED index (the document encoder and the
block embeddings never change), recompute the retrieval logits ``f(x, z) = Embed_query(x) . e_z`` with
gradient into the query encoder, read every ``[CLS] x [SEP] body [SEP]`` with the span reader, and
minimise :func:`realm.training.losses.reader_loss` (reader marginal likelihood over the correct
(block, span) pairs + retriever marginal likelihood over the answer-bearing blocks).

Correct span rule: a candidate span is correct iff its token ids equal the token ids of an answer
(``tokenizer.encode(answer)``; the corpus tokenizer lower-cases, so matching is case-insensitive) and
the token right after it inside the body is not a word continuation (``##`` piece), so "Varn" never
matches the start of "Varnholt". ``block_has_answer`` uses :func:`realm.data.qa.has_answer` on the
block text (normalised whole-word match), as recall@k does.

Retrieval comes from :mod:`realm.retrieval`: dense retrieval over the frozen block embeddings with the
backend ``index.backend`` names, or BM25 (the ``bm25_reader`` baseline), whose scores are the retrieval
logits (constants): then only the reader trains.

Recipe: ``setup`` (untie/freeze, optimiser, resume) -> ``train`` -> save ``RUN/reader/``, ``RUN/retriever/``.

Under ``torchrun`` the reader and the query encoder train under DDP; each rank takes its share of the
global batch of questions (counterfactual swaps then come from the rank's own RNG) and the two loss terms
are divided by the global counts (``reader_loss(denominators=...)``), so N ranks train on one process' loss.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from realm.config import RunConfig
from realm.data.blocks import BlockStore
from realm.data.qa import QAExample, has_answer
from realm.models.bert import autocast, use_attention
from realm.models.reader import SpanReader, reader_inputs, span_index
from realm.retrieval import BM25Retrieval, DenseRetrieval
from realm.training.counterfactual import AnswerBank, substitute
from realm.training.losses import reader_loss
from realm.training.optim import due, make_optimizer, optimizer_step, unique_parameters
from realm.training.parallel import Replicas, global_counts, local_part, mean_metrics, metric_logger, step_rng
from realm.training.run import begin_step, resume, save, start_run

log = logging.getLogger(__name__)

RETRIEVAL_MODES = ("dense", "bm25")


def continuation_ids(tokenizer) -> np.ndarray:
    """Sorted ids of word-continuation wordpieces (``##x``)."""
    return np.array(sorted(i for t, i in tokenizer.hf.get_vocab().items() if t.startswith("##")), dtype=np.int64)


def correct_spans(bodies: list[np.ndarray], body_start: torch.Tensor, seq_len: int, num_spans: int,
                  answers: list[list[list[int]]], max_width: int, continuation: np.ndarray) -> torch.Tensor:
    """[N, S] bool: candidate spans whose tokens equal a tokenised answer (see the module docstring).

    ``answers[n]`` holds the answer token-id lists of row ``n``'s question.
    """
    out = np.zeros((len(bodies), num_spans), dtype=bool)
    for n, (body, ans_list) in enumerate(zip(bodies, answers)):
        body = np.asarray(body, dtype=np.int64)
        cont_next = np.append(np.isin(body[1:], continuation), False)  # token i+1 continues token i's word
        for ans in ans_list:
            w = len(ans)
            if w == 0 or w > max_width or w > len(body):
                continue
            windows = np.lib.stride_tricks.sliding_window_view(body, w)
            for i in np.flatnonzero((windows == np.asarray(ans)).all(axis=1)):
                if not cont_next[i + w - 1]:
                    out[n, span_index(seq_len, int(body_start[n]) + int(i), w)] = True
    return torch.from_numpy(out)


def finetune(cfg: RunConfig, retrieval: DenseRetrieval | BM25Retrieval, reader: SpanReader,
             train: list[QAExample], run_dir: str | Path, progress: bool = True, checkpoint_every: int | None = None,
             bf16: bool | None = None) -> dict:
    """Fine-tune (or resume) ``reader`` (+ the query encoder of a dense ``retrieval``) on ``train``; returns a
    summary dict. The blocks come from ``retrieval``: dense over a fixed index, or BM25.

    ``checkpoint_every`` / ``bf16`` default to ``cfg.finetune.checkpoint_every`` (0: only at the end) /
    ``cfg.finetune.bf16``; the query encoder runs under the same autocast as the reader.
    """
    ft = cfg.finetune
    bf16 = ft.bf16 if bf16 is None else bf16
    if not train:
        raise ValueError("no training questions")
    mode = retrieval.kind
    if mode not in RETRIEVAL_MODES:
        raise ValueError(f"retrieval must be one of {RETRIEVAL_MODES}, got {mode!r}")
    store = retrieval.store
    # ---- setup
    run = start_run(cfg, store, run_dir)
    run_dir, device, tok, sp, dist = run.run_dir, run.device, run.tokenizer, run.specials, run.dist
    progress = progress and dist.is_main()
    dist.local_batch_size(min(ft.batch_size, len(train)))  # global: an error if it does not split
    reader.max_query_len = cfg.retriever.query_len
    use_attention(reader, cfg.reader.encoder.attention)  # also for a reader built from an earlier stage's encoder
    reader.to(device).train()
    modules: dict[str, torch.nn.Module] = {"reader": reader}
    train_query = mode == "dense" and ft.train_query_encoder
    retriever = retrieval.retriever if mode == "dense" else None
    if mode == "dense":
        if retriever.shared:
            retriever.untie()  # the document side stays as it was when the index was built
        use_attention(retriever, cfg.retriever.encoder.attention)
        retriever.to(device)
        retriever.doc.requires_grad_(False).eval()
        retriever.query.requires_grad_(train_query).train(train_query)
        if train_query:
            modules["query_encoder"] = retriever.query
        retrieval.bf16 = bf16
    params = unique_parameters(*modules.values())
    opt = make_optimizer(params, ft.lr)
    start, _ = resume(run_dir, modules, opt, "fine-tuning")
    replicas = Replicas(modules, dist)
    blocks = retrieval
    answer_ids = [[tok.encode(a) for a in ex.answers] for ex in train]
    continuation = continuation_ids(tok)
    answer_bank = AnswerBank([ex.answers[0] for ex in train], tok.encode) if ft.counterfactual > 0 else None
    text_cache: dict[int, str] = {}
    checkpoint_every = checkpoint_every or ft.checkpoint_every
    logger = metric_logger(run_dir / "metrics.jsonl", ft.steps, f"finetune ({mode})", start, progress,
                          bar_keys=("loss/total", "train/recall", "perf/tokens_per_s"))
    totals = {"questions": 0, "no_correct_span": 0, "no_answer_block": 0}
    last: dict = {}
    # ---- train
    try:
        for step in range(start, ft.steps):
            t0 = time.time()
            lr, rng = begin_step(opt, step, cfg.seed, ft.lr, ft.warmup, ft.steps)
            batch = local_part(rng.choice(len(train), size=min(ft.batch_size, len(train)), replace=False), dist)
            rng = step_rng(rng, cfg.seed, step, dist)  # what is drawn per question from here on
            questions = [train[i].question for i in batch]
            q_ids = [e.ids for e in tok.encode_batch(questions)]
            n_swapped = 0

            def forward():  # the step's forward pass and loss, under DDP in a job
                nonlocal n_swapped
                ids, ret_logits = blocks.retrieve(questions, q_ids, cfg.reader.top_k)
                bsz, k = ids.shape
                row_answers = [answer_ids[i] for i in batch for _ in range(k)]
                swapped_bodies = None
                if ft.counterfactual > 0:  # the answer, swapped in the blocks for another of its kind, is the gold
                    swapped_bodies, row_answers, n_swapped = swap_answers(
                        [train[i].answers[0] for i in batch], [answer_ids[i] for i in batch], ids, store,
                        answer_bank, continuation, ft.counterfactual, rng)
                inputs, body_start, body_end, bodies = reader_inputs(reader, q_ids, ids, store, sp, swapped_bodies)
                inputs = {n: v.to(device) for n, v in inputs.items()}
                with autocast(device, bf16):
                    out = reader(inputs, body_start, body_end)
                seq_len, num_spans = inputs["input_ids"].shape[1], out.starts.numel()
                correct = correct_spans(bodies, body_start, seq_len, num_spans, row_answers, reader.max_span_width,
                                        continuation).to(device).view(bsz, k, -1)
                has_ans = torch.tensor([[b >= 0 and has_answer(_text(store, int(b), text_cache), train[i].answers)
                                         for b in ids[r]] for r, i in enumerate(batch)], device=device)
                valid = out.valid.view(bsz, k, -1)
                n_correct, n_block = global_counts(int((correct & valid).flatten(1).any(-1).sum()),
                                                   int(has_ans.any(-1).sum()))
                den = (max(1.0, n_correct) / dist.world_size, max(1.0, n_block) / dist.world_size) \
                    if dist.distributed else None
                loss, stats = reader_loss(out.span_logits.view(bsz, k, -1), valid, correct, ret_logits, has_ans,
                                          denominators=den)
                return loss, stats, inputs, bsz

            loss, stats, inputs, bsz = replicas.run(forward)
            grad_norm = optimizer_step(opt, loss, params)
            dt = time.time() - t0
            tokens = int(inputs["attention_mask"].sum()) + sum(len(q) + 2 for q in q_ids)
            no_span, no_block = int(stats["num_no_correct_span"]), int(stats["num_no_answer_block"])
            last = mean_metrics({"loss/total": loss.item(), "loss/reader": stats["reader_loss"].item(),
                                 "loss/retriever": stats["retriever_loss"].item(), "train/no_correct_span": no_span / bsz,
                                 "grad_norm": grad_norm, "train/recall": 1.0 - no_block / bsz,
                                 "train/swapped": n_swapped / bsz if ft.counterfactual > 0 else 0.0,
                                 "lr": lr, "perf/step_s": dt, "perf/tokens_per_s": tokens / dt},
                                sums=("perf/tokens_per_s",))  # over the ranks: the global batch's figures
            questions = bsz * dist.world_size
            totals["questions"] += questions
            totals["no_correct_span"] += round(last["train/no_correct_span"] * questions)
            totals["no_answer_block"] += round((1.0 - last["train/recall"]) * questions)
            logger.log(step + 1, last)
            logger.advance()
            if (step + 1) % max(1, ft.log_every) == 0:
                log.info("finetune step %d: loss %.4f (reader %.4f, retriever %.4f)", step + 1, last["loss/total"],
                         last["loss/reader"], last["loss/retriever"])
            if due(step + 1, checkpoint_every, ft.steps):
                save(run, step + 1, modules, opt)
    finally:
        logger.close()
    # ---- save
    reader.eval()
    if mode == "dense":
        retriever.eval()
    if dist.is_main():
        reader.save(run_dir / "reader")
        if mode == "dense":
            retriever.save(run_dir / "retriever")
    seen = max(1, totals["questions"])
    summary = {"run_dir": str(run_dir), "retrieval": mode, "steps": ft.steps, "start_step": start, **last,
               "questions_seen": totals["questions"], "questions_without_correct_span": totals["no_correct_span"],
               "no_correct_span_frac": totals["no_correct_span"] / seen,
               "no_answer_block_frac": totals["no_answer_block"] / seen}
    return summary


def swap_answers(answers: list[str], answer_ids: list[list[list[int]]], ids: np.ndarray, store: BlockStore,
                 bank: AnswerBank, continuation: np.ndarray, share: float, rng: np.random.Generator):
    """Counterfactual answers: for a ``share`` of the questions, every answer occurrence in their retrieved
    blocks is replaced by another training answer of the same kind, which becomes the gold answer.

    Returns (bodies for the B*K rows in (b, k) order, gold answer token ids per row, questions swapped).
    """
    bsz, k = ids.shape
    bodies, gold, swapped = [], [], 0
    for b in range(bsz):
        repl = bank.replacement(answers[b], rng) if rng.random() < share else None
        row_bodies = [store.body_ids(int(z)) if z >= 0 else np.zeros(0, dtype=np.int64) for z in ids[b]]
        if repl is not None:
            swapped += 1
            for a in sorted(answer_ids[b], key=len, reverse=True):  # longest first: "Ana Varn" before "Ana"
                row_bodies = [substitute(x, a, repl, continuation) for x in row_bodies]
        bodies += row_bodies
        gold += [[repl.tolist()] if repl is not None else answer_ids[b]] * k
    return bodies, gold, swapped


def _text(store: BlockStore, block: int, cache: dict[int, str]) -> str:
    if block not in cache:
        cache[block] = store.block_text(block)
    return cache[block]
