"""The CRL HTTP endpoint: GET /crl/<CA identifier>.crl serves the CA's current CRL (DER).

Every worker process runs one, sharing the port with SO_REUSEPORT like the gRPC server.
RFC 5280 4.2.1.13 / RFC 2585 3: a CRL fetched over HTTP is DER with media type
application/pkix-crl. Caching: max-age never reaches past the CRL's nextUpdate; ETag and
Last-Modified come from (CA, cRLNumber) and thisUpdate, so conditional requests get 304.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from service.storage.repo import CrlRow

__all__ = ["CrlHttpServer", "start_crl_server"]

_log = logging.getLogger("hsmca.http")

_PATH = re.compile(r"/crl/([0-9a-fA-F-]{36})\.crl")
MAX_AGE_CAP = 3600  # seconds; revocations re-issue the CRL, so clients should re-fetch often
CrlLookup = Callable[[str], CrlRow | None]


class CrlHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with SO_REUSEPORT set before bind (several worker processes)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], lookup: CrlLookup, *,
                 reuse_port: bool) -> None:
        self.lookup = lookup
        self.reuse_port = reuse_port
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind, with SO_REUSEPORT first when several processes share the port."""
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: CrlHttpServer
    server_version = "hsmca"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """Serve a CRL."""
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        """Headers of a CRL."""
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
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


def start_crl_server(listen: str, lookup: CrlLookup, *, reuse_port: bool
                     ) -> tuple[CrlHttpServer, threading.Thread]:
    """Bind ``listen`` (port 0 allowed) and serve in a daemon thread."""
    server = CrlHttpServer(_split(listen), lookup, reuse_port=reuse_port)
    thread = threading.Thread(target=server.serve_forever, name="hsmca-http", daemon=True)
    thread.start()
    return server, thread
