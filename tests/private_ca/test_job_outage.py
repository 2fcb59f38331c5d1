"""A job that meets a database outage after its reservation is issued once.

The fault is real: SQLite's write lock held by another connection past the service's busy
budget, or the PostgreSQL cluster of this test stopped. It starts while the job's token
signature is in flight (the test holds the token's lock, so the job waits in step 7 with its
reservation committed), so recording the certificate fails, and so does giving the lease
back with a backoff. Wanted: once the database is back the job is ISSUED, with the serial it
reserved, within a few leases; it never stays RESERVED. The same for the job of a synchronous
call with a custom_identifier, whose retry then returns that certificate; and a call whose
job cannot be settled because the database went away reports its own error all the same.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pca_support import make_csr, new_key, server_request, service_hierarchy
from pg_support import BACKENDS
from sqlalchemy import select

from service import errors
from service.errors import PermissionDenied, Unavailable
from service.private_ca.issuance import IssuanceEvent, NoObserver
from service.private_ca.jobs import JobWorker
from service.private_ca.requests import (
    CreateCustomCertificate,
    IssueCommon,
)
from service.private_ca.service import PrivateCaService
from service.storage.db import create_engine_for, migrate
from service.storage.schema import certificate as cert_t

OWNER = "tenant-outage"
# Longer than the outage: the lease the job held when it met the outage is still valid when
# the database is back (as with a short restart under a lease of seconds).
LEASE_SECONDS = 3.0
# Once the database is back: at most a lease running out, the backoff and the job thread's
# polling, with room for a loaded machine.
ISSUED_WITHIN_SECONDS = 15.0


class _Failures(NoObserver):
    """Counts the issuance calls that failed (the job's, when the record meets the outage)."""

    def __init__(self) -> None:
        self.failed_event = threading.Event()

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        self.failed_event.set()


class _Outage:
    """Starts and ends a real outage of one database."""

    def __init__(self, begin: Callable[[], None], end: Callable[[], None]) -> None:
        self.begin, self.end = begin, end


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, _Outage]]:
    """A migrated database of this test only, and how to take it away and give it back."""
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite"
        url = f"sqlite:///{path}"
        migrate(url)
        holder: list[sqlite3.Connection] = []

        def lock() -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            holder.append(conn)

        def unlock() -> None:
            conn = holder.pop()
            conn.rollback()
            conn.close()

        yield url, _Outage(lock, unlock)
        while holder:
            unlock()
        return
    cluster: Any = request.getfixturevalue("private_postgres")
    url = cluster.create_database("jobs")
    migrate(url)
    yield url, _Outage(lambda: cluster.stop("fast"), cluster.start)


def _service_and_worker(engine: Any, hsm_token: Any, software_token: Any,
                        observer: NoObserver) -> tuple[PrivateCaService, JobWorker]:
    """The service on ``engine`` with short leases, and its job thread (not started)."""
    service = PrivateCaService(engine, hsm_token, software_token,
                               public_base_url="http://127.0.0.1:8080", min_rsa_bits=2048,
                               observer=observer, job_lease_seconds=LEASE_SECONDS)
    return service, JobWorker(service, poll_seconds=0.05, lease_seconds=LEASE_SECONDS)


