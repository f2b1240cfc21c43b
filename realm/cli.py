"""The ``realm`` command line: thin argument parsing over the pipeline's recipe functions.

Every command that takes a config accepts ``--preset NAME`` and trailing ``key=value`` overrides,
and writes the resolved config into its output folder.

Arguments are parsed before anything heavy is imported: this module and the registration modules it
loads import only the standard library, and each command imports torch, transformers and the pipeline
inside its handler (``realm --help`` stays instant; ``tests/test_cli.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# OpenMP threads that wait by sleeping, not spinning: on a shared machine (another job on the cores) spinning
# threads make every small kernel wait for a descheduled peer: 2-thread training steps ran 6-24x slower
# (bench/RESULTS-train.md). Results are unchanged (same kernels, same thread count). libgomp reads it once,
# when torch loads, so it is set here, before any torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not sys.stderr.isatty():  # logs and CI: a progress line every 15 s, not every 0.1 s
    os.environ.setdefault("TQDM_MININTERVAL", "15")


def _add_config_args(p: argparse.ArgumentParser, default_preset: str = "demo") -> None:
    p.add_argument("--preset", default=default_preset, help="config preset name or YAML path (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. corpus.block_len=128")


def _config(args):
    from realm.config import load_config

    cfg = load_config(args.preset, args.overrides)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    return cfg


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _say(message: str) -> None:
    """Print on rank 0 only (under torchrun every rank runs the command)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        print(message)


# ---------------------------------------------------------------------------------------------
# commands


def cmd_world(args) -> int:
    from realm.data.world import generate_world, world_summary, write_world

    world = generate_world(args.entities, args.seed, style=args.style, recap=args.recap)
    paths = write_world(world, args.out)
    _print_json({"summary": world_summary(world), "files": {k: str(v) for k, v in paths.items()}})
    return 0


def cmd_corpus_build(args) -> int:
    from realm.config import save_config
    from realm.data.corpus import build_corpus, corpus_summary

    cfg = _config(args)
    if args.tokenizer:
        cfg.corpus.tokenizer = args.tokenizer
    store, skipped = build_corpus(args.input, args.out, cfg.corpus, skip_bad=args.skip_bad)
    save_config(cfg, Path(args.out) / "config.yaml")
    summary = corpus_summary(store)
    if skipped is not None:
        summary["skipped"] = skipped.summary()
        for line in skipped.examples:
            print(f"skipped: {line}", file=sys.stderr)
    _print_json(summary)
    return 0


def _store(path):
    from realm.data.blocks import BlockStore

    return BlockStore(path)


def cmd_ict(args) -> int:
    from realm.training.ict import train_ict

    cfg = _config(args)
    train_ict(cfg, _store(args.corpus), args.out)
    _say(f"retriever saved to {args.out / 'retriever'}")
    return 0


def cmd_index_build(args) -> int:
    from realm import distributed
    from realm.config import save_config
    from realm.index.sharded import build_sharded_index
    from realm.models.retriever import Retriever

    cfg = _config(args)
    d = distributed.init(backend="gloo" if cfg.device == "cpu" else None)  # under torchrun: one shard per rank
    retriever = Retriever.load(args.retriever)
    path = build_sharded_index(retriever.doc, _store(args.corpus), args.out, encoder=str(args.retriever),
                               encoder_step=args.encoder_step, batch_size=cfg.index.batch_size, bf16=cfg.index.bf16,
                               keep=cfg.index.keep_versions, device=d.device if d.distributed else cfg.device,
                               progress=d.is_main())
    if d.is_main():
        save_config(cfg, Path(args.out) / "config.yaml")
        print((path / "manifest.json").read_text())
    return 0


