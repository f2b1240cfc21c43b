"""``realm evaluate RUN --qa FILE``: exact match and recall@k of a servable QA run on an NQ-open file.

The run is any folder that ``realm ask`` serves (``realm experiment``/``realm demo`` output, or a
``RealmForOpenQA`` checkpoint imported with ``realm convert from-hf-realm``). Questions are
retrieved and read in batches of ``--batch-size``: one query-encoder call and one top-k search
(with the backend the run's ``run.json`` names) per batch, then one reader call over the batch's ``B x k`` (question, block) rows.

Wired into :mod:`realm.cli` with ``register_evaluate(sub)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from realm.serving.cli_commands import _common, _positive, _threads


def evaluate_run(run_dir: str | Path, qa_file: str | Path, k: int | None = None, batch_size: int = 16,
                 out: str | Path | None = None, device: str = "cpu") -> dict:
    """Metrics of ``run_dir`` on ``qa_file`` (and predictions with evidence written to ``out``)."""
    from realm.data.qa import read_qa
    from realm.evaluation.qa import evaluate_qa
    from realm.models.reader import SpanReader
    from realm.models.retriever import Retriever
    from realm.retrieval import DenseRetrieval
    from realm.serving.qa_run import IndexedCorpus, read_run_info, run_backend

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    examples = read_qa(qa_file)
    k = k or int(info["top_k"])
    backend = run_backend(info)
    indexed = IndexedCorpus.load(run_dir)
    retriever = Retriever.load(run_dir / "retriever").eval()
    reader = SpanReader.load(run_dir / "reader").eval()
    retrieval = DenseRetrieval(retriever, indexed.store, indexed.embeddings, backend, device)
    metrics = evaluate_qa(retrieval, reader, examples, k=k, batch_size=batch_size, device=device,
                          predictions_path=out)
    return {"run": str(run_dir), "qa": str(qa_file), "index_version": indexed.manifest.version,
            "blocks": len(indexed.store), "k": min(k, len(indexed.store)), **metrics,
            "predictions": str(out) if out else None}


def cmd_evaluate(args) -> int:
    _threads(args.threads)
    result = evaluate_run(args.run_dir, args.qa, args.k, args.batch_size, args.out, args.device)
    recalls = "  ".join(f"{key} {v:.4f}" for key, v in result.items() if key.startswith("recall@"))
    print(f"{result['questions']} questions  EM {result['exact_match']:.4f}  {recalls}", file=sys.stderr)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def register_evaluate(subparsers) -> None:
    """Add ``evaluate`` to the top-level ``realm`` subparsers."""
    p = subparsers.add_parser("evaluate", help="exact match and recall@k of a QA run on an NQ-open file",
                              description="Retrieve the top-k blocks of the run's current index for every question, "
                                          "read them, and score the best span: exact match (SQuAD/ORQA "
                                          "normalisation) and recall@1/@k over the blocks read. Prints the metrics "
                                          "as JSON; --out writes one prediction per question with its evidence.")
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a servable run folder (holds run.json)")
    p.add_argument("--qa", required=True, type=Path, metavar="FILE",
                   help='NQ-open JSONL: {"question": str, "answer": [str, ...]} per line')
    p.add_argument("--out", type=Path, metavar="PREDS.jsonl", help="write predictions with evidence (JSONL)")
    p.add_argument("--k", type=_positive, help="blocks to retrieve and read per question (default: the run's top_k)")
    p.add_argument("--batch-size", type=_positive, default=16, help="questions per batch (default: %(default)s)")
    _common(p)
    p.set_defaults(func=cmd_evaluate)
