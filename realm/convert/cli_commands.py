"""``realm convert ...``: checkpoint conversion subcommands (wired into ``realm/cli.py`` by ``register``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HF_CLASSES = ("RealmEmbedder", "RealmScorer", "RealmKnowledgeAugEncoder", "RealmReader", "RealmForOpenQA")


def _run(fn, **kw) -> int:
    from realm.convert.hf_realm import ConversionError

    try:
        summary = fn(**kw)
    except ConversionError as e:
        print(f"realm: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def cmd_from_hf_realm(args) -> int:
    from realm.convert.hf_realm import from_hf_realm

    return _run(from_hf_realm, src=args.src, out=args.out, hf_class=args.hf_class, allow_pickle=args.allow_pickle,
                progress=sys.stderr.isatty())


def cmd_to_hf_realm(args) -> int:
    from realm.convert.hf_realm import to_hf_realm

    return _run(to_hf_realm, run=args.run, out=args.out, hf_class=args.hf_class, fmt=args.format,
                tokenizer=args.tokenizer)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert from-hf-realm`` and ``convert to-hf-realm`` to the ``realm`` command's subparsers."""
    convert = subparsers.add_parser("convert", help="convert checkpoints from/to other formats")
    sub = convert.add_subparsers(dest="convert_command", required=True)

    p = sub.add_parser("from-hf-realm", help="import a checkpoint of the transformers (<= 4.40) REALM port",
                       description="Map a local RealmEmbedder / RealmScorer / RealmKnowledgeAugEncoder / RealmReader / "
                                   "RealmForOpenQA folder into realm folders. RealmForOpenQA becomes a servable QA run "
                                   "(retriever/, reader/, corpora/, index/ holding block_emb).")
    p.add_argument("src", type=Path, metavar="SRC_DIR",
                   help="HF folder: config.json + weights (+ vocab.txt, block_records.npy)")
    p.add_argument("out", type=Path, metavar="OUT_RUN_DIR", help="new (or empty) output folder")
    p.add_argument("--as", dest="hf_class", choices=HF_CLASSES,
                   help="class of the checkpoint (default: config.json's architectures)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read a block_records.npy that holds more than an object array of bytes with full pickle "
                        "(it can run code: trusted files only). Object arrays of bytes never need it")
    p.set_defaults(func=cmd_from_hf_realm)

    p = sub.add_parser("to-hf-realm", help="export realm models in the transformers (<= 4.40) REALM port's format",
                       description="Write an HF REALM folder (config.json, weights, tokenizer files, block_records.npy "
                                   "for RealmForOpenQA) from a realm run folder or model folder.")
    p.add_argument("run", type=Path, metavar="RUN_DIR",
                   help="a realm run folder (or a retriever/, encoder/ or reader/ folder)")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="new (or empty) HF folder")
    p.add_argument("--as", dest="hf_class", choices=HF_CLASSES,
                   help="class to write (default: the imported class, else inferred from what RUN_DIR holds)")
    p.add_argument("--format", choices=("auto", "safetensors", "bin"), default="auto",
                   help="weights file (auto: the imported file's format, else safetensors; bin for RealmScorer)")
    p.add_argument("--tokenizer", type=Path, help="realm/HF tokenizer folder to export (default: the run's)")
    p.set_defaults(func=cmd_to_hf_realm)