def cmd_eval_retrieval(args) -> int:
    from realm.data.qa import read_qa
    from realm.evaluation.retrieval import DEFAULT_KS, evaluate_retrieval, format_table
    from realm.retrieval import BM25Retrieval, DenseRetrieval

    cfg = _config(args)
    store = _store(args.corpus)
    examples = read_qa(args.qa)
    rows = []
    if args.bm25:
        rows.append(evaluate_retrieval(BM25Retrieval(store), store, examples, name="bm25"))
    for path in args.retriever or []:
        search = DenseRetrieval.from_index(path, store, args.index, cfg.index.backend, cfg.device) if args.index \
            else DenseRetrieval.from_corpus(path, store, cfg.index.backend, cfg.device)
        rows.append(evaluate_retrieval(search, store, examples, name=str(path)))
    if not rows:
        raise FileNotFoundError("nothing to evaluate: pass --retriever DIR and/or --bm25")
    print(format_table(rows, DEFAULT_KS))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_pretrain(args) -> int:
    from realm.models.retriever import Retriever
    from realm.training.pretrain import pretrain

    cfg = _config(args)
    from realm.models.mlm import KnowledgeAugEncoder

    retriever = Retriever.load(args.init_retriever) if args.init_retriever else None
    encoder = KnowledgeAugEncoder.load(args.init_encoder) if args.init_encoder else None
    pretrain(cfg, _store(args.corpus), args.out, retriever=retriever, encoder=encoder)
    _say(f"pretrained retriever: {args.out / 'retriever'}, knowledge-augmented encoder: {args.out / 'encoder'}, "
          f"index: {args.out / 'index'}, curves: {args.out / 'curves.png'}")
    return 0


def cmd_reading(args) -> int:
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.training.reading import reading_warmup

    cfg = _config(args)
    if cfg.reading.steps < 1:
        print("realm: error: reading.steps must be >= 1 (set it in the preset or as reading.steps=N)", file=sys.stderr)
        return 2
    encoder = KnowledgeAugEncoder.load(args.init_encoder) if args.init_encoder else None
    reading_warmup(cfg, _store(args.corpus), args.out, encoder=encoder)
    _say(f"knowledge-augmented encoder: {args.out / 'encoder'}, reading probe: {args.out / 'probe.json'}, "
          f"curves: {args.out / 'curves.png'}")
    return 0


def _init_paths(args) -> tuple[Path, Path]:
    """(retriever folder, encoder folder) of ``realm finetune``: explicit, or ``--from RUN``'s."""
    retriever = args.init_retriever or (args.from_run / "retriever" if args.from_run else None)
    encoder = args.init_encoder or (args.from_run / "encoder" if args.from_run else None)
    if retriever is None or encoder is None:
        raise FileNotFoundError("give --from RUN (a `realm pretrain` run folder), or both --init-retriever DIR "
                                "and --init-encoder DIR")
    return retriever, encoder


def cmd_finetune(args) -> int:
    from realm import distributed
    from realm.data.qa import read_qa
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.models.reader import SpanReader
    from realm.models.retriever import Retriever
    from realm.retrieval import DenseRetrieval
    from realm.serving.evaluate_cmd import evaluate_run
    from realm.serving.qa_run import export_qa_run
    from realm.training.finetune import finetune
    from realm.training.parallel import embed_all

    cfg = _config(args)
    retriever_dir, encoder_dir = _init_paths(args)
    train = read_qa(args.qa)
    dev = read_qa(args.dev) if args.dev else None  # read first: a bad file fails before any training
    store = _store(args.corpus)
    retriever = Retriever.load(retriever_dir)
    encoder = KnowledgeAugEncoder.load(encoder_dir)
    reader = SpanReader.from_bert(encoder.bert, cfg.reader, cfg.retriever.query_len)
    # the fixed index of fine-tuning: every block embedded by the document encoder it starts from (under
    # torchrun each rank embeds its share, and every rank holds them all)
    d = distributed.init(backend="gloo" if cfg.device == "cpu" else None)
    device = d.device if d.distributed and cfg.device != "cpu" else cfg.device
    embeddings = embed_all(retriever.doc, store, cfg.index.batch_size, cfg.index.bf16, device)
    retrieval = DenseRetrieval(retriever, store, embeddings, cfg.index.backend, device)
    summary = finetune(cfg, retrieval, reader, train, args.out)
    if not d.is_main():
        return 0
    model = export_qa_run(args.out / "model", retriever, reader, store, top_k=cfg.reader.top_k, source=str(args.out),
                          batch_size=cfg.index.batch_size, bf16=cfg.index.bf16, device=cfg.device,
                          backend=cfg.index.backend)
    result = {"run": str(args.out), "model": str(model), "steps": summary["steps"],
              "loss/total": summary.get("loss/total"), "no_correct_span_frac": summary["no_correct_span_frac"]}
    if dev is not None:
        result["dev"] = evaluate_run(model, args.dev, batch_size=cfg.experiment.eval_batch_size, device=cfg.device,
                                     out=args.out / "dev_predictions.jsonl")
    _print_json(result)
    print(f"servable model: {model} (realm ask {model} \"question\"; realm evaluate {model} --qa FILE)",
          file=sys.stderr)
    return 0


