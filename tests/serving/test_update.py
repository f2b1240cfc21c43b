"""`realm index update`: new documents -> new corpus + index version, no retraining; the service answers from it.

The knowledge-update test trains a tiny run that READS (see ``reading_run``), edits facts of the built-in world,
updates the index and checks that the same questions are now answered with the new facts, from the new evidence.
"""

import json
import math
import time

import numpy as np
import pytest
import torch

from realm.config import CorpusConfig, load_config
from realm.data.corpus import build_corpus
from realm.data.errors import InputError
from realm.data.qa import QAExample, exact_match, has_answer
from realm.data.world import edit_fact, generate_world, write_world
from realm.index.build import embed_blocks
from realm.models.inputs import Specials, query_inputs, store_block_inputs
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever
from realm.retrieval import DenseRetrieval
from realm.serving.answer import Answerer
from realm.serving.qa_run import IndexedCorpus, current_version, export_qa_run
from realm.serving.update import update_index, update_index_report
from realm.training.finetune import finetune
from tests.serving.test_answer import _cli, build_run, check_record

ENTITIES, SEED = 40, 0
VARIANTS = 2  # counterfactual copies of the world the reader also trains on
RETRIEVER_STEPS, READER_STEPS, ROUNDS = 200, 450, 3
EDITS = 5



def _same_shape(store) -> CorpusConfig:
    return CorpusConfig(block_len=store.manifest["block_len"], title_len=store.manifest["title_len"],
                        tokenizer=str(store.folder / "tokenizer"))


def _examples(world) -> list[QAExample]:
    return [QAExample(q["question"], tuple(q["answer"])) for qs in world.questions.values() for q in qs]


@pytest.fixture(scope="module")
def reading_run(tmp_path_factory):
    return build_reading_run(tmp_path_factory.mktemp("reading"))


