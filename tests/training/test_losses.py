"""Tests for realm.training.losses against brute-force float64 references written with plain loops."""

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from realm.training.losses import (
    evidence_advantage,
    ict_accuracy,
    ict_loss,
    marginal_mlm_loss,
    marginal_token_log_probs,
    mlm_log_probs_at,
    reader_loss,
)
from realm.models.reader import span_candidates

FAST = settings(max_examples=25, deadline=None)


def _lse(xs):
    xs = [x for x in xs if x != -math.inf]
    if not xs:
        return -math.inf
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


# ---------------------------------------------------------------------------------------------- ICT
def brute_ict(q, b):
    q, b = q.tolist(), b.tolist()
    total = 0.0
    for i in range(len(q)):
        scores = [sum(x * y for x, y in zip(q[i], b[j])) for j in range(len(b))]
        total += _lse(scores) - scores[i]
    return total / len(q)


def test_ict_loss_matches_brute_force_and_accuracy():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(7, 4, generator=g, dtype=torch.float64)  # 2 extra negatives
    assert math.isclose(ict_loss(q, b).item(), brute_ict(q, b), rel_tol=1e-10)
    unit = F.normalize(q, dim=-1)  # q_i . q_i = 1 > q_i . q_j for distinct unit vectors
    assert ict_accuracy(unit, unit.clone()).item() == 1.0
    assert ict_accuracy(unit, unit.flip(0)).item() < 1.0


def test_ict_loss_gradients():
    q = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    ict_loss(q, b).backward()
    assert q.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ marginal MLM
def brute_marginal(rl, tlp, mask):
    rl, tlp, mask = rl.tolist(), tlp.tolist(), mask.tolist()
    B, K, M = len(rl), len(rl[0]), len(mask[0])
    total, n = 0.0, 0
    per_ex = []
    for b in range(B):
        lz = _lse(rl[b])
        ex = 0.0
        for j in range(M):
            if not mask[b][j]:
                continue
            p = sum(math.exp(rl[b][z] - lz) * math.exp(tlp[b][z][j]) for z in range(K))
            ex += math.log(p)
            n += 1
        total += ex
        per_ex.append(ex)
    return (-total / n if n else 0.0), per_ex


def _rand_marginal(B, K, M, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    rl = torch.randn(B, K, generator=g, dtype=dtype) * 2
    logits = torch.randn(B, K, M, 11, generator=g, dtype=dtype)
    targets = torch.randint(0, 11, (B, 1, M), generator=g).expand(B, K, M)
    tlp = mlm_log_probs_at(logits, targets)
    mask = torch.rand(B, M, generator=g) < 0.7
    return rl, tlp, mask


def test_marginal_loss_matches_brute_force():
    rl, tlp, mask = _rand_marginal(3, 4, 5, seed=1)
    loss, stats = marginal_mlm_loss(rl, tlp, mask)
    ref, per_ex = brute_marginal(rl, tlp, mask)
    assert math.isclose(loss.item(), ref, rel_tol=1e-10)
    for a, b in zip(stats["marginal_log_likelihood"].tolist(), per_ex):
        assert math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-12)
    # null stats: null = last candidate
    null_ll = [sum(tlp[b, -1, j].item() for j in range(5) if mask[b, j]) for b in range(3)]
    assert torch.allclose(stats["null_log_likelihood"], torch.tensor(null_ll, dtype=torch.float64))
    has = [bool(mask[b].any()) for b in range(3)]
    ru = [per_ex[b] - null_ll[b] for b in range(3) if has[b]]
    assert math.isclose(stats["retrieval_utility"].item(), sum(ru) / len(ru), rel_tol=1e-9)
    assert stats["num_masked_tokens"].item() == int(mask.sum())


def brute_evidence_advantage(tlp, mask, evidence, cand):
    advs = []
    for b in range(tlp.shape[0]):
        toks = [j for j in range(tlp.shape[2]) if mask[b, j]]
        if not toks:
            continue
        score = [sum(tlp[b, z, j].item() for j in toks) / len(toks) for z in range(tlp.shape[1])]
        ev = [score[z] for z in range(tlp.shape[1]) if cand[b, z] and evidence[b, z]]
        other = [score[z] for z in range(tlp.shape[1]) if cand[b, z] and not evidence[b, z]]
        if ev and other:
            advs.append(sum(ev) / len(ev) - sum(other) / len(other))
    return (sum(advs) / len(advs) if advs else 0.0), len(advs)