def _one_process(command: str) -> None:
    """``experiment`` and ``demo`` run in one process; under torchrun every rank would redo the whole run."""
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        from realm.distributed import DistributedError

        raise DistributedError(f"`realm {command}` runs in one process; launch it without torchrun (the data-"
                               "parallel commands are ict, reading, pretrain and finetune)")


def cmd_experiment(args) -> int:
    from realm.experiment import run_experiment

    _one_process("experiment")
    cfg = _config(args)
    if args.systems:
        cfg.experiment.systems = args.systems
    if args.ablations:
        cfg.experiment.ablations = args.ablations
    if args.seeds:
        from realm.seeds import parse_seeds, run_seeds

        run_seeds(cfg, parse_seeds(args.seeds), Path(args.out),
                  lambda c, out: run_experiment(c, args.corpus, args.train, args.dev, args.test, out))
        return 0
    run_experiment(cfg, args.corpus, args.train, args.dev, args.test, args.out)
    return 0


def cmd_demo(args) -> int:
    from realm.pipeline import run_demo

    _one_process("demo")
    cfg = _config(args)
    if args.seeds:
        from realm.seeds import parse_seeds, run_seeds

        run_seeds(cfg, parse_seeds(args.seeds), Path(args.out), run_demo)
        return 0
    run_demo(cfg, Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("world", help="generate the built-in fictional knowledge world")
    p.add_argument("--entities", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=("encyclopedia", "people"), default="encyclopedia",
                   help="people: families sharing surnames, relatives named in each other's "
                        "articles, list answers (harder for BM25)")
    p.add_argument("--recap", type=int, default=0,
                   help="facts each article restates after its lead, with the full name (as Wikipedia leads "
                        "do): a masked fact can then be read in another block about the same subject")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_world)

    corpus = sub.add_parser("corpus", help="corpus commands").add_subparsers(dest="corpus_command", required=True)
    p = corpus.add_parser("build", help="ingest documents, train WordPiece, pack blocks")
    p.add_argument("--input", required=True, type=Path, help="corpus .jsonl, DPR-style .tsv, or folder of .txt")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tokenizer", type=Path, help="use an existing HF tokenizer folder instead of training one")
    p.add_argument("--skip-bad", action="store_true", help="skip bad records (reported with a count) instead of failing")
    _add_config_args(p)
    p.set_defaults(func=cmd_corpus_build)

    p = sub.add_parser("ict", help="ICT warm start of the retriever")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes if it holds a checkpoint)")
    _add_config_args(p)
    p.set_defaults(func=cmd_ict)

    index = sub.add_parser("index", help="index commands").add_subparsers(dest="index_command", required=True)
    p = index.add_parser("build", help="embed every block with a retriever's document encoder")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--retriever", required=True, type=Path, help="a saved retriever folder (RUN/retriever)")
    p.add_argument("--out", required=True, type=Path, help="index root; a new version is added")
    p.add_argument("--encoder-step", type=int, default=0)
    _add_config_args(p)
    p.set_defaults(func=cmd_index_build)

    p = sub.add_parser("eval-retrieval", help="recall@k of dense retrievers and/or BM25 on a QA file")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--qa", required=True, type=Path)
    p.add_argument("--retriever", type=Path, action="append", help="a saved retriever folder (repeatable)")
    p.add_argument("--index", type=Path, help="an index root built by that retriever (default: embed now)")
    p.add_argument("--bm25", action="store_true", help="also evaluate BM25 over the block texts")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    _add_config_args(p)
    p.set_defaults(func=cmd_eval_retrieval)

    p = sub.add_parser("reading", help="reading warm start of the knowledge-augmented encoder (counterfactual spans)")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes from its last checkpoint)")
    p.add_argument("--init-encoder", type=Path, help="start from this encoder folder (default: random weights)")
    _add_config_args(p)
    p.set_defaults(func=cmd_reading)

    p = sub.add_parser("pretrain", help="REALM pretraining with asynchronous index refresh")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes from its last checkpoint)")
    p.add_argument("--init-retriever", type=Path, help="start from this retriever (e.g. ICT_RUN/retriever)")
    p.add_argument("--init-encoder", type=Path, help="start from this encoder (e.g. READING_RUN/encoder)")
    _add_config_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="open-QA fine-tuning of a reader + query encoder -> a servable run",
                       description="Fine-tune a span reader (started from the knowledge-augmented encoder) and the "
                                   "query encoder on NQ-open questions, retrieving from a fixed index of the corpus "
                                   "(ORQA / REALM fine-tuning), then export OUT/model, a run that `realm ask`, "
                                   "`realm serve` and `realm evaluate` take.")
    p.add_argument("--corpus", required=True, type=Path, help="a corpus folder (`realm corpus build`)")
    p.add_argument("--qa", required=True, type=Path, metavar="TRAIN.jsonl",
                   help='NQ-open JSONL training questions: {"question": str, "answer": [str, ...]} per line')
    p.add_argument("--dev", type=Path, metavar="DEV.jsonl", help="also evaluate the exported run on these questions")
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes from its last checkpoint)")
    p.add_argument("--from", dest="from_run", type=Path, metavar="RUN",
                   help="a `realm pretrain` run folder: its retriever/ and encoder/")
    p.add_argument("--init-retriever", type=Path, help="the retriever to start from (default: RUN/retriever)")
    p.add_argument("--init-encoder", type=Path, help="the encoder the reader starts from (default: RUN/encoder)")
    _add_config_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("experiment", help="closed-book vs BM25+reader vs ICT+reader vs REALM on your data")
    p.add_argument("--corpus", required=True, type=Path, help="corpus .jsonl/.tsv/folder of .txt")
    p.add_argument("--train", required=True, type=Path, help="NQ-open JSONL")
    p.add_argument("--dev", required=True, type=Path)
    p.add_argument("--test", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--systems", help="comma-separated subset of closed_book,bm25_reader,ict_reader,realm")
    p.add_argument("--ablations", help="comma-separated: uniform_masks,span_masks,stale_index")
    p.add_argument("--seeds", help="comma-separated training seeds: one experiment each in OUT/seed-N, then mean ± sd")
    _add_config_args(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("demo", help="the main job on the built-in world")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--seeds", help="comma-separated training seeds: one demo each in OUT/seed-N, then mean ± sd")
    _add_config_args(p)
    p.set_defaults(func=cmd_demo)

    register_convert = _registration_module("realm.convert.cli_commands").register
    from realm.serving.cli_commands import register as register_serving
    from realm.serving.cli_commands import register_index_update
    from realm.serving.evaluate_cmd import register_evaluate

    register_convert(sub)
    register_serving(sub)  # realm ask / realm serve
    register_index_update(index)  # realm index update
    register_evaluate(sub)  # realm evaluate
    return parser


def _registration_module(name: str):
    """Import the argparse registration module ``name`` without running its package's ``__init__``.

    ``realm/convert/__init__.py`` imports the converter, hence torch; ``realm/convert/cli_commands.py``
    itself needs only the standard library, and its handlers import the converter when they run.
    """
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util

    path = Path(__file__).parent.joinpath(*name.split(".")[1:]).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # before any heavy import: `--help` and usage errors are instant

    import logging

    from realm.config import ConfigError
    from realm.data.errors import InputError

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = args.func(args) or 0
    except Exception as e:
        dist = sys.modules.get("realm.distributed")  # imported by the commands that can run under torchrun
        if isinstance(e, (ConfigError, InputError, FileNotFoundError)) or (dist and isinstance(e, dist.DistributedError)):
            print(f"realm: error: {e}", file=sys.stderr)
            return 2
        raise
    if "realm.distributed" in sys.modules:
        sys.modules["realm.distributed"].shutdown()  # under torchrun: leave the process group together
    return code


if __name__ == "__main__":
    sys.exit(main())
