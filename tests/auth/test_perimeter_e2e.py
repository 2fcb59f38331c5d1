"""The security perimeter end to end: `hsmca serve` over real mTLS, real SoftHSM, 2 workers.

Principals get their certificates from `hsmca principal issue`; the policy maps them to two
tenants and several roles. Every cross-tenant call is NOT_FOUND and changes nothing, roles
decide actions (Forbidden.Action) and issued names (Forbidden.Policy), the handshake refuses
what does not chain, the perimeter refuses what is revoked, rate limits hold across workers,
and the policy reloads without a restart.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pca_support import Pca, create_hierarchy, make_csr, new_key

from service.gen.hsmca.v1 import kms_pb2, kms_pb2_grpc, private_ca_pb2, private_ca_pb2_grpc
from service.rpc.client import error_info
from tests.e2e.serve_support import REPO, ServeProcess, init_state, serve_env

pytestmark = pytest.mark.slow

POLICY = """
[roles.admin]
actions = ["*"]
rate_limit_exempt = true

[roles.tenant-admin]
actions = ["*"]
rate_per_second = 1000
key_use_per_second = 1000
reads_per_second = 1000

[roles.web-issuer]
actions = ["PrivateCa/CreateServerCertificateWithCsr", "PrivateCa/CreateClientCertificateWithCsr",
           "PrivateCa/CreateCustomCertificate", "PrivateCa/Describe*", "PrivateCa/List*"]
cas = ["own"]
dns_names = ["*.team-a.example.com"]
max_validity_days = 90
rate_per_second = 1000
reads_per_second = 1000

[roles.reader]
actions = ["PrivateCa/Describe*"]

[roles.limited]
actions = ["PrivateCa/CreateServerCertificateWithCsr"]
rate_per_second = 4

[roles.kms-wide]
actions = ["KmsCertificates/*"]

[roles.exporter]
actions = ["PrivateCa/DescribeCertificatePrivateKey", "KmsCertificates/ExportCertificate"]

[[principals]]
id = "admin"
tenant = "default"
roles = ["admin"]

[[principals]]
id = "spiffe://example.org/team-a/owner"
tenant = "team-a"
roles = ["tenant-admin"]

[[principals]]
id = "spiffe://example.org/team-a/web"
tenant = "team-a"
roles = ["web-issuer"]

[[principals]]
id = "spiffe://example.org/team-b/*"
tenant = "team-b"
roles = ["tenant-admin"]

[[principals]]
id = "reader"
tenant = "team-a"
roles = ["reader"]

[[principals]]
id = "limited"
tenant = "team-a"
roles = ["limited"]

[[principals]]
id = "kms-wide"
tenant = "team-a"
roles = ["kms-wide"]

[[principals]]
id = "exporter"
tenant = "team-a"
roles = ["exporter"]
"""

PRINCIPALS = {
    "a": "spiffe://example.org/team-a/owner",
    "web": "spiffe://example.org/team-a/web",
    "b": "spiffe://example.org/team-b/owner",
    "reader": "reader",
    "limited": "limited",
    "kms-wide": "kms-wide",
    "exporter": "exporter",
    "stranger": "spiffe://example.org/nobody/x",
}


EXPIRED_ADMIN = """
import datetime as dt
from hsm.config import TokenRole
from hsm.token import Token
from service.auth.opsca import OpsCa, key_pem, new_client_key
from service.config import load_config
config = load_config()
token = Token(config.token_config(TokenRole.HSM))
ca = OpsCa.open_or_create(token, config.tls.dir / "ca.pem", now=dt.datetime.now(dt.UTC))
key, spki = new_client_key()
# Valid for one second from now: expired by the time it is presented.
der = ca.issue_client("admin", spki, now=dt.datetime.now(dt.UTC), days=1 / 86400)
token.close()
print(key_pem(key).decode() + "|" + der.hex())
"""


def python(state: Path, code: str) -> str:
    """Run Python in a fresh process against this state dir (its own SoftHSM configuration:
    this test process's SoftHSM belongs to the session's token)."""
    done = subprocess.run([sys.executable, "-c", code], env=serve_env(state), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`hsmca ARGS` against this state dir."""
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=serve_env(state),
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@dataclass
class Perimeter:
    server: ServeProcess
    state: Path
    certs: dict[str, tuple[Path, Path]]

    def channel(self, who: str) -> grpc.Channel:
        if who == "admin":
            return self.server.channel()
        cert, key = self.certs[who]
        return self.server.channel(cert, key)

    def pca(self, who: str) -> private_ca_pb2_grpc.PrivateCaStub:
        return private_ca_pb2_grpc.PrivateCaStub(self.channel(who))

    def kms(self, who: str) -> kms_pb2_grpc.KmsCertificatesStub:
        return kms_pb2_grpc.KmsCertificatesStub(self.channel(who))