def build_reading_run(root):
    """A tiny run whose reader reads instead of memorising, built in ~20 s on one core.

    * retriever: trained directly (in-batch softmax, both encoders) to map every question of the world to the
      answer-bearing blocks of the article of the entity it asks about;
    * reader: fine-tuned (``finetune``, query encoder frozen) alternately on the world and on VARIANTS
      counterfactual copies in which every person was born somewhere else. The same question has a different
      answer in each copy, so the reader must take the birthplace from the retrieved text.

    Returns (run folder, world, {person id: cities the person was born in across the training copies}).
    """
    cfg = load_config("tiny")
    world = generate_world(ENTITIES, SEED)
    store, _ = build_corpus(write_world(world, root / "world")["corpus"], root / "corpus", cfg.corpus, progress=False)
    tok, sp = store.tokenizer, Specials.of(store.tokenizer)
    questions = [q for qs in world.questions.values() for q in qs]
    blocks_of: dict[str, list[int]] = {}
    for b in range(len(store)):
        blocks_of.setdefault(store.block_info(b)["doc_id"], []).append(b)
    positives = []
    for q in questions:
        own = blocks_of[q["entity_id"]]
        positives.append([b for b in own if has_answer(store.block_text(b), q["answer"])] or own)

    torch.manual_seed(SEED)
    retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
    opt = torch.optim.AdamW(retriever.parameters(), lr=2e-3)
    rng = np.random.default_rng(SEED)
    for _ in range(RETRIEVER_STEPS):
        idx = rng.choice(len(questions), 16, replace=False)
        pos = [int(rng.choice(positives[i])) for i in idx]
        q_ids = [e.ids for e in tok.encode_batch([questions[i]["question"] for i in idx])]
        q = retriever.embed_queries(query_inputs(q_ids, sp, cfg.retriever.query_len))
        z = retriever.embed_blocks(store_block_inputs(store, pos, sp))
        docs = np.array([store.block_doc[b] for b in pos])
        same_doc = torch.from_numpy((docs[:, None] == docs[None, :]) & ~np.eye(len(pos), dtype=bool))
        loss = torch.nn.functional.cross_entropy((q @ z.T).masked_fill(same_doc, -1e4), torch.arange(len(pos)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    retriever.eval()

    people = [e for e in world.entities if e.kind == "person"]
    cities = [e.id for e in world.entities if e.kind == "city"]
    seen = {p.id: {p.attrs["birthplace"]} for p in people}
    copies = [(store, world)]
    for v in range(1, VARIANTS + 1):
        cf = world
        for i, p in enumerate(people):
            city = cities[(i + v) % len(cities)]
            if city == p.attrs["birthplace"]:
                city = cities[(i + v + VARIANTS) % len(cities)]
            seen[p.id].add(city)
            cf = edit_fact(cf, p.id, "birthplace", city)
        cf_store, _ = build_corpus(write_world(cf, root / f"cf{v}")["corpus"], root / f"cf{v}" / "corpus",
                                   _same_shape(store), progress=False)
        copies.append((cf_store, cf))
    train = [(s, embed_blocks(retriever.doc, s, bf16=False, progress=False), _examples(w)) for s, w in copies]

    reader = SpanReader.build(cfg.reader, tok.vocab_size, tok.pad_id)
    cfg.reader.top_k = 3
    cfg.finetune.steps = READER_STEPS // (ROUNDS * len(train))
    cfg.finetune.batch_size, cfg.finetune.lr, cfg.finetune.train_query_encoder = 8, 2e-3, False
    for r in range(ROUNDS):
        for c, (s, emb, examples) in enumerate(train):
            finetune(cfg, DenseRetrieval(retriever, s, emb), reader, examples, root / f"ft{r}{c}", progress=False)
    run = export_qa_run(root / "run", retriever, reader, store, top_k=3, bf16=False, source="tests: reading run")
    return run, world, seen


def _birthplace_question(world, pid) -> dict:
    return next(q for qs in world.questions.values() for q in qs
                if q["entity_id"] == pid and q["relation"] == "birthplace")


@pytest.mark.slow
def test_knowledge_update_changes_the_answer(reading_run, tmp_path):
    run, world, seen = reading_run
    by_id = {e.id: e for e in world.entities}
    people = [e for e in world.entities if e.kind == "person"]
    cities = [e.id for e in world.entities if e.kind == "city"]
    with Answerer(run) as answerer:
        old = answerer.corpus
        # 1. before: pick people whose birthplace the run answers correctly FROM THEIR OWN ARTICLE (it read it)
        readers = []
        for p in people:
            q = _birthplace_question(world, p.id)
            out = answerer.ask(q["question"])
            own = [e for e in out["evidence"] if e["answer_start"] is not None and e["doc_id"] == p.id]
            if out["answer"] is not None and exact_match(out["answer"], q["answer"]) and own:
                readers.append(p)
        assert len(readers) >= 3, f"only {len(readers)} of {len(people)} birthplaces read correctly before the edit"
        chosen = readers[:EDITS]

        # 2. edit their birthplaces to cities they were never born in, in any training copy
        edited, new_city = world, {}
        for p in chosen:
            new_city[p.id] = next(c for c in cities if c not in seen[p.id])
            edited = edit_fact(edited, p.id, "birthplace", new_city[p.id])
        corpus_file = write_world(edited, tmp_path / "edited")["corpus"]

        # 3. update the index (no training) and reload
        version_before = current_version(run)
        path = update_index(run, corpus_file)
        assert path.name == f"v{version_before + 1:06d}" and current_version(run) == version_before + 1
        assert answerer.index_version == version_before  # not yet
        assert answerer.reload() is True
        new = answerer.corpus
        assert new.manifest.version == version_before + 1 and new.store.corpus_hash != old.store.corpus_hash
        assert answerer.stats()["index_version"] == new.manifest.version

        # 4. after: the same questions, answered from the new corpus version
        correct = []
        for p in chosen:
            before, after = by_id[p.attrs["birthplace"]].name, by_id[new_city[p.id]].name
            article = " ".join(new.store.block_text(b) for b in range(len(new.store))
                               if new.store.block_info(b)["doc_id"] == p.id)
            assert has_answer(article, [after]) and not has_answer(article, [before])  # the new fact is served
            q = _birthplace_question(edited, p.id)
            assert q["answer"] == [after]
            out = answerer.ask(q["question"])
            check_record(out, 3, new)  # every evidence block is the new corpus's text
            assert out["corpus_hash"] == new.store.corpus_hash
            assert out["answer"] is not None and not exact_match(out["answer"], [before]), (p.name, out["answer"])
            assert any(e["doc_id"] == p.id for e in out["evidence"])  # the edited article is still retrieved
            if exact_match(out["answer"], [after]):
                src = next(e for e in out["evidence"] if e["answer_start"] is not None)
                assert has_answer(src["text"], [after])
                correct.append(p.name)
        need = math.ceil(0.6 * len(chosen))
        assert len(correct) >= need, f"new birthplace answered for {correct} of {[p.name for p in chosen]}"


# ------------------------------------------------------------------ update mechanics (untrained run)
@pytest.fixture
def run(tmp_path):
    return build_run(tmp_path / "r", entities=24)


def _docs(run):
    return [{k: d[k] for k in ("id", "title", "text")} for d in IndexedCorpus.load(run).store.docs]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_update_reuses_tokenizer_and_block_shape(run, tmp_path):
    old = IndexedCorpus.load(run)
    docs = _docs(run)[:10] + [{"id": "new", "title": "Zyxqwv Plumbob", "text": "Zyxqwv Plumbob was born in Qoph. "
                                                                            "An entirely new article, 2031."}]
    report = update_index_report(run, _write(tmp_path / "new.jsonl", docs))
    assert report["unchanged"] is False and report["index_version"] == 2 and report["previous_version"] == 1
    new = IndexedCorpus.load(run)
    assert new.manifest.version == 2 and new.store.corpus_hash == report["corpus"]["corpus_hash"]
    for key in ("tokenizer_hash", "block_len", "title_len", "vocab_size"):
        assert new.store.manifest[key] == old.store.manifest[key], key
    assert new.store.manifest["num_docs"] == 11
    assert new.manifest.extra["corpus_dir"] == f"corpora/{new.store.corpus_hash}"
    assert (run / "corpora" / old.store.corpus_hash).is_dir()  # the old version stays readable
    assert not list((run / "corpora").glob(".build-*")) and not list((run / "corpora").glob("*.tmp"))
    # embedded by the run's own (unchanged) document encoder
    retriever = Retriever.load(run / "retriever")
    np.testing.assert_allclose(new.embeddings, embed_blocks(retriever.doc, new.store, bf16=False, progress=False),
                               atol=1e-5)
    with Answerer(run, max_k=20) as a:
        out = a.ask("Where was Zyxqwv Plumbob born?", k=20)
        check_record(out, 20, new)
        assert "new" in {e["doc_id"] for e in out["evidence"]}


def test_unchanged_corpus_publishes_nothing(run, tmp_path):
    same = _write(tmp_path / "same.jsonl", _docs(run))
    report = update_index_report(run, same)
    assert report["unchanged"] is True and report["index_version"] == 1 and current_version(run) == 1
    assert update_index(run, same) == run / "index" / "v000001"
    assert update_index(run, same, force=True) == run / "index" / "v000002"


def test_bad_records(run, tmp_path):
    bad = _write(tmp_path / "bad.jsonl", _docs(run)[:5] + ["{not json", {"id": "x", "title": "no text"}])
    with pytest.raises(InputError, match="bad.jsonl:6"):
        update_index(run, bad)
    assert current_version(run) == 1  # nothing published
    report = update_index_report(run, bad, skip_bad=True)
    assert report["skipped"]["total"] == 2 and len(report["skipped"]["examples"]) == 2
    assert report["corpus"]["num_docs"] == 5 and current_version(run) == 2
    with pytest.raises(InputError, match="no such file|not found|does not exist"):
        update_index(run, tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="no usable documents"):
        update_index(run, _write(tmp_path / "allbad.jsonl", ["{bad"]), skip_bad=True)
    assert current_version(run) == 2


def test_cli_index_update(run, tmp_path, capsys):
    corpus = _write(tmp_path / "c.jsonl", _docs(run)[:6] + ["{broken"])
    assert _cli(["index", "update", str(run), "--corpus", str(corpus), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["index_version"] == 2 and report["corpus"]["num_docs"] == 6
    assert "skipped:" in captured.err and "published index v2" in captured.err
    assert _cli(["index", "update", str(run), "--corpus", str(corpus), "--skip-bad"]) == 0
    assert "corpus unchanged" in capsys.readouterr().err


def test_served_answerer_sees_update_through_watch(run, tmp_path):
    with Answerer(run) as a:
        a.watch(0.05)
        update_index(run, _write(tmp_path / "few.jsonl", _docs(run)[:4]))
        deadline = time.time() + 10
        while a.index_version != 2 and time.time() < deadline:
            time.sleep(0.02)
        assert a.index_version == 2 and a.stats()["docs"] == 4


@pytest.mark.slow
def test_update_check_measures_edits_on_a_copy(reading_run, tmp_path):
    """`realm index update-check`: edits only facts answered right before, on a copy of the run (the run keeps
    its index version), and its counts are those of its per-question rows."""
    from realm.cli import main
    from realm.serving.update_check import knowledge_update_check

    run, world, _ = reading_run
    version = current_version(run)
    write_world(world, tmp_path / "world")
    report = knowledge_update_check(run, tmp_path / "world", tmp_path / "work", edits=3)
    assert current_version(run) == version
    assert 1 <= report["edits"] <= min(3, report["right_before"]) and report["right_before"] <= report["questions"]
    assert report["index_version_after"] == report["index_version_before"] + 1
    rows = report["examples"]
    assert report["new_value_answered"] == sum(r["new_answered"] for r in rows)
    assert report["old_value_answered"] == sum(r["old_answered"] for r in rows)
    assert all(r["old"] != r["new"] and not (r["new_answered"] and r["old_answered"]) for r in rows)
    assert report["new_value_answered"] >= 1
    out = tmp_path / "report.json"
    assert main(["index", "update-check", str(run), "--world", str(tmp_path / "world"), "--edits", "2",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["edits"] == min(2, report["right_before"])