def _row(service: PrivateCaService, identifier: str) -> Any:
    with service.store.read() as conn:
        return conn.execute(select(cert_t.c.status, cert_t.c.serial, cert_t.c.lease_owner)
                            .where(cert_t.c.identifier == identifier)).one()


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_job_that_meets_a_database_outage_after_its_reservation_is_issued_once(
    database: tuple[str, _Outage], hsm_token: Any, software_token: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, outage = database
    caplog.set_level(logging.INFO, logger="hsmca")
    # A short busy budget: SQLite's write lock held by another process is an outage soon.
    engine = create_engine_for(url, busy_timeout_ms=200)
    failures = _Failures()
    service, worker = _service_and_worker(engine, hsm_token, software_token, failures)
    outage_on = False
    try:
        parent = service_hierarchy(service, OWNER, "outage")
        # The CA's state cached.
        service.create_server_certificate(OWNER, server_request(parent, "job.example"))
        worker.start()
        with hsm_token._lock:  # the job waits in step 7, its reservation committed
            job = service.create_server_certificate(
                OWNER, server_request(parent, "job.example", immediately=0)).identifier
            _wait(lambda: _row(service, job).status == "RESERVED", 30, "the reservation")
            reserved_serial = _row(service, job).serial
            outage.begin()
            outage_on = True
        # The signature is made; recording it fails, and so does deferring the job.
        _wait(failures.failed_event.is_set, 30, "the job to meet the outage")
        _wait(lambda: any("could not defer" in r.getMessage() for r in caplog.records), 30,
              "the deferral to fail")
        outage.end()
        outage_on = False
        back = time.monotonic()
        _wait(lambda: _row(service, job).status != "RESERVED", ISSUED_WITHIN_SECONDS,
              "the job to leave RESERVED once the database was back")
        row = _row(service, job)
        assert (row.status, row.serial, row.lease_owner) == ("ISSUED", reserved_serial, None)
        print(f"issued {time.monotonic() - back:.2f}s after the database was back")
        with service.store.read() as conn:
            same_serial = conn.execute(select(cert_t.c.identifier)
                                       .where(cert_t.c.serial == reserved_serial)).all()
        assert len(same_serial) == 1
    finally:
        if outage_on:
            outage.end()
        worker.stop(10)
        service.store.close()
        engine.dispose()


class _FailedErrors(NoObserver):
    """The errors the observers' ``failed`` was called with."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        self.errors.append(error)


def test_idempotent_call_that_meets_a_database_outage_after_its_reservation_is_issued_once(
    database: tuple[str, _Outage], hsm_token: Any, software_token: Any,
) -> None:
    """A synchronous call with a custom_identifier, its record met by the outage.

    The caller gets the outage (UNAVAILABLE at the API), and the observers their ``failed``
    call. Once the database is back, the job thread issues the reserved serial, and the
    retry the caller was invited to make returns that certificate.
    """
    url, outage = database
    engine = create_engine_for(url, busy_timeout_ms=200)
    observed = _FailedErrors()
    service, worker = _service_and_worker(engine, hsm_token, software_token, observed)
    outage_on = False
    try:
        parent = service_hierarchy(service, OWNER, "outage")
        # The CA's state cached.
        service.create_server_certificate(OWNER, server_request(parent, "job.example"))
        worker.start()
        request = CreateCustomCertificate(
            IssueCommon(parent, immediately=1),
            make_csr(new_key("ECC_256"), "order.example", ["order.example"]), "30d",
            custom_identifier="order-during-outage")
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(service.create_custom_certificate(OWNER, request))
            except Exception as e:
                outcome.append(e)

        caller = threading.Thread(target=call)
        with hsm_token._lock:  # the call waits in step 7, its reservation committed
            caller.start()
            _wait(lambda: _custom_rows(service) != [], 30, "the reservation")
            _wait(lambda: _custom_rows(service)[0][0] == "RESERVED", 30, "the reservation")
            reserved_serial = _custom_rows(service)[0][1]
            outage.begin()
            outage_on = True
        caller.join(60)
        assert len(outcome) == 1 and errors.outage(outcome[0]) is not None, outcome
        assert observed.errors == outcome
        outage.end()
        outage_on = False
        deadline = time.monotonic() + ISSUED_WITHIN_SECONDS + LEASE_SECONDS
        while True:
            try:
                issued = service.create_custom_certificate(OWNER, request)
                break
            except Unavailable:  # "still being issued: retry"
                assert time.monotonic() < deadline, "not issued after the outage"
        assert issued.serial_number == reserved_serial and issued.certificate_pem
        assert _custom_rows(service) == [("ISSUED", reserved_serial)]
    finally:
        if outage_on:
            outage.end()
        worker.stop(10)
        service.store.close()
        engine.dispose()


def _custom_rows(service: PrivateCaService) -> list[tuple[str, str | None]]:
    with service.store.read() as conn:
        return [(str(r.status), r.serial) for r in conn.execute(
            select(cert_t.c.status, cert_t.c.serial)
            .where(cert_t.c.custom_identifier == "order-during-outage"))]


class _RefusesAfterRecord(NoObserver):
    """An observer whose ``issued`` takes the database away, then raises."""

    def __init__(self, outage: _Outage) -> None:
        self.outage = outage
        self.outage_on = False
        self.errors: list[BaseException] = []

    def issued(self, event: IssuanceEvent, certificate: bytes) -> None:
        if event.identifier and not self.outage_on:
            self.outage.begin()
            self.outage_on = True
            raise PermissionDenied("refused by the test's observer after the record")

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        self.errors.append(error)


def test_idempotent_call_whose_job_cannot_be_settled_still_reports_its_own_error(
    database: tuple[str, _Outage], hsm_token: Any, software_token: Any,
) -> None:
    """A synchronous call with a custom_identifier fails after its record (an observer
    refuses it), and settling its job then meets a database outage: the caller gets the
    observer's error, not the database's, and ``failed`` is still called with it."""
    url, outage = database
    engine = create_engine_for(url, busy_timeout_ms=200)
    observer = _RefusesAfterRecord(outage)
    service = PrivateCaService(engine, hsm_token, software_token,
                               public_base_url="http://127.0.0.1:8080", min_rsa_bits=2048,
                               observer=observer, job_lease_seconds=LEASE_SECONDS)
    try:
        observer.outage_on = True  # the hierarchy is made without the outage
        parent = service_hierarchy(service, OWNER, "outage")
        observer.outage_on = False
        request = CreateCustomCertificate(
            IssueCommon(parent, immediately=1),
            make_csr(new_key("ECC_256"), "order.example", ["order.example"]), "30d",
            custom_identifier="order-during-outage")
        with pytest.raises(PermissionDenied, match="refused by the test's observer"):
            service.create_custom_certificate(OWNER, request)
        assert len(observer.errors) == 1 and isinstance(observer.errors[0], PermissionDenied)
        outage.end()
        observer.outage_on = False
        # Recorded before the observer refused it: the certificate stays, ISSUED.
        assert [status for status, _ in _custom_rows(service)] == ["ISSUED"]
    finally:
        if observer.outage_on:
            outage.end()
        service.store.close()
        engine.dispose()
