"""The Answerer: fields, k bounds, agreement with predict(), thread safety, stats, hot reload; `realm ask`."""

import argparse
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from realm.config import load_config
from realm.data.blocks import BlockStore
from realm.data.corpus import build_corpus
from realm.data.qa import QAExample
from realm.data.world import generate_world, write_world
from realm.evaluation.qa import predict
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever
from realm.retrieval import DenseRetrieval
from realm.serving.answer import Answerer, format_answer, highlight
from realm.serving.qa_run import IndexedCorpus, add_corpus_version, export_qa_run

QUESTIONS = ["Where was Toran Eguley born?", "Who founded Datas Films?", "What is the population of Wariton?",
             "hello", "?", "When was the University of Trydust founded?"]


# ------------------------------------------------------------------ shared builders (also used by the other
# serving test modules)
def build_run(root: Path, entities: int = 30, seed: int = 0, top_k: int = 3, docs: list[dict] | None = None) -> Path:
    """An UNTRAINED tiny servable run over the built-in world (or over ``docs``): for contract tests only."""
    cfg = load_config("tiny")
    if docs is None:
        corpus_file = write_world(generate_world(entities, seed), root / "world")["corpus"]
    else:
        root.mkdir(parents=True, exist_ok=True)
        corpus_file = root / "docs.jsonl"
        corpus_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    store, _ = build_corpus(corpus_file, root / "corpus", cfg.corpus, progress=False)
    tok = store.tokenizer
    torch.manual_seed(seed)
    retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
    reader = SpanReader.build(cfg.reader, tok.vocab_size, tok.pad_id)
    return export_qa_run(root / "run", retriever, reader, store, top_k=top_k, bf16=False, source="tests")


def corpus_subset(run: Path, out: Path, keep: int) -> BlockStore:
    """A different corpus for ``run``: its first ``keep`` documents, same tokenizer and block shape."""
    from realm.config import CorpusConfig

    old = IndexedCorpus.load(run).store
    docs = out / "subset.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    docs.write_text("".join(json.dumps({k: d[k] for k in ("id", "title", "text")}) + "\n" for d in old.docs[:keep]))
    cfg = CorpusConfig(block_len=old.manifest["block_len"], title_len=old.manifest["title_len"],
                       tokenizer=str(old.folder / "tokenizer"))
    return build_corpus(docs, out / "corpus", cfg, progress=False)[0]



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("answer"))


@pytest.fixture(scope="module")
def answerer(run):
    with Answerer(run, max_k=8) as a:
        yield a


# ------------------------------------------------------------------ tests
def check_record(out: dict, k: int, corpus: IndexedCorpus):
    assert set(out) == {"question", "answer", "score", "k", "index_version", "corpus_hash", "evidence", "latency_ms"}
    assert out["k"] == k and len(out["evidence"]) == min(k, len(corpus.store))
    assert out["index_version"] == corpus.manifest.version and out["corpus_hash"] == corpus.store.corpus_hash
    assert [e["rank"] for e in out["evidence"]] == list(range(1, len(out["evidence"]) + 1))
    scores = [e["retrieval_score"] for e in out["evidence"]]
    assert all(a >= b - 1e-4 for a, b in zip(scores, scores[1:]))  # (re-scored in another op order: ~ties)
    assert sum(e["retrieval_prob"] for e in out["evidence"]) == pytest.approx(1.0, abs=1e-4)
    for e in out["evidence"]:
        assert e["text"] == corpus.store.block_text(e["block"])  # evidence comes from the served corpus
        assert e["title"] == corpus.store.block_info(e["block"])["title"]
    marked = [e for e in out["evidence"] if e["answer_start"] is not None]
    if out["answer"] is None:
        assert marked == [] and out["score"] is None
    else:
        assert len(marked) == 1 and np.isfinite(out["score"])
        e = marked[0]
        assert e["text"][e["answer_start"]:e["answer_end"]] == out["answer"] != ""
    assert out["latency_ms"] > 0
    json.dumps(out, allow_nan=False)  # strictly JSON-serialisable


def test_ask_returns_answer_and_evidence(answerer):
    out = answerer.ask(QUESTIONS[0])
    check_record(out, 3, answerer.corpus)  # default k = the run's top_k
    assert out["question"] == QUESTIONS[0]
    for k in (1, 8):
        check_record(answerer.ask(QUESTIONS[1], k=k), k, answerer.corpus)


def test_matches_predict(answerer, run):
    corpus = answerer.corpus
    ref = predict(DenseRetrieval(Retriever.load(run / "retriever"), corpus.store, corpus.embeddings),
                  SpanReader.load(run / "reader"), [QAExample(q, ()) for q in QUESTIONS], k=4)
    for q, r in zip(QUESTIONS, ref):
        out = answerer.ask(q, k=4)
        assert out["answer"] == r["prediction"]
        assert [e["block"] for e in out["evidence"]] == [e["block"] for e in r["evidence"]]
        assert out["score"] == pytest.approx(r["score"], abs=1e-4)


