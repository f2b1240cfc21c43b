import os
import threading

import numpy as np
import pytest
import torch

from realm.config import load_config
from realm.index.store import open_index
from realm.models.inputs import Specials, query_inputs
from realm.models.mlm import KnowledgeAugEncoder
from realm.models.retriever import Retriever
from realm.training.checkpoint import step_generator
from realm.training.logger import read_metrics
from realm.training.mlm_examples import MaskedSentencePool, contains_span
from realm.training.pretrain import pretrain, realm_step
from realm.retrieval import IndexFollower
from realm.index.build import build_index


def _models(cfg, store):
    torch.manual_seed(0)
    tok = store.tokenizer
    return (Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id),
            KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id))


def _setup(store, tmp_path):
    """Tiny models and an index of the corpus embedded by their document encoder."""
    cfg = load_config("tiny")
    retriever, encoder = _models(cfg, store)
    build_index(retriever.doc, store, tmp_path / "index", encoder="t", encoder_step=0, progress=False)
    follower = IndexFollower(tmp_path / "index", expect_corpus_hash=store.corpus_hash, expect_dim=cfg.retriever.proj_dim)
    follower.load()
    return cfg, retriever, encoder, follower


def test_own_block_is_never_a_candidate(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    sp = Specials.of(store.tokenizer)
    own_in_plain_search = 0
    for step in range(10):
        queries = pool.sample(step_generator(0, step), 8)
        with torch.no_grad():
            _, _, ids, _ = realm_step(queries, retriever, encoder, follower, store, sp, 6, cfg.retriever.query_len, "cpu")
            q_emb = retriever.query(**query_inputs([q.input_ids for q in queries], sp, cfg.retriever.query_len))
        _, plain = follower.index.search(q_emb, 5)
        for b, q in enumerate(queries):
            assert q.block not in ids[b].tolist()
            own_in_plain_search += q.block in plain[b].tolist()
    # the exclusion is doing work: without it, a sentence's own block is often retrieved
    assert own_in_plain_search > 0


def _tiny_cfg(tmp, **over):
    items = {"pretrain.steps": 8, "pretrain.refresh_every": 3, "pretrain.checkpoint_every": 4, "pretrain.top_k": 4,
             "pretrain.refresh_mode": "sync"} | over
    return load_config("tiny", [f"{k}={v}" for k, v in items.items()])


@pytest.mark.slow
def test_resume_gives_the_same_next_step_loss(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg = _tiny_cfg(tmp_path)
    pretrain(cfg, store, tmp_path / "a", *_models(cfg, store), progress=False)
    pretrain(cfg, store, tmp_path / "b", *_models(cfg, store), progress=False, stop_at=5)
    assert len(read_metrics(tmp_path / "b" / "metrics.jsonl")) == 5
    # a fresh process would rebuild the models from scratch: resume must restore everything
    pretrain(cfg, store, tmp_path / "b", *_models(cfg, store), progress=False)
    a = read_metrics(tmp_path / "a" / "metrics.jsonl")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b):
        assert ra["loss/mlm"] == pytest.approx(rb["loss/mlm"], rel=1e-5, abs=1e-6), ra["step"]
        assert ra["index/version"] == rb["index/version"]


@pytest.mark.slow
def test_async_refresh_builds_versions_in_another_process(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg = _tiny_cfg(tmp_path, **{"pretrain.steps": 14, "pretrain.refresh_mode": "async", "pretrain.max_staleness": 6,
                                 "pretrain.checkpoint_every": 100})
    run = tmp_path / "run"
    bad_reads, reads, stop = [], [0], threading.Event()

    def reader():  # reads the index the whole time: it must never see a partial version
        while not stop.is_set():
            try:
                emb, man = open_index(run / "index", expect_corpus_hash=store.corpus_hash)
                if emb.shape != (man.num_blocks, man.dim) or not np.isfinite(np.asarray(emb)).all():
                    bad_reads.append(man.version)
                reads[0] += 1
            except FileNotFoundError:
                pass
            except Exception as e:  # noqa: BLE001 - any error is a failed read
                bad_reads.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        pretrain(cfg, store, run, *_models(cfg, store), progress=False)
    finally:
        stop.set()
        t.join()
    log = (run / "index-builder.log").read_text()
    built = [line for line in log.splitlines() if "built v" in line]
    assert len(built) >= 2, log
    assert "pid" in built[0] and str(os.getpid()) not in built[0]
    rows = read_metrics(run / "metrics.jsonl")
    assert sum(r["index/swapped"] for r in rows) >= 2
    assert max(r["index/version"] for r in rows) >= 3
    assert all(r["index/staleness"] <= 6 for r in rows)
    assert not bad_reads and reads[0] > 0


def test_pretraining_reaches_both_encoders(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    retriever.untie()
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    loss, stats, _, _ = realm_step(pool.sample(step_generator(0, 0), 4), retriever, encoder, follower, store,
                                   Specials.of(store.tokenizer), 4, cfg.retriever.query_len, "cpu")
    loss.backward()
    assert 0.0 <= stats["evidence_rate"].item() <= 1.0 and torch.isfinite(stats["evidence_advantage"])
    for name, module in [("query", retriever.query), ("doc", retriever.doc), ("encoder", encoder)]:
        grads = [p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None]
        assert grads and sum(grads) > 0, name


def test_contains_span_brute_force():
    assert contains_span([5, 6, 7, 8], [6, 7]) and contains_span([5, 6, 7], [5, 6, 7])
    assert not contains_span([5, 6, 7, 8], [7, 6]) and not contains_span([5, 6], [5, 6, 7])
    assert not contains_span([5, 6], []) and not contains_span([], [1])
    rng = np.random.default_rng(0)
    for _ in range(200):
        body, span = rng.integers(0, 4, rng.integers(0, 12)).tolist(), rng.integers(0, 4, rng.integers(1, 4)).tolist()
        as_text = " " + " ".join(map(str, body)) + " "
        assert contains_span(body, span) == (" " + " ".join(map(str, span)) + " " in as_text)


def test_counterfactual_rows_swap_the_span_in_every_block_read(tiny_corpus, tmp_path):
    """Rows with a swap read every retrieved block with the span replaced, and predict the replacement."""
    from realm.training.counterfactual import SpanBank

    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    bank = SpanBank.from_pool(pool)
    sp = Specials.of(store.tokenizer)
    rng = np.random.default_rng(0)
    queries = pool.sample(step_generator(0, 0), 6)
    swaps = [bank.replacement(q.targets, rng) if b % 2 == 0 else None for b, q in enumerate(queries)]
    seen = {}
    real = encoder.target_log_probs

    def spy(inputs, positions, targets):
        seen.update(inputs=inputs, targets=targets)
        return real(inputs, positions, targets)

    encoder.target_log_probs = spy
    K = 4
    with torch.no_grad():
        _, _, ids, _ = realm_step(queries, retriever, encoder, follower, store, sp, K, cfg.retriever.query_len, "cpu",
                                  swaps=swaps)
    ins, tgt = seen["inputs"], seen["targets"]
    for b, q in enumerate(queries):
        want_t = (q.targets if swaps[b] is None else swaps[b]).tolist()
        for j, z in enumerate(list(ids[b]) + [-1]):
            r = b * K + j
            assert tgt[r][: len(want_t)].tolist() == want_t
            body = ins["input_ids"][r][(ins["token_type_ids"][r] == 1) & (ins["attention_mask"][r] == 1)].tolist()[:-1]
            orig = store.body_ids(int(z)).tolist() if z >= 0 else []
            if swaps[b] is not None:  # plain list replacement, left to right
                t, out, i = q.targets.tolist(), [], 0
                while i < len(orig):
                    if orig[i:i + len(t)] == t:
                        out += swaps[b].tolist()
                        i += len(t)
                    else:
                        out.append(orig[i])
                        i += 1
                orig = out
            assert body == orig


def test_frozen_document_tower_uses_the_index_embeddings(tiny_corpus, tmp_path):
    """With the document tower frozen, a REALM step reads the candidates' embeddings from the index instead of
    re-encoding them: same loss and same query-tower gradient as re-encoding (fp32 index), no document pass."""
    from types import SimpleNamespace

    store, _ = tiny_corpus
    cfg = load_config("tiny")
    retriever, encoder = _models(cfg, store)
    retriever.untie()
    retriever.doc.requires_grad_(False)
    build_index(retriever.doc, store, tmp_path / "index", encoder="t", encoder_step=0, bf16=False, progress=False)
    follower = IndexFollower(tmp_path / "index", expect_corpus_hash=store.corpus_hash)
    follower.load()
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    sp, queries = Specials.of(store.tokenizer), pool.sample(step_generator(0, 0), 6)
    calls, real = [0], retriever.embed_blocks

    def counting(inputs):
        calls[0] += inputs["input_ids"].shape[0]
        return real(inputs)

    retriever.embed_blocks = counting
    out = {}
    for name, index in [("stored", follower), ("encoded", SimpleNamespace(index=follower.index))]:
        calls[0] = 0
        retriever.zero_grad(set_to_none=True)
        loss, stats, ids, _ = realm_step(queries, retriever, encoder, index, store, sp, 4, cfg.retriever.query_len,
                                         "cpu")
        loss.backward()
        out[name] = (loss.item(), ids, [p.grad.clone() for p in retriever.query.parameters()], calls[0])
    assert out["stored"][3] == 1 and out["encoded"][3] == len(queries) * 3 + 1  # the null block only
    np.testing.assert_array_equal(out["stored"][1], out["encoded"][1])
    assert out["stored"][0] == pytest.approx(out["encoded"][0], rel=1e-5)
    for a, b in zip(out["stored"][2], out["encoded"][2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in out["stored"][2])
    # the null block's embedding is computed once per state of the frozen tower's weights
    for change, passes in [(False, 0), (True, 1)]:
        if change:
            with torch.no_grad():
                next(retriever.doc.parameters()).mul_(1.5)
        calls[0] = 0
        with torch.no_grad():
            realm_step(queries, retriever, encoder, follower, store, sp, 4, cfg.retriever.query_len, "cpu")
        assert calls[0] == passes


@pytest.mark.slow
def test_frozen_document_tower_never_refreshes_the_index(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg = _tiny_cfg(tmp_path, **{"pretrain.train_doc_encoder": "false", "pretrain.refresh_mode": "async",
                                 "pretrain.max_staleness": 3})
    retriever, encoder = _models(cfg, store)
    doc_before = {k: v.clone() for k, v in retriever.doc.state_dict().items()}
    query_before = {k: v.clone() for k, v in retriever.query.state_dict().items()}
    run = tmp_path / "run"
    retriever, _ = pretrain(cfg, store, run, retriever, encoder, progress=False)
    rows = read_metrics(run / "metrics.jsonl")
    assert {r["index/version"] for r in rows} == {1} and all(r["index/staleness"] == 0 for r in rows)
    assert not (run / "index-builder.log").exists()
    assert all(torch.equal(v, retriever.doc.state_dict()[k]) for k, v in doc_before.items())
    assert any(not torch.equal(v, retriever.query.state_dict()[k]) for k, v in query_before.items())


def test_answerable_only_drops_exactly_the_counterfactual_rows_no_candidate_can_answer(tiny_corpus, tmp_path):
    """Brute force: the loss is minus the sum of the marginal log-likelihoods of the counterfactual rows that some
    candidate mentions (plus every plain row), over all masked tokens of the batch."""
    from realm.training.counterfactual import SpanBank

    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    bank, sp, rng = SpanBank.from_pool(pool), Specials.of(store.tokenizer), np.random.default_rng(1)
    queries = pool.sample(step_generator(0, 3), 12)
    swaps = [bank.replacement(q.targets, rng) if b % 3 else None for b, q in enumerate(queries)]
    K = 4
    with torch.no_grad():
        full, s_full, ids, _ = realm_step(queries, retriever, encoder, follower, store, sp, K,
                                          cfg.retriever.query_len, "cpu", swaps=swaps)
        kept, s_kept, ids2, _ = realm_step(queries, retriever, encoder, follower, store, sp, K,
                                           cfg.retriever.query_len, "cpu", swaps=swaps, answerable_only=True)
    np.testing.assert_array_equal(ids, ids2)
    answerable = [swaps[b] is None or any(z >= 0 and contains_span(store.body_ids(int(z)), q.targets) for z in ids[b])
                  for b, q in enumerate(queries)]
    assert 0 < sum(answerable) < len(queries)  # the batch has both kinds
    n_tokens = sum(len(q.positions) for q in queries)
    want = -sum(s_full["marginal_log_likelihood"][b].item() for b in range(len(queries)) if answerable[b]) / n_tokens
    assert kept.item() == pytest.approx(want, rel=1e-5)
    assert full.item() == pytest.approx(-s_full["marginal_log_likelihood"].sum().item() / n_tokens, rel=1e-5)
    assert s_kept["answerable_rows"].item() == pytest.approx(np.mean(answerable))


def test_evidence_at_k_against_brute_force(tiny_corpus, tmp_path):
    """REALM's own-task recall: top-k by the numpy oracle (own block excluded), then a plain span search."""
    from realm.index.exact import brute_force_search
    from realm.training.pretrain import evidence_at_k

    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    sp, queries = Specials.of(store.tokenizer), pool.sample(step_generator(5, 0), 40)
    got = evidence_at_k(retriever, follower.index, store, sp, queries, 3, cfg.retriever.query_len, "cpu")
    retriever.eval()
    with torch.no_grad():
        q = retriever.embed_queries(query_inputs([x.input_ids for x in queries], sp, cfg.retriever.query_len))
    _, ids = brute_force_search(q.numpy(), follower.embeddings, 3, [[x.block] for x in queries])
    want = []
    for row, x in zip(ids, queries):
        span = " " + " ".join(map(str, x.targets.tolist())) + " "
        want.append(any(z >= 0 and span in " " + " ".join(map(str, store.body_ids(int(z)).tolist())) + " "
                        for z in row))
    assert got == pytest.approx(np.mean(want)) and 0 < got < 1


def test_title_queries_and_document_exclusion_against_brute_force(tiny_corpus, tmp_path):
    """``pretrain.query_title`` / ``pretrain.exclude=document``: the retriever embeds ``[CLS] title [SEP] sentence
    [SEP]`` (built here by hand from the corpus' text) and the candidates are the numpy oracle's top-k with
    every block of the sentence's article left out; none of them is from that article."""
    from realm.index.exact import brute_force_search
    from realm.training.pretrain import evidence_at_k, retrieval_queries

    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    sp, tok = Specials.of(store.tokenizer), store.tokenizer
    multi = {int(d) for d, n in zip(*np.unique(store.block_doc, return_counts=True)) if n > 1}
    queries = [q for i in range(20) for q in pool.sample(step_generator(7, i), 8)
               if int(store.block_doc[q.block]) in multi][:24]
    assert len(queries) >= 8  # articles of several blocks: the document rule differs from the block rule
    K = 4
    retriever.eval()
    with torch.no_grad():
        _, _, ids, _ = realm_step(queries, retriever, encoder, follower, store, sp, K, cfg.retriever.query_len, "cpu",
                                  query_title=True, exclude="document")
        hand = []
        for q in queries:
            title = list(tok.encode(store.docs[int(store.block_doc[q.block])]["title"]))[: store.manifest["title_len"]]
            hand.append([sp.cls_id, *title, sp.sep_id, *q.input_ids, sp.sep_id])
        width = max(map(len, hand))
        inp = {"input_ids": torch.tensor([h + [sp.pad_id] * (width - len(h)) for h in hand]),
               "attention_mask": torch.tensor([[1] * len(h) + [0] * (width - len(h)) for h in hand]),
               "token_type_ids": torch.zeros(len(hand), width, dtype=torch.long)}
        q_emb = retriever.embed_queries(inp).numpy()
    same_doc = [[b for b in range(len(store)) if store.block_doc[b] == store.block_doc[q.block]] for q in queries]
    _, want = brute_force_search(q_emb, follower.embeddings, K - 1, same_doc)
    np.testing.assert_array_equal(ids, want)
    for row, q in zip(ids, queries):
        assert not set(row.tolist()) & set(np.flatnonzero(store.block_doc == store.block_doc[q.block]).tolist())
    # the block rule would have returned a block of the own article for some of them (the rule does work)
    _, by_block = brute_force_search(q_emb, follower.embeddings, K - 1, [[q.block] for q in queries])
    assert any(store.block_doc[z] == store.block_doc[q.block] for row, q in zip(by_block, queries) for z in row)
    # the own-task probe uses the same view of the query
    got = evidence_at_k(retriever, follower.index, store, sp, queries, K - 1, cfg.retriever.query_len, "cpu",
                        query_title=True, exclude="document")
    assert got == pytest.approx(np.mean([any(contains_span(store.body_ids(int(z)), q.targets) for z in row)
                                         for row, q in zip(want, queries)]))
    with pytest.raises(ValueError, match="pretrain.exclude"):
        retrieval_queries(queries, store, sp, cfg.retriever.query_len, exclude="article")


def test_subject_evidence_swaps_only_blocks_that_name_the_subject(tiny_corpus, tmp_path, monkeypatch):
    """``evidence="subject"``, brute force over every block of the corpus as a candidate: a counterfactual row's
    replacement is written into exactly the blocks that hold the span and the sentence's title; a block with
    the span about another subject is read unchanged; ``evidence_rate`` counts the subject's blocks only."""
    import realm.training.pretrain as pt
    from realm.training.counterfactual import SpanBank, substitute

    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    bank, sp, rng = SpanBank.from_pool(pool), Specials.of(store.tokenizer), np.random.default_rng(2)
    queries = [q for i in range(30) for q in pool.sample(step_generator(11, i), 8)][:40]
    swaps = [bank.replacement(q.targets, rng) for q in queries]
    K = len(store)  # every block but the own one is a candidate, plus the null block
    seen = []
    real_pair_inputs = pt.pair_inputs
    monkeypatch.setattr(pt, "pair_inputs", lambda q, bodies, *a: seen.append([np.asarray(x) for x in bodies])
                        or real_pair_inputs(q, bodies, *a))
    with torch.no_grad():
        _, stats, ids, _ = realm_step(queries, retriever, encoder, follower, store, sp, K, cfg.retriever.query_len,
                                      "cpu", swaps=swaps, evidence="subject")
    bodies = seen[0]
    n_subject = n_other = 0
    rate = []
    for b, q in enumerate(queries):
        title = store.title_ids(q.block)
        row_ev = False
        for j, z in enumerate(ids[b]):
            body = store.body_ids(int(z))
            span, subject = contains_span(body, q.targets), contains_span(body, title)
            want = substitute(body, q.targets, swaps[b]) if span and subject else body
            np.testing.assert_array_equal(bodies[b * K + j], want)
            n_subject += span and subject
            n_other += span and not subject
            row_ev |= span and subject
        rate.append(row_ev)
    assert n_subject > 0 and n_other > 0  # both kinds of block occur: the rule decides something
    assert stats["evidence_rate"].item() == pytest.approx(np.mean(rate))
    with pytest.raises(ValueError, match="pretrain.evidence"):
        realm_step(queries[:2], retriever, encoder, follower, store, sp, 3, cfg.retriever.query_len, "cpu",
                   evidence="title")


def test_pretraining_trains_with_the_configured_attention_kernel(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg = _tiny_cfg(tmp_path, **{"pretrain.steps": 2, "retriever.encoder.attention": "eager",
                                 "reader.encoder.attention": "eager", "pretrain.bf16": "true"})
    retriever, encoder = _models(load_config("tiny"), store)  # built with sdpa, as earlier stages save them
    retriever, encoder = pretrain(cfg, store, tmp_path / "run", retriever, encoder, progress=False)
    kernels = {m.config._attn_implementation for model in (retriever, encoder) for m in model.modules()
               if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")}
    assert kernels == {"eager"}
    assert all(np.isfinite(r["loss/mlm"]) for r in read_metrics(tmp_path / "run" / "metrics.jsonl"))


def test_ict_rows_add_exactly_the_ict_loss_of_their_pairs(tiny_corpus, tmp_path):
    """``pretrain.ict_rows``: the step's loss is the REALM loss plus ``ict_weight`` times the in-batch ICT loss of
    the (sentence, own block) pairs, computed here by hand from the embeddings (brute-force softmax)."""
    from realm.models.inputs import block_inputs
    from realm.training.ict import ICTSampler
    from realm.training.pretrain import _step_loss

    store, _ = tiny_corpus
    cfg, retriever, encoder, follower = _setup(store, tmp_path)
    cfg.pretrain.ict_weight = 0.7
    pool = MaskedSentencePool(store, "salient", max_tokens=cfg.retriever.query_len - 2, progress=False)
    sp, queries = Specials.of(store.tokenizer), pool.sample(step_generator(3, 0), 4)
    q_ids, titles, bodies, blocks = ICTSampler(store, cfg.retriever.query_len, 1.0).sample(np.random.default_rng(0), 6)
    ict = (query_inputs(q_ids, sp, cfg.retriever.query_len), block_inputs(titles, bodies, sp))
    retriever.eval()
    encoder.eval()
    with torch.no_grad():
        plain, _, _, _ = _step_loss(queries, None, None, retriever, encoder, follower, store, sp, cfg.pretrain,
                                    cfg.retriever.query_len, "cpu")
        both, _, _, stats = _step_loss(queries, None, None, retriever, encoder, follower, store, sp, cfg.pretrain,
                                       cfg.retriever.query_len, "cpu", ict)
        q, d = retriever.embed_queries(ict[0]).double(), retriever.embed_blocks(ict[1]).double()
    logits = q @ d.T
    want = -np.mean([logits[i, i].item() - np.log(np.exp(logits[i].numpy()).sum()) for i in range(len(q_ids))])
    assert stats["ict/loss"] == pytest.approx(want, rel=1e-4)
    assert both.item() == pytest.approx(plain.item() + 0.7 * want, rel=1e-4)
    assert all(not contains_span(b, s) or len(s) == 0 for s, b in zip(q_ids, bodies))  # remove_prob 1: taken out
