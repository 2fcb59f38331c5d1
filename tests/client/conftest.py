"""A real hsmca server in this process for the client and CLI tests: both services, the job
thread and the CRL HTTP server, over the session's SoftHSM tokens, plaintext on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_support import OWNER, Served

from service.auth.perimeter import LocalAdmin
from service.http import start_crl_server
from service.kms.service import KmsCertificatesService
from service.private_ca.crls import CrlPublisher
from service.private_ca.jobs import JobWorker
from service.private_ca.lifecycle import Lifecycle
from service.private_ca.service import PrivateCaService
from service.rpc.server import build_server, graceful_stop
from service.servicers.kms import kms_servicer_pair
from service.servicers.private_ca import private_ca_servicer_pair
from service.storage.db import create_engine_for, migrate


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, hsm_token: Any,
           software_token: Any) -> Iterator[Served]:
    db: Path = tmp_path_factory.mktemp("client-db") / "hsmca.sqlite3"
    url = f"sqlite:///{db}"
    migrate(url)
    engine = create_engine_for(url)
    holder: dict[str, CrlPublisher] = {}
    http, _ = start_crl_server("127.0.0.1:0", lambda ca: holder["crls"].latest(ca),
                               reuse_port=False)
    pca = PrivateCaService(engine, hsm_token, software_token,
                           public_base_url=f"http://127.0.0.1:{http.port}", min_rsa_bits=2048)
    crls = holder["crls"] = CrlPublisher(pca)
    kms = KmsCertificatesService(engine, hsm_token, software_token, region="cn-test",
                                 account_id="123456789012")
    server, port = build_server(
        [private_ca_servicer_pair(pca, Lifecycle(pca, crls)), kms_servicer_pair(kms)],
        "127.0.0.1:0", max_workers=8, reuse_port=False, perimeter=LocalAdmin(OWNER))
    server.start()
    worker = JobWorker(pca, poll_seconds=0.05, crl_check=crls.publish_due,
                       crl_check_seconds=0.5)
    worker.start()
    try:
        yield Served(f"127.0.0.1:{port}", http.port)
    finally:
        worker.stop()
        graceful_stop(server, 0)
        http.shutdown()
        engine.dispose()
