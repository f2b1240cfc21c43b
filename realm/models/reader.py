"""The span reader of ORQA / REALM open-domain QA fine-tuning (HF ``RealmReader`` layout).

Input: ``[CLS] question [SEP] block body [SEP]`` for each (question, retrieved block) row. Every span of
at most ``max_span_width`` tokens lying fully inside the block body is a candidate answer; its score is::

    h        = BERT(input)                                   [L, H]   (no pooler)
    a, b     = split(dense_intermediate(h), 2)               [L, 2*span_hidden] -> start, end halves
    score_ij = dense_output(LayerNorm(ReLU(a_i + b_j)))      candidate span (i, j), j inclusive

The span MLP lives under ``qa_outputs`` with the HF port's names (``qa_outputs.dense_intermediate``,
``qa_outputs.layer_normalization``, ``qa_outputs.dense_output``) so its weights map 1:1.

Saved layout (a folder)::

    reader.json                  max_span_width, span_hidden, span_layer_norm_eps, max_query_len, vocab_size
    encoder/                     an ordinary HF BertModel folder (config.json + model.safetensors)
    span_scorer.safetensors      qa_outputs.* tensors (HF names)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertModel

from realm.config import ReaderConfig
from realm.models.bert import build_bert, load_hf_bert
from realm.models.inputs import Specials, pair_inputs
from realm.models.modes import SkipRedundantModeSwitch

INVALID_SPAN_SCORE = -10000.0  # logit of non-candidate spans (question, [CLS]/[SEP], padding, too wide)
FORMAT_VERSION = 1


class SpanScorer(nn.Module):
    """ORQA's span MLP over BERT hidden states (the HF port's ``RealmReaderProjection``)."""

    def __init__(self, hidden: int, span_hidden: int, eps: float = 1e-3):
        super().__init__()
        self.dense_intermediate = nn.Linear(hidden, 2 * span_hidden)
        self.layer_normalization = nn.LayerNorm(span_hidden, eps=eps)
        self.dense_output = nn.Linear(span_hidden, 1)

    def forward(self, hidden: torch.Tensor, rows: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Scores of the spans ``(rows[v], starts[v], ends[v])`` of ``hidden`` [N, L, H] -> [V]."""
        start_proj, end_proj = self.dense_intermediate(hidden).chunk(2, dim=-1)
        x = torch.relu(start_proj[rows, starts] + end_proj[rows, ends])
        return self.dense_output(self.layer_normalization(x)).squeeze(-1)


@dataclass
class ReaderOutput:
    span_logits: torch.Tensor  # [N, S]; INVALID_SPAN_SCORE where not valid
    starts: torch.Tensor  # [S] span start positions in the reader sequence
    ends: torch.Tensor  # [S] inclusive end positions
    valid: torch.Tensor  # [N, S] bool: the span lies inside the row's block body


@dataclass
class ReaderPrediction:
    """The best (block, span) of each of ``B`` questions; -1 / -inf / [] where no span was readable."""

    block: torch.Tensor  # [B] which of the question's K rows (0..K-1)
    start: torch.Tensor  # [B] span start in the reader input row
    end: torch.Tensor  # [B] inclusive span end in the reader input row
    token_start: torch.Tensor  # [B] the same span as body token indices (start - body_start)
    token_end: torch.Tensor  # [B] inclusive
    score: torch.Tensor  # [B] joint logit: span logit + retrieval logit
    answer_ids: list[list[int]]  # the span's token ids


