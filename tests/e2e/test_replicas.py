"""Two `hsmca serve` replicas on one PostgreSQL database and one token directory.

Load on both (synchronous issuance, asynchronous jobs, revocations); one replica is killed
with SIGKILL mid-load and started again. Wanted: serials unique per CA; every certificate a
client received recorded byte for byte; every acknowledged job issued exactly once;
cRLNumber strictly increasing with thisUpdate never going backwards, and no entry dated
after its CRL's thisUpdate; each replica serving the current CRL.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from serve_support import ServeProcess, init_state, server_csr

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.gen.hsmca.v1 import private_ca_pb2_grpc

pytestmark = pytest.mark.slow


CSRS = [server_csr(f"replica{i}.example") for i in range(8)]


class _Load:
    """Issues (sync and async) and revokes against one replica; records what it was told."""

    def __init__(self, target: str, issuer: str, name: str) -> None:
        self.target, self.issuer, self.name = target, issuer, name
        self.answered: dict[str, bytes] = {}  # identifier -> DER the client received
        self.jobs: list[str] = []
        self.revoked: dict[str, int] = {}  # identifier -> serial, acknowledged revocations
        self.errors: list[grpc.StatusCode] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                with grpc.insecure_channel(self.target) as ch:
                    stub = private_ca_pb2_grpc.PrivateCaStub(ch)
                    immediately = 0 if n % 4 == 0 else 1
                    resp = stub.CreateServerCertificateWithCsr(
                        pb.CreateServerCertificateWithCsrRequest(
                            parent_identifier=self.issuer, csr=CSRS[n % len(CSRS)], days=5,
                            immediately=immediately), timeout=20)
                    if immediately == 0:
                        self.jobs.append(resp.identifier)
                        continue
                    cert = x509.load_pem_x509_certificate(resp.x509_certificate.encode())
                    self.answered[resp.identifier] = cert.public_bytes(
                        serialization.Encoding.DER)
                    if n % 3 == 0:
                        stub.CreateRevokeClientCertificate(
                            pb.CreateRevokeClientCertificateRequest(
                                identifier=resp.identifier, reason_code=1), timeout=30)
                        self.revoked[resp.identifier] = cert.serial_number
            except grpc.RpcError as e:
                self.errors.append(e.code())
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def _crl(http_port: int, ca: str) -> x509.CertificateRevocationList:
    with urllib.request.urlopen(  # noqa: S310 - our own loopback server
            f"http://127.0.0.1:{http_port}/crl/{ca}.crl", timeout=10) as resp:
        return x509.load_der_x509_crl(resp.read())


def _number(crl: x509.CertificateRevocationList) -> int:
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def test_two_replicas_one_killed_mid_load(private_postgres: Any, tmp_path: Path) -> None:
    url = private_postgres.create_database("replicas")
    state = init_state(tmp_path / "state")  # one token directory for both replicas
    env = {"HSMCA_DATABASE_URL": url, "HSMCA_JOBS_POLL_SECONDS": "0.1",
           "HSMCA_JOBS_LEASE_SECONDS": "3"}
    a = ServeProcess(state, workers=2, **env)
    b = ServeProcess(state, workers=2, **env)
    b_ports = (b.grpc_port, b.http_port)
    try:
        with grpc.insecure_channel(a.target) as ch:
            stub = private_ca_pb2_grpc.PrivateCaStub(ch)
            root = stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
                common_name="replica root", organization="hsmca", country_code="CN",
                algorithm="ECC_256", years=5, enable_crl=1, crl_day=2), timeout=30)
            sub = stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
                parent_identifier=root.identifier, common_name="replica sub",
                organization="hsmca", country_code="CN", algorithm="ECC_256", years=2,
                enable_crl=1, crl_day=1), timeout=30)
        issuer = sub.identifier
        loads = [_Load(a.target, issuer, "a"), _Load(a.target, issuer, "a"),
                 _Load(b.target, issuer, "b"), _Load(b.target, issuer, "b")]
        time.sleep(4.0)
        b.kill9()  # mid-load: calls in flight on b die with it
        time.sleep(3.0)
        b = ServeProcess(state, workers=2, grpc_port=b_ports[0], http_port=b_ports[1], **env)
        time.sleep(2.0)
        for load in loads:
            load.stop()

        engine = sqlalchemy.create_engine(url)
        try:
            # Every acknowledged job is issued exactly once (those of b by a, after its
            # leases ran out, or by b after its restart).
            jobs = [j for load in loads for j in load.jobs]
            assert jobs
            deadline = time.monotonic() + 60
            while True:
                with engine.connect() as conn:
                    statuses = dict(conn.execute(sqlalchemy.text(
                        "SELECT identifier, status FROM certificate "
                        "WHERE identifier = ANY(:ids)"), {"ids": jobs}).all())
                if set(statuses.values()) <= {"ISSUED"} or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert len(statuses) == len(jobs)
            assert set(statuses.values()) == {"ISSUED"}, statuses

            with engine.connect() as conn:
                duplicates = conn.execute(sqlalchemy.text(
                    "SELECT issuer_identifier, serial, count(*) FROM certificate "
                    "WHERE serial IS NOT NULL GROUP BY issuer_identifier, serial "
                    "HAVING count(*) > 1")).all()
                assert duplicates == []
                answered = {i: d for load in loads for i, d in load.answered.items()}
                assert len(answered) > 20, [len(load.answered) for load in loads]
                stored = dict(conn.execute(sqlalchemy.text(
                    "SELECT identifier, certificate FROM certificate "
                    "WHERE identifier = ANY(:ids)"), {"ids": list(answered)}).all())
                assert {i: bytes(d) for i, d in stored.items()} == answered
                history = conn.execute(sqlalchemy.text(
                    "SELECT crl_number, this_update FROM crl_history WHERE ca_identifier = :ca "
                    "ORDER BY crl_number"), {"ca": issuer}).all()
                current = conn.execute(sqlalchemy.text(
                    "SELECT crl_number FROM crl WHERE ca_identifier = :ca"),
                    {"ca": issuer}).scalars().all()
            numbers = [n for n, _ in history]
            assert len(numbers) > 5 and numbers == sorted(set(numbers))  # strictly increasing
            times = [t for _, t in history]
            assert times == sorted(times), "thisUpdate went backwards"
            assert current == [numbers[-1]]  # only the current CRL is kept

            # The last acknowledged revocation reaches the CRL both replicas serve.
            revoked = {i: s for load in loads for i, s in load.revoked.items()}
            assert revoked
            deadline = time.monotonic() + 30
            while True:
                crls = [_crl(srv.http_port, issuer) for srv in (a, b)]
                listed = [{r.serial_number for r in crl} for crl in crls]
                if all(set(revoked.values()) <= found for found in listed):
                    break
                assert time.monotonic() < deadline, "a revocation is missing from a CRL"
                time.sleep(0.3)
            with engine.connect() as conn:
                latest = conn.execute(sqlalchemy.text(
                    "SELECT crl_number FROM crl WHERE ca_identifier = :ca"),
                    {"ca": issuer}).scalar_one()
            assert [_number(crl) for crl in crls] == [latest, latest]
            for crl in crls:
                assert all(r.revocation_date_utc <= crl.last_update_utc for r in crl)
            print(f"replicas: {len(answered)} certificates answered, {len(jobs)} jobs, "
                  f"{len(revoked)} revocations, CRLs {numbers[0]}..{numbers[-1]}, "
                  f"errors {[len(load.errors) for load in loads]}")
        finally:
            engine.dispose()
    finally:
        for srv in (a, b):
            if srv.proc.poll() is None:
                srv.stop()
