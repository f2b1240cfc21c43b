"""Pure objective functions for REALM pre-training, ICT warm-start and ORQA/REALM QA fine-tuning.

Every function here is a stateless tensor function (no ``nn.Module``); all work on whatever device and
floating dtype the inputs carry.  Sources:

* ICT: Lee, Chang, Toutanova 2019 ("Latent Retrieval for Weakly Supervised Open Domain QA"), §4 —
  in-batch softmax over query/block inner products.
* Marginal MLM likelihood: Guu et al. 2020 (REALM) eq. 1-2 as implemented in the released code
  (``language/realm/model.py``): the marginalisation over retrieved blocks is done *per masked token*,
  ``log p(y_j|x) = logsumexp_z[log p(z|x) + log p(y_j|z,x)]``, loss = −mean over masked tokens.
* Reader: ORQA ``orqa_model.py`` (reused by REALM fine-tuning): one softmax over every (block, span)
  pair, span logit = span score + block retrieval score; marginal log-likelihood of the correct spans;
  retriever loss = marginal log-likelihood of the blocks that contain an answer; each term zeroed when
  nothing correct was retrieved.

Invalid entries are handled with the "double where" pattern so that rows with nothing to marginalise
over produce exactly zero loss and zero (never NaN) gradients.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "ict_loss",
    "ict_accuracy",
    "mlm_log_probs_at",
    "marginal_token_log_probs",
    "marginal_mlm_loss",
    "masked_logsumexp",
    "reader_loss",
]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def masked_logsumexp(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """``log Σ_{i: mask_i} exp(x_i)`` along ``dim``; ``-inf`` where the mask is empty.

    Entries outside the mask may hold any value (even NaN/inf): they never reach the result and they
    receive zero gradient.  Rows with an empty mask return ``-inf`` but are computed from zeros, so
    callers that discard them with ``torch.where`` get finite (zero) gradients.
    """
    mask = mask.to(torch.bool)
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    any_ = mask.any(dim=dim, keepdim=True)
    # Rows with nothing selected are replaced by zeros so logsumexp's backward stays finite.
    safe = torch.where(mask, x, neg_inf)
    safe = torch.where(any_, safe, torch.zeros_like(x))
    out = torch.logsumexp(safe, dim=dim)
    return torch.where(any_.squeeze(dim), out, neg_inf.expand_as(out))


# --------------------------------------------------------------------------------------------------
# Inverse Cloze Task
# --------------------------------------------------------------------------------------------------
def ict_logits(query_emb: Tensor, block_emb: Tensor) -> Tensor:
    """Inner-product scores ``S = Q Bᵀ`` of shape ``[B_q, B_b]``."""
    return query_emb @ block_emb.transpose(0, 1)


def ict_loss(query_emb: Tensor, block_emb: Tensor) -> Tensor:
    """Inverse Cloze Task loss with in-batch negatives (Lee et al. 2019, §4; REALM §3.4 warm start).

    ``logits = query_emb @ block_emb.T``; query ``i``'s positive is block ``i``, every other block of the
    batch is a negative:  ``loss = −1/B_q Σ_i log softmax(logits_i)_i``.

    Args:
        query_emb: ``[B_q, d]``.
        block_emb: ``[B_b, d]`` with ``B_b ≥ B_q``; rows beyond ``B_q`` act as extra negatives.
    """
    if query_emb.dim() != 2 or block_emb.dim() != 2:
        raise ValueError("ict_loss expects 2-D [B, d] embeddings")
    bq = query_emb.shape[0]
    if block_emb.shape[0] < bq:
        raise ValueError(f"need at least as many blocks ({block_emb.shape[0]}) as queries ({bq})")
    logits = ict_logits(query_emb, block_emb)
    targets = torch.arange(bq, device=logits.device)
    return F.cross_entropy(logits, targets)


def ict_accuracy(query_emb: Tensor, block_emb: Tensor) -> Tensor:
    """Fraction of queries whose highest-scoring in-batch block is their own (detached scalar)."""
    with torch.no_grad():
        logits = ict_logits(query_emb, block_emb)
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (logits.argmax(dim=-1) == targets).to(logits.dtype).mean()


# --------------------------------------------------------------------------------------------------
# marginal MLM (REALM pre-training)
# --------------------------------------------------------------------------------------------------
def mlm_log_probs_at(logits: Tensor, targets: Tensor) -> Tensor:
    """``log softmax(logits)[..., m, targets[..., m]]``: log-probability of each gold token.

    Args:
        logits: ``[..., M, V]`` MLM logits.
        targets: ``[..., M]`` gold token ids.  Negative ids (e.g. the ``-100`` ignore label) are allowed
            and yield ``0.0``; mask them out downstream.
    Returns:
        ``[..., M]`` log-probabilities.
    """
    logp = F.log_softmax(logits, dim=-1)
    valid = targets >= 0
    idx = torch.where(valid, targets, torch.zeros_like(targets)).long().unsqueeze(-1)
    out = logp.gather(-1, idx).squeeze(-1)
    return torch.where(valid, out, torch.zeros_like(out))


def marginal_token_log_probs(retrieval_logits: Tensor, mlm_logits: Tensor) -> Tensor:
    """Marginal vocabulary distribution ``log p(v|x) = logsumexp_z[log p(z|x) + log p(v|z,x)]``.

    Args:
        retrieval_logits: ``[B, K]``.
        mlm_logits: ``[B, K, M, V]``.
    Returns:
        ``[B, M, V]``.  ``argmax(-1) == target`` gives the ``marginal_pred_correct`` input of
        :func:`marginal_mlm_loss`.  Memory is ``B·K·M·V`` — call under ``no_grad`` for metrics.
    """
    log_pz = F.log_softmax(retrieval_logits, dim=-1)
    return torch.logsumexp(log_pz[:, :, None, None] + F.log_softmax(mlm_logits, dim=-1), dim=1)


def marginal_mlm_loss(
    retrieval_logits: Tensor,
    token_log_probs: Tensor,
    token_mask: Tensor,
    null_index: Optional[int] = -1,
    marginal_pred_correct: Optional[Tensor] = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """REALM marginal masked-LM loss, marginalised per masked token (as in the released code).

    With ``log p(z|x) = log_softmax(retrieval_logits)`` over the K candidates (the caller includes the
    null block as one of them)::

        log p(y_j|x) = logsumexp_z [ log p(z|x) + log p(y_j|z,x) ]
        loss         = − (1/N) Σ_{b,j: token_mask[b,j]} log p(y_j|x_b),   N = number of valid tokens

    Args:
        retrieval_logits: ``[B, K]`` relevance scores f(x,z) (``-inf`` allowed for dropped candidates,
            as long as each row keeps one finite entry).
        token_log_probs: ``[B, K, M]``; ``token_log_probs[b,z,j] = log p(y_j | z, x_b)`` of the gold
            token (see :func:`mlm_log_probs_at`).  Values at invalid positions are ignored.
        token_mask: ``[B, M]`` bool, True for real masked tokens (False = padding).
        null_index: candidate index of the null block (default: last, K−1); ``None`` skips the null
            statistics.
        marginal_pred_correct: optional ``[B, M]`` bool computed by the caller, True where the argmax of
            the *marginal* distribution p(·|x) is the gold token (e.g. from
            :func:`marginal_token_log_probs`); reported as ``masked_accuracy``.  It is not derived here
            because it needs the full vocabulary distribution, not only the gold-token log-probs.

    Returns:
        ``(loss, stats)``: ``loss`` is a scalar (``0`` with a live graph when there are no valid
        tokens).  ``stats`` (all detached):

        * ``marginal_log_likelihood`` ``[B]``: Σ_j log p(y_j|x) over the example's valid tokens;
        * ``null_log_likelihood`` ``[B]``: Σ_j log p(y_j|null, x);
        * ``retrieval_utility``: scalar mean, over examples with ≥1 valid token, of
          ``marginal_log_likelihood − null_log_likelihood`` (REALM's RU training metric);
        * ``num_masked_tokens``: N;
        * ``retrieval_entropy``: mean entropy of p(z|x) (a collapse diagnostic);
        * ``masked_accuracy`` (only with ``marginal_pred_correct``).
    """
    if retrieval_logits.dim() != 2 or token_log_probs.dim() != 3 or token_mask.dim() != 2:
        raise ValueError("expected retrieval_logits [B,K], token_log_probs [B,K,M], token_mask [B,M]")
    b, k = retrieval_logits.shape
    if token_log_probs.shape[:2] != (b, k) or token_mask.shape != (b, token_log_probs.shape[2]):
        raise ValueError(
            f"shape mismatch: retrieval_logits {tuple(retrieval_logits.shape)}, token_log_probs "
            f"{tuple(token_log_probs.shape)}, token_mask {tuple(token_mask.shape)}"
        )
    mask = token_mask.to(torch.bool)
    log_pz = F.log_softmax(retrieval_logits, dim=-1)  # [B, K]
    # Invalid positions may hold garbage (-inf, NaN): replace them before any arithmetic.
    tlp = torch.where(mask[:, None, :], token_log_probs, torch.zeros_like(token_log_probs))
    log_py = torch.logsumexp(log_pz[:, :, None] + tlp, dim=1)  # [B, M]
    log_py = torch.where(mask, log_py, torch.zeros_like(log_py))
    n_tokens = mask.sum()
    loss = -log_py.sum() / n_tokens.clamp(min=1).to(log_py.dtype)

    with torch.no_grad():
        mll = log_py.sum(dim=-1)
        stats: dict[str, Tensor] = {
            "marginal_log_likelihood": mll.detach(),
            "num_masked_tokens": n_tokens.detach(),
        }
        p = log_pz.exp()
        plogp = torch.where(p > 0, p * log_pz, torch.zeros_like(p))
        stats["retrieval_entropy"] = (-plogp.sum(-1)).mean().detach()
        if null_index is not None:
            null_ll = tlp[:, null_index, :].sum(dim=-1)
            has_tok = mask.any(dim=-1)
            ru = torch.where(has_tok, mll - null_ll, torch.zeros_like(mll))
            stats["null_log_likelihood"] = null_ll.detach()
            stats["retrieval_utility"] = (ru.sum() / has_tok.sum().clamp(min=1)).detach()
        if marginal_pred_correct is not None:
            corr = (marginal_pred_correct.to(torch.bool) & mask).sum()
            stats["masked_accuracy"] = (corr.to(log_py.dtype) / n_tokens.clamp(min=1)).detach()
    return loss, stats


def evidence_advantage(token_log_probs: Tensor, token_mask: Tensor, evidence: Tensor,
                       candidate_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Does the knowledge-augmented encoder read the block?  A diagnostic, not a loss.

    For each example, ``s_z`` = mean over its masked tokens of ``log p(y_j|z,x)``.  Its advantage is
    (mean ``s_z`` over the evidence candidates: those whose body contains the masked span) minus
    (mean ``s_z`` over the other real candidates).  REALM's retriever gradient is
    ``p(z|y,x) − p(z|x)``, so an encoder whose advantage is ~0 gives the retriever no signal.

    Args:
        token_log_probs: ``[B, K, M]`` as in :func:`marginal_mlm_loss`.
        token_mask: ``[B, M]`` bool.
        evidence: ``[B, K]`` bool, True where candidate ``z`` contains the masked span.
        candidate_mask: ``[B, K]`` bool, True for real blocks (False for the null block and padding).
    Returns:
        ``(mean advantage over the examples that have both kinds of candidate, number of such
        examples)``; the mean is ``0`` when there are none.
    """
    mask = token_mask.to(torch.bool)
    tlp = torch.where(mask[:, None, :], token_log_probs, torch.zeros_like(token_log_probs)).detach()
    per_cand = tlp.sum(-1) / mask.sum(-1, keepdim=True).clamp(min=1).to(tlp.dtype)  # [B, K]
    ev = evidence.to(torch.bool) & candidate_mask.to(torch.bool)
    other = ~evidence.to(torch.bool) & candidate_mask.to(torch.bool)
    n_ev, n_other = ev.sum(-1), other.sum(-1)
    both = (n_ev > 0) & (n_other > 0) & mask.any(-1)
    mean_ev = (per_cand * ev).sum(-1) / n_ev.clamp(min=1)
    mean_other = (per_cand * other).sum(-1) / n_other.clamp(min=1)
    adv = torch.where(both, mean_ev - mean_other, torch.zeros_like(mean_ev))
    count = both.sum()
    return adv.sum() / count.clamp(min=1).to(adv.dtype), count


# --------------------------------------------------------------------------------------------------
# Reader (ORQA / REALM fine-tuning)
# --------------------------------------------------------------------------------------------------
def reader_loss(
    span_logits: Tensor,
    span_valid: Tensor,
    span_correct: Tensor,
    retrieval_logits: Tensor,
    block_has_answer: Tensor,
    *,
    retriever_logits: Optional[Tensor] = None,
    retriever_has_answer: Optional[Tensor] = None,
    denominators: Optional[tuple[float, float]] = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """ORQA/REALM reader + retriever loss.

    Joint logit of span ``s`` in block ``k``: ``a[b,k,s] = span_logits[b,k,s] + retrieval_logits[b,k]``.
    One softmax over all valid (k, s) of a question::

        reader_q    = −[ logsumexp_{(k,s) valid ∧ correct} a  −  logsumexp_{(k,s) valid} a ]
        retriever_q = −log Σ_{k: has_answer} softmax(retrieval_logits)_k

    ``reader_q`` is zeroed for questions without any valid correct span, ``retriever_q`` for questions
    without any answer-bearing block.  Averaging::

        reader_loss    = Σ_q reader_q    / max(1, #questions with a correct span)
        retriever_loss = Σ_q retriever_q / max(1, #questions with an answer block)
        loss           = reader_loss + retriever_loss

    so the loss is 0 (never NaN, gradients 0) for a batch where nothing correct was retrieved.

    Args:
        span_logits: ``[B, K, S]`` span scores.
        span_valid: ``[B, K, S]`` bool (see :func:`realm.models.reader.span_candidates`); invalid spans are excluded from
            the softmax and may hold any value.
        span_correct: ``[B, K, S]`` bool, span tokens equal a tokenised answer (ANDed with ``span_valid``).
        retrieval_logits: ``[B, K]`` scores of the reader's blocks.
        block_has_answer: ``[B, K]`` bool.
        retriever_logits, retriever_has_answer: optional ``[B, N]`` wider beam (ORQA uses N = 5000) for
            the retriever term; default: the reader's K blocks.
        denominators: ``(reader, retriever)`` in place of the two counts above (each floored at 1e-12), e.g.
            the global counts divided by the world size on one rank of a data-parallel job, where DDP
            averages the gradients: the ranks then train on the global batch's loss.

    Returns:
        ``(loss, stats)`` with detached ``reader_loss``, ``retriever_loss``, ``num_no_correct_span``
        (questions with no valid correct span), ``num_no_answer_block``.
    """
    if span_logits.dim() != 3:
        raise ValueError("span_logits must be [B, K, S]")
    valid = span_valid.to(torch.bool).expand_as(span_logits)
    correct = span_correct.to(torch.bool).expand_as(span_logits) & valid
    bsz = span_logits.shape[0]
    joint = (span_logits + retrieval_logits[:, :, None]).reshape(bsz, -1)
    valid_f = valid.reshape(bsz, -1)
    correct_f = correct.reshape(bsz, -1)

    has_correct = correct_f.any(dim=-1)
    log_num = masked_logsumexp(joint, correct_f, dim=-1)
    log_den = masked_logsumexp(joint, valid_f, dim=-1)
    per_q_reader = torch.where(has_correct, log_den - log_num, torch.zeros_like(log_num))
    reader_den = has_correct.sum().clamp(min=1).to(joint.dtype) if denominators is None else max(denominators[0], 1e-12)
    reader = per_q_reader.sum() / reader_den

    r_logits = retrieval_logits if retriever_logits is None else retriever_logits
    r_answer = block_has_answer if retriever_has_answer is None else retriever_has_answer
    r_answer = r_answer.to(torch.bool)
    has_block = r_answer.any(dim=-1)
    log_pz = F.log_softmax(r_logits, dim=-1)
    log_p_ans = masked_logsumexp(log_pz, r_answer, dim=-1)
    per_q_ret = torch.where(has_block, -log_p_ans, torch.zeros_like(log_p_ans))
    ret_den = has_block.sum().clamp(min=1).to(r_logits.dtype) if denominators is None else max(denominators[1], 1e-12)
    retriever = per_q_ret.sum() / ret_den

    loss = reader + retriever
    stats = {
        "reader_loss": reader.detach(),
        "retriever_loss": retriever.detach(),
        "num_no_correct_span": (~has_correct).sum().detach(),
        "num_no_answer_block": (~has_block).sum().detach(),
    }
    return loss, stats
