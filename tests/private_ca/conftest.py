"""A real PrivateCa gRPC server (SoftHSM tokens, a migrated SQLite or PostgreSQL database)
and CA hierarchies."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from pca_support import BASE_URL, OWNER, Hierarchy, Pca, create_hierarchy
from pg_support import BACKENDS

from service.auth.perimeter import LocalAdmin
from service.gen.hsmca.v1 import private_ca_pb2_grpc
from service.private_ca.service import PrivateCaService
from service.rpc.server import build_server, graceful_stop
from service.servicers.private_ca import private_ca_servicer_pair
from service.storage.db import create_engine_for, migrate


@pytest.fixture(scope="session", params=BACKENDS)
def pca(request: pytest.FixtureRequest, new_database_url: Callable[[str, str], str],
        hsm_token: object, software_token: object) -> Iterator[Pca]:
    """The server on 127.0.0.1:0 with a stub, on SQLite and on PostgreSQL."""
    url = new_database_url(str(request.param), "pca")
    migrate(url)
    engine = create_engine_for(url)
    service = PrivateCaService(engine, hsm_token, software_token,  # type: ignore[arg-type]
                               public_base_url=BASE_URL, min_rsa_bits=2048)
    server, port = build_server([private_ca_servicer_pair(service)], "127.0.0.1:0",
                                max_workers=4, reuse_port=False,
                                perimeter=LocalAdmin(OWNER))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Pca(private_ca_pb2_grpc.PrivateCaStub(channel), engine, service, channel)
    finally:
        channel.close()
        graceful_stop(server, 0)
        engine.dispose()


@pytest.fixture(scope="session")
def rsa_ca(pca: Pca) -> Hierarchy:
    return create_hierarchy(pca, "RSA_2048")


@pytest.fixture(scope="session")
def ecc_ca(pca: Pca) -> Hierarchy:
    return create_hierarchy(pca, "ECC_256")


@pytest.fixture(scope="session", params=["RSA_2048", "ECC_256"])
def ca(request: pytest.FixtureRequest, rsa_ca: Hierarchy, ecc_ca: Hierarchy) -> Hierarchy:
    return rsa_ca if request.param == "RSA_2048" else ecc_ca


@pytest.fixture(scope="session")
def client_only_ca(pca: Pca) -> Hierarchy:
    """An ECC sub CA whose EKU extension allows clientAuth only."""
    return create_hierarchy(pca, "ECC_256", sub_ekus=("clientAuth",), enable_crl=0)
