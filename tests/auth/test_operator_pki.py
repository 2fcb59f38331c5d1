"""[tls] pointed at the operator's own PKI (say a mesh's SPIFFE bundle): the server serves the
operator's certificate, trusts only the operator's client bundle, and the principal is the
SPIFFE ID of the client's certificate."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from audit_support import installed_audit_log
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from service.audit.verify import list_records
from service.auth.perimeter import CrlHolder, MutualTls
from service.auth.policy import PolicyHolder
from service.auth.principal import current_principal
from service.auth.ratelimit import SharedRateLimiter
from service.config import Config, load_config
from service.errors import ResourceExhausted
from service.gen.hsmca.v1 import private_ca_pb2, private_ca_pb2_grpc
from service.rpc.client import error_info
from service.rpc.server import build_server, graceful_stop
from service.rpc.tls import ServerTlsFiles, server_credentials
from service.storage.db import create_engine_for, migrate

NOW = dt.datetime.now(dt.UTC)


class _WhoAmI(private_ca_pb2_grpc.PrivateCaServicer):  # type: ignore[misc]
    """DescribeCACertificate answers with the caller's principal and tenant."""

    def DescribeCACertificate(self, request: Any, context: grpc.ServicerContext) -> Any:
        p = current_principal()
        assert p is not None
        return private_ca_pb2.DescribeCACertificateResponse(
            certificate=private_ca_pb2.CACertificate(identifier=p.id, common_name=p.tenant))