@pytest.mark.parametrize("question", ["\u200b", "\x00", "😀" * 40, "a" * 3000, "<script>alert(1)</script>",
                                      "  padded question  ", "多語言の質問"])
def test_odd_questions_are_answered(answerer, question):
    out = answerer.ask(question, k=2)
    check_record(out, 2, answerer.corpus)


@pytest.mark.parametrize("k, exc", [(0, ValueError), (9, ValueError), (-1, ValueError), (2.0, TypeError),
                                    (True, TypeError), ("2", TypeError)])
def test_bad_k(answerer, k, exc):
    with pytest.raises(exc, match="k must"):
        answerer.ask("q", k=k)


@pytest.mark.parametrize("question", ["", "   \n\t"])
def test_empty_question(answerer, question):
    with pytest.raises(ValueError, match="empty"):
        answerer.ask(question)


def test_concurrent_asks_match_sequential_answers(answerer):
    """32 questions from 8 threads (batched by the worker) give the answers asked one at a time give."""
    jobs = [(QUESTIONS[i % len(QUESTIONS)], 1 + i % 4) for i in range(32)]
    alone = {job: answerer.ask(*job) for job in set(jobs)}
    before = answerer.stats()["requests_served"]
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda job: answerer.ask(*job), jobs))
    for job, out in zip(jobs, outs):
        check_record(out, job[1], answerer.corpus)
        assert out["answer"] == alone[job]["answer"]
        assert [e["block"] for e in out["evidence"]] == [e["block"] for e in alone[job]["evidence"]]
        assert out["score"] == pytest.approx(alone[job]["score"], abs=1e-3)
    assert answerer.stats()["requests_served"] == before + 32


def test_stats(run):
    with Answerer(run, max_k=5, latency_window=10) as a:
        s = a.stats()
        assert s["requests_served"] == 0 and s["latency_ms"]["p50"] is None
        for i in range(12):
            a.ask(f"question {i}")
        s = a.stats()
        store = a.corpus.store
        assert s["index_version"] == 1 and s["corpus_hash"] == store.corpus_hash
        assert s["blocks"] == len(store) and s["docs"] == store.manifest["num_docs"] == 30
        assert s["requests_served"] == 12 and s["requests_failed"] == 0
        lat = s["latency_ms"]
        assert lat["window"] == 10 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
        assert s["default_k"] == 3 and s["max_k"] == 5


def test_submitted_questions_resolve_to_the_same_records_and_failures_are_counted(run, monkeypatch):
    """submit_many (what the HTTP service awaits) returns at once; its futures give ask's records. A failed
    forward pass reaches every caller in it and is counted; a timeout is counted for what never ran."""
    with Answerer(run, max_k=5) as a:
        futures = a.submit_many(QUESTIONS[:3], 2)
        outs = [f.result(60) for f in futures]
        for q, out in zip(QUESTIONS[:3], outs):
            alone = a.ask(q, 2)
            assert out["answer"] == alone["answer"] and out["latency_ms"] > 0
        assert a.stats()["requests_served"] == 6
        with pytest.raises(ValueError, match="empty"):
            a.submit_many(["ok", "  "])

        def broken(*args, **kwargs):
            raise RuntimeError("reader exploded")

        monkeypatch.setattr(a, "_predict", broken)
        with pytest.raises(RuntimeError, match="exploded"):
            a.ask_many(["one", "two"])
        assert a.stats()["requests_failed"] == 2

        release = threading.Event()
        monkeypatch.setattr(a, "_predict", lambda *args, **kw: [] if release.wait(30) else [])
        blocker = a.submit_many(["blocks the worker"])[0]
        deadline = time.monotonic() + 30
        while not blocker.running() and time.monotonic() < deadline:  # the worker holds it: the next one waits
            time.sleep(0.01)
        with pytest.raises(TimeoutError):
            a.ask("waits too long", timeout=0.2)
        assert a.stats()["requests_failed"] == 3  # cancelled before the worker took it
        release.set()
        blocker.exception(30)
    assert a.stats()["requests_served"] == 6


def test_reload_swaps_index_atomically_under_load(tmp_path):
    run = build_run(tmp_path / "r")
    with Answerer(run, max_k=6) as a:
        old = a.corpus
        assert a.reload() is False  # nothing newer
        subset = corpus_subset(run, tmp_path / "sub", keep=12)
        results, errors, stop = [], [], threading.Event()

        def hammer(i):
            while not stop.is_set():
                try:
                    results.append(a.ask(QUESTIONS[i % len(QUESTIONS)], k=6))
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        add_corpus_version(run, subset, progress=False, bf16=False)
        assert a.reload() is True
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        new = a.corpus
        assert not errors
        assert new.manifest.version == old.manifest.version + 1 and new.store.corpus_hash == subset.corpus_hash
        assert a.stats()["docs"] == 12 and a.stats()["reloads"] == 1
        by_hash = {c.store.corpus_hash: c for c in (old, new)}
        seen = set()
        for out in results:  # every answer is entirely from one version: never a mix
            check_record(out, 6, by_hash[out["corpus_hash"]])
            seen.add(out["corpus_hash"])
        assert results[-1]["corpus_hash"] == new.store.corpus_hash
        assert a.reload() is False


