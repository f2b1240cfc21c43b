"""The page at `/` in a real headless Chromium (Playwright, system browser): ask, see the answer and evidence.

Needs Debian's `chromium` package (/usr/bin/chromium); skipped with a reason when it is missing. The server is
uvicorn on 127.0.0.1 (a free port) in a background thread. REALM_SCREENSHOT=PATH also saves the page there.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.serving.live_server import ServerThread
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
# waits use locator assertions: a string predicate (wait_for_function) is evaluated with eval(), which the
# page's Content-Security-Policy blocks whenever the first check fails and Playwright polls



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
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _new_page(context):
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


@pytest.fixture(scope="module")
def page(server, browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    try:
        yield _new_page(context)
    finally:
        context.close()


@pytest.fixture
def offline_page(server, browser):
    """A page whose every request off the loopback is aborted (and recorded in ``page.blocked``)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    blocked = []

    def route(r):
        if urlsplit(r.request.url).hostname in ("127.0.0.1", "localhost", "::1"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort("internetdisconnected")

    context.route("**/*", route)
    page = _new_page(context)
    page.set_default_timeout(120_000)  # the Swagger bundle is 1.5 MB of JS: slow to run on a loaded 2-core machine
    page.blocked = blocked
    try:
        yield page
    finally:
        context.close()


def _ask(page, question, k=None):
    page.fill("#question", question)
    page.fill("#k", "" if k is None else str(k))
    with page.expect_response(lambda r: r.url.endswith("/ask")) as resp:
        page.click("#ask")
    page.wait_for_selector("#result:not([hidden])")
    sync_api.expect(page.locator("#ask")).to_be_enabled()
    return resp.value


def test_ask_in_the_browser(server, page, tmp_path):
    page.goto(server.url + "/")
    assert page.title() == "realm: ask"
    sync_api.expect(page.locator("#index-info")).to_contain_text("index v1")
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
    sync_api.expect(page.locator("#index-info")).to_contain_text("index v1")
    page.fill("#question", "x" * 10)
    page.fill("#k", "999")
    page.evaluate("document.getElementById('k').removeAttribute('max')")  # let the bad value reach the server
    page.click("#ask")
    page.wait_for_selector("#status.error")
    assert "less than or equal to 20" in page.text_content("#status")
    page.fill("#question", "   ")
    page.fill("#k", "")
    page.click("#ask")
    sync_api.expect(page.locator("#status")).to_contain_text("Type a question")


API_PATHS = ("/ask", "/health", "/stats", "/admin/reload")


def test_docs_work_offline(server, offline_page):
    page = offline_page
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path")
    listed = {el.get_attribute("data-path") or el.text_content() for el in page.query_selector_all(".opblock-summary-path")}
    assert set(API_PATHS) <= {p.strip().replace("\u200b", "") for p in listed}
    assert page.text_content(".info .title").startswith("realm")
    page.click("#operations-default-ask_ask_post .opblock-summary")  # expand POST /ask: its request schema renders
    page.wait_for_selector("#operations-default-ask_ask_post .opblock-body")
    assert "question" in page.text_content("#operations-default-ask_ask_post .opblock-body")
    assert page.blocked == [] and page.errors == []

