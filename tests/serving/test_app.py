"""HTTP contract of `realm serve`: fields, health/stats/OpenAPI, every bad input -> 4xx (never 500), concurrency,
reload (API and LATEST watcher), the page."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realm.serving.app import create_app
from realm.serving.qa_run import add_corpus_version
from tests.serving.test_answer import build_run, check_record, corpus_subset

MAX_K = 5
MAX_Q = 60
ANSWER_FIELDS = {"question", "answer", "score", "k", "index_version", "corpus_hash", "latency_ms", "evidence"}
EVIDENCE_FIELDS = {"rank", "block", "doc_id", "title", "text", "retrieval_score", "retrieval_prob", "answer_start",
                   "answer_end"}



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def client(run):
    app = create_app(run, max_question_chars=MAX_Q, max_k=MAX_K, watch=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_ask(client):
    r = client.post("/ask", json={"question": "Where was Toran Eguley born?", "k": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    out = r.json()
    assert set(out) == ANSWER_FIELDS and out["k"] == 2 and len(out["evidence"]) == 2
    assert all(set(e) == EVIDENCE_FIELDS for e in out["evidence"])
    check_record(out, 2, client.app.state.answerer.corpus)
    default = client.post("/ask", json={"question": "Where was Toran Eguley born?"}).json()
    assert default["k"] == 3  # the run's top_k
    assert client.post("/ask", json={"question": "q", "k": None}).json()["k"] == 3
    charset = client.post("/ask", content=json.dumps({"question": "q"}),
                          headers={"content-type": "application/json; charset=utf-8"})
    assert charset.status_code == 200


def test_health_stats_openapi(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["index_version"] == 1
    s = client.get("/stats").json()
    for key in ("index_version", "corpus_hash", "blocks", "docs", "requests_served", "latency_ms"):
        assert key in s
    assert set(s["latency_ms"]) >= {"p50", "p95", "p99"}
    assert s["limits"] == {"max_question_chars": MAX_Q, "max_k": MAX_K, "default_k": 3,
                           "max_body_bytes": 16_384}
    spec = client.get("/openapi.json").json()
    assert {"/ask", "/health", "/stats", "/admin/reload"} <= set(spec["paths"])
    req = spec["components"]["schemas"]["AskRequest"]
    assert req["additionalProperties"] is False
    assert req["properties"]["question"]["maxLength"] == MAX_Q
    k = req["properties"]["k"]["anyOf"][0]
    assert (k["type"], k["minimum"], k["maximum"]) == ("integer", 1, MAX_K)
    assert client.get("/docs").status_code == 200


JSON = {"content-type": "application/json"}
BAD = [  # (name, request kwargs, status, words in the error message)
    ("empty question", dict(json={"question": ""}), 422, "question"),
    ("whitespace question", dict(json={"question": " \n\t "}), 422, "whitespace"),
    ("over-long question", dict(json={"question": "a" * (MAX_Q + 1)}), 422, f"at most {MAX_Q} characters"),
    ("question not a string", dict(json={"question": 5}), 422, "valid string"),
    ("question null", dict(json={"question": None}), 422, "valid string"),
    ("question missing", dict(json={"k": 2}), 422, "question: Field required"),
    ("k zero", dict(json={"question": "q", "k": 0}), 422, "k: Input should be greater than or equal to 1"),
    ("k negative", dict(json={"question": "q", "k": -3}), 422, "k:"),
    ("k over max", dict(json={"question": "q", "k": MAX_K + 1}), 422, f"less than or equal to {MAX_K}"),
    ("k float", dict(json={"question": "q", "k": 2.5}), 422, "k: Input should be a valid integer"),
    ("k integral float", dict(json={"question": "q", "k": 2.0}), 422, "valid integer"),
    ("k string", dict(json={"question": "q", "k": "2"}), 422, "valid integer"),
    ("k bool", dict(json={"question": "q", "k": True}), 422, "valid integer"),
    ("k huge", dict(content=b'{"question": "q", "k": 100000000000000000000000000}', headers=JSON), 422, "k:"),
    ("k NaN", dict(content=b'{"question": "q", "k": NaN}', headers=JSON), 422, "k:"),
    ("extra field", dict(json={"question": "q", "debug": True}), 422, "debug: unknown field"),
    ("body is a list", dict(json=["q"]), 422, "valid dictionary"),
    ("body is a string", dict(json="Where?"), 422, "valid dictionary"),
    ("body is null", dict(content=b"null", headers=JSON), 422, "body"),
    ("empty JSON body", dict(content=b"", headers=JSON), 422, "required"),
    ("malformed JSON", dict(content=b'{"question": "q"', headers=JSON), 400, "malformed JSON"),
    ("trailing garbage", dict(content=b'{"question": "q"} x', headers=JSON), 400, "malformed JSON"),
    ("not UTF-8", dict(content=b'{"question": "\xff\xfe"}', headers=JSON), 400, "UTF-8"),
    ("lone surrogate", dict(content=b'{"question": "\\ud800"}', headers=JSON), 422, "question"),
    ("text/plain", dict(content=b'{"question": "q"}', headers={"content-type": "text/plain"}), 415, "application/json"),
    ("form", dict(data={"question": "q"}), 415, "x-www-form-urlencoded"),
    ("no content type", dict(content=b'{"question": "q"}'), 415, "content type"),
    ("oversize body", dict(content=b'{"question": "' + b"a" * 20_000 + b'"}', headers=JSON), 413, "too large"),
    ("oversize chunked body", dict(content=iter([b'{"question": "', b"a" * 10_000, b"a" * 10_000, b'"}']),
                                   headers=JSON), 413, "too large"),
    ("bad content-length", dict(content=b'{"question": "q"}', headers={**JSON, "content-length": "x"}), 400,
     "Content-Length"),
]


@pytest.mark.parametrize("name, kwargs, status, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_4xx(client, name, kwargs, status, words):
    r = client.post("/ask", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and words in body["error"], body


def test_wrong_method_and_path(client):
    assert client.get("/ask").status_code == 405
    assert client.post("/health").status_code == 405
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "Not Found"


def test_question_at_limits(client):
    for q in ("a" * MAX_Q, "x", "\x00", "😀" * MAX_Q, "<b>hi</b>", "?"):
        r = client.post("/ask", json={"question": q, "k": MAX_K})
        assert r.status_code == 200, (q, r.text)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.fixed_dictionaries({"question": json_values}),
                      st.fixed_dictionaries({"question": st.text(max_size=MAX_Q + 5)}, optional={"k": json_values}),
                      st.binary(max_size=40)))
def test_fuzzed_bodies_never_500(client, body):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/ask", content=content, headers=JSON)
    assert r.status_code in (200, 400, 422), r.text
    if r.status_code != 200:
        assert r.json()["error"]


def test_concurrent_requests(client):
    before = client.get("/stats").json()["requests_served"]
    questions = [{"question": f"Where was person {i} born?", "k": 1 + i % MAX_K} for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda body: client.post("/ask", json=body), questions))
    assert [r.status_code for r in responses] == [200] * 32
    for body, r in zip(questions, responses):
        out = r.json()
        assert out["question"] == body["question"] and out["k"] == body["k"] == len(out["evidence"])
    stats = client.get("/stats").json()
    assert stats["requests_served"] == before + 32 and stats["requests_failed"] == 0


def test_page_and_static_assets(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert 'id="question"' in html and 'id="ask"' in html and "/static/app.js" in html
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text and "eval(" not in js.text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_reload_endpoint_and_watcher(tmp_path):
    run = build_run(tmp_path / "r")
    app = create_app(run, max_k=MAX_K, watch=True, watch_interval=0.1)
    with TestClient(app, raise_server_exceptions=False) as c:
        admin = {"Authorization": f"Bearer {app.state.admin_token}"}
        assert c.post("/admin/reload", headers=admin).json() == {"reloaded": False, "index_version": 1,
                                                  "corpus_hash": app.state.answerer.corpus.store.corpus_hash}
        # the LATEST watcher
        add_corpus_version(run, corpus_subset(run, tmp_path / "a", keep=10), progress=False, bf16=False)
        deadline = time.time() + 10
        while c.get("/health").json()["index_version"] == 1 and time.time() < deadline:
            time.sleep(0.05)
        assert c.get("/health").json()["index_version"] == 2
        assert c.post("/ask", json={"question": "q"}).json()["index_version"] == 2
        assert c.get("/stats").json()["docs"] == 10
    # the endpoint, without a watcher
    app = create_app(run, max_k=MAX_K, watch=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        sub = corpus_subset(run, tmp_path / "b", keep=7)
        add_corpus_version(run, sub, progress=False, bf16=False)
        assert c.get("/health").json()["index_version"] == 2
        time.sleep(0.3)
        assert c.get("/health").json()["index_version"] == 2  # not watching
        r = c.post("/admin/reload", headers={"Authorization": f"Bearer {app.state.admin_token}"}).json()
        assert r == {"reloaded": True, "index_version": 3, "corpus_hash": sub.corpus_hash}
        assert c.post("/ask", json={"question": "q"}).json()["corpus_hash"] == sub.corpus_hash


def test_create_app_arguments(run):
    with pytest.raises(ValueError):
        create_app(run, max_k=0)
    with pytest.raises(ValueError):
        create_app()
    with pytest.raises(FileNotFoundError):
        create_app(run.parent)
