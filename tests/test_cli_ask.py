"""`realm ask` through the CLI: a file of questions answered in batches, bad lines, and `--server URL`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realm.cli import main
from tests.serving.live_server import ServerThread
from tests.serving.test_answer import QUESTIONS, build_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("cli_ask"), entities=20)


def _questions_file(path: Path) -> Path:
    lines = [json.dumps({"question": q, "id": i}) if i % 2 == 0 else json.dumps({"question": q, "answer": ["x"]})
             for i, q in enumerate(QUESTIONS)]
    lines.insert(2, "   ")  # blank lines are skipped
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _single(run, question, capsys, *extra) -> dict:
    assert main(["ask", str(run), question, "--json", "--k", "3", *extra]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out.pop("latency_ms") >= 0
    return out


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _same_answer(batched: dict, single: dict) -> None:
    """A batched record equals the `--json` one (scores to float tolerance: padding differs in a batch)."""
    assert batched.keys() == single.keys()
    for key in single:
        if key == "evidence":
            for b, s in zip(batched[key], single[key], strict=True):
                assert {k: v for k, v in b.items() if "score" not in k and "prob" not in k} == \
                    {k: v for k, v in s.items() if "score" not in k and "prob" not in k}
                assert b["retrieval_score"] == pytest.approx(s["retrieval_score"], abs=1e-4)
                assert b["retrieval_prob"] == pytest.approx(s["retrieval_prob"], abs=1e-4)
        elif key == "score":
            assert batched[key] == pytest.approx(single[key], abs=1e-3)
        else:
            assert batched[key] == single[key], key


def test_questions_file_matches_single_asks(run, tmp_path, capsys):
    qfile = _questions_file(tmp_path / "q.jsonl")
    out = tmp_path / "sub" / "answers.jsonl"
    assert main(["ask", str(run), "--questions", str(qfile), "--out", str(out), "--batch-size", "4", "--k", "3",
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{len(QUESTIONS)}/{len(QUESTIONS)}" in err and f"{len(QUESTIONS)} answers written" in err  # progress bar
    records = _read(out)
    assert [r["question"] for r in records] == QUESTIONS  # one line per question, in input order
    for i, (rec, question) in enumerate(zip(records, QUESTIONS)):
        if i % 2 == 0:
            assert rec.pop("id") == i  # the input's id comes first
        else:
            assert "id" not in rec
        assert rec.pop("latency_ms") >= 0
        _same_answer(rec, _single(run, question, capsys))
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


@pytest.mark.parametrize("content, line, message", [
    ('{"question": "ok"}\n{"question": "fine"\n', 2, "malformed JSON"),
    ('{"question": "ok"}\n\n["a list"]\n', 3, "expected a JSON object"),
    ('{"q": "typo"}\n', 1, "missing field 'question'"),
    ('{"question": 7}\n', 1, "'question' must be a string"),
    ('{"question": "ok"}\n{"question": "  "}\n', 2, "empty question"),
    ('{"question": "ok", "id": [1]}\n', 1, "'id' must be a string or an integer"),
    (b'{"question": "caf\xe9"}\n', 1, "not valid UTF-8"),
    ("\n\n", None, "no questions in the file"),
])
def test_bad_question_lines_name_file_and_line(tmp_path, capsys, content, line, message):
    qfile = tmp_path / "q.jsonl"
    qfile.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    out = tmp_path / "answers.jsonl"
    # the run does not exist: the file is checked before anything is loaded
    assert main(["ask", str(tmp_path / "no-run"), "--questions", str(qfile), "--out", str(out)]) == 2
    where = f"{qfile}:{line}:" if line else f"{qfile}:"
    err = capsys.readouterr().err
    assert err.startswith(f"realm: error: {where}") and message in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["Q?", "--questions", "q.jsonl", "--out", "a.jsonl"], "give one QUESTION"),
    ([], "give one QUESTION"),
    (["--questions", "q.jsonl"], "go together"),
    (["Q?", "--out", "a.jsonl"], "go together"),
    (["  "], "empty"),
])
def test_ask_usage_errors(run, capsys, argv, message):
    assert main(["ask", str(run), *argv]) == 2
    assert message in capsys.readouterr().err


def test_server_mode_gives_the_same_answers(run, tmp_path, capsys):
    from realm.serving.app import create_app

    qfile = _questions_file(tmp_path / "q.jsonl")
    with ServerThread(create_app(run, max_k=20, watch=False)) as srv:
        single = _single(run, QUESTIONS[0], capsys, "--server", srv.url)
        _same_answer(single, _single(run, QUESTIONS[0], capsys))
        # in a fresh interpreter, asking a server imports no torch: the answer comes in milliseconds
        probe = ("import sys; from realm.cli import main; rc = main(sys.argv[1:]); "
                 "print(rc, [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules], file=sys.stderr)")
        res = subprocess.run([sys.executable, "-c", probe, "ask", str(run), QUESTIONS[0], "--server", srv.url],
                             capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.stderr.strip().splitlines()[-1] == "0 []", res.stderr
        assert res.stdout.startswith(f"answer: {single['answer']}\n")
        out = tmp_path / "answers.jsonl"
        assert main(["ask", str(run), "--questions", str(qfile), "--out", str(out), "--k", "3",
                     "--server", srv.url + "/"]) == 0
        assert [r["question"] for r in _read(out)] == QUESTIONS
        # the server refuses a question over its limit: a clear error, and no partial output file
        (tmp_path / "long.jsonl").write_text(json.dumps({"question": "x" * 501}) + "\n")
        assert main(["ask", str(run), "--questions", str(tmp_path / "long.jsonl"), "--out",
                     str(tmp_path / "long-answers.jsonl"), "--server", srv.url]) == 2
        assert "HTTP 422" in capsys.readouterr().err
        assert not list(tmp_path.glob("long-answers*"))


def test_no_server_is_a_clear_error(run, capsys, monkeypatch):
    monkeypatch.setenv("REALM_SERVER", "http://127.0.0.1:9")  # the default of --server (discard port: closed)
    from realm.cli import build_parser

    args = build_parser().parse_args(["ask", str(run), "q"])
    assert args.server == "http://127.0.0.1:9"
    assert args.func(args) == 2
    assert "no realm server at http://127.0.0.1:9" in capsys.readouterr().err


def test_questions_are_read_in_batches(run, tmp_path, monkeypatch, capsys):
    from realm.serving.answer import Answerer

    sizes = []
    predict = Answerer._predict

    def spy(self, corpus, questions, k):
        sizes.append(len(questions))
        return predict(self, corpus, questions, k)

    monkeypatch.setattr(Answerer, "_predict", spy)
    qfile = _questions_file(tmp_path / "q.jsonl")
    assert main(["ask", str(run), "--questions", str(qfile), "--out", str(tmp_path / "a.jsonl"),
                 "--batch-size", "4"]) == 0
    assert sizes == [4, len(QUESTIONS) - 4]  # one forward pass per batch of --batch-size questions
