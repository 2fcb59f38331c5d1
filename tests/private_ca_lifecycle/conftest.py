"""A real PrivateCa gRPC server with its job thread and HTTP server (CRLs, CA certificates)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from pca_support import OWNER, Hierarchy, Pca, create_hierarchy
from pg_support import BACKENDS

from service.auth.perimeter import LocalAdmin
from service.gen.hsmca.v1 import private_ca_pb2_grpc
from service.http import start_crl_server
from service.http_routes import ca_certificate_route, ocsp_route
from service.ocsp import OcspResponder
from service.private_ca.crls import CrlPublisher
from service.private_ca.jobs import JobWorker
from service.private_ca.lifecycle import Lifecycle
from service.private_ca.service import PrivateCaService
from service.rpc.server import build_server, graceful_stop
from service.servicers.private_ca import private_ca_servicer_pair
from service.storage.db import create_engine_for, migrate


@dataclass
class Lc(Pca):
    """The server plus its CRL HTTP port and publisher."""

    http_port: int = 0
    crls: CrlPublisher | None = None
    ocsp: OcspResponder | None = None


@pytest.fixture(scope="session", params=BACKENDS)
def lc(request: pytest.FixtureRequest, new_database_url: Callable[[str, str], str],
       hsm_token: object, software_token: object) -> Iterator[Lc]:
    """gRPC on 127.0.0.1:0, HTTP on 127.0.0.1:0 (the CRL base URL), job thread running;
    on SQLite and on PostgreSQL."""
    url = new_database_url(str(request.param), "pca-lc")
    migrate(url)
    engine = create_engine_for(url)
    holder: dict[str, Any] = {}
    http, _ = start_crl_server(
        "127.0.0.1:0", lambda ca: holder["crls"].latest(ca), reuse_port=False,
        routes=[ocsp_route(lambda der: holder["ocsp"].respond(der)),
                ca_certificate_route(lambda ca: holder["crls"].ca_certificate(ca))])
    service = PrivateCaService(engine, hsm_token, software_token,  # type: ignore[arg-type]
                               public_base_url=f"http://127.0.0.1:{http.port}",
                               min_rsa_bits=2048)
    crls = holder["crls"] = CrlPublisher(service)
    ocsp = holder["ocsp"] = OcspResponder(service)
    lifecycle = Lifecycle(service, crls)
    server, port = build_server([private_ca_servicer_pair(service, lifecycle)],
                                "127.0.0.1:0", max_workers=8, reuse_port=False,
                                perimeter=LocalAdmin(OWNER))
    server.start()
    worker = JobWorker(service, poll_seconds=0.05, crl_check=crls.publish_due,
                       crl_check_seconds=0.5)
    worker.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Lc(private_ca_pb2_grpc.PrivateCaStub(channel), engine, service, channel,
                 http.port, crls, ocsp)
    finally:
        channel.close()
        graceful_stop(server, 0)
        worker.stop()
        http.shutdown()
        http.server_close()
        engine.dispose()


@pytest.fixture(scope="session")
def ecc(lc: Lc) -> Hierarchy:
    return create_hierarchy(lc, "ECC_256")


@pytest.fixture(scope="session")
def rsa_h(lc: Lc) -> Hierarchy:
    return create_hierarchy(lc, "RSA_2048")
