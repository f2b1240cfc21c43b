"""`/docs` needs nothing from the internet: every asset it names is served by the app (no browser needed;
tests/serving/test_browser.py renders it with the network blocked)."""

import re

import pytest
from fastapi.testclient import TestClient

from realm.serving.app import create_app
from tests.serving.test_answer import build_run


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(build_run(tmp_path_factory.mktemp("docs")), watch=False)
    with TestClient(app) as c:
        yield c


def test_docs_assets_are_local(client):
    html = client.get("/docs").text
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert any(u.endswith(".js") for u in urls) and any(u.endswith(".css") for u in urls)
    for url in urls:
        assert url.startswith("/"), f"/docs loads {url} from outside the app"
        resp = client.get(url)
        assert resp.status_code == 200, url
        if url.endswith((".js", ".css")):
            assert len(resp.content) > 10_000, url  # the real bundle, not a placeholder
    assert "cdn" not in html.lower()


def test_no_redoc(client):
    """ReDoc's page fetches its attribution logo from a CDN even with local assets, so it is not served."""
    assert client.get("/redoc").status_code == 404
