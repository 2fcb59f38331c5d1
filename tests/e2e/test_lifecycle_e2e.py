"""The CA lifecycle through `hsmca serve`: a job pending at kill -9 is issued once after restart,
and the CRL is served over HTTP by the worker processes at the URL in the certificates."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serve_support import ServeProcess, free_port, init_state

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.gen.hsmca.v1 import private_ca_pb2_grpc


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_state(tmp_path_factory.mktemp("lifecycle-state"))


def _csr(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False).sign(
        key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_job_pending_at_kill9_is_issued_once_after_restart(state: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    # 1. Job thread off: the job stays PENDING until the kill.
    first = ServeProcess(state, workers=2, grpc_port=grpc_port, http_port=http_port,
                         HSMCA_JOBS_POLL_SECONDS="0.1", HSMCA_JOBS_ENABLED="false")
    try:
        with grpc.insecure_channel(first.target) as ch:
            stub = private_ca_pb2_grpc.PrivateCaStub(ch)
            root = stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
                common_name="e2e root", organization="hsmca", country_code="CN",
                algorithm="ECC_256", years=5, enable_crl=1, crl_day=2), timeout=30)
            sub = stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
                parent_identifier=root.identifier, common_name="e2e sub", organization="hsmca",
                country_code="CN", algorithm="ECC_256", years=2, enable_crl=1, crl_day=1),
                timeout=30)
            job = stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
                parent_identifier=sub.identifier, csr=_csr("job.example"), days=10,
                enable_crl=1, immediately=0), timeout=30)
            st = stub.DescribeClientCertificateStatus(pb.DescribeClientCertificateStatusRequest(
                identifier=job.identifier), timeout=10).certificate_status[0]
            assert st.status == "PENDING"
    finally:
        first.kill9()
    # 2. Restart normally (two workers race for the job); it is issued exactly once.
    second = ServeProcess(state, workers=2, grpc_port=grpc_port, http_port=http_port,
                          HSMCA_JOBS_POLL_SECONDS="0.1")
    try:
        with grpc.insecure_channel(second.target) as ch:
            stub = private_ca_pb2_grpc.PrivateCaStub(ch)
            deadline = time.monotonic() + 30
            while True:
                st = stub.DescribeClientCertificateStatus(
                    pb.DescribeClientCertificateStatusRequest(identifier=job.identifier),
                    timeout=10).certificate_status[0]
                if st.status != "PENDING" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert st.status == "ISSUE", (st, second.log.read_text())
            info = stub.DescribeClientCertificate(pb.DescribeClientCertificateRequest(
                identifier=job.identifier), timeout=10).certificate
            cert = x509.load_pem_x509_certificate(info.x509_certificate.encode())
            assert format(cert.serial_number, "x") == st.serial_number
            with sqlite3.connect(state / "hsmca.db") as db:
                rows = db.execute("SELECT status, serial FROM certificate WHERE identifier = ?",
                                  (job.identifier,)).fetchall()
                assert rows == [("ISSUED", st.serial_number)]
                assert db.execute("SELECT count(*) FROM certificate WHERE serial = ?",
                                  (st.serial_number,)).fetchone() == (1,)
            # 3. The CRL at the URL inside the certificate, served by the workers.
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            url = str(cdp[0].full_name[0].value)  # type: ignore[index]
            assert url == f"http://127.0.0.1:{http_port}/crl/{sub.identifier}.crl"
            stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
                identifier=job.identifier, reason_code=4), timeout=30)
            import urllib.request

            for _ in range(4):  # new connections land on either worker
                with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
                    assert resp.headers["Content-Type"] == "application/pkix-crl"
                    crl = x509.load_der_x509_crl(resp.read())
                assert crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    finally:
        second.stop()
    assert second.proc.returncode == 0, second.log.read_text()
