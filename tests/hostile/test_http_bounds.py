"""The CRL HTTP server under slow and idle clients: timeouts, bounded threads, Server header.

Before: 20 connections sending partial headers held 20 threads open indefinitely, and the
Server header named the Python version.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from service.http import CrlHttpServer, HttpBounds, start_crl_server

BOUNDS = HttpBounds(read_timeout=1.0, idle_timeout=1.0, max_connections=4)


@pytest.fixture
def server() -> Iterator[CrlHttpServer]:
    srv, thread = start_crl_server("127.0.0.1:0", lambda _: None, reuse_port=False,
                                   bounds=BOUNDS)
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset) within the socket timeout."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _handler_threads(before: set[threading.Thread]) -> int:
    """Threads started since ``before`` (other tests' threads may still be winding down)."""
    return sum(1 for t in threading.enumerate() if t not in before)


def test_partial_headers_are_closed(server: CrlHttpServer) -> None:
    before = set(threading.enumerate())
    socks = [_connect(server.port) for _ in range(20)]
    for s in socks:
        s.sendall(b"GET /crl/x.crl HTTP/1.1\r\nHost: a\r\n")  # headers never finished
    assert _handler_threads(before) <= BOUNDS.max_connections
    assert all(_closed_by_server(s) for s in socks)
    for s in socks:
        s.close()


def test_trickling_request_is_closed_at_the_deadline(server: CrlHttpServer) -> None:
    """One byte at a time keeps a plain socket timeout alive forever; the deadline does not."""
    sock = _connect(server.port)
    sock.settimeout(0.2)
    closed = False
    started = time.monotonic()
    try:
        sock.sendall(b"GET /crl/x.crl HTTP/1.1\r\n")
        while time.monotonic() - started < 15:
            sock.sendall(b"X")
            try:
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    finally:
        sock.close()
    assert closed


def test_idle_keep_alive_connection_is_closed(server: CrlHttpServer) -> None:
    sock = _connect(server.port)
    assert _closed_by_server(sock)  # sent nothing at all
    sock.close()


def test_server_answers_after_slow_clients_and_hides_python(server: CrlHttpServer) -> None:
    slow = [_connect(server.port) for _ in range(BOUNDS.max_connections)]
    for s in slow:
        s.sendall(b"GET /")
    for s in slow:
        assert _closed_by_server(s)
        s.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/crl/00000000-0000-0000-0000-000000000000.crl")
    response = conn.getresponse()
    assert response.status == 404
    assert response.getheader("Server") == "hsmca"
    conn.close()
