"""A client for a running ``realm serve``: what ``realm ask --server URL`` uses instead of loading the run.

Standard library only (no torch): asking a warm server costs an HTTP round trip, not a model load.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ServerError(RuntimeError):
    """The server could not be reached, or refused the question (its one-sentence error is the message)."""


class ServerClient:
    def __init__(self, url: str, timeout: float = 120.0):
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"--server must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def ask(self, question: str, k: int | None = None) -> dict:
        """POST /ask; the server's answer record (the same fields as ``Answerer.ask``)."""
        body = {"question": question} if k is None else {"question": question, "k": k}
        req = urllib.request.Request(self.url + "/ask", data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise ServerError(f"{self.url}: HTTP {e.code}: {_error_message(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"no realm server at {self.url} ({reason}): start one with `realm serve RUN_DIR`, "
                              f"or drop --server to load the run here") from None

    def ask_many(self, questions: list[str], k: int | None = None) -> list[dict]:
        return [self.ask(q, k) for q in questions]


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read().decode("utf-8"))
        return str(body.get("error") or body.get("detail") or body)
    except Exception:  # noqa: BLE001 - not a realm JSON error body
        return e.reason or "error"
