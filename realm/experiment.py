"""``realm experiment``: the paper's comparison on any corpus + QA files, same data, same budget.

Stages (each a resumable run folder under ``OUT/stages/``):
  corpus       documents -> WordPiece -> blocks
  mlm_warm     plain MLM on the corpus for ``experiment.mlm_steps`` (BERT's role in the paper)
  mlm_baseline the same, continued for ``pretrain.steps`` more steps: the baselines' encoder, so that
               every system sees the same number of pretraining steps
  ict          ICT warm start of the retriever
  realm        ICT retriever + mlm_warm encoder -> REALM pretraining for ``pretrain.steps`` steps
Systems (each fine-tuned for ``finetune.steps`` on the same training questions):
  closed_book  mlm_baseline answering from the question alone (answer slots filled by the MLM head)
  bm25_reader  BM25 top-k + a reader from mlm_baseline
  ict_reader   ICT retriever + a reader from mlm_baseline (ORQA)
  realm        REALM retriever + a reader from the REALM knowledge-augmented encoder
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from realm.config import RunConfig, apply_override, save_config

log = logging.getLogger(__name__)

SYSTEMS = ("closed_book", "bm25_reader", "ict_reader", "realm")
# name -> (label, overrides, whether REALM pretraining is redone: False = reuse the realm system's)
ABLATIONS = {
    "uniform_masks": ("random uniform masks", ["pretrain.masking=uniform"], True),
    "span_masks": ("random span masks", ["pretrain.masking=span"], True),
    "stale_index": ("stale index", [], True),  # refresh interval x experiment.stale_factor (set below)
    "no_cf_answers": ("no counterfactual answers in fine-tuning", ["finetune.counterfactual=0"], False),
}


@dataclass
class SystemResult:
    system: str
    dev_em: float | None = None
    test_em: float | None = None
    zero_shot_recall5: float | None = None  # dev, before fine-tuning
    finetuned_recall5: float | None = None  # dev, the blocks the fine-tuned reader read
    test_recall5: float | None = None
    wall_s: float = 0.0
    reading: dict = field(default_factory=dict)  # the reading probe of the encoder its reader started from
    notes: dict = field(default_factory=dict)


def _with(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    new = copy.deepcopy(cfg)
    for o in overrides:
        apply_override(new, o)
    return new


class Experiment:
    def __init__(self, cfg: RunConfig, corpus: Path, train: Path, dev: Path, test: Path, out: Path,
                 progress: bool = True):
        from realm.data.qa import read_qa

        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out / "config.yaml")
        self.stages = self.out / "stages"
        self.timings: dict[str, float] = {}
        self.corpus_path = Path(corpus)
        self.qa = {"train": read_qa(train), "dev": read_qa(dev), "test": read_qa(test)}
        self.store = self._timed("corpus", self._corpus)

    def _timed(self, name, fn, *args, **kwargs):
        t0 = time.time()
        result = fn(*args, **kwargs)
        self.timings[name] = round(time.time() - t0, 1)
        log.info("stage %s: %.1f s", name, self.timings[name])
        return result

    # ---- shared stages ------------------------------------------------------------------------
    def _corpus(self):
        from realm.data.blocks import BlockStore
        from realm.data.corpus import build_corpus

        folder = self.out / "corpus"
        if (folder / "manifest.json").exists():
            return BlockStore(folder)
        return build_corpus(self.corpus_path, folder, self.cfg.corpus, progress=self.progress)[0]

    def mlm(self, name: str, steps: int):
        from realm.models.mlm import KnowledgeAugEncoder
        from realm.training.encoder_mlm import mlm_pretrain

        folder = self.stages / name
        if (folder / "encoder" / "config.json").exists():
            return KnowledgeAugEncoder.load(folder / "encoder")
        cfg = _with(self.cfg, [f"pretrain.steps={steps}"])
        return self._timed(name, mlm_pretrain, cfg, self.store, folder, progress=self.progress)

    # ---- the shared encoder (BERT's role): plain MLM, or the reading warm start --------------------
    @property
    def reading_on(self) -> bool:
        return self.cfg.reading.steps > 0

    def reading_data(self):
        from realm.training.reading import ReadingData

        if getattr(self, "_reading_data", None) is None:
            self._reading_data = ReadingData(self.store, self.cfg.retriever.query_len, progress=False,
                                             probe_rows=self.cfg.reading.probe_rows)
        return self._reading_data

    def reading(self, name: str, cfg: RunConfig, encoder=None):
        from realm.models.mlm import KnowledgeAugEncoder
        from realm.training.reading import reading_warmup

        folder = self.stages / name
        if (folder / "encoder" / "config.json").exists():
            return KnowledgeAugEncoder.load(folder / "encoder")
        return self._timed(name, reading_warmup, cfg, self.store, folder, encoder=encoder, progress=self.progress,
                           data=self.reading_data())

    def shared_encoder(self):
        """Where every system's encoder starts (BERT's role in the paper)."""
        if self.reading_on:
            return self.reading("reading", self.cfg)
        return self.mlm("mlm_warm", self.cfg.experiment.mlm_steps)

    def baseline_encoder(self):
        """The shared encoder, trained for ``pretrain.steps`` more steps without retrieval: the same budget as REALM."""
        if not self.reading_on:
            return self.mlm("mlm_baseline", self.cfg.experiment.mlm_steps + self.cfg.pretrain.steps)
        pc = self.cfg.pretrain
        cfg = _with(self.cfg, [f"reading.steps={pc.steps}", f"reading.lr={pc.lr}", f"reading.warmup={pc.warmup}",
                               "reading.curriculum_start=0", "reading.probe_every=0"])
        return self.reading("reading_baseline", cfg, encoder=copy.deepcopy(self.shared_encoder()))

    def probe(self, encoder) -> dict:
        """The reading probe of an encoder (``probe/*``: advantages in nats, accuracies)."""
        return self.reading_data().probe.measure(encoder, self.cfg.device)

    def dev_recall(self, retriever) -> dict:
        from realm.evaluation.retrieval import evaluate_retrieval
        from realm.retrieval import DenseRetrieval

        search = DenseRetrieval.from_corpus(retriever, self.store, self.cfg.index.backend, self.cfg.device,
                                            block_bf16=self.cfg.index.bf16)
        res = evaluate_retrieval(search, self.store, self.qa["dev"], ks=(1, 5, 20))
        return {k: v for k, v in res.items() if k.startswith("recall@")}

    def ict(self):
        from realm.models.retriever import Retriever
        from realm.training.ict import train_ict

        folder = self.stages / "ict"
        if (folder / "retriever" / "retriever.json").exists():
            return Retriever.load(folder / "retriever")
        return self._timed("ict", train_ict, self.cfg, self.store, folder, progress=self.progress)

    def realm_pretrain(self, name: str, cfg: RunConfig):
        from realm.models.mlm import KnowledgeAugEncoder
        from realm.models.retriever import Retriever
        from realm.training.pretrain import pretrain

        folder = self.stages / name
        if (folder / "encoder" / "config.json").exists() and (folder / "retriever" / "retriever.json").exists():
            return Retriever.load(folder / "retriever"), KnowledgeAugEncoder.load(folder / "encoder")
        self.ict()
        self.shared_encoder()
        retriever = Retriever.load(self.stages / "ict" / "retriever")
        encoder = KnowledgeAugEncoder.load(self.stages / ("reading" if self.reading_on else "mlm_warm") / "encoder")
        reading = self.reading_data() if (cfg.pretrain.reading_rows or cfg.pretrain.probe_every
                                           or cfg.pretrain.counterfactual) else None
        return self._timed(name, pretrain, cfg, self.store, folder, retriever=retriever, encoder=encoder,
                           progress=self.progress, evaluate=self.dev_recall if cfg.pretrain.probe_every else None,
                           reading=reading)

    # ---- evaluation helpers -------------------------------------------------------------------
    def zero_shot_recall(self, search) -> float:
        from realm.evaluation.retrieval import evaluate_retrieval

        return evaluate_retrieval(search, self.store, self.qa["dev"], ks=(5,))["recall@5"]

    def read_and_evaluate(self, name: str, reader, retriever=None, embeddings=None, bm25=None,
                          cfg: RunConfig | None = None) -> SystemResult:
        from realm.evaluation.qa import evaluate_qa
        from realm.retrieval import BM25Retrieval, DenseRetrieval
        from realm.training.finetune import finetune

        folder = self.stages / name
        mode = "bm25" if bm25 is not None else "dense"
        cfg = cfg or self.cfg
        summary = finetune(cfg, self.store, embeddings, retriever, reader, self.qa["train"], folder,
                           progress=self.progress, retrieval=mode, bm25=bm25)
        source = BM25Retrieval(self.store, bm25, self.cfg.device) if bm25 is not None else \
            DenseRetrieval(retriever, self.store, embeddings, cfg.index.backend, self.cfg.device)
        k, bs = self.cfg.reader.top_k, self.cfg.experiment.eval_batch_size
        dev = evaluate_qa(source, reader, self.qa["dev"], k=k, batch_size=bs, device=self.cfg.device,
                          predictions_path=folder / "dev_predictions.jsonl")
        test = evaluate_qa(source, reader, self.qa["test"], k=k, batch_size=bs, device=self.cfg.device,
                           predictions_path=folder / "test_predictions.jsonl")
        return SystemResult(name, dev_em=dev["exact_match"], test_em=test["exact_match"],
                            finetuned_recall5=dev.get(f"recall@{k}"), test_recall5=test.get(f"recall@{k}"),
                            notes={"no_correct_span_frac": summary.get("no_correct_span_frac")})

    def retrieval_table(self) -> list[dict]:
        """Zero-shot recall@k on dev: BM25, an untrained dense retriever, ICT, REALM (those that exist)."""
        import torch

        from realm.evaluation.retrieval import evaluate_retrieval
        from realm.models.retriever import Retriever
        from realm.retrieval import BM25Retrieval, DenseRetrieval

        tok = self.store.tokenizer
        ic = self.cfg.index
        torch.manual_seed(self.cfg.seed)
        candidates = [("BM25", BM25Retrieval(self.store)),
                      ("dense, untrained", DenseRetrieval.from_corpus(
                          Retriever.build(self.cfg.retriever, tok.vocab_size, tok.pad_id), self.store, ic.backend,
                          self.cfg.device, block_bf16=ic.bf16))]
        for label, folder in [("dense, ICT", self.stages / "ict" / "retriever"),
                              ("dense, ICT + REALM pretraining", self.stages / "realm_pretrain" / "retriever")]:
            if (folder / "retriever.json").exists():
                candidates.append((label, DenseRetrieval.from_corpus(folder, self.store, ic.backend, self.cfg.device,
                                                                     block_bf16=ic.bf16)))
        return [evaluate_retrieval(search, self.store, self.qa["dev"], name=label) for label, search in candidates]

    # ---- systems --------------------------------------------------------------------------------
    def closed_book(self) -> SystemResult:
        from realm.evaluation.closed_book import evaluate_closed_book
        from realm.training.closed_book import finetune_closed_book

        encoder = self.baseline_encoder()
        probe = self.probe(encoder) if self.reading_on else {}
        folder = self.stages / "closed_book"
        model = finetune_closed_book(self.cfg, self.store, encoder, self.qa["train"], folder, progress=self.progress)
        bs = self.cfg.experiment.eval_batch_size
        dev = evaluate_closed_book(model, self.store, self.qa["dev"], bs, self.cfg.device, folder / "dev_predictions.jsonl")
        test = evaluate_closed_book(model, self.store, self.qa["test"], bs, self.cfg.device, folder / "test_predictions.jsonl")
        return SystemResult("closed_book", dev_em=dev["em"], test_em=test["em"], reading=probe)

    def bm25_reader(self) -> SystemResult:
        from realm.index.bm25 import BM25Index
        from realm.models.reader import SpanReader
        from realm.retrieval import BM25Retrieval

        encoder = self.baseline_encoder()
        bm25 = BM25Index.build(self.store.search_texts())
        zero = self.zero_shot_recall(BM25Retrieval(self.store, bm25))
        probe = self.probe(encoder) if self.reading_on else {}
        reader = SpanReader.from_bert(encoder.bert, self.cfg.reader, self.cfg.retriever.query_len)
        res = self.read_and_evaluate("bm25_reader", reader, bm25=bm25)
        res.zero_shot_recall5 = zero
        res.reading = probe
        return res

    def dense_reader(self, name: str, retriever, encoder, cfg: RunConfig | None = None) -> SystemResult:
        from realm.index.build import embed_blocks
        from realm.models.reader import SpanReader
        from realm.retrieval import DenseRetrieval

        embeddings = embed_blocks(retriever.doc, self.store, batch_size=self.cfg.index.batch_size,
                                  bf16=self.cfg.index.bf16, device=self.cfg.device, progress=False)
        backend = (cfg or self.cfg).index.backend
        zero = self.zero_shot_recall(DenseRetrieval(retriever, self.store, embeddings, backend, self.cfg.device))
        probe = self.probe(encoder) if self.reading_on else {}
        reader = SpanReader.from_bert(encoder.bert, self.cfg.reader, self.cfg.retriever.query_len)
        res = self.read_and_evaluate(name, reader, retriever=retriever, embeddings=embeddings, cfg=cfg)
        res.zero_shot_recall5 = zero
        res.reading = probe
        return res

    def ict_reader(self) -> SystemResult:
        self.ict()
        from realm.models.retriever import Retriever

        encoder = self.baseline_encoder()
        return self.dense_reader("ict_reader", Retriever.load(self.stages / "ict" / "retriever"), encoder)

    def realm(self, name: str = "realm", overrides: list[str] | None = None, pretrain_stage: str | None = None
              ) -> SystemResult:
        cfg = _with(self.cfg, overrides or [])
        pretrain_stage = pretrain_stage or f"{name}_pretrain"
        retriever, encoder = self.realm_pretrain(pretrain_stage, cfg)
        res = self.dense_reader(name, retriever, encoder, cfg)
        if name == "realm":  # the servable model: `realm ask OUT/model "question"`
            from realm.models.reader import SpanReader
            from realm.models.retriever import Retriever
            from realm.serving.qa_run import export_qa_run

            folder = self.stages / name
            export_qa_run(self.out / "model", Retriever.load(folder / "retriever"), SpanReader.load(folder / "reader"),
                          self.store, top_k=self.cfg.reader.top_k, source=str(folder), bf16=self.cfg.index.bf16,
                          device=self.cfg.device, backend=self.cfg.index.backend)
        metrics = self.stages / pretrain_stage / "metrics.jsonl"
        if metrics.exists():
            from realm.training.logger import read_metrics

            rows = read_metrics(metrics)
            tail = rows[-max(1, len(rows) // 10):]
            res.notes["final_retrieval_utility"] = sum(r["retrieval/utility"] for r in tail) / len(tail)
            adv = [r["retrieval/evidence_advantage"] for r in tail if r.get("retrieval/evidence_advantage") is not None]
            res.notes["final_evidence_advantage"] = sum(adv) / len(adv) if adv else None
        return res


def run_experiment(cfg: RunConfig, corpus, train, dev, test, out, progress: bool = True) -> dict:
    """Run every system of ``cfg.experiment.systems`` (+ ablations); write results.json/.md/.png."""
    t_start = time.time()
    exp = Experiment(cfg, Path(corpus), Path(train), Path(dev), Path(test), Path(out), progress)
    systems = [s.strip() for s in cfg.experiment.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    ablations = [a.strip() for a in cfg.experiment.ablations.split(",") if a.strip()]
    unknown += [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown systems/ablations {unknown}; systems: {SYSTEMS}, ablations: {tuple(ABLATIONS)}")
    results: list[SystemResult] = []
    for name in systems:
        t0 = time.time()
        res = getattr(exp, name)()
        res.wall_s = round(time.time() - t0, 1)
        results.append(res)
        log.info("%s: %s", name, res)
    for ab in ablations:
        label, overrides, repretrain = ABLATIONS[ab]
        if ab == "stale_index":
            overrides = [f"pretrain.stale_factor={cfg.experiment.stale_factor}"]
        t0 = time.time()
        res = exp.realm(f"realm_{ab}", overrides, pretrain_stage=None if repretrain else "realm_pretrain")
        res.system = f"realm ({label})"
        res.wall_s = round(time.time() - t0, 1)
        results.append(res)
    retrieval = exp.retrieval_table()
    report = {"config": str(exp.out / "config.yaml"), "corpus": exp.store.manifest, "retrieval_dev": retrieval,
              "questions": {k: len(v) for k, v in exp.qa.items()}, "stage_seconds": exp.timings,
              "total_seconds": round(time.time() - t_start, 1), "systems": [r.__dict__ for r in results]}
    (exp.out / "results.json").write_text(json.dumps(report, indent=2))
    from realm.evaluation.retrieval import format_table

    table = results_table(results)
    retrieval_md = format_table(retrieval)
    (exp.out / "results.md").write_text(f"{table}\n\nZero-shot retrieval on the dev questions:\n\n{retrieval_md}\n")
    from realm.training.plots import plot_bars

    plot_bars([r.system for r in results], {"test EM": [100 * (r.test_em or 0) for r in results],
                                            "dev EM": [100 * (r.dev_em or 0) for r in results],
                                            "zero-shot R@5 (dev)": [None if r.zero_shot_recall5 is None else 100 * r.zero_shot_recall5
                                                                   for r in results]},
              exp.out / "results.png", title="realm experiment", ylabel="%")
    print(table)
    print("\nzero-shot retrieval, dev questions:\n" + retrieval_md)
    print(f"\nresults: {exp.out / 'results.json'}, {exp.out / 'results.md'}, {exp.out / 'results.png'} "
          f"(total {report['total_seconds']:.0f} s)")
    return report


def results_table(results: list[SystemResult]) -> str:
    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"

    def nats(x):
        return "–" if x is None else f"{x:+.2f}"

    lines = ["| system | test EM | dev EM | zero-shot R@5 (dev) | fine-tuned R@5 (dev) | reading advantage (nats) "
             "| wall time |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.system} | {pct(r.test_em)} | {pct(r.dev_em)} | {pct(r.zero_shot_recall5)} | "
                     f"{pct(r.finetuned_recall5)} | {nats(r.reading.get('probe/evidence_advantage'))} | "
                     f"{r.wall_s:.0f} s |")
    return "\n".join(lines)