@FAST
@given(B=st.integers(1, 5), K=st.integers(1, 5), M=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_evidence_advantage_matches_brute_force(B, K, M, seed):
    g = torch.Generator().manual_seed(seed)
    tlp = -torch.rand(B, K, M, generator=g, dtype=torch.float64) * 5
    mask = torch.rand(B, M, generator=g) < 0.7
    evidence = torch.rand(B, K, generator=g) < 0.4
    cand = torch.rand(B, K, generator=g) < 0.8
    tlp[~mask[:, None, :].expand(B, K, M)] = float("nan")  # padding holds garbage
    adv, n = evidence_advantage(tlp, mask, evidence, cand)
    ref, n_ref = brute_evidence_advantage(tlp, mask, evidence, cand)
    assert int(n) == n_ref
    assert math.isclose(adv.item(), ref, rel_tol=1e-9, abs_tol=1e-12)


def test_evidence_advantage_sign():
    # a reader that copies: the evidence block gives the target 2 nats more than the others
    tlp = torch.tensor([[[-1.0, -1.0], [-3.0, -3.0], [-3.0, -3.0], [-2.5, -2.5]]])
    adv, n = evidence_advantage(tlp, torch.ones(1, 2, dtype=torch.bool), torch.tensor([[True, False, False, False]]),
                                torch.tensor([[True, True, True, False]]))  # last = null block: not compared
    assert int(n) == 1 and math.isclose(adv.item(), 2.0)


def test_marginal_single_candidate_equals_plain_mlm():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 1, 6, 13, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 13, (2, 1, 6), generator=g)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    ce = F.cross_entropy(logits[:, 0][mask], targets[:, 0][mask])
    loss, _ = marginal_mlm_loss(torch.zeros(2, 1, dtype=torch.float64),
                                mlm_log_probs_at(logits, targets), mask)
    assert torch.allclose(loss, ce)
    # One candidate with all the probability mass among several.
    big = logits.expand(2, 3, 6, 13).clone()
    big[:, 1:] = torch.randn(2, 2, 6, 13, generator=g, dtype=torch.float64)
    rl = torch.tensor([[0.0, -1e9, -1e9]] * 2, dtype=torch.float64)
    loss3, _ = marginal_mlm_loss(rl, mlm_log_probs_at(big, targets.expand(2, 3, 6)), mask)
    assert torch.allclose(loss3, ce)


def test_marginal_gradients_flow():
    rl, tlp, mask = _rand_marginal(2, 3, 4, seed=3, dtype=torch.float32)
    mask[:, 0] = True
    rl.requires_grad_(True)
    tlp = tlp.detach().requires_grad_(True)
    loss, _ = marginal_mlm_loss(rl, tlp, mask)
    loss.backward()
    assert rl.grad.abs().sum() > 0 and torch.isfinite(rl.grad).all()
    assert tlp.grad.abs().sum() > 0
    # no gradient to padded token positions
    assert (tlp.grad[~mask[:, None, :].expand_as(tlp)] == 0).all()


def test_marginal_ignores_garbage_at_padding_and_empty_batch():
    rl, tlp, mask = _rand_marginal(2, 3, 4, seed=4)
    mask[1] = False
    mask[0, 0] = True
    dirty = tlp.clone()
    dirty[:, :, 1:][~mask[:, None, 1:].expand(2, 3, 3)] = float("nan")
    dirty[1] = float("-inf")
    clean_loss, _ = marginal_mlm_loss(rl, tlp, mask)
    dirty_loss, stats = marginal_mlm_loss(rl, dirty, mask)
    assert torch.allclose(clean_loss, dirty_loss)
    assert torch.isfinite(stats["retrieval_utility"])
    rl = rl.clone().requires_grad_(True)
    loss, _ = marginal_mlm_loss(rl, tlp, torch.zeros_like(mask))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(rl.grad).all()


