"""`hsmca serve` as a subprocess with its own state dir, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_state(state: Path) -> Path:
    """Create the SoftHSM tokens under state/softhsm, as `make serve` does under var/."""
    subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(state / "softhsm")],
                   check=True, stdout=subprocess.DEVNULL)
    return state


def serve_env(state: Path, **extra: str) -> dict[str, str]:
    """This environment without HSMCA_* and SOFTHSM2_CONF, pointed at ``state``.

    The server then finds its tokens through the embedded defaults under the state dir, as
    a user's would. The CRL HTTP port is a free one unless given, so servers coexist.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HSMCA_") and k not in ("SOFTHSM2_CONF", "GRPC_EXPERIMENTS")}
    env["HSMCA_STATE_DIR"] = str(state)
    # Plaintext on loopback, as the local admin: these tests are about serving, not the
    # perimeter (tests/auth runs real mTLS). Pass HSMCA_GRPC_INSECURE="false" for mTLS.
    env["HSMCA_GRPC_INSECURE"] = "true"
    env["HSMCA_HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"
    env.update(extra)
    return env


class ServeProcess:
    """`python -m service.cli serve` in its own process group (so kill -9 takes all)."""

    def __init__(self, state: Path, *, workers: int, grpc_port: int | None = None,
                 http_port: int | None = None, prefix: Sequence[str] = (),
                 **extra: str) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.log = state / f"serve-{time.monotonic_ns()}.log"
        self.state = state
        self.insecure = extra.get("HSMCA_GRPC_INSECURE", "true") == "true"
        env = serve_env(state, HSMCA_GRPC_LISTEN=self.target,
                        HSMCA_HTTP_LISTEN=f"127.0.0.1:{self.http_port}",
                        HSMCA_HTTP_PUBLIC_BASE_URL=f"http://127.0.0.1:{self.http_port}", **extra)
        self.proc = subprocess.Popen(
            # prefix: a wrapper such as setpriv, to run the server with fewer privileges.
            [*prefix, sys.executable, "-m", "service.cli", "serve", "--workers", str(workers)],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True)
        self._wait_serving()

    def _wait_serving(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            if not self.insecure and not (self.state / "tls" / "admin.key").exists():
                time.sleep(0.1)  # still bootstrapping
                continue
            try:
                with self.channel() as ch:
                    resp = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service="hsmca.v1.PrivateCa"), timeout=1)
                    # The supervisor logs once every worker serves.
                    if (resp.status == health_pb2.HealthCheckResponse.SERVING
                            and "worker process(es)" in self.log.read_text()):
                        return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not serving after {timeout}s:\n{self.log.read_text()}")

    def channel(self, cert: Path | None = None, key: Path | None = None) -> grpc.Channel:
        """A channel to this server: plaintext, or mTLS as admin (or as cert/key)."""
        from service.rpc.channel import client_channel

        if self.insecure:
            return grpc.insecure_channel(self.target)
        return client_channel(self.target, self.state / "tls", insecure=False, cert=cert,
                              key=key, ca=self.state / "tls" / "ca.pem",
                              options=[("grpc.use_local_subchannel_pool", 1)])

    def stop(self) -> int:
        """SIGTERM (drain) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill9(self) -> None:
        """SIGKILL the supervisor and every worker at once."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


# --- what several end-to-end tests do against a running server ----------------------------


def server_csr(cn: str) -> str:
    """A PEM CSR for a P-256 key with ``cn`` as CN and DNS SAN."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False).sign(
        key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def create_ecc_hierarchy(target: str, name: str, *, enable_crl: int = 0) -> tuple[str, str]:
    """An ECC_256 root and sub CA over plaintext gRPC: (root identifier, sub identifier)."""
    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    crl = {"enable_crl": 1, "crl_day": 1} if enable_crl else {}
    with grpc.insecure_channel(target) as ch:
        stub = private_ca_pb2_grpc.PrivateCaStub(ch)
        root = stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
            common_name=f"{name} root", organization="hsmca", country_code="CN",
            algorithm="ECC_256", years=5, **crl), timeout=30)
        sub = stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
            parent_identifier=root.identifier, common_name=f"{name} sub",
            organization="hsmca", country_code="CN", algorithm="ECC_256", years=2, **crl),
            timeout=30)
        return str(root.identifier), str(sub.identifier)


def issue_server_certificate(target: str, parent: str, csr: str, immediately: int = 1) -> Any:
    """CreateServerCertificateWithCsr on a new channel (the kernel spreads new connections
    over the workers)."""
    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    with grpc.insecure_channel(target) as ch:
        return private_ca_pb2_grpc.PrivateCaStub(ch).CreateServerCertificateWithCsr(
            pb.CreateServerCertificateWithCsrRequest(
                parent_identifier=parent, csr=csr, days=5, immediately=immediately),
            timeout=20)


def health_status(target: str, service: str = "hsmca.v1.PrivateCa") -> int:
    """The health status one (new) connection reports for ``service``."""
    with grpc.insecure_channel(target) as ch:
        return int(health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5).status)
