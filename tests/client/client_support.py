"""What the client tests share: where the in-process test server answers."""

from __future__ import annotations

from dataclasses import dataclass

OWNER = "client-tests"


@dataclass(frozen=True)
class Served:
    """The test server's gRPC target and CRL HTTP port."""

    target: str
    http_port: int
