"""The HTTP endpoint: GET /crl/<CA identifier>.crl serves the CA's current CRL (DER).

Other resources (CA certificates, OCSP, metrics) are :class:`Route` functions from
service/http_routes.py, tried in order before the CRL path.

Every worker process runs one, sharing the port with SO_REUSEPORT like the gRPC server.
RFC 5280 4.2.1.13 / RFC 2585 3: a CRL fetched over HTTP is DER with media type
application/pkix-crl. Caching: max-age never reaches past the CRL's nextUpdate; ETag and
Last-Modified come from (CA, cRLNumber) and thisUpdate, so conditional requests get 304.

Bounds, so that slow or idle clients cannot hold the server (a "slowloris"): each connection
is one thread and at most ``max_connections`` are served at once (more are closed at once);
a connection waits at most ``idle_timeout`` for the first byte of its next request, and a
request's line and headers must then arrive within ``read_timeout``. The ``Server`` header
names the service only, not the Python version.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from service.storage.repo import CrlRow

__all__ = ["CrlHttpServer", "HttpBounds", "HttpRequest", "HttpResponse", "Route",
           "start_crl_server"]

_log = logging.getLogger("hsmca.http")

_PATH = re.compile(r"/crl/([0-9a-fA-F-]{36})\.crl")
MAX_AGE_CAP = 3600  # seconds; revocations re-issue the CRL, so clients should re-fetch often
CrlLookup = Callable[[str], CrlRow | None]
#: Largest request body read (an OCSP request for one certificate is ~100 bytes).
MAX_BODY = 16 * 1024


@dataclass(frozen=True)
class HttpRequest:
    """What a route sees of a request: method, path (without the query) and body."""

    method: str  # GET, HEAD or POST
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class HttpResponse:
    """What a route answers."""

    status: HTTPStatus
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


#: A route answers the requests it serves and returns None for the others.
Route = Callable[[HttpRequest], HttpResponse | None]


@dataclass(frozen=True)
class HttpBounds:
    """Connection bounds of the HTTP server (``[limits]`` http_* settings)."""

    read_timeout: float = 10.0  # seconds for a request's line and headers
    idle_timeout: float = 30.0  # seconds a kept-alive connection may wait for a request
    max_connections: int = 64  # connections (threads) served at once

    def __post_init__(self) -> None:
        """Refuse bounds that would disable the protection."""
        if self.read_timeout <= 0 or self.idle_timeout <= 0 or self.max_connections < 1:
            raise ValueError("HTTP timeouts must be positive and max_connections at least 1")


class CrlHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with SO_REUSEPORT, bounded threads and per-request deadlines."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], lookup: CrlLookup, *,
                 reuse_port: bool, bounds: HttpBounds | None = None,
                 routes: Sequence[Route] = ()) -> None:
        self.lookup = lookup
        self.routes = tuple(routes)
        self.reuse_port = reuse_port
        self.bounds = bounds or HttpBounds()
        self._slots = threading.BoundedSemaphore(self.bounds.max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a new thread if a slot is free; otherwise close the connection now."""
        if not self._slots.acquire(blocking=False):
            _log.warning("HTTP: %d connections open; closing one from %s",
                         self.bounds.max_connections, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        """Bind, with SO_REUSEPORT first when several processes share the port."""
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])


