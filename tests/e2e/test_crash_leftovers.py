"""Leftovers of a crash between reservation and record, resolved by the recovery pass.

A worker of `hsmca serve` is made to exit right after a synchronous issuance committed its
reservation (HSMCA_TEST_EXIT_AFTER_RESERVE names a file whose presence makes the process
exit there, once): the row is RESERVED with its serial and TBS, and the token may or may not
have signed it. The recovery pass (the job thread, once such a row is older than a lease)
signs the stored TBS again under the same serial and records it; if the CA may no longer
issue, it revokes the serial so that it is on the CA's CRL. The leftover of a CA's creation
is never finished: its certificate is revoked, the CA FAILED and its key destroyed.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from serve_support import (
    REPO,
    ServeProcess,
    create_ecc_hierarchy,
    init_state,
    serve_env,
    server_csr,
)

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
        _wait_on_crl(second, sub, serial)
    finally:
        assert second.stop() == 0


def _wait_on_crl(srv: ServeProcess, ca: str, serial: str, timeout: float = 60) -> None:
    """Wait until the CRL that ``srv`` serves for ``ca`` lists ``serial``."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(  # noqa: S310 - our own loopback server
                f"http://127.0.0.1:{srv.http_port}/crl/{ca}.crl", timeout=10) as r:
            crl = x509.load_der_x509_crl(r.read())
        if crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None:
            return
        assert time.monotonic() < deadline, srv.log.read_text()[-4000:]
        time.sleep(0.3)


# --- the leftover of a CA's creation -------------------------------------------------------

# Run in a process of its own: SoftHSM reads SOFTHSM2_CONF once per process, and this test
# process has its own tokens (tests/conftest.py). Prints how many objects (private key,
# public key) of the hsm token carry each CKA_ID given in hex.
_COUNT_KEY_OBJECTS = """
import sys
from pkcs11 import Attribute
from hsm.config import TokenRole
from hsm.token import Token
from service.config import load_config
token = Token(load_config().token_config(TokenRole.HSM))
for key_id in sys.argv[1:]:
    print(token.run(lambda s: len(list(s.get_objects({Attribute.ID: bytes.fromhex(key_id)})))))
"""


def _key_objects(state: Path, *key_ids: str) -> list[int]:
    """How many objects with each CKA_ID the served state's hsm token holds."""
    out = subprocess.run([sys.executable, "-c", _COUNT_KEY_OBJECTS, *key_ids],
                         env=serve_env(state), cwd=REPO, check=True, capture_output=True,
                         text=True, timeout=120).stdout
    return [int(n) for n in out.split()]


def _crash_creating_ca(srv: ServeProcess, die: Path,
                       create: Callable[[private_ca_pb2_grpc.PrivateCaStub], object]) -> str:
    """Create a CA whose worker exits after the reservation: its identifier (RESERVED)."""
    before = {r[0] for r in _rows(srv, "SELECT identifier FROM ca")}
    die.touch()
    with grpc.insecure_channel(srv.target) as ch, pytest.raises(grpc.RpcError):
        create(private_ca_pb2_grpc.PrivateCaStub(ch))
    assert not die.exists()  # the worker took the exit
    (identifier,), = [r for r in _rows(srv, "SELECT identifier FROM ca")
                      if r[0] not in before]
    assert isinstance(identifier, str)
    (status, cert_status), = _rows(
        srv, "SELECT ca.status, certificate.status FROM ca JOIN certificate "
             "ON certificate.identifier = ca.identifier WHERE ca.identifier = ?", identifier)
    assert (status, cert_status) == ("RESERVED", "RESERVED")
    return identifier


def _wait_settled(srv: ServeProcess, identifier: str, timeout: float = 60) -> str:
    """Wait until the recovery pass took the RESERVED certificate row: its new status."""
    deadline = time.monotonic() + timeout
    while True:
        (status,), = _rows(srv, "SELECT status FROM certificate WHERE identifier = ?",
                           identifier)
        if status != "RESERVED":
            assert isinstance(status, str)
            return status
        assert time.monotonic() < deadline, srv.log.read_text()[-4000:]
        time.sleep(0.2)


