import copy
import json
import shutil

import numpy as np
import pytest
import torch

from realm.config import CorpusConfig, load_config
from realm.data.corpus import build_corpus
from realm.data.qa import QAExample
from realm.models.inputs import Specials
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.checkpoint import checkpoint_dir
from realm.evaluation.closed_book import evaluate_closed_book, predict_closed_book
from realm.models.closed_book import ClosedBookQA, decode_slots, slot_inputs
from realm.training.closed_book import choose_answer_slots, finetune_closed_book, slot_targets
from realm.training.encoder_mlm import mlm_pretrain
from realm.training.logger import read_metrics

FIRST = ["Elsa", "Tomas", "Brina", "Oskar", "Mila", "Ferro", "Ysolde", "Dario", "Kesta", "Lorin", "Pell", "Anwen",
         "Corvin", "Idra", "Jessa"]
LAST = ["Mirrow", "Vell", "Quarn", "Adley", "Brask", "Coldry", "Dunmore", "Eskin", "Fallow", "Grime"]
CITIES = ["Varnholt", "Port Quillbay", "Dunmere Upon Tyne", "Kelpford", "New Ostrava"]  # 1 to 3+ wordpieces
PEOPLE = [(f"{FIRST[i % 15]} {LAST[(i * 7) % 10]}", CITIES[i % 5]) for i in range(30)]
TRAIN = [QAExample(f"Where was {name} born?", (city,)) for name, city in PEOPLE[:12]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("closed_book_world")
    with open(root / "docs.jsonl", "w") as f:
        for i, (name, city) in enumerate(PEOPLE):
            f.write(json.dumps({"id": f"p{i}", "title": name, "text": f"{name} was born in {city}."}) + "\n")
    store, _ = build_corpus(root / "docs.jsonl", root / "corpus",
                            CorpusConfig(block_len=32, vocab_size=400, min_frequency=1), progress=False)
    return store


def config(pretrain_steps=30, finetune_steps=150, **pretrain):
    cfg = load_config("tiny")
    cfg.pretrain.steps, cfg.pretrain.batch_size, cfg.pretrain.lr, cfg.pretrain.warmup = pretrain_steps, 16, 2e-3, 3
    for k, v in pretrain.items():
        setattr(cfg.pretrain, k, v)
    # full-batch (12 questions), lr 3e-3: memorised for 6/6 seeds measured; batch 8 or lr 5e-3 plateau on some seeds
    cfg.finetune.steps, cfg.finetune.batch_size, cfg.finetune.lr, cfg.finetune.warmup = finetune_steps, 12, 3e-3, 3
    return cfg


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory):
    run = tmp_path_factory.mktemp("mlm") / "run"
    encoder = mlm_pretrain(config(), world, run, progress=False)
    return run, encoder


