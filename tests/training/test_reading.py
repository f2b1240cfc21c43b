"""The reading warm start: probe rows, the recipe (resume, metrics), pretraining's reading rows."""

import json
import shutil

import numpy as np
import pytest
import torch

from realm.config import load_config
from realm.models.inputs import Specials
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.counterfactual import occurrences
from realm.training.logger import read_metrics
from realm.training.reading import ReadingData, reading_warmup
from realm.training.reading_probe import ReadingProbe


@pytest.fixture(scope="module")
def data(tiny_corpus):
    store, _ = tiny_corpus
    return ReadingData(store, load_config("tiny").retriever.query_len, probe_rows=24)


def test_probe_rows_are_what_they_claim(tiny_corpus, data):
    store, _ = tiny_corpus
    probe = data.probe
    assert probe.sizes()["evidence"] > 0 and probe.sizes()["cf"] > 0
    ev = probe.sets["evidence"]
    for q, body, rnd, tgt in zip(ev.queries, ev.bodies, ev.random_bodies, ev.targets):
        assert np.array_equal(tgt, q.targets)  # real evidence: the real span
        assert occurrences(body, tgt)  # ... in the block read
        assert not occurrences(rnd, tgt)  # ... and not in the random block
        docs = {int(store.block_doc[i]) for i in range(len(store)) if np.array_equal(store.body_ids(i), body)}
        assert int(store.block_doc[q.block]) not in docs  # from another document
    cf = probe.sets["cf"]
    for q, body, rnd, tgt in zip(cf.queries, cf.bodies, cf.random_bodies, cf.targets):
        assert len(tgt) == len(q.targets) and not np.array_equal(tgt, q.targets)
        assert occurrences(body, tgt) and not occurrences(body, q.targets)
        assert not occurrences(rnd, tgt)


def test_probe_measures_reading_with_a_brute_force_reader(tiny_corpus, data):
    """An 'encoder' that scores the target by whether it occurs in the block: large advantage; a blind one: 0."""
    store, _ = tiny_corpus
    sp = data.probe.sp

    class Oracle(torch.nn.Module):
        def __init__(self, reads: bool):
            super().__init__()
            self.reads = reads

        def target_log_probs(self, inputs, positions, targets):
            ids = inputs["input_ids"]
            lp = torch.full(targets.shape, -5.0)
            if self.reads:
                for r in range(ids.shape[0]):
                    seg = ids[r][inputs["token_type_ids"][r] == 1].tolist()
                    t = [x for x in targets[r].tolist() if x != 0]
                    if any(seg[i:i + len(t)] == t for i in range(len(seg) - len(t) + 1)):
                        lp[r] = -0.1
            logits = torch.full((*targets.shape, 5000), -9.0)
            logits.scatter_(-1, targets.unsqueeze(-1), lp.unsqueeze(-1))
            return lp, logits

    reads = data.probe.measure(Oracle(True))
    blind = data.probe.measure(Oracle(False))
    assert reads["probe/evidence_advantage"] == pytest.approx(4.9, abs=1e-6)
    assert reads["probe/cf_advantage"] == pytest.approx(4.9, abs=1e-6)
    assert blind["probe/evidence_advantage"] == 0.0 and blind["probe/cf_advantage"] == 0.0


def test_probe_is_fixed(tiny_corpus, data):
    store, _ = tiny_corpus
    again = ReadingProbe(store, data.pool, rows=24, query_len=data.query_len)
    for name in ("evidence", "cf"):
        a, b = data.probe.sets[name], again.sets[name]
        assert [q.input_ids.tolist() for q in a.queries] == [q.input_ids.tolist() for q in b.queries]
        assert all(np.array_equal(x, y) for x, y in zip(a.bodies, b.bodies))


def _cfg(**over):
    items = {"reading.steps": 6, "reading.batch_size": 8, "reading.probe_every": 3, "reading.checkpoint_every": 3,
             "reading.curriculum_start": 0.5, "reading.probe_rows": 12, "reading.bf16": False} | over
    return load_config("tiny", [f"{k}={v}" for k, v in items.items()])


def test_reading_warmup_runs_logs_probe_and_resumes_exactly(tiny_corpus, data, tmp_path):
    store, _ = tiny_corpus
    full = reading_warmup(_cfg(), store, tmp_path / "full", progress=False, data=data)
    rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert "probe/evidence_advantage" in rows[2] and "probe/cf_advantage" in rows[5]
    assert any("acc/evidence" in r for r in rows[3:]) and not any("acc/evidence" in r for r in rows[:3])
    assert json.loads((tmp_path / "full" / "probe.json").read_text())["probe/cf_advantage"] == rows[5]["probe/cf_advantage"]
    # a run stopped after its step-3 checkpoint and resumed ends with the same weights
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step_000003", tmp_path / "part" / "checkpoints" / "step_000003")
    resumed = reading_warmup(_cfg(), store, tmp_path / "part", progress=False, data=data)
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n
    assert KnowledgeAugEncoder.load(tmp_path / "part" / "encoder") is not None