@pytest.fixture(scope="module")
def perimeter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Perimeter]:
    state = init_state(tmp_path_factory.mktemp("mtls"))
    (state / "policy.toml").write_text(POLICY)
    server = ServeProcess(state, workers=2, HSMCA_GRPC_INSECURE="false")
    certs = {}
    out = state / "principals"
    for name, pid in PRINCIPALS.items():
        done = cli(state, "principal", "issue", "--id", pid, "--out", str(out), "--name", name)
        assert done.returncode == 0, done.stderr
        certs[name] = (out / f"{name}.pem", out / f"{name}.key")
    try:
        yield Perimeter(server, state, certs)
    finally:
        assert server.stop() == 0


def code_reason(call: Any, request: Any) -> tuple[grpc.StatusCode, str, str]:
    try:
        call(request, timeout=30)
    except grpc.RpcError as e:
        code, reason = error_info(e)
        return code, reason, e.details() or ""
    return grpc.StatusCode.OK, "", ""


# --- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_files_and_modes(perimeter: Perimeter) -> None:
    tls = perimeter.state / "tls"
    for name in ("ca.pem", "server.pem", "admin.pem", "ca.crl"):
        assert (tls / name).is_file()
    for secret in (tls / "admin.key", tls / "server.key", *(k for _, k in
                                                             perimeter.certs.values())):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    server = x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1"}
    # The principal id is the URI SAN when it has a scheme, else the CN.
    web = x509.load_pem_x509_certificate(perimeter.certs["web"][0].read_bytes())
    uris = web.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [PRINCIPALS["web"]]
    reader = x509.load_pem_x509_certificate(perimeter.certs["reader"][0].read_bytes())
    assert reader.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "reader"
    # A second bootstrap (a restart) changes nothing.
    before = {p.name: p.read_bytes() for p in tls.iterdir() if p.is_file()}
    python(perimeter.state, "from service.auth.bootstrap import bootstrap\n"
                            "from service.config import load_config\n"
                            "bootstrap(load_config())\n")
    after = {p.name: p.read_bytes() for p in tls.iterdir() if p.is_file()}
    assert before == after


