"""``realm experiment``: the paper's comparison on any corpus + QA files, with the same data and budget.

Read it top to bottom. Two tables come first: the systems and the ablations. Then come the stages they
are built from. Each stage is a resumable run folder under ``OUT/stages/``, reused when complete, and
returned as a model. Last is :func:`run_experiment`, which goes setup -> stages -> systems -> ablations
-> servable export -> report.

Stages:
  corpus            documents -> WordPiece -> blocks (``OUT/corpus``)
  reading           the shared encoder, in BERT's role. It is the reading warm start when ``reading.steps``
                    > 0; otherwise it is ``mlm_warm``, plain masked LM for ``experiment.mlm_steps``.
  reading_baseline  the shared encoder trained ``pretrain.steps`` more steps without retrieval. This is the
                    baselines' encoder, so every system gets the same pretraining budget. Without the warm
                    start the stage is called ``mlm_baseline``.
  ict               the ICT warm start of the retriever
  realm_pretrain    ICT retriever + shared encoder -> REALM pretraining for ``pretrain.steps`` steps

Each system's reader gets a fresh copy of its encoder. Its span head is initialised from ``cfg.seed``,
so a system scores the same whether it runs alone (``--systems ict_reader``) or after the others.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from realm.config import RunConfig, apply_override, save_config
from realm.data.blocks import BlockStore
from realm.data.corpus import build_corpus
from realm.data.qa import read_qa
from realm.evaluation.closed_book import evaluate_closed_book
from realm.evaluation.qa import evaluate_qa
from realm.evaluation.retrieval import evaluate_retrieval, format_table
from realm.evaluation.vocabulary import question_vocabulary
from realm.index.build import embed_blocks
from realm.models.bert import use_attention
from realm.models.mlm import KnowledgeAugEncoder
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever
from realm.retrieval import BM25Retrieval, DenseRetrieval
from realm.serving.qa_run import export_qa_run
from realm.serving.update_check import knowledge_update_check
from realm.training.closed_book import finetune_closed_book
from realm.training.encoder_mlm import mlm_pretrain
from realm.training.finetune import finetune
from realm.training.ict import train_ict
from realm.training.logger import read_metrics
from realm.training.plots import plot_bars
from realm.training.pretrain import pretrain
from realm.training.reading import ReadingData, reading_warmup

log = logging.getLogger(__name__)


# ---- what is compared --------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    """One row of the comparison: the encoder its reader starts from, and how it retrieves."""

    name: str
    encoder: str  # "baseline": the shared encoder + pretrain.steps without retrieval; "realm": REALM pretraining's
    retrieval: str  # "none" (closed book) | "bm25" | "ict" | "realm"


SYSTEMS = {s.name: s for s in (
    System("closed_book", encoder="baseline", retrieval="none"),  # answer slots filled from the question alone
    System("bm25_reader", encoder="baseline", retrieval="bm25"),
    System("ict_reader", encoder="baseline", retrieval="ict"),  # ORQA
    System("realm", encoder="realm", retrieval="realm"),
)}


@dataclass(frozen=True)
class Ablation:
    """A REALM variant: config overrides; ``repretrain=False`` reuses the realm system's pretraining."""

    label: str
    overrides: Callable[[RunConfig], list[str]]
    repretrain: bool = True


