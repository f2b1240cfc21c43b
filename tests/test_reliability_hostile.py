"""Hostile input: ingest, QA loading and the HTTP API give only documented errors (FILE:LINE InputError, 4xx),
never a traceback, for deep nesting, lone surrogates, odd ids, huge lines and arbitrary bytes."""

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realm.cli import main as cli_main
from realm.data.errors import InputError, SkipReport
from realm.data.ingest import read_documents
from realm.data.qa import read_qa
from realm.serving.app import create_app
from tests.serving.test_answer import build_run

ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)  # surrogates included
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(ANY_CHAR, max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.text(ANY_CHAR, max_size=6), inner, max_size=3), max_leaves=8)


def _dump(v) -> bytes:
    return json.dumps(v, ensure_ascii=True).encode()  # \\ud800 escapes survive as lone surrogates after loading


def _record(fields):
    return st.fixed_dictionaries({}, optional={f: json_values | st.text(ANY_CHAR, max_size=20) for f in fields})


hostile_lines = st.one_of(
    st.binary(max_size=60),
    _record(["id", "title", "text", "contents"]).map(_dump),
    _record(["question", "answer", "answers"]).map(_dump),
    json_values.map(_dump),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 5000).map(lambda n: b'{"id": "x", "text": ' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from([b'{"id": "x", "text": "\\ud800"}', b'{"id": 1.5, "text": "t"}', b'{"id": true, "text": "t"}',
                     b'{"id": "\\udfff", "text": "t"}', b'{"question": "\\ud800?", "answer": ["a"]}',
                     b'{"question": "q", "answer": ["\\udc00"]}', b'\xff\xfe', b"{}" * 3]),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_error(err: InputError, path):
    assert str(err).startswith(f"{path}:") and "\n" not in str(err)


@SETTINGS
@given(lines=st.lists(hostile_lines, min_size=1, max_size=4))
def test_ingest_gives_only_file_line_errors(tmp_path, lines):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b"\n".join(l.replace(b"\n", b" ") for l in lines) + b"\n")
    skip = SkipReport()
    docs = list(read_documents(p, skip))  # never raises with --skip-bad
    for d in docs:
        (d.id + d.title + d.text).encode("utf-8")  # whatever is accepted can be written back
    for example in skip.examples:
        assert example.startswith(f"{p}:")
    try:
        list(read_documents(p))
    except InputError as e:
        _check_error(e, p)


@SETTINGS
@given(lines=st.lists(hostile_lines, min_size=1, max_size=4))
def test_qa_loading_gives_only_file_line_errors(tmp_path, lines):
    p = tmp_path / "qa.jsonl"
    p.write_bytes(b"\n".join(l.replace(b"\n", b" ") for l in lines) + b"\n")
    skip = SkipReport()
    for ex in read_qa(p, skip):
        (ex.question + "".join(ex.answers)).encode("utf-8")
    try:
        read_qa(p)
    except InputError as e:
        _check_error(e, p)


@pytest.mark.parametrize("line, message", [
    (b'{"id": 1.5, "text": "t"}', "bad id: expected a string or an integer, got float"),
    (b'{"id": true, "text": "t"}', "bad id: expected a string or an integer, got bool"),
    (b'{"id": "x", "text": "a\\ud800b"}', r"bad text: lone surrogate U\+D800"),
    (b'{"id": "x", "text": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested too deeply"),
])
def test_ingest_messages_say_what_is_wrong(tmp_path, line, message):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"id": "ok", "text": "fine"}\n' + line + b"\n")
    with pytest.raises(InputError, match=message) as e:
        list(read_documents(p))
    assert str(e.value).startswith(f"{p}:2: ")


def test_document_memory_is_bounded(tmp_path):
    p = tmp_path / "c.jsonl"
    big = json.dumps({"id": "big", "text": "word " * 20_000})
    p.write_text(json.dumps({"id": "a", "text": "small"}) + "\n" + big + "\n" + json.dumps({"id": "b", "text": "x"}) + "\n")
    skip = SkipReport()
    assert [d.id for d in read_documents(p, skip, max_doc_bytes=10_000)] == ["a", "b"]
    assert skip.total == 1 and f"line too long: {len(big) + 1} bytes (limit 10000" in skip.examples[0]
    assert [d.id for d in read_documents(p)] == ["a", "big", "b"]  # the default limit is 4 MiB


def test_corpus_build_with_a_lone_surrogate_exits_2(tmp_path, capsys):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"id": "x", "text": "a\\ud800b"}\n')
    assert cli_main(["corpus", "build", "--input", str(p), "--out", str(tmp_path / "C"), "--preset", "tiny"]) == 2
    assert f"{p}:1: bad text: lone surrogate" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(build_run(tmp_path_factory.mktemp("hostile")), max_k=5, watch=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_deeply_nested_body_is_a_400_that_says_so(client):
    r = client.post("/ask", content=b'{"question": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]


@pytest.mark.parametrize("question", ["\u200b\u200b", "\u200b \ufeff\u2060", "\u00a0\u3000"])
def test_invisible_questions_are_refused(client, question):
    r = client.post("/ask", json={"question": question})
    assert r.status_code == 422 and "empty" in r.json()["error"]


@settings(max_examples=150, deadline=None)
@given(body=hostile_lines, ctype=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]),
       path=st.sampled_from(["/ask", "/admin/reload", "/ask/../admin/reload", "/static/%2e%2e/app.py"]))
def test_http_api_never_errors_5xx(client, body, ctype, path):
    r = client.post(path, content=body, headers={"content-type": ctype})
    assert 200 <= r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert isinstance(r.json()["error"], str)
    if path == "/admin/reload":
        assert r.status_code in (401, 403, 413, 415)
