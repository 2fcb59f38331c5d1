"""Routes of the HTTP endpoint besides CRLs: CA certificates, OCSP and metrics.

- ``GET /ca/<CA identifier>.cer``: the CA's certificate, DER, ``application/pkix-cert``
  (RFC 5280 4.2.2.1: the caIssuers URL of every certificate the CA issues points here).
- ``POST /ocsp`` and ``GET /ocsp/<base64 request>`` (RFC 6960 A.1, RFC 5019 5):
  service/ocsp.
- ``GET /metrics``: Prometheus text format (service/metrics.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from http import HTTPStatus

from service.http import HttpRequest, HttpResponse, Route

__all__ = ["ca_certificate_route", "metrics_route", "ocsp_route"]

_CA_PATH = re.compile(r"/ca/([0-9a-fA-F-]{36})\.cer")
#: A CA certificate never changes; clients may keep it for a day.
CA_CERT_MAX_AGE = 86400


def ca_certificate_route(lookup: Callable[[str], bytes | None]) -> Route:
    """``GET /ca/<id>.cer`` from ``lookup`` (identifier -> certificate DER or None)."""
    cache: dict[str, bytes] = {}
    lock = threading.Lock()

    def route(request: HttpRequest) -> HttpResponse | None:
        if request.method not in ("GET", "HEAD") or not request.path.startswith("/ca/"):
            return None
        match = _CA_PATH.fullmatch(request.path)
        if match is None:
            return HttpResponse(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                                b"no such CA certificate\n")
        identifier = match.group(1).lower()
        der = cache.get(identifier)
        if der is None:
            der = lookup(identifier)
            if der is None:
                return HttpResponse(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                                    b"no such CA certificate\n")
            with lock:
                cache[identifier] = der
        return HttpResponse(HTTPStatus.OK, "application/pkix-cert", der,
                            {"Cache-Control": f"public, max-age={CA_CERT_MAX_AGE}"})

    return route


def metrics_route(render: Callable[[], bytes], content_type: str) -> Route:
    """``GET /metrics``: ``render()`` in the Prometheus text format."""

    def route(request: HttpRequest) -> HttpResponse | None:
        if request.path != "/metrics" or request.method not in ("GET", "HEAD"):
            return None
        return HttpResponse(HTTPStatus.OK, content_type, render(),
                            {"Cache-Control": "no-store"})

    return route


#: RFC 5019 6.2 caching headers: a successful response may be cached, but not for long, so
#: that a revocation reaches clients behind HTTP caches within a minute (the responder
#: itself serves it within a second).
OCSP_MAX_AGE = 60
#: Every other response (tryLater, internalError, unauthorized, malformedRequest) is not to
#: be kept at all: RFC 5019 6 ties caching to a successful response's nextUpdate, and a
#: cached tryLater would outlive the token outage that caused it.
OCSP_ERROR_HEADERS = {"Cache-Control": "no-store"}


def ocsp_route(respond: Callable[[bytes], bytes]) -> Route:
    """``POST /ocsp`` (body: DER request) and ``GET /ocsp/<base64 request>`` (RFC 6960 A.1)."""
    from service.ocsp import decode_get_path, error_response, is_successful

    def route(request: HttpRequest) -> HttpResponse | None:
        if request.method == "POST" and request.path in ("/ocsp", "/ocsp/"):
            if request.headers.get("Content-Type", "application/ocsp-request").split(";")[0] \
                    .strip().lower() != "application/ocsp-request":
                return HttpResponse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                    "text/plain; charset=utf-8",
                                    b"expected application/ocsp-request\n")
            body = respond(request.body)
            return HttpResponse(HTTPStatus.OK, "application/ocsp-response", body,
                                {} if is_successful(body) else OCSP_ERROR_HEADERS)
        if request.method in ("GET", "HEAD") and request.path.startswith("/ocsp/"):
            der = decode_get_path(request.path)
            body = respond(der) if der is not None else error_response("malformed_request")
            headers = {"Cache-Control": f"public, max-age={OCSP_MAX_AGE}, no-transform"} \
                if is_successful(body) else OCSP_ERROR_HEADERS
            return HttpResponse(HTTPStatus.OK, "application/ocsp-response", body, headers)
        return None

    return route
