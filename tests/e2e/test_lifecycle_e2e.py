"""Issue 4 through `hsmca serve`: a job pending at kill -9 is issued once after restart,
and the CRL is served over HTTP by the worker processes at the URL in the certificates."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.gen.hsmca.v1 import private_ca_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`python -m service.cli serve` in its own process group (so kill -9 takes all)."""

    def __init__(self, state: Path, grpc_port: int, http_port: int, **extra: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HSMCA_") and k != "SOFTHSM2_CONF"}
        env.update(HSMCA_STATE_DIR=str(state), HSMCA_GRPC_LISTEN=f"127.0.0.1:{grpc_port}",
                   HSMCA_HTTP_LISTEN=f"127.0.0.1:{http_port}",
                   HSMCA_HTTP_PUBLIC_BASE_URL=f"http://127.0.0.1:{http_port}",
                   HSMCA_JOBS_POLL_SECONDS="0.1", **extra)
        self.log = state / f"serve-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--workers", "2"], env=env,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True)
        self.target = f"127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 60
        while "worker process(es)" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(self.log.read_text())
            time.sleep(0.1)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("lifecycle-state")
    subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(state / "softhsm")],
                   check=True, stdout=subprocess.DEVNULL)
    return state


def _csr(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False).sign(
        key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_job_pending_at_kill9_is_issued_once_after_restart(state: Path) -> None:
    grpc_port, http_port = _free_port(), _free_port()
    # 1. Job thread off: the job stays PENDING until the kill.
    first = Serve(state, grpc_port, http_port, HSMCA_JOBS_ENABLED="false")
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
    second = Serve(state, grpc_port, http_port)
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