def _cert(key: Any, subject: str, issuer: tuple[Any, x509.Certificate] | None, *,
          ca: bool, san: list[x509.GeneralName], eku: Any = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer, issuer_name = (key, name) if issuer is None else (issuer[0], issuer[1].subject)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return b.sign(signer, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[int, Path, Config]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, "mesh CA", None, ca=True, san=[])
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert(srv_key, "localhost", (ca_key, ca), ca=False,
                san=[x509.DNSName("localhost")], eku=ExtendedKeyUsageOID.SERVER_AUTH)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert(cli_key, "ignored CN", (ca_key, ca), ca=False,
                san=[x509.UniformResourceIdentifier("spiffe://mesh.example/ns/a/sa/web")],
                eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {"mesh-ca.pem": _pem(ca), "svid.pem": _pem(srv) + _pem(ca), "svid.key": _pem(srv_key),
             "client.pem": _pem(cli), "client.key": _pem(cli_key)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "policy.toml").write_text(
        '[roles.reader]\nactions = ["PrivateCa/Describe*"]\n\n'
        '[[principals]]\nid = "spiffe://mesh.example/ns/a/*"\ntenant = "team-a"\n'
        'roles = ["reader"]\n')
    config = load_config(env={"HSMCA_STATE_DIR": str(tmp_path),
                              "HSMCA_TLS_SERVER_CERT": str(tmp_path / "svid.pem"),
                              "HSMCA_TLS_SERVER_KEY": str(tmp_path / "svid.key"),
                              "HSMCA_TLS_CLIENT_CA": str(tmp_path / "mesh-ca.pem")})
    assert not config.tls.managed
    perimeter = MutualTls(PolicyHolder(config.auth.policy_file), SharedRateLimiter.create(),
                          CrlHolder(config.tls.crl, config.tls.dir / "ca.pem"))
    server, port = build_server(
        [(private_ca_pb2_grpc.add_PrivateCaServicer_to_server, _WhoAmI())], "127.0.0.1:0",
        max_workers=2, reuse_port=False, perimeter=perimeter,
        credentials=server_credentials(ServerTlsFiles(config.tls)))
    server.start()
    try:
        yield port, tmp_path, config
    finally:
        graceful_stop(server, 0)


def _call(port: int, ca: bytes, key: bytes, cert: bytes) -> Any:
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(f"localhost:{port}", creds) as ch:
        return private_ca_pb2_grpc.PrivateCaStub(ch).DescribeCACertificate(
            private_ca_pb2.DescribeCACertificateRequest(identifier="x"), timeout=10)


def test_the_operators_bundle_and_spiffe_ids(mesh: tuple[int, Path, Config]) -> None:
    port, d, _ = mesh
    ca = (d / "mesh-ca.pem").read_bytes()
    got = _call(port, ca, (d / "client.key").read_bytes(), (d / "client.pem").read_bytes())
    # The URI SAN, not the CN, is the principal; the policy's tenant is the call's.
    assert got.certificate.identifier == "spiffe://mesh.example/ns/a/sa/web"
    assert got.certificate.common_name == "team-a"
    # A certificate from any other CA is refused at the handshake.
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert(other_key, "admin", None, ca=False,
                  san=[x509.UniformResourceIdentifier("spiffe://mesh.example/ns/a/sa/web")])
    with pytest.raises(grpc.RpcError) as e:
        _call(port, ca, _pem(other_key), _pem(other))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    # A forbidden action is refused by the policy, as with the bootstrapped PKI.
    creds = grpc.ssl_channel_credentials(ca, (d / "client.key").read_bytes(),
                                         (d / "client.pem").read_bytes())
    with grpc.secure_channel(f"localhost:{port}", creds) as ch, \
            pytest.raises(grpc.RpcError) as denied:
        private_ca_pb2_grpc.PrivateCaStub(ch).CreateRootCACertificate(
            private_ca_pb2.CreateRootCACertificateRequest(), timeout=10)
    assert error_info(denied.value) == (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.Action")


def test_a_refusal_is_audited_under_the_tenant_of_the_caller(
        mesh: tuple[int, Path, Config], hsm_token: Any) -> None:
    # The refused caller is known to the policy (team-a): its refusal belongs to team-a's
    # audit trail, not to the default tenant's.
    port, d, _ = mesh
    url = f"sqlite:///{d / 'audit.db'}"
    migrate(url)
    engine = create_engine_for(url)
    try:
        with installed_audit_log(engine, hsm_token) as log:
            creds = grpc.ssl_channel_credentials((d / "mesh-ca.pem").read_bytes(),
                                                 (d / "client.key").read_bytes(),
                                                 (d / "client.pem").read_bytes())
            with grpc.secure_channel(f"localhost:{port}", creds) as ch, \
                    pytest.raises(grpc.RpcError):
                private_ca_pb2_grpc.PrivateCaStub(ch).CreateRootCACertificate(
                    private_ca_pb2.CreateRootCACertificateRequest(), timeout=10)
            with engine.connect() as conn:
                (record,) = [r for r in list_records(conn, action="refused.authz")
                             if r.writer == log.writer]
    finally:
        engine.dispose()
    assert (record.principal, record.tenant) == ("spiffe://mesh.example/ns/a/sa/web", "team-a")


def test_an_action_granted_at_a_low_rate_keeps_it_beside_a_generous_one(
        mesh: tuple[int, Path, Config]) -> None:
    # Two roles grant the same action class (issuance) at 1/s and at 100/s. Calls of the
    # generous action must not refill the bucket of the low-rate one.
    _, d, config = mesh
    policy = d / "rates.toml"
    policy.write_text(
        '[roles.roots]\nactions = ["PrivateCa/CreateRootCACertificate"]\nrate_per_second = 1\n\n'
        '[roles.leaves]\nactions = ["PrivateCa/CreateServerCertificateWithCsr"]\n'
        'rate_per_second = 100\n\n'
        '[[principals]]\nid = "spiffe://mesh.example/ns/a/*"\ntenant = "team-a"\n'
        'roles = ["roots", "leaves"]\n')
    perimeter = MutualTls(PolicyHolder(policy), SharedRateLimiter.create(),
                          CrlHolder(config.tls.crl, config.tls.dir / "ca.pem"))
    pem = (d / "client.pem").read_bytes()

    def admitted(action: str) -> bool:
        try:
            perimeter.admit(action, pem)
        except ResourceExhausted:
            return False
        return True

    roots = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        roots += admitted("PrivateCa/CreateRootCACertificate")
        time.sleep(0.02)
        # After a pause, the generous action's call refills more than it takes (100/s).
        admitted("PrivateCa/CreateServerCertificateWithCsr")
        time.sleep(0.02)
    # One second's worth of capacity plus at most one refill in the second: 2, never ~50.
    assert 1 <= roots <= 3, roots
