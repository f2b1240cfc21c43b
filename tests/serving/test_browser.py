"""The page at `/` in a real headless Chromium (Playwright, system browser): ask, see the answer and evidence.

Needs Debian's `chromium` package (/usr/bin/chromium); skipped with a reason when it is missing. The server is
uvicorn on 127.0.0.1 (a free port) in a background thread. REALM_SCREENSHOT=PATH also saves the page there.
"""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.serving.test_answer import build_run

CHROMIUM = Path(os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVIL_TITLE = '<img src=x onerror="window.__pwned=1">'
EVIL_TEXT = 'Hostile markup <script>window.__pwned=2</script> <b onmouseover="window.__pwned=3">bold</b> ends here.'

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium) to run the "
                f"browser test", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")



class ServerThread:
    """uvicorn serving ``app`` on an already-bound 127.0.0.1 socket, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from realm.data.world import generate_world
    from realm.serving.app import create_app

    docs = [{k: d[k] for k in ("id", "title", "text")} for d in generate_world(24, 0).documents]
    docs.append({"id": "evil", "title": EVIL_TITLE, "text": EVIL_TEXT})
    run = build_run(tmp_path_factory.mktemp("browser"), docs=docs)
    with ServerThread(create_app(run, max_k=20, watch=False)) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 900})
            page = context.new_page()
            page.set_default_timeout(30_000)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors
            yield page
        finally:
            browser.close()


def _ask(page, question, k=None):
    page.fill("#question", question)
    page.fill("#k", "" if k is None else str(k))
    with page.expect_response(lambda r: r.url.endswith("/ask")) as resp:
        page.click("#ask")
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function("!document.getElementById('ask').disabled")
    return resp.value


def test_ask_in_the_browser(server, page, tmp_path):
    page.goto(server.url + "/")
    assert page.title() == "realm: ask"
    page.wait_for_function("document.getElementById('index-info').textContent.includes('index v1')")
    assert "25 documents" in page.text_content("#index-info")

    response = _ask(page, "Where was the founder born?", k=4)
    assert response.status == 200
    data = response.json()
    answer = page.text_content("#answer")
    assert answer == data["answer"] and answer.strip()
    assert "index v1" in page.text_content("#answer-meta")
    items = page.query_selector_all("#evidence > li")
    assert len(items) == 4 == len(data["evidence"])
    for li, e in zip(items, data["evidence"]):
        assert li.query_selector(".title").text_content() == e["title"]
        assert li.query_selector(".block-text").text_content() == e["text"]
        width = li.query_selector(".fill").evaluate("n => n.style.width")
        assert width.endswith("%") and float(width[:-1]) == pytest.approx(e["retrieval_prob"] * 100, abs=0.06)
    marks = page.query_selector_all("#evidence mark.answer-span")
    assert len(marks) == 1 and marks[0].text_content() == answer  # the answer is highlighted in its block
    assert page.query_selector_all("#evidence li.has-answer .badge")
    shot = Path(os.environ.get("REALM_SCREENSHOT") or tmp_path / "page.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.errors == []


def test_untrusted_text_is_not_html(server, page):
    page.goto(server.url + "/")
    data = _ask(page, "Hostile markup?", k=20).json()  # k = 20 reads most of the corpus, the hostile block included
    assert any(e["doc_id"] == "evil" for e in data["evidence"])
    titles = [t.text_content() for t in page.query_selector_all("#evidence .title")]
    assert EVIL_TITLE in titles
    texts = [t.text_content() for t in page.query_selector_all("#evidence .block-text")]
    assert any("<script>window.__pwned=2</script>" in t for t in texts)
    assert page.query_selector_all("#evidence img, #evidence script, #evidence b") == []
    page.hover("#evidence")
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_errors_are_shown(server, page):
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('index-info').textContent.includes('index v1')")
    page.fill("#question", "x" * 10)
    page.fill("#k", "999")
    page.evaluate("document.getElementById('k').removeAttribute('max')")  # let the bad value reach the server
    page.click("#ask")
    page.wait_for_selector("#status.error")
    assert "less than or equal to 20" in page.text_content("#status")
    page.fill("#question", "   ")
    page.fill("#k", "")
    page.click("#ask")
    page.wait_for_function("document.getElementById('status').textContent.includes('Type a question')")