def test_reading_rows_in_pretraining_are_logged(tiny_corpus, data, tmp_path):
    from realm.training.pretrain import pretrain

    store, _ = tiny_corpus
    cfg = load_config("tiny", ["pretrain.steps=4", "pretrain.refresh_mode=sync", "pretrain.reading_rows=3",
                               "pretrain.probe_every=2", "pretrain.checkpoint_every=2", "reading.probe_rows=12"])
    calls = []
    pretrain(cfg, store, tmp_path / "p", progress=False, reading=data,
             evaluate=lambda r: calls.append(r.training) or {"recall@5": 0.5})
    rows = read_metrics(tmp_path / "p" / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[0]["eval/recall@5"] == 0.5  # measured before the first step
    assert all("reading/loss" in r for r in rows[1:])
    assert [r["step"] for r in rows if "probe/cf_advantage" in r] == [0, 2, 4]
    assert calls == [False, False, False]  # evaluated in eval mode


def test_rows_step_with_a_batch_built_ahead_is_the_same_step(tiny_corpus, data):
    from realm.models.inputs import Specials
    from realm.training.checkpoint import step_generator
    from realm.training.reading import rows_batch, rows_step

    store, _ = tiny_corpus
    cfg = load_config("tiny")
    torch.manual_seed(0)
    enc = KnowledgeAugEncoder.build(cfg.reader.encoder, store.tokenizer.vocab_size, store.tokenizer.pad_id)
    sp, q_len = Specials.of(store.tokenizer), cfg.retriever.query_len
    rows = data.rows(step_generator(0, 3), 8, 0.25, 0.7)
    loss_a, stats_a, tok_a = rows_step(enc, rows, sp, q_len, "cpu", False)
    loss_b, stats_b, tok_b = rows_step(enc, rows, sp, q_len, "cpu", False, batch=rows_batch(rows, sp, q_len))
    assert torch.equal(loss_a, loss_b) and stats_a == stats_b and tok_a == tok_b


QUESTIONS = ["Where was Elsa Mirrow born?", "Which studio financed The Copper Cartographer?",
             "Whom did Tomas Vell marry?"]


def test_question_rows_mask_a_questions_tokens_and_read_the_null_block(tiny_corpus):
    store, _ = tiny_corpus
    q_len = load_config("tiny").retriever.query_len
    data = ReadingData(store, q_len, probe_rows=8, questions=QUESTIONS)
    tok = store.tokenizer
    encoded = {tuple(tok.encode(q)) for q in QUESTIONS}
    rng = np.random.default_rng(0)
    batches = [data.rows(rng, 16, 0.25, 0.7, question_share=0.2) for _ in range(100)]
    assert all(len(rows) == 16 for rows in batches)
    counts = [sum(r.query.block == -1 for r in rows) for rows in batches]
    assert set(counts) == {3, 4} and 3.1 < np.mean(counts) < 3.3  # 0.2 * 16 = 3.2 rows, rounded at random
    assert all(sum(r.query.block == -1 for r in data.rows(rng, 16, 0.25, 0.7, question_share=0.25)) == 4
               for _ in range(5))  # a whole number of rows: exactly that
    rows = next(b for b, c in zip(batches, counts) if c >= 2)
    m = sum(r.query.block == -1 for r in rows)
    questions = rows[16 - m:]  # question rows come last
    for r in questions:
        q = r.query
        assert r.kind == "plain" and len(r.body) == 0 and q.block == -1
        assert (q.input_ids[q.positions] == tok.mask_id).all() and len(q.positions) >= 1
        restored = q.input_ids.copy()
        restored[q.positions] = r.targets
        assert tuple(restored) in encoded  # the question, with BERT's masking undone
    assert all(r.query.block >= 0 for r in rows[:16 - m])
    # without questions given, asking for them is an error, not a silent corpus-only batch
    with pytest.raises(ValueError, match="question_share"):
        ReadingData(store, q_len, probe_rows=8).rows(rng, 16, 0.25, 0.7, question_share=0.25)


def test_reading_warmup_with_question_rows_learns_the_questions_language(tiny_corpus, tmp_path):
    """Masked questions are predicted better after a warm start with question rows than after one without."""
    from realm.training.reading import rows_step

    store, _ = tiny_corpus
    cfg = _cfg()
    data = ReadingData(store, cfg.retriever.query_len, probe_rows=8, questions=QUESTIONS)
    held = data.rows(np.random.default_rng(123), 24, 0.0, 0.0, question_share=1.0)  # fixed masked questions
    sp = Specials.of(store.tokenizer)
    loss = {}
    for share in (0.0, 0.5):
        torch.manual_seed(0)
        start = KnowledgeAugEncoder.build(cfg.reader.encoder, store.tokenizer.vocab_size, store.tokenizer.pad_id)
        run = _cfg(**{"reading.question_share": share, "reading.probe_every": 0, "reading.steps": 30,
                      "reading.lr": 2e-3, "reading.warmup": 0, "reading.checkpoint_every": 0})
        enc = reading_warmup(run, store, tmp_path / f"q{share}", encoder=start, progress=False, data=data).eval()
        with torch.no_grad():
            loss[share] = rows_step(enc, held, sp, cfg.retriever.query_len, "cpu", False)[0].item()
    assert loss[0.5] < loss[0.0] - 0.5
