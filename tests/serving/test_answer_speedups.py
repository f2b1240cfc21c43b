"""Serving speed-ups leave every answer unchanged: same records with and without them."""
from torch import nn

from realm.models.modes import SkipRedundantModeSwitch
from realm.serving.answer import Answerer
from tests.serving.test_answer import QUESTIONS, build_run


def answers(run, batch):
    with Answerer(run, max_k=8, max_batch=batch) as a:
        out = a.ask_many(QUESTIONS * 2, k=4)
    for rec in out:
        rec.pop("latency_ms")
    return out


def test_mode_switch_shortcut_keeps_answers(tmp_path, monkeypatch):
    run = build_run(tmp_path, entities=20)
    after = answers(run, 1), answers(run, 32)
    monkeypatch.setattr(SkipRedundantModeSwitch, "train", nn.Module.train)  # the code before
    before = answers(run, 1), answers(run, 32)
    assert after == before
    assert any(rec["answer"] for rec in after[0])  # the records hold answers, not only None
