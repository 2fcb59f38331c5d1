"""Synchronous calls with a custom_identifier whose job goes while another call waits for it.

Real SoftHSM tokens and a real SQLite database. The test holds the hsm token's lock while a
plain call leads the signing pipeline, so the calls queued behind it wait with their jobs
stored and not yet reserved; the CA is revoked meanwhile, for real, then the lock is
released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pca_support import make_csr, new_key, server_request, service_hierarchy
from sqlalchemy import select

from service.errors import FailedPrecondition
from service.private_ca.crls import CrlPublisher
from service.private_ca.lifecycle import Lifecycle
from service.private_ca.requests import (
    CreateCustomCertificate,
    IssueCommon,
)
from service.private_ca.service import PrivateCaService
from service.storage.db import create_engine_for, migrate
from service.storage.schema import certificate as cert_t

OWNER = "tenant-races"


@pytest.fixture
def service(tmp_path: Path, hsm_token: Any, software_token: Any) -> Iterator[PrivateCaService]:
    url = f"sqlite:///{tmp_path / 'races.sqlite'}"
    migrate(url)
    engine = create_engine_for(url)
    svc = PrivateCaService(engine, hsm_token, software_token,
                           public_base_url="http://127.0.0.1:8080", min_rsa_bits=2048)
    try:
        yield svc
    finally:
        svc.store.close()
        engine.dispose()


def _sub_ca(service: PrivateCaService) -> str:
    parent = service_hierarchy(service, OWNER, "races")
    service.create_server_certificate(OWNER, _plain(parent))  # CA state cached
    return parent


def _plain(parent: str) -> Any:
    return server_request(parent, "plain.example")


def _idempotent(parent: str, key: str) -> CreateCustomCertificate:
    return CreateCustomCertificate(
        IssueCommon(parent, immediately=1),
        make_csr(new_key("ECC_256"), "order.example", ["order.example"]), "30d",
        custom_identifier=key)


class _Call:
    """A call in a thread of its own; ``outcome`` is its result or its exception."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.outcome: Any = None
        self._thread = threading.Thread(target=self._run, args=(call,))
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.outcome = call()
        except Exception as e:
            self.outcome = e

    def result(self) -> Any:
        self._thread.join(60)
        assert not self._thread.is_alive()
        return self.outcome


def _rows(service: PrivateCaService, key: str) -> list[str]:
    with service.store.read() as conn:
        return [str(status) for status in conn.execute(
            select(cert_t.c.status).where(cert_t.c.custom_identifier == key)).scalars()]


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _reserved_plain_rows(service: PrivateCaService) -> int:
    with service.store.read() as conn:
        return len(conn.execute(select(cert_t.c.identifier).where(
            cert_t.c.status == "RESERVED", cert_t.c.custom_identifier.is_(None))).all())


def test_a_replay_whose_first_request_failed_before_reserving_is_issued_in_its_place(
        service: PrivateCaService, hsm_token: Any) -> None:
    # Two identical requests: the second waits for the first's job, which the CA's
    # revocation refuses before its reservation (its row goes with the error). The second
    # then answers for itself: the CA's status, not "the certificate is PENDING".
    parent = _sub_ca(service)
    key = "first-failed"
    request = _idempotent(parent, key)
    lifecycle = Lifecycle(service, CrlPublisher(service))
    with hsm_token._lock:
        leader = _Call(lambda: service.create_server_certificate(OWNER, _plain(parent)))
        _wait(lambda: _reserved_plain_rows(service) == 1, "the leader's reservation")
        first = _Call(lambda: service.create_custom_certificate(OWNER, request))
        _wait(lambda: _rows(service, key) != [], "the first call's job")
        second = _Call(lambda: service.create_custom_certificate(OWNER, request))
        time.sleep(0.3)  # the second is waiting for the first's job
        lifecycle.update_ca_status(OWNER, parent, "REVOKE")
    assert leader.result().certificate_pem
    for outcome in (first.result(), second.result()):
        assert isinstance(outcome, FailedPrecondition), outcome
        assert outcome.reason == "IncorrectStatus.CA", outcome
    assert _rows(service, key) == []
