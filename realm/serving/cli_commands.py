"""``realm ask``, ``realm serve`` and ``realm index update``: handlers and argparse registration.

Wired into :mod:`realm.cli` with::

    from realm.serving.cli_commands import register, register_index_update
    register(sub)                   # adds `ask` and `serve` to the top-level subparsers
    register_index_update(index)    # adds `update` to the `index` subparser group
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_ask(args) -> int:
    if (args.question is None) == (args.questions is None):
        return _usage_error("give one QUESTION, or --questions FILE.jsonl --out ANSWERS.jsonl")
    if (args.questions is None) != (args.out is None):
        return _usage_error("--questions FILE.jsonl and --out ANSWERS.jsonl go together")
    if args.question is not None and not args.question.strip():
        return _usage_error("the question is empty")
    questions = None
    if args.questions is not None:
        from realm.serving.batch import read_questions

        questions = read_questions(args.questions)  # a bad line fails here, before any model is loaded
    if args.server:
        from realm.serving.client import ServerClient, ServerError

        try:
            return _answer(args, ServerClient(args.server).ask_many, questions)
        except ServerError as e:
            print(f"realm: error: {e}", file=sys.stderr)
            return 2
    from realm.serving.answer import Answerer

    _threads(args.threads)
    batch = args.batch_size if questions is not None else 1
    with Answerer(args.run_dir, device=args.device, max_k=max(args.k or 1, 20), max_batch=batch) as answerer:
        return _answer(args, answerer.ask_many, questions)


def _answer(args, ask_many, questions) -> int:
    """Answer the one question (printed) or the question file (written to ``--out``) with ``ask_many``."""
    if questions is not None:
        from realm.serving.batch import answer_file

        n = answer_file(ask_many, questions, args.out, k=args.k, batch_size=args.batch_size)
        print(f"{n} answers written to {args.out}", file=sys.stderr)
        return 0
    out = ask_many([args.question], args.k)[0]
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        from realm.serving.formatting import format_answer

        style = "ansi" if sys.stdout.isatty() else "brackets"
        print(format_answer(out, style=style, max_evidence=args.show))
    return 0


def _usage_error(message: str) -> int:
    print(f"realm ask: error: {message}", file=sys.stderr)
    return 2


def cmd_serve(args) -> int:
    from realm.serving.app import serve

    _threads(args.threads)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"realm: warning: binding {args.host}: the service is reachable from other machines; /admin/reload "
              f"needs the admin token ($REALM_ADMIN_TOKEN), but there is no TLS", file=sys.stderr)
    serve(args.run_dir, host=args.host, port=args.port, max_question_chars=args.max_question_chars, max_k=args.max_k,
          watch=not args.no_watch, device=args.device, log_level=args.log_level)
    return 0


def cmd_index_update(args) -> int:
    from realm.serving.update import update_index_report

    _threads(args.threads)
    report = update_index_report(args.run_dir, args.corpus, skip_bad=args.skip_bad, force=args.force,
                                 device=args.device, progress=sys.stderr.isatty())
    for line in report.get("skipped", {}).get("examples", []):
        print(f"skipped: {line}", file=sys.stderr)
    if report["unchanged"]:
        print(f"corpus unchanged: index v{report['index_version']} kept (use --force to re-publish)", file=sys.stderr)
    else:
        print(f"published index v{report['index_version']} (was v{report['previous_version']}); a running "
              f"`realm serve` picks it up within a second, or POST /admin/reload", file=sys.stderr)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's choice)")


def register(subparsers) -> None:
    """Add ``ask`` and ``serve`` to the top-level ``realm`` subparsers."""
    p = subparsers.add_parser("ask", help="answer a question (or a file of questions) from a run folder",
                              description="Retrieve the top-k blocks of the run's current index, read them, and "
                                          "print the answer, its score and the evidence (the answer span is "
                                          "bold on a terminal, [[bracketed]] otherwise). With --questions, answer "
                                          "a JSONL file of {\"question\": ..., \"id\": ...} lines in batches and "
                                          "write one --json record per line to --out. With --server (default: "
                                          "$REALM_SERVER), ask a running `realm serve` instead of loading the run: "
                                          "an answer in milliseconds instead of seconds.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a servable run folder (holds run.json)")
    p.add_argument("question", nargs="?", help="the question (or use --questions)")
    p.add_argument("--k", type=_positive, help="blocks to retrieve and read (default: the run's top_k)")
    p.add_argument("--json", action="store_true", help="print the full answer record as JSON")
    p.add_argument("--show", type=_positive, default=None, help="evidence blocks to print (default: all k)")
    p.add_argument("--questions", type=Path, metavar="FILE.jsonl",
                   help='questions, one JSON object a line: {"question": str, "id": str|int (optional)}')
    p.add_argument("--out", type=Path, metavar="ANSWERS.jsonl", help="where --questions' answers go (JSONL)")
    p.add_argument("--batch-size", type=_positive, default=16, help="questions read per forward pass (default: 16)")
    p.add_argument("--server", default=os.environ.get("REALM_SERVER") or None, metavar="URL",
                   help="ask this running `realm serve` (e.g. http://127.0.0.1:8000) instead of loading RUN_DIR, "
                        "which is then not read (default: $REALM_SERVER)")
    _common(p)
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("serve", help="HTTP service + web page answering questions from a run folder",
                              description="POST /ask, GET /health, GET /stats, POST /admin/reload, a page at /, "
                                          "OpenAPI at /docs. Reloads within a second of `realm index update`.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s, loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-question-chars", type=_positive, default=500)
    p.add_argument("--max-k", type=_positive, default=20)
    p.add_argument("--no-watch", action="store_true", help="do not watch RUN/index/LATEST (reload via the API)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _common(p)
    p.set_defaults(func=cmd_serve)


def cmd_index_update_check(args) -> int:
    import json
    import tempfile

    from realm.serving.update_check import knowledge_update_check

    _threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        report = knowledge_update_check(args.run_dir, args.world, Path(tmp), edits=args.edits,
                                        relation=args.relation, seed=args.seed)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for r in report["examples"]:
        mark = "new" if r["new_answered"] else ("OLD" if r["old_answered"] else "other")
        print(f"[{mark:5}] {r['question']}  {r['old']} -> {r['new']}: {r['answer']!r}")
    print(f"{report['new_value_answered']} of {report['edits']} edited facts answered with the new value "
          f"({report['old_value_answered']} with the old one); {report['right_before']} of {report['questions']} "
          f"{report['relation']} questions were right before the edit")
    return 0


def register_index_update(index_subparsers) -> None:
    """Add ``update`` and ``update-check`` to the ``realm index`` subparser group."""
    c = index_subparsers.add_parser(
        "update-check", help="measure knowledge updates: edit facts of a built-in world, re-index, ask again",
        description="On a copy of RUN_DIR: edit facts the run answers right, publish the edited corpus as a new "
                    "index version (no retraining), and count the questions answered with the new value.")
    c.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    c.add_argument("--world", required=True, type=Path, help="the built-in world folder the run was trained on")
    c.add_argument("--edits", type=_positive, default=20, help="facts to edit (default: %(default)s)")
    c.add_argument("--relation", default="birthplace", help="which relation to edit (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, help="write the report (JSON) here")
    _common(c)
    c.set_defaults(func=cmd_index_update_check)
    p = index_subparsers.add_parser("update", help="publish a new corpus version for a run (no retraining)",
                                    description="Pack the documents with the run's tokenizer and block shape, embed "
                                                "them with the run's document encoder, publish a new index version.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--corpus", required=True, type=Path, help="documents: .jsonl, DPR-style .tsv, or folder of .txt")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad records (reported with a count) instead of failing")
    p.add_argument("--force", action="store_true", help="publish even if the corpus is unchanged")
    _common(p)
    p.set_defaults(func=cmd_index_update)