# Python deprecates TLSVersion.TLSv1_1 itself; the test needs it to offer an old version.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls13_negotiated_and_old_versions_refused(perimeter: Perimeter) -> None:
    tls = perimeter.state / "tls"
    ctx = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    ctx.load_cert_chain(tls / "admin.pem", tls / "admin.key")
    ctx.set_alpn_protocols(["h2"])
    import socket
    with socket.create_connection(("127.0.0.1", perimeter.server.grpc_port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls_sock:
        assert tls_sock.version() == "TLSv1.3"
    old = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    old.load_cert_chain(tls / "admin.pem", tls / "admin.key")
    old.maximum_version = ssl.TLSVersion.TLSv1_1  # noqa: S502 - the point of the test
    old.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", perimeter.server.grpc_port)) as raw, \
            pytest.raises((ssl.SSLError, OSError)):
        old.wrap_socket(raw, server_hostname="localhost")


# --- tenants -------------------------------------------------------------------------------


def test_cross_tenant_is_not_found_and_changes_nothing(perimeter: Perimeter) -> None:
    a, b = perimeter.pca("a"), perimeter.pca("b")
    hier = create_hierarchy(Pca(a, None, None, None), "ECC_256")  # type: ignore[arg-type]
    csr = make_csr(new_key("ECC_256"), "www.team-a.example.com")
    leaf = a.CreateServerCertificateWithCsr(private_ca_pb2.CreateServerCertificateWithCsrRequest(
        parent_identifier=hier.sub_id, csr=csr, domain="www.team-a.example.com",
        immediately=1, days=30))
    system = a.CreateClientCertificate(private_ca_pb2.CreateClientCertificateRequest(
        parent_identifier=hier.sub_id, common_name="alice", san_type=1,
        san_value="alice@team-a.example.com", immediately=1, days=30,
        exportable_private_key=True))
    job = a.CreateServerCertificateWithCsr(private_ca_pb2.CreateServerCertificateWithCsrRequest(
        parent_identifier=hier.sub_id, csr=csr, domain="job.team-a.example.com",
        immediately=0, days=30))
    custom = a.CreateCustomCertificate(private_ca_pb2.CreateCustomCertificateRequest(
        parent_identifier=hier.sub_id, csr=csr, validity="7d", immediately=1,
        custom_identifier="same-key"))
    ka, kb = perimeter.kms("a"), perimeter.kms("b")
    key = ka.CreateCertificate(kms_pb2.CreateCertificateRequest(
        key_spec="EC_P256", subject="CN=a,OU=t,O=team-a,C=CN", exportable_private_key=True,
        protection_level="SOFTWARE"))

    nf = grpc.StatusCode.NOT_FOUND
    cases: list[tuple[Any, Any]] = [
        (b.DescribeCACertificate, private_ca_pb2.DescribeCACertificateRequest(
            identifier=hier.sub_id)),
        (b.UpdateCACertificateStatus, private_ca_pb2.UpdateCACertificateStatusRequest(
            identifier=hier.sub_id, status="REVOKE")),
        (b.CreateServerCertificateWithCsr, private_ca_pb2.CreateServerCertificateWithCsrRequest(
            parent_identifier=hier.sub_id, csr=csr, domain="x.team-b.example.com",
            immediately=1, days=30)),
        (b.CreateSubCACertificate, private_ca_pb2.CreateSubCACertificateRequest(
            parent_identifier=hier.root_id, common_name="b sub", organization="b",
            country_code="CN", state="Z", locality="H", algorithm="ECC_256", years=1)),
        (b.DescribeClientCertificate, private_ca_pb2.DescribeClientCertificateRequest(
            identifier=leaf.identifier)),
        (b.DescribeClientCertificate, private_ca_pb2.DescribeClientCertificateRequest(
            identifier=job.identifier)),
        (b.DescribeClientCertificateStatus, private_ca_pb2.DescribeClientCertificateStatusRequest(
            identifier=leaf.identifier)),
        (b.DescribeCertificatePrivateKey, private_ca_pb2.DescribeCertificatePrivateKeyRequest(
            identifier=system.identifier, encrypted_code="passphrase-123")),
        (b.CreateRevokeClientCertificate, private_ca_pb2.CreateRevokeClientCertificateRequest(
            identifier=leaf.identifier, reason_code=1)),
        (b.DeleteClientCertificate, private_ca_pb2.DeleteClientCertificateRequest(
            identifier=leaf.identifier)),
        (kb.DescribeCertificate, kms_pb2.DescribeCertificateRequest(
            certificate_id=key.certificate_id)),
        (kb.GetCertificate, kms_pb2.GetCertificateRequest(certificate_id=key.certificate_id)),
        (kb.CertificatePrivateKeySign, kms_pb2.CertificatePrivateKeySignRequest(
            certificate_id=key.certificate_id, algorithm="ECDSA_SHA_256", message=b"m",
            message_type="RAW")),
        (kb.ExportCertificate, kms_pb2.ExportCertificateRequest(
            certificate_id=key.certificate_id, export_format="PEM", passphrase="pass-1234")),
        (kb.UpdateCertificateStatus, kms_pb2.UpdateCertificateStatusRequest(
            certificate_id=key.certificate_id, status="REVOKED")),
        (kb.DeleteCertificate, kms_pb2.DeleteCertificateRequest(
            certificate_id=key.certificate_id)),
    ]
    for call, request in cases:
        code, reason, details = code_reason(call, request)
        assert code == nf, (type(request).__name__, code, reason, details)
    # Lists show nothing of the other tenant.
    assert not b.DescribeCACertificateList(
        private_ca_pb2.DescribeCACertificateListRequest(current_page=1, show_size=50)
    ).certificate_list
    assert not b.ListClientCertificate(private_ca_pb2.ListClientCertificateRequest(
        current_page=1, show_size=50)).certificate_list
    assert not b.ListRevokeCertificate(private_ca_pb2.ListRevokeCertificateRequest(
        current_page=1, show_size=50)).certificate_list
    assert not kb.ListCertificates(kms_pb2.ListCertificatesRequest(
        page_number=1, page_size=50)).certificates
    assert not b.DescribeClientCertificateForSerialNumber(
        private_ca_pb2.DescribeClientCertificateForSerialNumberRequest(
            serial_number=leaf.serial_number)).certificate_list
    # The same idempotency key in the other tenant is a new certificate, not a replay.
    replay = b.CreateRootCACertificate(private_ca_pb2.CreateRootCACertificateRequest(
        common_name="b root", organization="b", organization_unit="b", country_code="CN",
        state="Z", locality="H", algorithm="ECC_256", years=2))
    b_sub = b.CreateSubCACertificate(private_ca_pb2.CreateSubCACertificateRequest(
        parent_identifier=replay.identifier, common_name="b sub", organization="b",
        country_code="CN", state="Z", locality="H", algorithm="ECC_256", years=1))
    b_custom = b.CreateCustomCertificate(private_ca_pb2.CreateCustomCertificateRequest(
        parent_identifier=b_sub.identifier, csr=csr, validity="7d", immediately=1,
        custom_identifier="same-key"))
    assert b_custom.identifier != custom.identifier

    # Nothing changed for the owner.
    ca = a.DescribeCACertificate(private_ca_pb2.DescribeCACertificateRequest(
        identifier=hier.sub_id)).certificate
    assert ca.status == "ISSUE"
    got = a.DescribeClientCertificate(private_ca_pb2.DescribeClientCertificateRequest(
        identifier=leaf.identifier)).certificate
    assert got.status == "ISSUE" and not got.revoke_date
    assert ka.DescribeCertificate(kms_pb2.DescribeCertificateRequest(
        certificate_id=key.certificate_id)).status not in ("REVOKED", "")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the asynchronous job still issues for its owner
        job_cert = a.DescribeClientCertificate(private_ca_pb2.DescribeClientCertificateRequest(
            identifier=job.identifier)).certificate
        if job_cert.status == "ISSUE":
            break
        time.sleep(0.2)
    assert job_cert.status == "ISSUE"
    perimeter.hierarchy = hier  # type: ignore[attr-defined]


# --- actions and constraints ---------------------------------------------------------------


def _team_a_sub(perimeter: Perimeter) -> str:
    hier = getattr(perimeter, "hierarchy", None)
    if hier is None:
        hier = create_hierarchy(Pca(perimeter.pca("a"), None, None, None),  # type: ignore[arg-type]
                                "ECC_256")
        perimeter.hierarchy = hier  # type: ignore[attr-defined]
    return str(hier.sub_id)


def test_forbidden_action_names_the_action(perimeter: Perimeter) -> None:
    code, reason, details = code_reason(
        perimeter.pca("reader").CreateRootCACertificate,
        private_ca_pb2.CreateRootCACertificateRequest(common_name="x", algorithm="ECC_256"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.Action")
    assert "PrivateCa/CreateRootCACertificate" in details
    # Unknown principal: authenticated, but the policy does not name it.
    code, reason, details = code_reason(
        perimeter.pca("stranger").DescribeCACertificate,
        private_ca_pb2.DescribeCACertificateRequest(identifier="x"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.Action")
    assert "PrivateCa/DescribeCACertificate" in details


def test_a_key_export_needs_its_exact_name_or_star(perimeter: Perimeter) -> None:
    """`PrivateCa/Describe*` and `KmsCertificates/*` do not hand out private keys; a role
    naming the export exactly does, and so does `*`."""
    sub = _team_a_sub(perimeter)
    a, ka = perimeter.pca("a"), perimeter.kms("a")
    system = a.CreateClientCertificate(private_ca_pb2.CreateClientCertificateRequest(
        parent_identifier=sub, common_name="bob", san_type=1,
        san_value="bob@team-a.example.com", immediately=1, days=30,
        exportable_private_key=True))
    key = ka.CreateCertificate(kms_pb2.CreateCertificateRequest(
        key_spec="EC_P256", subject="CN=exp,OU=t,O=team-a,C=CN", exportable_private_key=True,
        protection_level="SOFTWARE"))
    issued = a.CreateCustomCertificate(private_ca_pb2.CreateCustomCertificateRequest(
        parent_identifier=sub, csr=key.csr, validity="7d", immediately=2))
    ka.UploadCertificate(kms_pb2.UploadCertificateRequest(
        certificate_id=key.certificate_id, certificate=issued.certificate,
        certificate_chain=issued.certificate_chain))
    describe_key = private_ca_pb2.DescribeCertificatePrivateKeyRequest(
        identifier=system.identifier, encrypted_code="passphrase-123")
    export = kms_pb2.ExportCertificateRequest(
        certificate_id=key.certificate_id, export_format="PEM", passphrase="pass-1234")
    denied = (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.Action")

    reader = perimeter.pca("reader")  # PrivateCa/Describe*
    code, reason, details = code_reason(reader.DescribeCertificatePrivateKey, describe_key)
    assert (code, reason) == denied, details
    assert "PrivateCa/DescribeCertificatePrivateKey" in details
    # Its other Describe* calls still work.
    assert reader.DescribeClientCertificate(private_ca_pb2.DescribeClientCertificateRequest(
        identifier=system.identifier)).certificate.status == "ISSUE"
    assert reader.DescribeCACertificate(private_ca_pb2.DescribeCACertificateRequest(
        identifier=sub)).certificate.status == "ISSUE"

    wide = perimeter.kms("kms-wide")  # KmsCertificates/*
    code, reason, details = code_reason(wide.ExportCertificate, export)
    assert (code, reason) == denied, details
    assert "KmsCertificates/ExportCertificate" in details
    assert wide.GetCertificate(kms_pb2.GetCertificateRequest(
        certificate_id=key.certificate_id)).certificate_id == key.certificate_id
    assert wide.CertificatePrivateKeySign(kms_pb2.CertificatePrivateKeySignRequest(
        certificate_id=key.certificate_id, algorithm="ECDSA_SHA_256", message=b"m",
        message_type="RAW")).signature_value

    # Named exactly (the exporter role), or "*" (tenant-admin): the key comes out.
    for who in ("exporter", "a"):
        pem = perimeter.pca(who).DescribeCertificatePrivateKey(
            describe_key).encrypted_private_key
        assert serialization.load_pem_private_key(pem.encode(), b"passphrase-123")
        pem = perimeter.kms(who).ExportCertificate(export).private_key
        assert serialization.load_pem_private_key(pem.encode(), b"pass-1234")
    # The exact name grants only itself.
    code, reason, _ = code_reason(perimeter.pca("exporter").DescribeCACertificate,
                                  private_ca_pb2.DescribeCACertificateRequest(identifier=sub))
    assert (code, reason) == denied


def test_names_and_validity_outside_the_role_are_refused(perimeter: Perimeter) -> None:
    sub = _team_a_sub(perimeter)
    web = perimeter.pca("web")
    key = new_key("ECC_256")
    ok = web.CreateServerCertificateWithCsr(private_ca_pb2.CreateServerCertificateWithCsrRequest(
        parent_identifier=sub, csr=make_csr(key, "api.team-a.example.com"),
        domain="api.team-a.example.com", immediately=1, days=30))
    assert ok.identifier
    for cn, domain, days, offending in [
        ("api.team-a.example.com", "evil.example.net", 30, "evil.example.net"),
        ("evil.example.org", "", 30, "evil.example.org"),
        ("api.team-a.example.com", "team-a.example.com", 30, "team-a.example.com"),
        ("api.team-a.example.com", "", 365, "max_validity_days 90"),
    ]:
        code, reason, details = code_reason(
            web.CreateServerCertificateWithCsr,
            private_ca_pb2.CreateServerCertificateWithCsrRequest(
                parent_identifier=sub, csr=make_csr(key, cn), domain=domain, immediately=1,
                days=days))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.Policy"), details
        assert offending in details
    # Nothing was stored for the refusals: the list holds only the one accepted certificate
    # among the web principal's requests.
    listed = web.ListClientCertificate(private_ca_pb2.ListClientCertificateRequest(
        current_page=1, show_size=100)).certificate_list
    assert not [c for c in listed if "evil" in c.common_name or "evil" in c.san]


def _csr_with_common_names(key: Any, *cns: str) -> str:
    """A PEM CSR whose subject holds each of ``cns`` as a commonName, in order."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _common_names(pem_text: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem_text.encode())
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _listed_identifiers(stub: private_ca_pb2_grpc.PrivateCaStub) -> set[str]:
    found: set[str] = set()
    current = 1
    while True:
        page = stub.ListClientCertificate(private_ca_pb2.ListClientCertificateRequest(
            current_page=current, show_size=100))
        found |= {c.identifier for c in page.certificate_list}
        if current >= page.page_count:
            assert len(found) == page.total_count
            return found
        current += 1


def test_every_common_name_of_the_subject_is_bounded_by_the_role(perimeter: Perimeter) -> None:
    """The CN the policy checks is the one the certificate carries: a second CN in the CSR and
    a CN given as a custom attribute (OID 2.5.4.3) do not get around dns_names."""
    sub = _team_a_sub(perimeter)
    web = perimeter.pca("web")
    key = new_key("ECC_256")
    before = _listed_identifiers(web)

    def custom(csr: str, subject: private_ca_pb2.ApiPassthroughSubject | None = None) -> Any:
        return private_ca_pb2.CreateCustomCertificateRequest(
            parent_identifier=sub, csr=csr, validity="7d", immediately=1,
            api_passthrough=private_ca_pb2.ApiPassthrough(subject=subject))

    def cn_attribute(*values: str) -> private_ca_pb2.ApiPassthroughSubject:
        return private_ca_pb2.ApiPassthroughSubject(custom_attributes=[
            private_ca_pb2.CustomAttribute(object_identifier="2.5.4.3", value=v)
            for v in values])

    # One CN inside the role's names: issued, from the CSR, from common_name, or as the one
    # commonName custom attribute (the API lists 2.5.4.3 among them).
    issued = [
        web.CreateCustomCertificate(custom(make_csr(key, "api.team-a.example.com"))),
        web.CreateCustomCertificate(custom(make_csr(key, "ignored"),
                                           private_ca_pb2.ApiPassthroughSubject(
                                               common_name="www.team-a.example.com"))),
        web.CreateCustomCertificate(custom(make_csr(key, "ignored"),
                                           cn_attribute("cdn.team-a.example.com"))),
    ]
    assert [_common_names(r.certificate) for r in issued] == [
        ["api.team-a.example.com"], ["www.team-a.example.com"], ["cdn.team-a.example.com"]]

    invalid, forbidden = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED
    two_cns = _csr_with_common_names(key, "evil.example.net", "alice")
    cases: list[tuple[Any, Any, tuple[grpc.StatusCode, str], str]] = [
        # Two CNs in the CSR: the policy used to see only the last ("alice", no host name).
        (web.CreateCustomCertificate, custom(two_cns), (invalid, "InvalidParameter.Csr"),
         "commonName"),
        (web.CreateServerCertificateWithCsr,
         private_ca_pb2.CreateServerCertificateWithCsrRequest(
             parent_identifier=sub, csr=two_cns, immediately=1, days=30),
         (invalid, "InvalidParameter.Csr"), "commonName"),
        (web.CreateClientCertificateWithCsr,
         private_ca_pb2.CreateClientCertificateWithCsrRequest(
             parent_identifier=sub, csr=two_cns, immediately=1, days=30),
         (invalid, "InvalidParameter.Csr"), "commonName"),
        # The CN as a custom attribute, common_name empty: the policy used to see no CN.
        (web.CreateCustomCertificate, custom(make_csr(key, "api.team-a.example.com"),
                                             cn_attribute("evil.example.net")),
         (forbidden, "Forbidden.Policy"), "evil.example.net"),
        # ... and two of them.
        (web.CreateCustomCertificate, custom(make_csr(key, "api.team-a.example.com"),
                                             cn_attribute("alice", "evil.example.net")),
         (invalid, "InvalidParameter.Subject.CustomAttributes"), "commonName"),
    ]
    answers = [code_reason(call, request) for call, request, _, _ in cases]
    assert [(code, reason) for code, reason, _ in answers] == [c[2] for c in cases], answers
    for (_, _, details), (_, _, _, words) in zip(answers, cases, strict=True):
        assert words in details
    # Nothing was stored (or signed) for the refusals: only the three issued are new.
    assert _listed_identifiers(web) == before | {r.identifier for r in issued}


# --- authentication ------------------------------------------------------------------------


def _refused_at_handshake(perimeter: Perimeter, creds: grpc.ChannelCredentials) -> None:
    with grpc.secure_channel(perimeter.server.target, creds) as ch:
        code, _, _ = code_reason(private_ca_pb2_grpc.PrivateCaStub(ch).DescribeCACertificate,
                                 private_ca_pb2.DescribeCACertificateRequest(identifier="x"))
    assert code == grpc.StatusCode.UNAVAILABLE


def _self_signed(cn: str, *, ca: bool, issuer: tuple[Any, x509.Certificate] | None = None,
                 not_after: dt.datetime | None = None) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key, issuer_name = (key, name) if issuer is None else (issuer[0], issuer[1].subject)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=2))
               .not_valid_after(not_after or now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return key, builder.sign(signer_key, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def test_no_certificate_and_other_ca_are_refused_at_the_handshake(perimeter: Perimeter) -> None:
    ca_pem = (perimeter.state / "tls" / "ca.pem").read_bytes()
    _refused_at_handshake(perimeter, grpc.ssl_channel_credentials(root_certificates=ca_pem))
    other_ca = _self_signed("other CA", ca=True)
    key, cert = _self_signed("admin", ca=False, issuer=other_ca)
    _refused_at_handshake(perimeter, grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=_pem(key), certificate_chain=_pem(cert)))


def test_expired_certificate_is_refused(perimeter: Perimeter) -> None:
    """An operations-CA certificate for "admin" that expired: the handshake refuses it."""
    out = python(perimeter.state, EXPIRED_ADMIN)
    key_pem_text, _, der_hex = out.strip().partition("|")
    der = bytes.fromhex(der_hex)
    cert = x509.load_der_x509_certificate(der)
    time.sleep(max(0.0, (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds())
               + 1.5)
    assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    _refused_at_handshake(perimeter, grpc.ssl_channel_credentials(
        root_certificates=(perimeter.state / "tls" / "ca.pem").read_bytes(),
        private_key=key_pem_text.encode(), certificate_chain=_pem(cert)))


def test_revoked_certificate_is_unauthenticated(perimeter: Perimeter) -> None:
    out = perimeter.state / "revokee"
    done = cli(perimeter.state, "principal", "issue", "--id", "reader", "--out", str(out),
               "--name", "r2")
    assert done.returncode == 0, done.stderr
    cert, key = out / "r2.pem", out / "r2.key"
    stub = private_ca_pb2_grpc.PrivateCaStub(perimeter.server.channel(cert, key))
    request = private_ca_pb2.DescribeCACertificateRequest(identifier="none")
    assert code_reason(stub.DescribeCACertificate, request)[0] == grpc.StatusCode.NOT_FOUND
    done = cli(perimeter.state, "principal", "revoke", "--cert", str(cert))
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # The same (already open) connection, and new ones, are refused once the CRL reloads.
        code, reason, _ = code_reason(stub.DescribeCACertificate, request)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            break
        time.sleep(0.2)
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED,
                              "Unauthenticated.CertificateRevoked")
    fresh = private_ca_pb2_grpc.PrivateCaStub(perimeter.server.channel(cert, key))
    for _ in range(4):  # both workers have the new CRL
        assert code_reason(fresh.DescribeCACertificate, request)[0] == \
            grpc.StatusCode.UNAUTHENTICATED
    # The original reader certificate is untouched.
    assert code_reason(perimeter.pca("reader").DescribeCACertificate, request)[0] == \
        grpc.StatusCode.NOT_FOUND


# --- rate limits ---------------------------------------------------------------------------


def test_rate_limit_holds_across_two_workers(perimeter: Perimeter) -> None:
    """`limited` may issue 4/s; connections on both workers send 12/s for 8 s."""
    sub = _team_a_sub(perimeter)
    quota, factor, seconds = 4.0, 3, 8.0
    cert, key = perimeter.certs["limited"]
    # Open connections (each its own TCP connection, which the kernel hashes to a worker)
    # until both workers have served this principal: a refused call is logged with it.
    stubs: list[Any] = []
    log = perimeter.server.log
    workers_seen: set[str] = set()
    while workers_seen != {"worker-0", "worker-1"}:
        assert len(stubs) < 64, workers_seen
        stub = private_ca_pb2_grpc.PrivateCaStub(perimeter.server.channel(cert, key))
        assert code_reason(stub.DescribeCACertificate, private_ca_pb2.DescribeCACertificateRequest(
            identifier="warm-up"))[1] == "Forbidden.Action"
        stubs.append(stub)
        workers_seen = {w for line in log.read_text().splitlines()
                        if "principal=limited" in line
                        for w in ("worker-0", "worker-1") if w in line}
    conns = len(stubs)
    csr = make_csr(new_key("ECC_256"), "rl.team-a.example.com")
    request = private_ca_pb2.CreateServerCertificateWithCsrRequest(
        parent_identifier=sub, csr=csr, domain="rl.team-a.example.com", immediately=1,
        days=30)
    accepted: list[float] = []
    exhausted: list[Any] = []
    others: list[Any] = []
    lock = threading.Lock()
    interval = conns / (quota * factor)
    start = time.monotonic() + 0.5

    def drive(i: int) -> None:
        n = 0
        while True:
            at = start + i * interval / conns + n * interval
            if at >= start + seconds:
                return
            time.sleep(max(0.0, at - time.monotonic()))
            n += 1
            try:
                stubs[i].CreateServerCertificateWithCsr(request, timeout=30)
                with lock:
                    accepted.append(time.monotonic())
            except grpc.RpcError as e:
                with lock:
                    (exhausted if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                     else others).append(e)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not others, [(e.code(), e.details()) for e in others[:3]]
    sent = len(accepted) + len(exhausted)
    assert sent >= quota * factor * seconds * 0.9
    rate = len(accepted) / seconds
    assert abs(rate - quota) <= 0.2 * quota, (rate, len(accepted), len(exhausted))
    status = rpc_status.from_call(exhausted[0])
    kinds = {d.type_url.rsplit("/", 1)[-1] for d in status.details}
    assert {"google.rpc.RetryInfo", "google.rpc.QuotaFailure", "google.rpc.ErrorInfo"} <= kinds
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            assert 0 < retry.retry_delay.ToNanoseconds() <= 1e9 / quota
    # The connections reach both workers (checked above), so the quota held across two
    # processes: one shared bucket, not one per worker.
    assert len(accepted) > 0 and len(exhausted) > 0


# --- policy reload -------------------------------------------------------------------------


def test_policy_edit_applies_without_restart_and_broken_file_keeps_old(
        perimeter: Perimeter) -> None:
    policy = perimeter.state / "policy.toml"
    reader = perimeter.pca("reader")
    request = private_ca_pb2.ListClientCertificateRequest(current_page=1, show_size=10)

    def code() -> grpc.StatusCode:
        return code_reason(reader.ListClientCertificate, request)[0]

    def wait_for(expected: grpc.StatusCode) -> None:
        deadline = time.monotonic() + 10
        got = code()
        while got != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            got = code()
        # Ask several times: each connection may land on either worker.
        assert [code() for _ in range(4)] == [expected] * 4

    original = policy.read_text()
    try:
        assert code() == grpc.StatusCode.PERMISSION_DENIED
        policy.write_text(original.replace('actions = ["PrivateCa/Describe*"]',
                                           'actions = ["PrivateCa/Describe*", "PrivateCa/List*"]'))
        wait_for(grpc.StatusCode.OK)
        policy.write_text(original.replace("[roles.reader]", "[roles.reader]\nactions = 3\n"))
        time.sleep(2.5)
        wait_for(grpc.StatusCode.OK)  # the broken file is refused: the edit stays in force
        log = perimeter.server.log.read_text()
        assert "policy not reloaded" in log and "(line " in log
        # SIGHUP reloads too: restore the original and ask for it explicitly.
        policy.write_text(original)
        os.kill(perimeter.server.proc.pid, signal.SIGHUP)
        wait_for(grpc.StatusCode.PERMISSION_DENIED)
    finally:
        policy.write_text(original)


# --- start-up ------------------------------------------------------------------------------


def test_plaintext_off_loopback_is_refused_at_start_up(tmp_path: Path) -> None:
    env = serve_env(tmp_path, HSMCA_GRPC_INSECURE="true", HSMCA_GRPC_LISTEN="0.0.0.0:0")
    done = subprocess.run([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "plaintext gRPC is allowed only on a loopback address" in done.stderr
