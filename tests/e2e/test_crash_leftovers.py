"""Leftovers of a crash between reservation and record, resolved by the recovery pass.

A worker of `hsmca serve` is made to exit right after a synchronous issuance committed its
reservation (HSMCA_TEST_EXIT_AFTER_RESERVE names a file whose presence makes the process
exit there, once): the row is RESERVED with its serial and TBS, and the token may or may not
have signed it. The recovery pass (the job thread, once such a row is older than a lease)
signs the stored TBS again under the same serial and records it; if the CA may no longer
issue, it revokes the serial so that it is on the CA's CRL.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from serve_support import ServeProcess, create_ecc_hierarchy, init_state, server_csr

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.gen.hsmca.v1 import private_ca_pb2_grpc

pytestmark = pytest.mark.slow


_csr = server_csr


def _hierarchy(target: str) -> tuple[str, str]:
    return create_ecc_hierarchy(target, "leftover", enable_crl=1)


def _crash_after_reserve(srv: ServeProcess, die: Path, sub: str, cn: str) -> tuple[str, str]:
    """Issue one certificate whose worker exits after the reservation: (identifier, serial)."""
    die.touch()
    with grpc.insecure_channel(srv.target) as ch, pytest.raises(grpc.RpcError):
        private_ca_pb2_grpc.PrivateCaStub(ch).CreateServerCertificateWithCsr(
            pb.CreateServerCertificateWithCsrRequest(
                parent_identifier=sub, csr=_csr(cn), days=5, immediately=1), timeout=30)
    assert not die.exists()  # the worker took the exit
    rows = _rows(srv, "SELECT identifier, serial, status, tbs IS NOT NULL FROM certificate "
                      "WHERE common_name = ?", cn)
    assert len(rows) == 1 and rows[0][2] == "RESERVED" and rows[0][3], rows
    return rows[0][0], rows[0][1]


def _rows(srv: ServeProcess, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(srv.state / "hsmca.db") as db:
        return db.execute(sql, args).fetchall()


def _wait_status(srv: ServeProcess, identifier: str, want: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (status,), = _rows(srv, "SELECT status FROM certificate WHERE identifier = ?",
                           identifier)
        if status == want:
            return
        assert time.monotonic() < deadline, (status, srv.log.read_text()[-4000:])
        time.sleep(0.2)


def test_reserved_leftover_is_signed_again_under_its_serial(tmp_path: Path) -> None:
    state = init_state(tmp_path / "state")
    die = tmp_path / "die-after-reserve"
    srv = ServeProcess(state, workers=1, HSMCA_TEST_EXIT_AFTER_RESERVE=str(die),
                       HSMCA_JOBS_POLL_SECONDS="0.1", HSMCA_JOBS_LEASE_SECONDS="2")
    try:
        root, sub = _hierarchy(srv.target)
        identifier, serial = _crash_after_reserve(srv, die, sub, "leftover.example")
        # The supervisor restarts the worker; its recovery pass finishes the row.
        _wait_status(srv, identifier, "ISSUED")
        (der, again), = _rows(srv, "SELECT certificate, serial FROM certificate "
                                   "WHERE identifier = ?", identifier)
        assert again == serial
        cert = x509.load_der_x509_certificate(der)  # type: ignore[arg-type]
        assert format(cert.serial_number, "x") == serial
        (ca_der,), = _rows(srv, "SELECT certificate FROM ca WHERE identifier = ?", sub)
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(ca_der))  # type: ignore[arg-type]
        assert "worker 0" in srv.log.read_text() and "restarting" in srv.log.read_text()
    finally:
        assert srv.stop() == 0


def test_reserved_leftover_of_a_revoked_ca_is_revoked_onto_the_crl(tmp_path: Path) -> None:
    state = init_state(tmp_path / "state")
    die = tmp_path / "die-after-reserve"
    # No job thread first: nothing resolves the leftover before its CA is revoked.
    first = ServeProcess(state, workers=1, HSMCA_TEST_EXIT_AFTER_RESERVE=str(die),
                         HSMCA_JOBS_ENABLED="false")
    try:
        root, sub = _hierarchy(first.target)
        identifier, serial = _crash_after_reserve(first, die, sub, "orphan.example")
        time.sleep(1.5)  # the supervisor restarts the worker
        first._wait_serving()
        with grpc.insecure_channel(first.target) as ch:
            private_ca_pb2_grpc.PrivateCaStub(ch).UpdateCACertificateStatus(
                pb.UpdateCACertificateStatusRequest(identifier=sub, status="REVOKE"),
                timeout=30)
    finally:
        assert first.stop() == 0
    second = ServeProcess(state, workers=1, HSMCA_JOBS_POLL_SECONDS="0.1",
                          HSMCA_JOBS_LEASE_SECONDS="2")
    try:
        _wait_status(second, identifier, "REVOKED")
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(  # noqa: S310 - our own loopback server
                    f"http://127.0.0.1:{second.http_port}/crl/{sub}.crl", timeout=10) as r:
                crl = x509.load_der_x509_crl(r.read())
            if crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None:
                break
            assert time.monotonic() < deadline, second.log.read_text()[-4000:]
            time.sleep(0.3)
    finally:
        assert second.stop() == 0