class SpanReader(SkipRedundantModeSwitch):
    def __init__(self, bert: BertModel, max_span_width: int = 10, span_hidden: int = 256,
                 span_layer_norm_eps: float = 1e-3, max_query_len: int = 32):
        super().__init__()
        self.bert = bert
        self.qa_outputs = SpanScorer(bert.config.hidden_size, span_hidden, span_layer_norm_eps)
        self.max_span_width = max_span_width
        self.max_query_len = max_query_len  # question tokens kept (incl. [CLS] and [SEP]) in reader inputs

    @property
    def max_len(self) -> int:
        return int(self.bert.config.max_position_embeddings)

    @classmethod
    def build(cls, cfg: ReaderConfig, vocab_size: int, pad_id: int = 0, max_query_len: int = 32) -> "SpanReader":
        """Random BERT backbone (or ``cfg.encoder.init_from``) + a fresh span scorer."""
        return cls(build_bert(cfg.encoder, vocab_size, pad_id), cfg.max_span_width, cfg.span_hidden,
                   cfg.span_layer_norm_eps, max_query_len)

    @classmethod
    def from_bert(cls, bert: BertModel, cfg: ReaderConfig, max_query_len: int = 32) -> "SpanReader":
        """Start from a copy of an existing BERT (e.g. the knowledge-augmented encoder's); pooler dropped."""
        bert = copy.deepcopy(bert)
        bert.pooler = None
        return cls(bert, cfg.max_span_width, cfg.span_hidden, cfg.span_layer_norm_eps, max_query_len)

    def forward(self, inputs: dict[str, torch.Tensor], body_start: torch.Tensor, body_end: torch.Tensor) -> ReaderOutput:
        """Span logits for ``N`` pair inputs; ``body_start``/``body_end`` [N] give each body's [start, end)."""
        ids = inputs["input_ids"]
        n, seq_len = ids.shape
        hidden = self.bert(input_ids=ids, attention_mask=inputs.get("attention_mask"),
                           token_type_ids=inputs.get("token_type_ids")).last_hidden_state
        body_start, body_end = body_start.to(ids.device), body_end.to(ids.device)
        starts, ends, valid = span_candidates(seq_len, body_start, body_end, self.max_span_width)
        rows, cand = valid.nonzero(as_tuple=True)  # score only the candidates (about 1/3 of all spans)
        scores = self.qa_outputs(hidden, rows, starts[cand], ends[cand])
        logits = torch.full((n, starts.numel()), INVALID_SPAN_SCORE, dtype=torch.float32, device=ids.device)
        logits = logits.index_put((rows, cand), scores.float())
        return ReaderOutput(logits, starts, ends, valid)

    @torch.no_grad()
    def predict(self, inputs: dict[str, torch.Tensor], body_start: torch.Tensor, body_end: torch.Tensor,
                retrieval_logits: torch.Tensor, row_valid: torch.Tensor | None = None) -> ReaderPrediction:
        """Answer ``B`` questions from their ``K`` retrieved blocks each (rows ordered question-major).

        The answer is the argmax over every (block, candidate span) of ``span logit + retrieval logit``,
        the joint score that ORQA/REALM train the reader to softmax over (the port's ``reader_logits``
        argmax). Spans outside the block body are excluded through ``valid``, never through their fill
        value, so a valid span whose logit is below ``INVALID_SPAN_SCORE`` can still win. ``row_valid``
        [B, K] (bool) marks rows that hold a real block (False: a padding row, e.g. block id -1).
        Runs in eval mode (no dropout) and restores the previous mode.
        """
        b, k = retrieval_logits.shape
        ids = inputs["input_ids"]
        if ids.shape[0] != b * k:
            raise ValueError(f"{ids.shape[0]} reader rows for {b} questions x {k} blocks")
        was_training = self.training
        self.eval()
        try:
            out = self(inputs, body_start, body_end)
        finally:
            self.train(was_training)
        valid = out.valid.view(b, k, -1)
        if row_valid is not None:
            valid = valid & row_valid.to(valid.device).view(b, k, 1)
        joint = out.span_logits.view(b, k, -1) + retrieval_logits.to(out.span_logits).view(b, k, 1)
        joint = joint.masked_fill(~valid, float("-inf")).view(b, -1)
        score, flat = joint.max(dim=1)
        found = torch.isfinite(score)
        row = torch.where(found, flat // valid.shape[-1], -1)
        cand = flat % valid.shape[-1]
        none = torch.full_like(row, -1)
        start = torch.where(found, out.starts[cand], none)
        end = torch.where(found, out.ends[cand], none)
        offset = body_start.to(row.device).view(b, k).gather(1, row.clamp(min=0)[:, None]).squeeze(1)
        answer_ids = [ids[i * k + int(row[i]), int(start[i]):int(end[i]) + 1].tolist() if found[i] else []
                      for i in range(b)]
        return ReaderPrediction(row, start, end, torch.where(found, start - offset, none),
                                torch.where(found, end - offset, none), score, answer_ids)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        q = self.qa_outputs
        meta = {"format_version": FORMAT_VERSION, "max_span_width": self.max_span_width,
                "span_hidden": q.layer_normalization.normalized_shape[0], "span_layer_norm_eps": q.layer_normalization.eps,
                "max_query_len": self.max_query_len, "vocab_size": self.bert.config.vocab_size}
        (folder / "reader.json").write_text(json.dumps(meta, indent=2))
        self.bert.save_pretrained(str(folder / "encoder"), safe_serialization=True)
        save_file({f"qa_outputs.{k}": v.detach().contiguous() for k, v in q.state_dict().items()},
                  str(folder / "span_scorer.safetensors"))

    @classmethod
    def load(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "SpanReader":
        folder = Path(folder)
        meta_path = folder / "reader.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder}: not a reader checkpoint (no reader.json)")
        meta = json.loads(meta_path.read_text())
        model = cls(load_hf_bert(folder / "encoder"), meta["max_span_width"], meta["span_hidden"],
                    meta["span_layer_norm_eps"], meta.get("max_query_len", 32))
        state = load_file(str(folder / "span_scorer.safetensors"))
        model.qa_outputs.load_state_dict({k.removeprefix("qa_outputs."): v for k, v in state.items()}, strict=True)
        return model.to(map_location)


# ---- inputs for (question, block) rows -------------------------------------------------------
def span_candidates(
    seq_len: int,
    block_start: int | torch.Tensor,
    block_end: int | torch.Tensor,
    max_width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Enumerate candidate answer spans of the reader input (ORQA / HF ``RealmReader``).

    Every ``(start, end)`` with ``0 ≤ start ≤ end < seq_len`` and ``end − start < max_width`` (i.e. width
    ``end − start + 1 ≤ max_width`` tokens, ``end`` inclusive), ordered width-major as in the HF port:
    all width-1 spans by start, then all width-2 spans, ...

    A span is valid iff it lies fully inside the block: ``block_start ≤ start`` and ``end < block_end``
    (``block_end`` exclusive), so spans touching the question, ``[CLS]``, ``[SEP]`` or padding are never
    valid.

    Args:
        seq_len: reader sequence length.
        block_start, block_end: int, or tensors of shape ``[B]`` or ``[B, K]``.
        max_width: maximum span width in tokens (ORQA: 10).
    Returns:
        ``starts [S]``, ``ends [S]`` (int64) and ``valid`` of shape ``block_start.shape + [S]`` (bool).
    """
    if max_width < 1:
        raise ValueError("max_width must be >= 1")
    device = block_start.device if isinstance(block_start, torch.Tensor) else None
    starts_l, ends_l = [], []
    for w in range(min(max_width, seq_len)):
        s = torch.arange(0, seq_len - w, device=device)
        starts_l.append(s)
        ends_l.append(s + w)
    if starts_l:
        starts = torch.cat(starts_l)
        ends = torch.cat(ends_l)
    else:
        starts = torch.zeros(0, dtype=torch.long, device=device)
        ends = torch.zeros(0, dtype=torch.long, device=device)
    bs = torch.as_tensor(block_start, device=device)
    be = torch.as_tensor(block_end, device=device)
    valid = (starts >= bs[..., None]) & (ends < be[..., None])
    return starts, ends, valid


def span_index(seq_len: int, start: int, width: int) -> int:
    """Position of span (start, start + width - 1) in :func:`span_candidates`' width-major order."""
    j = width - 1
    return j * seq_len - j * (j - 1) // 2 + start


def block_bodies(store, block_ids: np.ndarray, max_body: int) -> list[np.ndarray]:
    """Body token ids of ``block_ids`` (flattened), cut to ``max_body``; id -1 (no block) -> empty body."""
    empty = np.zeros(0, dtype=np.int64)
    return [store.body_ids(int(b))[:max_body] if b >= 0 else empty for b in np.asarray(block_ids).reshape(-1)]


def reader_inputs(reader: SpanReader, question_ids: Sequence[Sequence[int]], block_ids: np.ndarray, store,
                  sp: Specials, bodies: Sequence[np.ndarray] | None = None
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """Pair inputs for ``B`` questions x ``K`` blocks (``block_ids`` [B, K]) -> rows ordered (b, k).

    Bodies are cut so that every row fits the reader's position embeddings. ``bodies`` (B*K, rows in
    (b, k) order) replaces the stored block bodies, e.g. with an answer swapped. Returns
    ``(inputs, body_start, body_end, bodies)``.
    """
    block_ids = np.asarray(block_ids)
    b, k = block_ids.shape
    qs = [list(q)[: reader.max_query_len - 2] for q in question_ids]
    max_body = reader.max_len - (max(len(q) for q in qs) + 2) - 1
    if bodies is None:
        bodies = block_bodies(store, block_ids, max_body)
    else:
        bodies = [np.asarray(x)[:max_body] for x in bodies]
    rows_q = [qs[i] for i in range(b) for _ in range(k)]
    inputs, body_start, body_end = pair_inputs(rows_q, bodies, sp, reader.max_query_len)
    return inputs, body_start, body_end, bodies