def test_marginal_accuracy_stat_and_token_distribution():
    g = torch.Generator().manual_seed(5)
    rl = torch.randn(2, 3, generator=g, dtype=torch.float64)
    logits = torch.randn(2, 3, 4, 7, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 7, (2, 4), generator=g)
    mask = torch.ones(2, 4, dtype=torch.bool)
    marg = marginal_token_log_probs(rl, logits)
    assert torch.allclose(marg.exp().sum(-1), torch.ones(2, 4, dtype=torch.float64))
    tlp = mlm_log_probs_at(logits, targets[:, None, :].expand(2, 3, 4))
    _, per_ex = brute_marginal(rl, tlp, mask)
    gathered = marg.gather(-1, targets[..., None]).squeeze(-1).sum(-1)
    assert torch.allclose(gathered, torch.tensor(per_ex, dtype=torch.float64))
    correct = marg.argmax(-1) == targets
    _, stats = marginal_mlm_loss(rl, tlp, mask, marginal_pred_correct=correct)
    assert math.isclose(stats["masked_accuracy"].item(), correct.double().mean().item())


def test_mlm_log_probs_at_ignore_index():
    logits = torch.randn(2, 3, 5)
    out = mlm_log_probs_at(logits, torch.tensor([[1, -100, 4], [0, 2, -1]]))
    assert out[0, 1] == 0 and out[1, 2] == 0
    assert torch.isclose(out[0, 2], F.log_softmax(logits[0, 2], -1)[4])