def test_mlm_pretrain_loss_decreases_and_saves(pretrained, world):
    run, encoder = pretrained
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert {"loss/mlm", "acc/masked", "perf/tokens_per_s"} <= set(rows[0])
    loss = np.array([r["loss/mlm"] for r in rows])
    assert np.isfinite(loss).all()
    assert loss[-5:].mean() < loss[:5].mean() - 1.0  # measured: 5.1 -> 3.2
    assert rows[-1]["acc/masked"] >= rows[0]["acc/masked"]
    loaded = KnowledgeAugEncoder.load(run / "encoder")
    for (k, a), b in zip(encoder.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.bert.config.num_hidden_layers == load_config("tiny").reader.encoder.layers


def test_mlm_pretrain_resume_reproduces_next_steps(world, tmp_path):
    cfg = config(pretrain_steps=6, checkpoint_every=3, masking="uniform")
    mlm_pretrain(cfg, world, tmp_path / "full", progress=False)
    full = {r["step"]: r["loss/mlm"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")}
    shutil.copytree(checkpoint_dir(tmp_path / "full", 3), checkpoint_dir(tmp_path / "resumed", 3))
    mlm_pretrain(cfg, world, tmp_path / "resumed", progress=False)
    resumed = {r["step"]: r["loss/mlm"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")}
    assert sorted(resumed) == [4, 5, 6]
    for s in (4, 5, 6):
        assert resumed[s] == pytest.approx(full[s], rel=1e-5, abs=1e-6)


def test_slots_targets_and_decoding_stop_at_sep(world):
    tok = world.tokenizer
    sp = Specials.of(tok)
    ans = [tok.encode("Dunmere Upon Tyne"), tok.encode("Varnholt")]
    A = choose_answer_slots(ans)
    assert A == len(ans[0]) + 1
    assert choose_answer_slots([list(range(30))]) == 8  # capped
    t = slot_targets(ans, A, sp)
    assert t[0].tolist() == [*ans[0], sp.sep_id]
    assert t[1].tolist() == [*ans[1], sp.sep_id] + [sp.pad_id] * (A - len(ans[1]) - 1)
    assert slot_targets([list(range(10, 20))], 4, sp)[0].tolist() == [10, 11, 12, 13]  # too long: cut, no [SEP]
    inputs, pos = slot_inputs([tok.encode("Where was Elsa Mirrow born?")], A, sp, 24)
    ids = inputs["input_ids"][0]
    assert ids[0] == sp.cls_id and ids[-1] == sp.sep_id
    assert (ids[pos[0]] == sp.mask_id).all() and ids[pos[0][0] - 1] == sp.sep_id
    assert (inputs["token_type_ids"][0][pos[0]] == 1).all()
    city = tok.encode("Port Quillbay")
    raw = [[*city, sp.sep_id, *ans[1]], [sp.sep_id, *city], [*ans[1], sp.pad_id, *city, sp.sep_id]]
    width = max(len(r) for r in raw)
    rows = torch.tensor([r + [sp.pad_id] * (width - len(r)) for r in raw])
    out = decode_slots(rows, tok, sp)
    assert out[0] == ("port quillbay", city)
    assert out[1] == ("", [])
    assert out[2] == ("varnholt", ans[1])


def test_closed_book_memorises_training_questions(pretrained, world, tmp_path):
    cfg = config()
    encoder = copy.deepcopy(pretrained[1])
    before = evaluate_closed_book(ClosedBookQA(encoder, 4, cfg.retriever.query_len), world, TRAIN)
    trained = finetune_closed_book(cfg, world, encoder, TRAIN, tmp_path / "cb", progress=False)
    rows = read_metrics(tmp_path / "cb" / "metrics.jsonl")
    loss = [r["loss/total"] for r in rows]
    assert len(loss) == 150 and np.isfinite(loss).all()
    assert np.mean(loss[-5:]) < 0.1 * np.mean(loss[:5])  # measured over 6 seeds: ~4.3 -> 0.008-0.011
    after = evaluate_closed_book(trained, world, TRAIN, predictions_path=tmp_path / "preds.jsonl")
    assert after["n"] == len(TRAIN)
    assert after["em"] >= 0.9 > before["em"]  # measured: 0.0 -> 1.0 (6/6 seeds)
    A = trained.answer_slots
    assert json.loads((tmp_path / "cb" / "closed_book.json").read_text())["answer_slots"] == A
    preds = predict_closed_book(trained, world, TRAIN)
    assert all(isinstance(p["prediction"], str) and len(p["tokens"]) < A for p in preds)
    loaded = ClosedBookQA.load(tmp_path / "cb" / "closed_book")
    assert loaded.answer_slots == A and loaded.query_len == cfg.retriever.query_len
    assert [p["prediction"] for p in predict_closed_book(loaded, world, TRAIN)] == [p["prediction"] for p in preds]
    with pytest.raises(FileNotFoundError, match="not a closed-book model folder"):
        ClosedBookQA.load(tmp_path / "cb" / "encoder-less")


def test_closed_book_resume_reproduces_next_steps(pretrained, world, tmp_path):
    cfg = config(finetune_steps=6)
    finetune_closed_book(cfg, world, copy.deepcopy(pretrained[1]), TRAIN, tmp_path / "full", progress=False,
                         checkpoint_every=3)
    full = {r["step"]: r["loss/total"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")}
    shutil.copytree(checkpoint_dir(tmp_path / "full", 3), checkpoint_dir(tmp_path / "resumed", 3))
    finetune_closed_book(cfg, world, copy.deepcopy(pretrained[1]), TRAIN, tmp_path / "resumed", progress=False,
                         checkpoint_every=3)
    resumed = {r["step"]: r["loss/total"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")}
    assert sorted(resumed) == [4, 5, 6]
    for s in (4, 5, 6):
        assert resumed[s] == pytest.approx(full[s], rel=1e-5, abs=1e-6)
