"""The question-answering service object behind ``realm ask`` and ``realm serve``.

:class:`Answerer` loads a servable run folder (:mod:`realm.serving.qa_run`) once: the retriever's
query encoder, the span reader, the current :class:`~realm.serving.qa_run.IndexedCorpus` (a consistent
corpus + embeddings pair) and, built once per index version, its :class:`realm.retrieval.DenseRetrieval`
(the search backend ``run.json`` names). :meth:`Answerer.ask` retrieves the top-k blocks, reads them and
returns the best span with its evidence (:func:`realm.evaluation.qa.predict` does the work, so serving
and evaluation share one code path).

Concurrency: one worker thread owns the models. :meth:`~Answerer.ask` enqueues the question and waits;
the worker takes every question waiting at that moment (up to ``max_batch``), groups them by ``k`` and
answers each group in one batched forward pass. At low load a question is answered alone (no added
wait); under load, batching raises throughput. Nothing else touches the models, so ``ask`` is safe
from any number of threads.

Index updates: :meth:`~Answerer.reload` loads the version ``RUN/index/LATEST`` names and builds its
retrieval, fully, before swapping the pair in with one reference assignment; a batch in flight keeps the
pair it started with, so a request never mixes two corpus versions. Nothing is rebuilt per request. :meth:`~Answerer.watch` polls ``LATEST`` (at most once per
interval) and reloads when it changes.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realm.data.qa import QAExample
from realm.index.store import IndexCorruptError, version_dir
from realm.retrieval import DenseRetrieval
from realm.serving.formatting import format_answer, highlight  # noqa: F401 - re-exported (realm ask, tests)
from realm.serving.qa_run import IndexedCorpus, current_version, read_run_info, run_backend

log = logging.getLogger(__name__)

DEFAULT_MAX_K = 20
LATENCY_WINDOW = 1000  # requests kept for the latency percentiles


@dataclass(frozen=True)
class Served:
    """What one index version serves with: the corpus + embeddings pair and the retrieval over it."""

    corpus: IndexedCorpus
    retrieval: DenseRetrieval


class Answerer:
    """Answer questions from a run folder; see the module docstring.

    ``max_k``: the largest ``k`` :meth:`ask` accepts (requests above it raise ``ValueError``).
    ``default_k``: used when ``ask`` gets ``k=None`` (default: the run's ``top_k``, capped at ``max_k``).
    ``max_batch``: the most questions answered in one forward pass (1 = no batching).
    """

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu", max_k: int = DEFAULT_MAX_K,
                 default_k: int | None = None, max_batch: int = 16, bf16: bool = False,
                 latency_window: int = LATENCY_WINDOW):
        from realm.models.reader import SpanReader
        from realm.models.retriever import Retriever

        self.run_dir = Path(run_dir)
        self.info = read_run_info(self.run_dir)
        if max_k < 1:
            raise ValueError(f"max_k must be >= 1, got {max_k}")
        self.max_k = int(max_k)
        self.default_k = min(int(default_k or self.info.get("top_k") or 5), self.max_k)
        self.max_batch = max(1, int(max_batch))
        self.device = torch.device(device)
        self.bf16 = bf16
        self.backend = run_backend(self.info)
        self.retriever = Retriever.load(self.run_dir / "retriever", map_location=self.device).eval()
        self.reader = SpanReader.load(self.run_dir / "reader", map_location=self.device).eval()
        self._live = self._load()
        self.problem: str | None = None  # why the newest index is not served (for /health); None when all is well
        self._reload_lock = threading.Lock()  # one reload at a time (the swap itself is one assignment)
        self._stats_lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._served = 0
        self._failed = 0
        self._reloads = 0
        self._started = time.time()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="realm-answerer", daemon=True)
        self._worker.start()
        self._watcher: threading.Thread | None = None
        self._stop_watch = threading.Event()

    # ------------------------------------------------------------------ loading
    def _load(self) -> Served:
        """The newest index version, its corpus and its retrieval, completely built."""
        # checksums verified; paths confined to the run folder
        corpus = IndexedCorpus.load(self.run_dir)
        store = corpus.store
        _ = store.docs, store.tokenizer  # load lazily-read parts now, not on the first request
        bad = int((~np.isfinite(corpus.embeddings)).sum())
        if bad:  # a diverged encoder writes NaN with valid checksums: refuse rather than answer from it
            raise IndexCorruptError(f"{version_dir(self.run_dir / 'index', corpus.manifest.version) / 'embeddings.npy'}: "
                                    f"{bad} non-finite values; this index cannot be served")
        if corpus.embeddings.shape[1] != self.retriever.query.dense.out_features:
            raise ValueError(f"{self.run_dir}: index v{corpus.manifest.version} has dim {corpus.embeddings.shape[1]}, "
                             f"the query encoder {self.retriever.query.dense.out_features}")
        # the search backend is built here, once per version, over the embeddings already on the device
        retrieval = DenseRetrieval(self.retriever, store, corpus.embeddings, self.backend, self.device, self.bf16)
        return Served(corpus, retrieval)

    @property
    def corpus(self) -> IndexedCorpus:
        return self._live.corpus

    @property
    def retrieval(self) -> DenseRetrieval:
        return self._live.retrieval

    @property
    def index_version(self) -> int:
        return self._live.corpus.manifest.version

    def reload(self) -> bool:
        """Serve the index version ``RUN/index/LATEST`` names if it is not the one served; True if swapped.

        The new (corpus, embeddings) pair is loaded completely before the swap; on any error the old one
        stays in service and the error propagates.
        """
        with self._reload_lock:
            latest = current_version(self.run_dir)
            if latest is None or latest == self.index_version:
                return False
            try:
                new = self._load()
            except Exception as e:
                self.problem = f"index v{latest} could not be loaded, still serving v{self.index_version}: {e}"
                raise
            self.problem = None
            if new.corpus.manifest.version == self.index_version:
                return False  # LATEST moved back between the two reads
            old = self._live.corpus.manifest
            self._live = new  # atomic: a batch in flight keeps the reference it took
            with self._stats_lock:
                self._reloads += 1
            log.info("index v%d (corpus %s) -> v%d (corpus %s)", old.version, old.corpus_hash,
                     new.corpus.manifest.version, new.corpus.manifest.corpus_hash)
            return True

    def watch(self, interval: float = 1.0) -> None:
        """Poll ``RUN/index/LATEST`` every ``interval`` seconds (in a daemon thread) and reload on change."""
        if self._watcher is not None:
            return
        self._stop_watch.clear()
        latest = self.run_dir / "index" / "LATEST"

        def loop():
            seen = _file_key(latest)
            while not self._stop_watch.wait(interval):
                key = _file_key(latest)
                if key == seen:
                    continue
                seen = key
                try:
                    self.reload()
                except Exception:  # keep serving the old version; try again on the next change
                    log.exception("reload after a change of %s failed", latest)

        self._watcher = threading.Thread(target=loop, name="realm-index-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._stop_watch.set()
            self._watcher.join(timeout=5)
            self._watcher = None

    def close(self) -> None:
        """Stop the watcher and the worker (questions already queued are answered first)."""
        self.stop_watching()
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=30)

    def __enter__(self) -> "Answerer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ asking
    def check_k(self, k: int | None) -> int:
        if k is None:
            return self.default_k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer, got {type(k).__name__}")
        if not 1 <= k <= self.max_k:
            raise ValueError(f"k must be between 1 and {self.max_k}, got {k}")
        return int(k)

    def ask(self, question: str, k: int | None = None, timeout: float | None = None) -> dict:
        """Answer one question; see :func:`answer_record` for the fields. Thread-safe."""
        return self.ask_many([question], k, timeout)[0]

    def ask_many(self, questions: list[str], k: int | None = None, timeout: float | None = None) -> list[dict]:
        """Answer ``questions`` (in order). They are queued together, so the worker reads them in forward
        passes of up to ``max_batch`` questions. Thread-safe; ``timeout`` applies to each answer."""
        futures = self.submit_many(questions, k)
        outs = []
        try:
            for fut in futures:
                outs.append(fut.result(timeout))
        except TimeoutError:  # the worker counts what it failed itself
            with self._stats_lock:
                self._failed += sum(f.cancel() for f in futures[len(outs):])
            raise
        return outs

    def submit_many(self, questions: list[str], k: int | None = None) -> list[Future]:
        """Queue ``questions`` (checked here) and return at once: one future per question, whose result is
        :meth:`ask`'s record. For callers that must not block a thread (the HTTP service awaits them)."""
        for question in questions:
            if not isinstance(question, str):
                raise TypeError(f"question must be a string, got {type(question).__name__}")
            if not question.strip():
                raise ValueError("question is empty")
        k = self.check_k(k)
        if self._closed:
            raise RuntimeError("this Answerer is closed")
        t0 = time.perf_counter()
        futures = [Future() for _ in questions]
        requests = [(q.strip(), k, fut, t0) for q, fut in zip(questions, futures)]
        for start in range(0, len(requests), self.max_batch):  # one queue entry = one forward pass at most
            self._queue.put(requests[start:start + self.max_batch])
        return futures

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = list(item)  # queue entries are lists of (question, k, future, time queued)
            stop = False
            while len(batch) < self.max_batch:  # everything already waiting, without waiting for more
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.extend(nxt)
            groups: dict[int, list] = {}
            for it in batch:
                groups.setdefault(it[1], []).append(it)
            served = self._live  # one consistent (corpus, embeddings, retrieval) for the whole batch
            for k, items in groups.items():
                live = [it for it in items if it[2].set_running_or_notify_cancel()]
                for start in range(0, len(live), self.max_batch):
                    self._answer(served, live[start:start + self.max_batch], k)
            if stop:
                return

    def _answer(self, served: Served, items: list, k: int) -> None:
        """One forward pass for ``items`` ((question, k, future, time queued)); results or the error go to the
        futures, each record with its latency (queued to answered) and counted in the stats."""
        try:
            recs = [answer_record(rec, served.corpus, k)
                    for rec in self._predict(served, [it[0] for it in items], k)]
            if len(recs) != len(items):  # never leave a caller waiting on a future nobody will set
                raise RuntimeError(f"the reader returned {len(recs)} answers for {len(items)} questions")
        except BaseException as e:  # noqa: BLE001 - handed to the waiting callers
            log.exception("answering %d question(s) failed", len(items))
            with self._stats_lock:
                self._failed += len(items)
            for it in items:
                if not it[2].done():
                    it[2].set_exception(e)
            return
        now = time.perf_counter()
        latencies = [now - it[3] for it in items]
        for rec, dt in zip(recs, latencies):
            rec["latency_ms"] = round(dt * 1000, 3)
        with self._stats_lock:
            self._served += len(recs)
            self._latencies.extend(latencies)
        for it, rec in zip(items, recs):
            it[2].set_result(rec)

    def _predict(self, served: Served, questions: list[str], k: int) -> list[dict]:
        from realm.evaluation.qa import predict

        examples = [QAExample(q, ()) for q in questions]
        return predict(served.retrieval, self.reader, examples, k=k, batch_size=len(examples), device=self.device,
                       bf16=self.bf16)

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict:
        """Index version, corpus size, requests served and latency percentiles (ms, rolling window)."""
        corpus = self._live.corpus
        with self._stats_lock:
            lat = np.array(self._latencies, dtype=np.float64) * 1000
            served, failed, reloads = self._served, self._failed, self._reloads
        pct = {f"p{p}": (round(float(np.percentile(lat, p)), 3) if lat.size else None) for p in (50, 95, 99)}
        return {
            "index_version": corpus.manifest.version,
            "corpus_hash": corpus.manifest.corpus_hash,
            "blocks": len(corpus.store),
            "docs": int(corpus.store.manifest["num_docs"]),
            "requests_served": served,
            "requests_failed": failed,
            "reloads": reloads,
            "latency_ms": {**pct, "window": int(lat.size)},
            "uptime_s": round(time.time() - self._started, 1),
            "default_k": self.default_k,
            "max_k": self.max_k,
        }


def answer_record(rec: dict, corpus: IndexedCorpus, k: int) -> dict:
    """A :func:`realm.evaluation.qa.predict` record -> the service's answer.

    ``{question, answer, score, k, index_version, corpus_hash, evidence: [{rank, block, doc_id, title, text,
    retrieval_score, retrieval_prob, answer_start, answer_end}]}``. ``answer`` is None when nothing readable
    was retrieved; otherwise ``evidence[i].text[answer_start:answer_end] == answer`` for exactly the one
    evidence block the answer was read from (the others have ``answer_start = answer_end = None``).
    ``score`` is the joint logit (span + retrieval) of the answer.
    """
    evidence = []
    for rank, e in enumerate(rec["evidence"], start=1):
        own = rec["answer_start"] >= 0 and e["block"] == rec["block"]
        evidence.append({"rank": rank, "block": e["block"], "doc_id": e["doc_id"], "title": e["title"],
                         "text": e["text"], "retrieval_score": _finite(e["retrieval_score"]),
                         "retrieval_prob": _finite(e["retrieval_prob"]),
                         "answer_start": rec["answer_start"] if own else None,
                         "answer_end": rec["answer_end"] if own else None})
    found = rec["answer_start"] >= 0
    return {"question": rec["question"], "answer": rec["prediction"] if found else None,
            "score": _finite(rec["score"]) if found else None, "k": k,
            "index_version": corpus.manifest.version, "corpus_hash": corpus.manifest.corpus_hash,
            "evidence": evidence}


def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _file_key(path: Path):
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size, path.read_text()
    except FileNotFoundError:
        return None