def _assert_ca_creation_failed(srv: ServeProcess, identifier: str, issuer: str,
                               kept: str) -> str:
    """The unfinished CA: certificate REVOKED, CA FAILED, recorded, unknown to the API, key
    gone from the token (the key of CA ``kept`` stays there). Returns its serial."""
    assert _wait_settled(srv, identifier) == "REVOKED"
    (serial, reason, cert), = _rows(
        srv, "SELECT serial, failure_reason, certificate FROM certificate "
             "WHERE identifier = ?", identifier)
    assert cert is None and "creation did not finish" in str(reason)
    (ca_status, key_id, ca_cert), = _rows(
        srv, "SELECT status, key_id, certificate FROM ca WHERE identifier = ?", identifier)
    assert ca_status == "FAILED" and ca_cert is None
    revocations = _rows(srv, "SELECT resources, details FROM audit_record "
                             "WHERE action = 'certificate.revoke'")
    assert any(identifier in str(res) and issuer in str(res) and "FAILED" in str(det)
               for res, det in revocations), revocations
    # The key is destroyed after the commit: wait for it. Another CA's key stays (which
    # also shows that the count reads the token the server uses).
    (kept_key,), = _rows(srv, "SELECT key_id FROM ca WHERE identifier = ?", kept)
    deadline = time.monotonic() + 30
    while (counts := _key_objects(srv.state, str(key_id), str(kept_key)))[0]:
        assert time.monotonic() < deadline, (counts, srv.log.read_text()[-4000:])
        time.sleep(0.5)
    assert counts[1] == 2, counts  # its private and its public key
    destroyed = _rows(srv, "SELECT resources, outcome FROM audit_record "
                           "WHERE action = 'key.destroy' AND key_id = ?", key_id)
    assert any(identifier in str(res) and out == "SUCCESS" for res, out in destroyed), destroyed
    with grpc.insecure_channel(srv.target) as ch:
        stub = private_ca_pb2_grpc.PrivateCaStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.DescribeCACertificate(pb.DescribeCACertificateRequest(identifier=identifier),
                                       timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        listed = stub.DescribeCACertificateList(
            pb.DescribeCACertificateListRequest(current_page=1, show_size=100), timeout=30)
        assert identifier not in {c.identifier for c in listed.certificate_list}
        assert not stub.DescribeCACertificateList(pb.DescribeCACertificateListRequest(
            identifier=identifier), timeout=30).certificate_list
    assert isinstance(serial, str)
    return serial


def _lease_env(die: Path) -> dict[str, str]:
    return {"HSMCA_TEST_EXIT_AFTER_RESERVE": str(die), "HSMCA_JOBS_POLL_SECONDS": "0.1",
            "HSMCA_JOBS_LEASE_SECONDS": "2"}


def test_sub_ca_left_reserved_is_failed_revoked_and_its_key_destroyed(tmp_path: Path) -> None:
    state = init_state(tmp_path / "state")
    die = tmp_path / "die-after-reserve"
    srv = ServeProcess(state, workers=1, **_lease_env(die))
    try:
        with grpc.insecure_channel(srv.target) as ch:
            root = private_ca_pb2_grpc.PrivateCaStub(ch).CreateRootCACertificate(
                pb.CreateRootCACertificateRequest(
                    common_name="leftover root", organization="hsmca", country_code="CN",
                    algorithm="ECC_256", years=5, enable_crl=1, crl_day=1),
                timeout=30).identifier
        sub = _crash_creating_ca(srv, die, lambda stub: stub.CreateSubCACertificate(
            pb.CreateSubCACertificateRequest(
                parent_identifier=root, common_name="unfinished sub", organization="hsmca",
                country_code="CN", algorithm="ECC_256", years=2, enable_crl=1), timeout=30))
        # The supervisor restarts the worker; once the rows are older than a lease, its
        # recovery pass fails the creation instead of finishing it.
        serial = _assert_ca_creation_failed(srv, sub, root, kept=root)
        # The parent may have signed the TBS before the worker died: on the parent's CRL.
        _wait_on_crl(srv, root, serial)
        assert "worker 0" in srv.log.read_text() and "restarting" in srv.log.read_text()
    finally:
        assert srv.stop() == 0


def test_root_ca_left_reserved_is_failed_and_its_key_destroyed(tmp_path: Path) -> None:
    state = init_state(tmp_path / "state")
    die = tmp_path / "die-after-reserve"
    srv = ServeProcess(state, workers=1, **_lease_env(die))
    try:
        other, _ = create_ecc_hierarchy(srv.target, "finished")
        root = _crash_creating_ca(srv, die, lambda stub: stub.CreateRootCACertificate(
            pb.CreateRootCACertificateRequest(
                common_name="unfinished root", organization="hsmca", country_code="CN",
                algorithm="ECC_256", years=5, enable_crl=1), timeout=30))
        _assert_ca_creation_failed(srv, root, root, kept=other)
    finally:
        assert srv.stop() == 0
