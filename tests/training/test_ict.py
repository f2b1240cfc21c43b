import math

import numpy as np
import torch

from realm.config import load_config
from realm.training.checkpoint import step_generator
from realm.training.ict import ICTSampler, train_ict
from realm.training.logger import read_metrics


def test_sampler_removes_the_query_sentence_most_of_the_time(tiny_corpus):
    store, _ = tiny_corpus
    sampler = ICTSampler(store, query_len=24, remove_prob=0.9)
    removed = kept = 0
    for step in range(20):
        queries, titles, bodies, blocks = sampler.sample(step_generator(0, step), 8)
        assert len(set(blocks.tolist())) == len(blocks)  # distinct blocks: the others are true negatives
        for q, body, b in zip(queries, bodies, blocks):
            full = store.body_ids(int(b)).tolist()
            assert any(full[i:i + len(q)] == q for i in range(len(full) - len(q) + 1))  # a sentence of its block
            if len(body) == len(full):
                kept += 1
            else:
                assert len(body) == len(full) - len(q)
                removed += 1
    assert 0.75 < removed / (removed + kept) < 0.99


def test_ict_loss_decreases_on_the_built_in_world(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg = load_config("tiny", ["ict.steps=40", "ict.batch_size=16", "ict.lr=3e-3"])
    torch.manual_seed(0)
    train_ict(cfg, store, tmp_path / "ict", progress=False)
    rows = read_metrics(tmp_path / "ict" / "metrics.jsonl")
    first = np.mean([r["loss/ict"] for r in rows[:5]])
    last = np.mean([r["loss/ict"] for r in rows[-5:]])
    assert first > 2.6 and last < 0.9 * first, (first, last)  # starts at chance, ln(16) = 2.77
    assert (tmp_path / "ict" / "retriever" / "retriever.json").exists()


def test_ict_checkpoints_mid_run_and_resumes_exactly(tiny_corpus, tmp_path):
    """Stopped after its step-10 checkpoint (the later ones removed), ICT resumes to the same weights."""
    import shutil

    import torch

    from realm.config import load_config
    from realm.training.ict import train_ict

    store, _ = tiny_corpus
    cfg = load_config("tiny", ["ict.steps=20", "ict.checkpoint_every=10"])
    full = train_ict(cfg, store, tmp_path / "full", progress=False)
    steps = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir())
    assert steps == ["step_000010", "step_000020"]
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step_000010", tmp_path / "part" / "checkpoints" / "step_000010")
    part = train_ict(cfg, store, tmp_path / "part", progress=False)
    for (n, a), (_, b) in zip(full.state_dict().items(), part.state_dict().items()):
        assert torch.equal(a, b), n


def test_ict_bf16_autocast_trains_and_logs(tiny_corpus, tmp_path):
    store, _ = tiny_corpus
    cfg = load_config("tiny", ["ict.steps=3", "ict.bf16=true", "retriever.encoder.attention=eager"])
    retriever = train_ict(cfg, store, tmp_path / "ict", progress=False)
    rows = read_metrics(tmp_path / "ict" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["loss/ict"]) for r in rows)
    assert retriever.query.bert.config._attn_implementation == "eager"