def test_watch_picks_up_new_version(tmp_path):
    run = build_run(tmp_path / "r")
    with Answerer(run) as a:
        a.watch(0.05)
        add_corpus_version(run, corpus_subset(run, tmp_path / "sub", keep=5), progress=False, bf16=False)
        deadline = time.time() + 10
        while a.index_version == 1 and time.time() < deadline:
            time.sleep(0.02)
        assert a.index_version == 2
        assert a.ask("q")["index_version"] == 2 and a.stats()["docs"] == 5


def test_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a realm QA run folder"):
        Answerer(tmp_path)


def test_highlight_and_format():
    assert highlight("born in Varnholt.", 8, 16) == "born in [[Varnholt]]."
    assert highlight("born in Varnholt.", 8, 16, "ansi") == "born in \033[1mVarnholt\033[0m."
    assert highlight("abc", None, None) == "abc" and highlight("abc", 2, 9) == "abc"
    out = {"answer": "Varnholt", "score": 1.5, "index_version": 2, "corpus_hash": "h", "k": 2, "evidence": [
        {"rank": 1, "title": "Elsa", "doc_id": "a", "retrieval_prob": 0.75, "text": "born in Varnholt.",
         "answer_start": 8, "answer_end": 16},
        {"rank": 2, "title": "B", "doc_id": "b", "retrieval_prob": 0.25, "text": "x", "answer_start": None,
         "answer_end": None}]}
    text = format_answer(out)
    assert "answer: Varnholt" in text and "born in [[Varnholt]]." in text and "p=0.750" in text
    assert "<- answer" in text.splitlines()[3] and "[2] B (b)" in text
    assert "(none" in format_answer({**out, "answer": None, "score": None, "evidence": []})


def _cli(argv):
    from realm.serving.cli_commands import register, register_index_update

    parser = argparse.ArgumentParser(prog="realm")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    register_index_update(sub.add_parser("index").add_subparsers(dest="index_command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_ask(run, capsys):
    assert _cli(["ask", str(run), QUESTIONS[0], "--k", "2", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("answer: ") and "top-2 evidence" in text and "[[" in text  # not a TTY: brackets
    assert _cli(["ask", str(run), QUESTIONS[0], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["k"] == 3 and len(out["evidence"]) == 3
    assert _cli(["ask", str(run), "   "]) == 2
    with pytest.raises(SystemExit):
        _cli(["ask", str(run), "q", "--k", "0"])


def test_cli_serve_defaults_to_loopback():
    from realm.serving.cli_commands import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "RUN"])
    assert (args.host, args.port, args.max_question_chars, args.max_k) == ("127.0.0.1", 8000, 500, 20)


def test_run_copy_is_self_contained(run, tmp_path):
    """A run folder can be moved: everything is addressed relative to it."""
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    with Answerer(moved) as a:
        assert a.corpus.store.folder.resolve().is_relative_to(moved.resolve())
        assert a.ask("q")["answer"] is not None


def test_retrieval_is_built_once_per_index_version(tmp_path, monkeypatch):
    """Search structures are built when a version is loaded, never per request; the run's backend is used."""
    import realm.serving.answer as answer_mod
    from realm.index.faiss_index import FaissIndex
    from realm.serving.qa_run import run_backend

    run = build_run(tmp_path / "r")
    info = json.loads((run / "run.json").read_text())
    assert run_backend(info) == "exact"
    (run / "run.json").write_text(json.dumps(info | {"backend": "faiss-hnsw"}))  # as `index.backend=faiss-hnsw`
    built = []
    real = answer_mod.DenseRetrieval
    monkeypatch.setattr(answer_mod, "DenseRetrieval", lambda *a, **kw: built.append(1) or real(*a, **kw))
    with Answerer(run, max_k=4) as a:
        first = a.retrieval
        assert isinstance(first.index, FaissIndex) and first.index.kind == "hnsw"
        a.ask_many(QUESTIONS, k=4)
        a.ask(QUESTIONS[0])
        assert a.retrieval is first and len(built) == 1
        add_corpus_version(run, corpus_subset(run, tmp_path / "sub", keep=10), progress=False, bf16=False)
        assert a.reload() and len(built) == 2 and a.retrieval is not first
        assert len(a.retrieval.index) == len(a.corpus.store) and a.retrieval.store is a.corpus.store
        a.ask(QUESTIONS[1])
        assert len(built) == 2
    (run / "run.json").write_text(json.dumps(info | {"backend": "annoy"}))
    with pytest.raises(ValueError, match="unknown backend"):
        Answerer(run)