ABLATIONS = {
    "uniform_masks": Ablation("random uniform masks", lambda cfg: ["pretrain.masking=uniform"]),
    "span_masks": Ablation("random span masks", lambda cfg: ["pretrain.masking=span"]),
    "stale_index": Ablation("stale index", lambda cfg: [f"pretrain.stale_factor={cfg.experiment.stale_factor}"]),
    "no_cf_answers": Ablation("no counterfactual answers in fine-tuning", lambda cfg: ["finetune.counterfactual=0"],
                              repretrain=False),
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


def with_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    new = copy.deepcopy(cfg)
    for o in overrides:
        apply_override(new, o)
    return new


def load_encoder(folder: Path) -> KnowledgeAugEncoder:
    return KnowledgeAugEncoder.load(folder / "encoder")


def load_retriever(folder: Path) -> Retriever:
    return Retriever.load(folder / "retriever")


def fresh(model: torch.nn.Module) -> torch.nn.Module:
    """A trainable copy of a stage's model: stages hand out copies, since training changes a model in place."""
    model = copy.deepcopy(model)
    model.requires_grad_(True)
    return model


# ---- the stages -----------------------------------------------------------------------------------
class Stages:
    """The pretraining stages. Each runs once, or resumes or reuses ``OUT/stages/NAME``. Each returns its model."""

    def __init__(self, cfg: RunConfig, store: BlockStore, folder: Path, dev, progress: bool,
                 train_questions: Sequence[str] = ()):
        self.cfg, self.store, self.folder, self.dev, self.progress = cfg, store, folder, dev, progress
        self.train_questions = list(train_questions)  # their text only: ``reading.question_share``
        self.timings: dict[str, float] = {}
        self._models: dict[str, object] = {}
        self._reading_data: ReadingData | None = None

    def _once(self, name: str, marker: str, load: Callable, train: Callable):
        """The stage's model: trained by ``train(folder)``, or ``load(folder)`` when ``folder/marker`` exists.

        Either way its encoders run the configured attention kernel: a model read back from disk comes with
        torch's default, and in bf16 the kernels round differently, so a resumed run would embed and score
        otherwise than the run that trained it."""
        if name not in self._models:
            folder = self.folder / name
            if (folder / marker).exists():
                model = load(folder)
            else:
                t0 = time.time()
                model = train(folder)
                self.timings[name] = round(time.time() - t0, 1)
                log.info("stage %s: %.1f s", name, self.timings[name])
            for m in model if isinstance(model, tuple) else (model,):
                enc = self.cfg.retriever.encoder if isinstance(m, Retriever) else self.cfg.reader.encoder
                use_attention(m, enc.attention)
            self._models[name] = model
        return self._models[name]

    def has(self, name: str, marker: str) -> bool:
        """Did the stage run, here or in an earlier invocation?"""
        return name in self._models or (self.folder / name / marker).exists()

    @property
    def reading_on(self) -> bool:
        return self.cfg.reading.steps > 0

    @property
    def reading_data(self) -> ReadingData:
        if self._reading_data is None:
            self._reading_data = ReadingData(self.store, self.cfg.retriever.query_len, progress=False,
                                             probe_rows=self.cfg.reading.probe_rows,
                                             questions=self.train_questions if self.cfg.reading.question_share else ())
        return self._reading_data

    def probe(self, encoder: KnowledgeAugEncoder) -> dict:
        """The reading probe of an encoder (``probe/*``: advantages in nats, accuracies); {} without the warm start."""
        return self.reading_data.probe.measure(encoder, self.cfg.device) if self.reading_on else {}

    def dev_recall(self, retriever: Retriever) -> dict:
        """Zero-shot recall@{1,5,20} on dev: REALM pretraining's evaluation callback."""
        search = DenseRetrieval.from_corpus(retriever, self.store, self.cfg.index.backend, self.cfg.device,
                                            block_bf16=self.cfg.index.bf16)
        res = evaluate_retrieval(search, self.store, self.dev, ks=(1, 5, 20))
        return {k: v for k, v in res.items() if k.startswith("recall@")}

    # BERT's role: the reading warm start, or plain masked LM
    def shared_encoder(self) -> KnowledgeAugEncoder:
        if self.reading_on:
            return self._once("reading", "encoder/config.json", load_encoder,
                              lambda f: reading_warmup(self.cfg, self.store, f, progress=self.progress,
                                                       data=self.reading_data))
        cfg = with_overrides(self.cfg, [f"pretrain.steps={self.cfg.experiment.mlm_steps}"])
        return self._once("mlm_warm", "encoder/config.json", load_encoder,
                          lambda f: mlm_pretrain(cfg, self.store, f, progress=self.progress))

    def baseline_encoder(self) -> KnowledgeAugEncoder:
        """The shared encoder, trained for ``pretrain.steps`` more steps without retrieval: REALM's budget."""
        pc = self.cfg.pretrain
        if not self.reading_on:
            cfg = with_overrides(self.cfg, [f"pretrain.steps={self.cfg.experiment.mlm_steps + pc.steps}"])
            return self._once("mlm_baseline", "encoder/config.json", load_encoder,
                              lambda f: mlm_pretrain(cfg, self.store, f, progress=self.progress))
        cfg = with_overrides(self.cfg, [f"reading.steps={pc.steps}", f"reading.lr={pc.lr}",
                                        f"reading.warmup={pc.warmup}", "reading.curriculum_start=0",
                                        "reading.probe_every=0"])
        return self._once("reading_baseline", "encoder/config.json", load_encoder,
                          lambda f: reading_warmup(cfg, self.store, f, encoder=fresh(self.shared_encoder()),
                                                   progress=self.progress, data=self.reading_data))

    def ict(self) -> Retriever:
        return self._once("ict", "retriever/retriever.json", load_retriever,
                          lambda f: train_ict(self.cfg, self.store, f, progress=self.progress))

    def realm(self, name: str, cfg: RunConfig) -> tuple[Retriever, KnowledgeAugEncoder]:
        """REALM pretraining from the ICT retriever and the shared encoder: (retriever, encoder)."""
        def train(folder):
            pc = cfg.pretrain
            reading = self.reading_data if (pc.reading_rows or pc.probe_every or pc.counterfactual) else None
            return pretrain(cfg, self.store, folder, retriever=fresh(self.ict()), encoder=fresh(self.shared_encoder()),
                            progress=self.progress, evaluate=self.dev_recall if pc.probe_every else None,
                            reading=reading)

        def load(folder):
            return load_retriever(folder), load_encoder(folder)

        return self._once(name, "retriever/retriever.json", load, train)


# ---- the systems ----------------------------------------------------------------------------------
class Systems:
    """Fine-tunes and evaluates one system at a time, on the same questions and the same budget."""

    def __init__(self, cfg: RunConfig, store: BlockStore, stages: Stages, qa: dict, folder: Path, progress: bool):
        self.cfg, self.store, self.stages, self.qa = cfg, store, stages, qa
        self.folder, self.progress = folder, progress

    def zero_shot_recall(self, retrieval) -> float:
        return evaluate_retrieval(retrieval, self.store, self.qa["dev"], ks=(5,))["recall@5"]

    def retrieval(self, system: System, cfg: RunConfig, retriever: Retriever | None):
        if system.retrieval == "bm25":
            return BM25Retrieval(self.store, device=cfg.device)
        embeddings = embed_blocks(retriever.doc, self.store, batch_size=cfg.index.batch_size, bf16=cfg.index.bf16,
                                  device=cfg.device, progress=False)
        return DenseRetrieval(retriever, self.store, embeddings, cfg.index.backend, cfg.device, cfg.finetune.bf16)

    def closed_book(self, cfg: RunConfig) -> SystemResult:
        encoder = fresh(self.stages.baseline_encoder())
        probe = self.stages.probe(encoder)
        folder = self.folder / "closed_book"
        model = finetune_closed_book(cfg, self.store, encoder, self.qa["train"], folder, progress=self.progress)
        bs = cfg.experiment.eval_batch_size
        em = {split: evaluate_closed_book(model, self.store, self.qa[split], bs, cfg.device,
                                          folder / f"{split}_predictions.jsonl")["exact_match"]
              for split in ("dev", "test")}
        return SystemResult("closed_book", dev_em=em["dev"], test_em=em["test"], reading=probe)

    def reader_system(self, system: System, cfg: RunConfig, name: str, pretrain_stage: str = "realm_pretrain"
                      ) -> tuple[SystemResult, Retriever | None, SpanReader]:
        """A retrieve-then-read system: (result, its fine-tuned retriever or None for BM25, its reader)."""
        if system.encoder == "realm":
            retriever, encoder = (fresh(m) for m in self.stages.realm(pretrain_stage, cfg))
        else:
            encoder = fresh(self.stages.baseline_encoder())
            retriever = fresh(self.stages.ict()) if system.retrieval == "ict" else None
        retrieval = self.retrieval(system, cfg, retriever)
        zero = self.zero_shot_recall(retrieval)
        probe = self.stages.probe(encoder)
        torch.manual_seed(cfg.seed)  # the span head's initialisation does not depend on what ran before
        reader = SpanReader.from_bert(encoder.bert, cfg.reader, cfg.retriever.query_len)
        folder = self.folder / name
        summary = finetune(cfg, retrieval, reader, self.qa["train"], folder, progress=self.progress)
        k, bs = cfg.reader.top_k, cfg.experiment.eval_batch_size
        scores = {split: evaluate_qa(retrieval, reader, self.qa[split], k=k, batch_size=bs, device=cfg.device,
                                     predictions_path=folder / f"{split}_predictions.jsonl")
                  for split in ("dev", "test")}
        res = SystemResult(name, dev_em=scores["dev"]["exact_match"], test_em=scores["test"]["exact_match"],
                           zero_shot_recall5=zero, finetuned_recall5=scores["dev"].get(f"recall@{k}"),
                           test_recall5=scores["test"].get(f"recall@{k}"), reading=probe,
                           notes={"no_correct_span_frac": summary.get("no_correct_span_frac")})
        if system.encoder == "realm":
            res.notes.update(pretraining_notes(self.stages.folder / pretrain_stage / "metrics.jsonl"))
        return res, retriever, reader

    def retrieval_table(self) -> list[dict]:
        """Zero-shot recall@k on dev: BM25, an untrained dense retriever, ICT, REALM (the stages that ran)."""
        cfg, tok = self.cfg, self.store.tokenizer
        torch.manual_seed(cfg.seed)
        untrained = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
        candidates = [("BM25", BM25Retrieval(self.store)), ("dense, untrained", untrained)]
        if self.stages.has("ict", "retriever/retriever.json"):
            candidates.append(("dense, ICT", self.stages.ict()))
        if self.stages.has("realm_pretrain", "retriever/retriever.json"):
            candidates.append(("dense, ICT + REALM pretraining", self.stages.realm("realm_pretrain", cfg)[0]))
        table = []
        for label, source in candidates:
            if isinstance(source, Retriever):
                source = DenseRetrieval.from_corpus(source, self.store, cfg.index.backend, cfg.device,
                                                    block_bf16=cfg.index.bf16)
            table.append(evaluate_retrieval(source, self.store, self.qa["dev"], name=label))
        return table


def pretraining_notes(metrics_path: Path) -> dict:
    """REALM pretraining's last 10% of steps: mean retrieval utility and evidence advantage."""
    if not metrics_path.exists():
        return {}
    rows = read_metrics(metrics_path)
    tail = rows[-max(1, len(rows) // 10):]
    adv = [r["retrieval/evidence_advantage"] for r in tail if r.get("retrieval/evidence_advantage") is not None]
    return {"final_retrieval_utility": sum(r["retrieval/utility"] for r in tail) / len(tail),
            "final_evidence_advantage": sum(adv) / len(adv) if adv else None}


def _names(csv: str, known: dict, what: str) -> list[str]:
    names = [s.strip() for s in csv.split(",") if s.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {tuple(known)}")
    return names


# ---- the recipe -----------------------------------------------------------------------------------
def run_experiment(cfg: RunConfig, corpus, train, dev, test, out, progress: bool = True) -> dict:
    """Run the systems of ``cfg.experiment.systems`` and then the ablations.

    Writes results.json, results.md and results.png to ``out``. The realm system is also exported as
    the servable ``OUT/model``.
    """
    # ---- setup
    t_start = time.time()
    out = Path(out)
    systems = _names(cfg.experiment.systems, SYSTEMS, "systems")
    ablations = _names(cfg.experiment.ablations, ABLATIONS, "ablations")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    qa = {"train": read_qa(train), "dev": read_qa(dev), "test": read_qa(test)}
    t0 = time.time()
    store = BlockStore(out / "corpus") if (out / "corpus" / "manifest.json").exists() else \
        build_corpus(Path(corpus), out / "corpus", cfg.corpus, progress=progress)[0]
    corpus_s = round(time.time() - t0, 1)
    stages = Stages(cfg, store, out / "stages", qa["dev"], progress, [e.question for e in qa["train"]])
    run = Systems(cfg, store, stages, qa, out / "stages", progress)

    # ---- systems, then ablations
    results: list[SystemResult] = []
    servable = None
    for name in systems:
        t0 = time.time()
        if name == "closed_book":
            res = run.closed_book(cfg)
        else:
            res, retriever, reader = run.reader_system(SYSTEMS[name], cfg, name)
            if name == "realm":
                servable = retriever, reader
        res.wall_s = round(time.time() - t0, 1)
        results.append(res)
        log.info("%s: %s", name, res)
    for name in ablations:
        ab = ABLATIONS[name]
        t0 = time.time()
        stage = f"realm_{name}_pretrain" if ab.repretrain else "realm_pretrain"
        res, _, _ = run.reader_system(SYSTEMS["realm"], with_overrides(cfg, ab.overrides(cfg)), f"realm_{name}", stage)
        res.system = f"realm ({ab.label})"
        res.wall_s = round(time.time() - t0, 1)
        results.append(res)

    # ---- the servable model: `realm ask OUT/model "question"`
    if servable is not None:
        export_qa_run(out / "model", *servable, store, top_k=cfg.reader.top_k, source=str(out / "stages" / "realm"),
                      bf16=cfg.index.bf16, device=cfg.device, backend=cfg.index.backend)

    # ---- knowledge update: on the built-in world, edit facts of the servable model's corpus, re-index, ask
    update = None
    world_dir = Path(corpus).parent
    if servable is not None and (world_dir / "world.json").exists():
        t0 = time.time()
        update = knowledge_update_check(out / "model", world_dir, out / "stages" / "knowledge_update", edits=20)
        update = {**{k: v for k, v in update.items() if k != "examples"}, "seconds": round(time.time() - t0, 1)}
        log.info("knowledge update: %d of %d edited facts answered with the new value", update["new_value_answered"],
                 update["edits"])

    # ---- report
    retrieval = run.retrieval_table()
    report = {"config": str(out / "config.yaml"), "corpus": store.manifest, "retrieval_dev": retrieval,
              "questions": {k: len(v) for k, v in qa.items()},
              "stage_seconds": {"corpus": corpus_s, **stages.timings},
              "total_seconds": round(time.time() - t_start, 1), "systems": [r.__dict__ for r in results],
              "knowledge_update": update,
              "question_vocabulary": question_vocabulary(store, {k: [e.question for e in v] for k, v in qa.items()})}
    write_report(report, results, retrieval, out)
    return report


def write_report(report: dict, results: list[SystemResult], retrieval: list[dict], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2))
    table, retrieval_md = results_table(results), format_table(retrieval)
    update = report.get("knowledge_update")
    update_md = "" if not update else (
        f"\nKnowledge update (`realm index update-check`): {update['edits']} {update['relation']} facts the model "
        f"answered right were edited in the corpus and re-indexed, without retraining: "
        f"{update['new_value_answered']} answered with the new value, {update['old_value_answered']} with the old.\n")
    vocab = report.get("question_vocabulary") or {}
    vocab_md = "" if "dev" not in vocab else (
        f"\nQuestion vocabulary: {100 * vocab['dev']['unseen_share']:.1f}% of the dev questions' tokens never occur "
        f"in the corpus, so retrievers trained on the corpus meet them first in fine-tuning "
        f"({100 * vocab['dev'].get('unseen_share_or_train', vocab['dev']['unseen_share']):.1f}% occur in neither "
        f"the corpus nor the training questions).\n")
    (out / "results.md").write_text(f"{table}\n\nZero-shot retrieval on the dev questions:\n\n{retrieval_md}\n"
                                    f"{vocab_md}{update_md}")
    plot_bars([r.system for r in results],
              {"test EM": [100 * (r.test_em or 0) for r in results], "dev EM": [100 * (r.dev_em or 0) for r in results],
               "zero-shot R@5 (dev)": [None if r.zero_shot_recall5 is None else 100 * r.zero_shot_recall5
                                       for r in results]},
              out / "results.png", title="realm experiment", ylabel="%")
    print(table)
    print("\nzero-shot retrieval, dev questions:\n" + retrieval_md)
    print(f"\nresults: {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'} "
          f"(total {report['total_seconds']:.0f} s)")


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
