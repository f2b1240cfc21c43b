"""The ``realm`` command line: thin argument parsing over the pipeline's recipe functions.

Every command that takes a config accepts ``--preset NAME`` and trailing ``key=value`` overrides,
and writes the resolved config into its output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


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


# ---------------------------------------------------------------------------------------------
# commands


def cmd_world(args) -> int:
    from realm.data.world import generate_world, world_summary, write_world

    world = generate_world(args.entities, args.seed)
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


def cmd_demo(args) -> int:
    from realm.pipeline import run_demo

    cfg = _config(args)
    run_demo(cfg, Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("world", help="generate the built-in fictional knowledge world")
    p.add_argument("--entities", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
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

    p = sub.add_parser("demo", help="the main job on the built-in world")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    _add_config_args(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from realm.config import ConfigError
    from realm.data.errors import InputError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except (ConfigError, InputError, FileNotFoundError) as e:
        print(f"realm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
