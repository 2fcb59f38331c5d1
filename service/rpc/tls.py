"""Server-side TLS: mTLS credentials that pick up a renewed certificate without a restart.

``grpc.dynamic_ssl_server_credentials`` asks a fetcher for the certificate configuration at
each new handshake; the fetcher here looks at the files' (mtime, size, inode) at most once a
second and returns a new configuration only when they changed and the new key matches the
new certificate. Existing connections keep the session they negotiated; new ones get the
new certificate. Client certificates are required and verified against ``client_ca``
(gRPC core negotiates TLS 1.2 or 1.3, 1.3 preferred).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.config import TlsConfig

__all__ = ["ServerTlsFiles", "server_credentials"]

log = logging.getLogger("hsmca.rpc")


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _spki(der_or_key: Any) -> bytes:
    return bytes(der_or_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


class ServerTlsFiles:
    """The server certificate chain, key and client trust anchors, re-read when they change."""

    def __init__(self, tls: TlsConfig, *, check_seconds: float = 1.0) -> None:
        self.paths = (tls.server_cert, tls.server_key, tls.client_ca)
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._stamp = _stamp(self.paths)
        self.chain, self.key, self.client_ca = self._read()
        self.loads = 1

    def _read(self) -> tuple[bytes, bytes, bytes]:
        chain, key, ca = (p.read_bytes() for p in self.paths)
        leaf = x509.load_pem_x509_certificate(chain)
        private = serialization.load_pem_private_key(key, password=None)
        if _spki(leaf.public_key()) != _spki(private.public_key()):
            raise ValueError(f"{self.paths[1]} is not the key of {self.paths[0]}")
        x509.load_pem_x509_certificates(ca)
        return chain, key, ca

    def configuration(self) -> Any:
        """The grpc certificate configuration of the files as last read."""
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.chain)], root_certificates=self.client_ca)

    def fetch(self) -> Any:
        """The fetcher gRPC calls per handshake: a new configuration, or None (unchanged)."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        with self._lock:
            if now < self._next_check:
                return None
            self._next_check = now + self.check_seconds
            try:
                stamp = _stamp(self.paths)
                if stamp == self._stamp:
                    return None
                read = self._read()
            except (OSError, ValueError) as e:
                # Half-written renewal, or a broken file: keep serving what we have.
                log.warning("TLS files not reloaded, keeping the current ones: %s", e)
                return None
            self._stamp = stamp
            self.chain, self.key, self.client_ca = read
            self.loads += 1
            log.info("TLS server certificate reloaded from %s", self.paths[0])
            return self.configuration()


def server_credentials(files: ServerTlsFiles) -> grpc.ServerCredentials:
    """mTLS server credentials that require and verify a client certificate."""
    return grpc.dynamic_ssl_server_credentials(
        files.configuration(), files.fetch, require_client_authentication=True)
