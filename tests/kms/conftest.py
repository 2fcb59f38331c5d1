"""Fixtures for the KMS Certificates API tests: a real server on port 0, SQLite, SoftHSM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from kms_api_support import OpensslCa
from pg_support import BACKENDS
from sqlalchemy import Engine

from service.auth.perimeter import LocalAdmin
from service.gen.hsmca.v1 import kms_pb2_grpc
from service.kms.service import KmsCertificatesService
from service.rpc.server import build_server, graceful_stop
from service.servicers.kms import kms_servicer_pair
from service.storage.db import create_engine_for, migrate

OWNER = "default"
REGION = "cn-test"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class KmsApi:
    """The running server's stub plus what tests inspect behind it."""

    stub: Any  # kms_pb2_grpc.KmsCertificatesStub
    service: KmsCertificatesService
    engine: Engine
    hsm_token: Any
    software_token: Any
    channel: grpc.Channel


@pytest.fixture(scope="session", params=BACKENDS)
def kms_engine(request: pytest.FixtureRequest,
               new_database_url: Callable[[str, str], str]) -> Iterator[Engine]:
    """A migrated database: SQLite in a temp directory, or PostgreSQL."""
    url = new_database_url(str(request.param), "kms-db")
    migrate(url)
    engine = create_engine_for(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def kms(kms_engine: Engine, hsm_token: Any, software_token: Any) -> Iterator[KmsApi]:
    """KmsCertificates served on 127.0.0.1:0 over the test tokens."""
    service = KmsCertificatesService(
        kms_engine, hsm_token, software_token, region=REGION, account_id=ACCOUNT
    )
    server, port = build_server(
        [kms_servicer_pair(service)], "127.0.0.1:0", max_workers=4, reuse_port=False,
        perimeter=LocalAdmin(OWNER),
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield KmsApi(
            kms_pb2_grpc.KmsCertificatesStub(channel),
            service,
            kms_engine,
            hsm_token,
            software_token,
            channel,
        )
    finally:
        channel.close()
        graceful_stop(server, 0)


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """An ECDSA P-256 root and intermediate made with the OpenSSL CLI."""
    return OpensslCa.make(Path(tmp_path_factory.mktemp("ca")), sm2=False)


@pytest.fixture(scope="session")
def sm2_ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """An SM2 root and intermediate (SM3withSM2, default ID) made with the OpenSSL CLI."""
    return OpensslCa.make(Path(tmp_path_factory.mktemp("sm2-ca")), sm2=True)


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """A second, unrelated CA, for chains that do not verify."""
    return OpensslCa.make(Path(tmp_path_factory.mktemp("other-ca")), sm2=False)
