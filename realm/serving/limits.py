"""Connection limits for ``realm serve``: slow or stalled clients cannot hold the server.

uvicorn's own options bound what they can (``timeout_keep_alive`` for idle keep-alive connections,
``limit_concurrency`` answering 503 beyond N connections/requests, ``h11_max_incomplete_event_size``
for the header size), but nothing bounds a client that sends its request line or headers a byte at a
time: uvicorn cancels the keep-alive timer on the first byte and then waits forever. This protocol adds

* a **header deadline**: a connection whose request headers are not complete ``header_timeout``
  seconds after it opened (or after its previous response) is closed;
* a **connection cap**: connections beyond ``max_connections`` are closed at once.

The body deadline (a request body that stalls) is enforced by :class:`realm.serving.app.BodyGuard`.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 256
KEEP_ALIVE_S = 5
MAX_HEADER_BYTES = 16_384


def limited_protocol(header_timeout: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> type:
    """An ``H11Protocol`` subclass with the header deadline and connection cap above (pass as uvicorn's ``http``)."""

    class LimitedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = None
            if len(self.connections) > max_connections:
                log.warning("refusing a connection: %d open (limit %d)", len(self.connections), max_connections)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if getattr(self, "_deadline", None) is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_late(self) -> None:
            self._deadline = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                log.info("closing a connection: request headers incomplete after %.0f s", header_timeout)
                self.transport.close()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before and self.cycle is not None:  # a request's headers arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers are bounded too

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return LimitedH11Protocol