class _DeadlineSocket(io.RawIOBase):
    """The connection's input: each recv waits at most idle_timeout, or until the deadline.

    A deadline on every recv, not a plain socket timeout: a client trickling one byte at a
    time would renew a socket timeout forever.
    """

    def __init__(self, connection: socket.socket, idle_timeout: float) -> None:
        super().__init__()
        self._connection = connection
        self._idle_timeout = idle_timeout
        self.deadline: float | None = None  # None: waiting idle for the next request

    def readable(self) -> bool:
        """Yes."""
        return True

    def readinto(self, buffer: Any) -> int:
        """recv_into, bounded by the idle timeout or what is left of the deadline."""
        if self.deadline is None:
            timeout = self._idle_timeout
        else:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError("request not received in time")
        self._connection.settimeout(timeout)
        return self._connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: CrlHttpServer
    server_version = "hsmca"

    def version_string(self) -> str:
        """The Server header: the service's name, without the Python version."""
        return self.server_version

    def setup(self) -> None:
        """Read the connection through _DeadlineSocket."""
        super().setup()
        self._input = _DeadlineSocket(self.connection, self.server.bounds.idle_timeout)
        self.rfile = io.BufferedReader(self._input)

    def handle_one_request(self) -> None:
        """Wait idle_timeout for a request, then read_timeout for its line and headers."""
        self._input.deadline = None
        try:
            if not self.rfile.peek(1):  # type: ignore[attr-defined]
                self.close_connection = True  # the client closed the connection
                return
        except OSError:  # TimeoutError included: an idle connection is closed
            self.close_connection = True
            return
        self._input.deadline = time.monotonic() + self.server.bounds.read_timeout
        super().handle_one_request()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """Serve a route's resource or a CRL."""
        if not self._route("GET"):
            self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        """Headers of a route's resource or of a CRL."""
        if not self._route("HEAD"):
            self._serve(body=False)

    def do_POST(self) -> None:  # noqa: N802
        """POST to a route (OCSP); nothing else takes POST."""
        if not self._route("POST"):
            self._plain(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", True)

    def _route(self, method: str) -> bool:
        """Answer from the first route that serves the request; False if none does."""
        if not self.server.routes:
            return False
        body = b""
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._plain(HTTPStatus.BAD_REQUEST, b"bad Content-Length\n", True)
                return True
            body = self.rfile.read(length)  # within the request's read_timeout
        # The request is in; the response must leave within the same bound.
        self.connection.settimeout(self.server.bounds.read_timeout)
        request = HttpRequest(method, self.path.split("?", 1)[0], dict(self.headers.items()),
                              body)
        for route in self.server.routes:
            response = route(request)
            if response is not None:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for k, v in response.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(response.body)
                return True
        return False

    def _serve(self, *, body: bool) -> None:
        # The request is in; the response must leave within the same bound.
        self.connection.settimeout(self.server.bounds.read_timeout)
        match = _PATH.fullmatch(self.path.split("?", 1)[0])
        crl = self.server.lookup(match.group(1).lower()) if match else None
        if crl is None:
            self._plain(HTTPStatus.NOT_FOUND, b"no such CRL\n", body)
            return
        now = dt.datetime.now(dt.UTC)
        max_age = max(0, min(MAX_AGE_CAP, int((crl.next_update - now).total_seconds())))
        etag = f'"{crl.ca_identifier}-{crl.crl_number}"'
        headers = {
            "Cache-Control": f"public, max-age={max_age}, no-transform",
            "ETag": etag,
            "Last-Modified": email.utils.format_datetime(crl.this_update, usegmt=True),
            "Expires": email.utils.format_datetime(crl.next_update, usegmt=True),
        }
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(crl.der)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(crl.der)

    def _plain(self, status: HTTPStatus, text: bytes, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Access log at debug level (CRL fetches are frequent)."""
        _log.debug("%s " + format, self.address_string(), *args)


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":port"


def start_crl_server(listen: str, lookup: CrlLookup, *, reuse_port: bool,
                     bounds: HttpBounds | None = None, routes: Sequence[Route] = ()
                     ) -> tuple[CrlHttpServer, threading.Thread]:
    """Bind ``listen`` (port 0 allowed) and serve in a daemon thread."""
    server = CrlHttpServer(_split(listen), lookup, reuse_port=reuse_port, bounds=bounds,
                           routes=routes)
    thread = threading.Thread(target=server.serve_forever, name="hsmca-http", daemon=True)
    thread.start()
    return server, thread