@FAST
@given(B=st.integers(1, 3), K=st.integers(1, 5), M=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_marginal_hypothesis(B, K, M, seed):
    rl, tlp, mask = _rand_marginal(B, K, M, seed)
    loss, stats = marginal_mlm_loss(rl, tlp, mask)
    ref, _ = brute_marginal(rl, tlp, mask)
    assert math.isclose(loss.item(), ref, rel_tol=1e-9, abs_tol=1e-12)
    assert loss.item() >= 0
    # marginal log-likelihood is at least the best single candidate's weighted log-likelihood bound
    assert torch.isfinite(stats["retrieval_utility"])


# ------------------------------------------------------------------------------------------ reader
def brute_reader(span_logits, valid, correct, rl, has_ans):
    B, K, S = span_logits.shape
    reader_terms, ret_terms = [], []
    n_no_correct = 0
    for b in range(B):
        all_scores, good = [], []
        for k in range(K):
            for s in range(S):
                if not valid[b, k, s]:
                    continue
                a = span_logits[b, k, s].item() + rl[b, k].item()
                all_scores.append(a)
                if correct[b, k, s]:
                    good.append(a)
        if good:
            reader_terms.append(_lse(all_scores) - _lse(good))
        else:
            n_no_correct += 1
        lz = _lse(rl[b].tolist())
        ans = [rl[b, k].item() - lz for k in range(K) if has_ans[b, k]]
        if ans:
            ret_terms.append(-_lse(ans))
    r = sum(reader_terms) / len(reader_terms) if reader_terms else 0.0
    t = sum(ret_terms) / len(ret_terms) if ret_terms else 0.0
    return r + t, r, t, n_no_correct


def _rand_reader(B, K, L, W, seed):
    g = torch.Generator().manual_seed(seed)
    bstart = torch.randint(1, 4, (B, K), generator=g)
    bend = torch.clamp(bstart + torch.randint(0, L, (B, K), generator=g), max=L)
    starts, ends, valid = span_candidates(L, bstart, bend, W)
    S = starts.numel()
    span_logits = torch.randn(B, K, S, generator=g, dtype=torch.float64)
    correct = torch.rand(B, K, S, generator=g) < 0.1
    rl = torch.randn(B, K, generator=g, dtype=torch.float64)
    has_ans = torch.rand(B, K, generator=g) < 0.4
    return span_logits, valid, correct, rl, has_ans


def test_reader_loss_tiny_example_brute_force():
    # seq: [CLS] q q [SEP] b b b [SEP] -> block is positions 4..6
    starts, ends, valid = span_candidates(8, torch.tensor([[4, 4]]), torch.tensor([[7, 6]]), 2)
    S = starts.numel()
    span_logits = torch.linspace(-1, 1, 2 * S, dtype=torch.float64).reshape(1, 2, S)
    correct = torch.zeros(1, 2, S, dtype=torch.bool)
    correct[0, 0, ((starts == 5) & (ends == 6)).nonzero()[0, 0]] = True
    correct[0, 1, ((starts == 4) & (ends == 4)).nonzero()[0, 0]] = True
    correct[0, 1, ((starts == 0) & (ends == 0)).nonzero()[0, 0]] = True  # invalid: ignored
    rl = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    has = torch.tensor([[True, False]])
    loss, stats = reader_loss(span_logits, valid, correct, rl, has)
    ref, r, t, n = brute_reader(span_logits, valid, correct, rl, has)
    assert math.isclose(loss.item(), ref, rel_tol=1e-10)
    assert math.isclose(stats["reader_loss"].item(), r, rel_tol=1e-10)
    assert math.isclose(stats["retriever_loss"].item(), t, rel_tol=1e-10)
    # valid spans of block 0: width1 at 4,5,6 and width2 at (4,5),(5,6)
    assert int(valid[0, 0].sum()) == 5 and int(valid[0, 1].sum()) == 3


def test_reader_no_correct_contributes_zero_and_no_nan():
    span_logits, valid, correct, rl, has = _rand_reader(3, 2, 9, 3, seed=7)
    correct[1] = False
    correct[0, 0, valid[0, 0].nonzero()[0, 0]] = True
    has[1] = False
    has[0, 0] = True
    span_logits = span_logits.clone().requires_grad_(True)
    rl = rl.clone().requires_grad_(True)
    loss, stats = reader_loss(span_logits, valid, correct, rl, has)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(span_logits.grad).all()
    assert (span_logits.grad[1] == 0).all() and torch.isfinite(rl.grad).all()
    assert stats["num_no_correct_span"].item() >= 1
    # entirely hopeless batch: zero loss, zero grads, no NaN
    sl = span_logits.detach().clone().requires_grad_(True)
    r2 = rl.detach().clone().requires_grad_(True)
    loss0, st0 = reader_loss(sl, valid, torch.zeros_like(correct), r2, torch.zeros_like(has))
    loss0.backward()
    assert loss0.item() == 0.0 and (sl.grad == 0).all() and (r2.grad == 0).all()
    assert st0["num_no_correct_span"].item() == 3 and st0["num_no_answer_block"].item() == 3


def test_reader_wider_retriever_beam():
    span_logits, valid, correct, rl, has = _rand_reader(2, 2, 8, 2, seed=11)
    beam = torch.randn(2, 6, dtype=torch.float64)
    beam_has = torch.tensor([[False, True, False, True, False, False], [False] * 6])
    _, stats = reader_loss(span_logits, valid, correct, rl, has,
                           retriever_logits=beam, retriever_has_answer=beam_has)
    lp = F.log_softmax(beam[0], -1)
    assert math.isclose(stats["retriever_loss"].item(), -_lse([lp[1].item(), lp[3].item()]),
                        rel_tol=1e-10)


@FAST
@given(B=st.integers(1, 3), K=st.integers(1, 3), L=st.integers(4, 10), W=st.integers(1, 4),
       seed=st.integers(0, 10_000))
def test_reader_hypothesis(B, K, L, W, seed):
    span_logits, valid, correct, rl, has = _rand_reader(B, K, L, W, seed)
    loss, stats = reader_loss(span_logits, valid, correct, rl, has)
    ref, _, _, n = brute_reader(span_logits, valid, correct, rl, has)
    assert math.isclose(loss.item(), ref, rel_tol=1e-9, abs_tol=1e-12)
    assert stats["num_no_correct_span"].item() == n


def test_due_rule():
    from realm.training.optim import due

    assert [s for s in range(1, 11) if due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 11) if due(s, 0, 10)] == [10]  # 0: only the last step, no ZeroDivisionError
    assert [s for s in range(1, 6) if due(s, 5, 5)] == [5]
