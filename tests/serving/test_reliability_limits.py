"""Slow clients cannot hold `realm serve`: header deadline, body deadline (408), connection cap. Loopback only."""

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from realm.serving.app import BodyGuard
from realm.serving.limits import limited_protocol


async def echo(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok %d" % len(body)})


@pytest.fixture(scope="module")
def server():
    app = BodyGuard(echo, limit=10_000, json_paths=(), body_timeout=0.6)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            http=limited_protocol(header_timeout=0.6, max_connections=8), timeout_keep_alive=1)
    srv = uvicorn.Server(config)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield port
    srv.should_exit = True
    t.join(5)


def _closed_within(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, data
            data += chunk
    except socket.timeout:
        return False, data
    except ConnectionResetError:
        return True, data


def test_a_normal_request_works(server):
    with socket.create_connection(("127.0.0.1", server)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        closed, data = _closed_within(s, 5)
    assert closed and data.startswith(b"HTTP/1.1 200") and b"ok 3" in data


def test_stalled_headers_are_cut_off(server):
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", server))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finishes its headers
        socks.append(s)
    t0 = time.time()
    assert all(_closed_within(s, 5)[0] for s in socks)
    assert time.time() - t0 < 4
    for s in socks:
        s.close()


def test_a_stalled_body_gets_408(server):
    with socket.create_connection(("127.0.0.1", server)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        closed, data = _closed_within(s, 5)
    assert closed and data.startswith(b"HTTP/1.1 408")


def test_connections_beyond_the_cap_are_refused_and_capacity_returns(server):
    idle = [socket.create_connection(("127.0.0.1", server)) for _ in range(8)]
    time.sleep(0.1)
    extra = socket.create_connection(("127.0.0.1", server))
    closed, data = _closed_within(extra, 0.4)  # closed at once, before any header deadline
    assert closed and data == b""
    for s in idle + [extra]:
        s.close()
    time.sleep(0.2)
    test_a_normal_request_works(server)
