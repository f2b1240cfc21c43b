"""/admin needs a token and refuses cross-origin requests; the token comes from $REALM_ADMIN_TOKEN or is generated."""

import pytest
from fastapi.testclient import TestClient

from realm.serving.app import create_app
from tests.serving.test_answer import build_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("admin"))


def test_admin_token_and_origin(run, monkeypatch):
    monkeypatch.setenv("REALM_ADMIN_TOKEN", "s3cret-token")
    app = create_app(run, max_k=5, watch=False)
    assert app.state.admin_token == "s3cret-token"
    with TestClient(app, raise_server_exceptions=False) as c:
        # what a page on another site can send without a preflight: a simple text/plain POST
        r = c.post("/admin/reload", content=b"x", headers={"content-type": "text/plain", "origin": "https://evil.example"})
        assert r.status_code == 403
        assert c.post("/admin/reload").status_code == 401
        assert c.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret-token"}
        assert c.post("/admin/reload", headers=ok).status_code == 200
        assert c.post("/admin/reload", headers={**ok, "origin": "https://evil.example"}).status_code == 403
        assert c.post("/admin/reload", headers={**ok, "sec-fetch-site": "cross-site"}).status_code == 403
        assert c.post("/admin/reload", headers={**ok, "origin": "http://testserver"}).status_code == 200
        assert "WWW-Authenticate" in c.post("/admin/reload").headers


def test_generated_token_is_random(run, monkeypatch):
    monkeypatch.delenv("REALM_ADMIN_TOKEN", raising=False)
    a = create_app(run, max_k=5, watch=False).state.admin_token
    b = create_app(run, max_k=5, watch=False).state.admin_token
    assert len(a) >= 24 and a != b
