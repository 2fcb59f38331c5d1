"""Issuance over the real gRPC API against SoftHSM, checked by independent verifiers."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.verification import PolicyBuilder, Store
from pca_support import (
    BASE_URL,
    OWNER,
    Hierarchy,
    Pca,
    create_hierarchy,
    key_pem,
    make_csr,
    new_key,
    pem,
    pem_to_der,
    pkilint_errors,
)
from pki_checkers import openssl_verify

from hsm.export import export_private_key, unwrap_export
from hsm.keys import read_key_attributes
from service.gen.hsmca.v1 import common_pb2
from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.storage import repo

SERVER_NAME = "server.example.test"


def _check_all(ca: Hierarchy, leaf_der: bytes, purpose: str) -> None:
    """pkilint, openssl -x509_strict and cryptography's path verifier all accept the leaf."""
    for der in (ca.root_der, ca.sub_der, leaf_der):
        assert pkilint_errors(der) == []
    result = openssl_verify(ca.root_der, ca.sub_der, leaf_der, purpose)
    assert result.returncode == 0, result.stdout + result.stderr
    root = x509.load_der_x509_certificate(ca.root_der)
    sub = x509.load_der_x509_certificate(ca.sub_der)
    leaf = x509.load_der_x509_certificate(leaf_der)
    builder = PolicyBuilder().store(Store([root]))
    if purpose == "sslserver":
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        name = san.get_values_for_type(x509.DNSName)[0]
        chain = builder.build_server_verifier(x509.DNSName(name)).verify(leaf, [sub])
    else:
        chain = builder.build_client_verifier().verify(leaf, [sub]).chain
    assert chain[-1] == root


def _assert_recorded(pca: Pca, identifier: str, cert_der: bytes) -> repo.CertificateRow:
    """Invariant 2: the row is ISSUED and its stored TBS is the certificate's TBS."""
    with pca.engine.connect() as conn:
        row = repo.get_certificate(conn, OWNER, identifier)
    assert row is not None and row.status == "ISSUED"
    cert = x509.load_der_x509_certificate(cert_der)
    assert row.tbs == cert.tbs_certificate_bytes
    assert row.certificate == cert_der
    assert row.serial == format(cert.serial_number, "x")
    return row


def test_ca_keys_are_non_exportable_in_the_hsm_token(pca: Pca, ca: Hierarchy,
                                                     hsm_token: Any) -> None:
    for identifier in (ca.root_id, ca.sub_id):
        with pca.engine.connect() as conn:
            row = repo.get_ca(conn, OWNER, identifier)
        assert row is not None and row.status == "ISSUE" and row.key_token == "hsm"
        assert read_key_attributes(hsm_token, bytes.fromhex(row.key_id)).proves_non_exportable


def test_describe_ca_and_list(pca: Pca, ca: Hierarchy) -> None:
    got = pca.stub.DescribeCACertificate(pb.DescribeCACertificateRequest(identifier=ca.sub_id))
    c = got.certificate
    assert got.request_id
    assert (c.identifier, c.parent_identifier, c.certificate_type, c.status) == (
        ca.sub_id, ca.root_id, "SUB_ROOT", "ISSUE")
    assert c.algorithm == ca.algorithm and c.path_len_constraint == 0
    assert c.crl_url == f"{BASE_URL}/crl/{ca.sub_id}.crl" and c.crl_day == 3
    assert pem_to_der(c.x509_certificate) == ca.sub_der
    assert pem_to_der(c.certificate_chain) == ca.root_der
    root = pca.stub.DescribeCACertificate(
        pb.DescribeCACertificateRequest(identifier=ca.root_id)).certificate
    assert root.certificate_type == "ROOT" and root.path_len_constraint == -1
    page = pca.stub.DescribeCACertificateList(
        pb.DescribeCACertificateListRequest(current_page=1, show_size=1))
    assert page.total_count >= 2 and len(page.certificate_list) == 1
    assert page.page_count == page.total_count
    one = pca.stub.DescribeCACertificateList(
        pb.DescribeCACertificateListRequest(identifier=ca.root_id))
    assert [c.identifier for c in one.certificate_list] == [ca.root_id]
    # cert_issued_count: the root counts its sub CA; one more server certificate, one more.
    assert root.cert_issued_count >= 1
    pca.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        csr=make_csr(new_key(ca.algorithm), SERVER_NAME), parent_identifier=ca.sub_id,
        days=30, immediately=1))
    after = pca.stub.DescribeCACertificate(
        pb.DescribeCACertificateRequest(identifier=ca.sub_id)).certificate
    assert after.cert_issued_count == c.cert_issued_count + 1


def test_server_certificate_from_csr_with_dns_and_ip_sans(pca: Pca, ca: Hierarchy) -> None:
    key = new_key(ca.algorithm)
    resp = pca.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        csr=make_csr(key, SERVER_NAME, ["alt.example.test"]),
        domain="www.example.test,127.0.0.1,::1", common_name="ignored.example.test",
        parent_identifier=ca.sub_id, days=30, immediately=2, enable_crl=1,
        tags=[common_pb2.Tag(key="env", value="test")]))
    der = pem_to_der(resp.x509_certificate)
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == SERVER_NAME
    # Defaults from the issuing CA (API: State/Locality default to the sub CA's).
    assert cert.subject.get_attributes_for_oid(x509.NameOID.LOCALITY_NAME)[0].value == "Hangzhou"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        SERVER_NAME, "www.example.test", "alt.example.test"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name[0].value == f"{BASE_URL}/crl/{ca.sub_id}.crl"
    assert resp.serial_number == format(cert.serial_number, "x")
    chain = x509.load_pem_x509_certificates(resp.certificate_chain.encode())
    assert [c.public_bytes(serialization.Encoding.DER) for c in chain] == [
        ca.sub_der, ca.root_der]
    _check_all(ca, der, "sslserver")
    _assert_recorded(pca, resp.identifier, der)


def test_client_certificate_with_system_key(pca: Pca, ca: Hierarchy,
                                            software_token: Any) -> None:
    resp = pca.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
        san_type=1, san_value="alice@example.test,bob@example.test", common_name="Alice",
        organization="hsmca", parent_identifier=ca.sub_id, years=1, immediately=1))
    der = pem_to_der(resp.x509_certificate)
    assert resp.certificate_chain == ""
    _check_all(ca, der, "sslclient")
    row = _assert_recorded(pca, resp.identifier, der)
    assert row.key_token == "software" and row.exportable is True and row.key_id
    attrs = read_key_attributes(software_token, bytes.fromhex(row.key_id))
    assert attrs.extractable and not attrs.never_extractable


def test_hsm_protected_system_key_is_non_exportable(pca: Pca, ecc_ca: Hierarchy,
                                                    hsm_token: Any) -> None:
    resp = pca.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
        domain="hsm.example.test", parent_identifier=ecc_ca.sub_id, days=7, immediately=1,
        protection_level="HSM"))
    row = _assert_recorded(pca, resp.identifier, pem_to_der(resp.x509_certificate))
    assert row.key_token == "hsm" and row.exportable is False
    assert read_key_attributes(hsm_token, bytes.fromhex(row.key_id)).proves_non_exportable
    _check_all(ecc_ca, pem_to_der(resp.x509_certificate), "sslserver")


MATTER_NODE_ID = "1.3.6.1.4.1.37244.1.1"


def test_custom_certificate_full_api_passthrough(pca: Pca, ca: Hierarchy) -> None:
    key = new_key(ca.algorithm)
    serial = 0x1234567890ABCDEF + len(ca.algorithm)
    resp = pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
        parent_identifier=ca.sub_id, csr=make_csr(key, "csr subject is ignored"),
        validity="90d", immediately=2, enable_crl=1,
        api_passthrough=pb.ApiPassthrough(
            subject=pb.ApiPassthroughSubject(
                country="CN", organization="hsmca", common_name="custom.example.test",
                custom_attributes=[pb.CustomAttribute(object_identifier=MATTER_NODE_ID,
                                                      value="00000000000000A1")]),
            extensions=pb.Extensions(
                key_usage=pb.KeyUsage(digital_signature=True),
                extended_key_usages=["serverAuth", "clientAuth"],
                subject_alternative_names=[
                    pb.SubjectAlternativeName(type="dNSName", value="custom.example.test"),
                    pb.SubjectAlternativeName(type="iPAddress", value="10.1.2.3"),
                    pb.SubjectAlternativeName(type="rfc822Name", value="ops@example.test"),
                    pb.SubjectAlternativeName(type="uniformResourceIdentifier",
                                              value="https://example.test/device/1"),
                ]),
            # Not EKU or SAN: cryptography's Web PKI policy (CA/B BR 7.1.2.7) refuses them
            # critical with a non-empty subject; test_custom_critical_eku_and_san covers them.
            criticals=["KeyUsage"],
            serial_number=str(serial))))
    der = pem_to_der(resp.certificate)
    cert = x509.load_der_x509_certificate(der)
    assert cert.serial_number == serial and resp.serial_number == format(serial, "x")
    assert cert.subject.get_attributes_for_oid(
        x509.ObjectIdentifier(MATTER_NODE_ID))[0].value == "00000000000000A1"
    assert not cert.subject.get_attributes_for_oid(x509.NameOID.LOCALITY_NAME)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).critical
    assert not cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).critical
    _check_all(ca, der, "sslserver")
    _check_all(ca, der, "sslclient")
    _assert_recorded(pca, resp.identifier, der)


def _write(d: Path, name: str, data: bytes) -> str:
    (d / name).write_bytes(data)
    return str(d / name)


def test_tls13_mutual_authentication(pca: Pca, ca: Hierarchy, software_token: Any) -> None:
    """A real TLS 1.3 handshake with client authentication, over loopback."""
    server_key = new_key(ca.algorithm)
    server = pca.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        csr=make_csr(server_key, SERVER_NAME), parent_identifier=ca.sub_id, days=1,
        immediately=2))
    client = pca.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
        san_type=6, san_value="spiffe://example.test/client", common_name="tls client",
        parent_identifier=ca.sub_id, days=1, immediately=2))
    # The system-generated client key leaves the software token only wrapped (hsm/export).
    with pca.engine.connect() as conn:
        row = repo.get_certificate(conn, OWNER, client.identifier)
    assert row is not None and row.key_id is not None
    recipient = rsa.generate_private_key(65537, 2048)
    spki = recipient.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs8 = unwrap_export(export_private_key(software_token, bytes.fromhex(row.key_id), spki),
                          recipient)
    client_key = serialization.load_der_private_key(pkcs8, None)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        root_file = _write(d, "root.pem", pem(ca.root_der))
        s_cert = _write(d, "s.pem", (server.x509_certificate + server.certificate_chain)
                        .encode())
        s_key = _write(d, "s.key", key_pem(server_key))
        c_cert = _write(d, "c.pem", (client.x509_certificate + client.certificate_chain)
                        .encode())
        c_key = _write(d, "c.key", key_pem(client_key))

        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.minimum_version = ssl.TLSVersion.TLSv1_3
        sctx.load_cert_chain(s_cert, s_key)
        sctx.load_verify_locations(root_file)
        sctx.verify_mode = ssl.CERT_REQUIRED
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.minimum_version = ssl.TLSVersion.TLSv1_3
        cctx.load_cert_chain(c_cert, c_key)
        cctx.load_verify_locations(root_file)

        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        seen: dict[str, Any] = {}

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with sctx.wrap_socket(conn, server_side=True) as tls:
                    seen["peer"] = tls.getpeercert()
                    seen["version"] = tls.version()
                    tls.sendall(tls.recv(5)[::-1])
            except Exception as e:  # surfaced below
                seen["error"] = e

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port)) as raw, \
                    cctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                assert tls.version() == "TLSv1.3"
                tls.sendall(b"hello")
                assert tls.recv(5) == b"olleh"
        finally:
            thread.join(10)
            listener.close()
    assert "error" not in seen, seen.get("error")
    assert seen["version"] == "TLSv1.3"
    assert ("commonName", "tls client") in [a for rdn in seen["peer"]["subject"] for a in rdn]


@pytest.mark.parametrize("immediately", [1, 2])
def test_chain_only_for_immediately_2(pca: Pca, ecc_ca: Hierarchy, immediately: int) -> None:
    resp = pca.stub.CreateClientCertificateWithCsr(pb.CreateClientCertificateWithCsrRequest(
        csr=make_csr(new_key("ECC_256"), "csr client"), parent_identifier=ecc_ca.sub_id,
        san_type=1, san_value="csr.client@example.test",
        days=1, immediately=immediately))
    assert bool(resp.certificate_chain) == (immediately == 2)
    _check_all(ecc_ca, pem_to_der(resp.x509_certificate), "sslclient")


def test_custom_critical_eku_and_san(pca: Pca, ecc_ca: Hierarchy) -> None:
    """Critical EKU and SAN are honoured; pkilint (RFC 5280) and openssl accept them."""
    resp = pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
        parent_identifier=ecc_ca.sub_id, csr=make_csr(new_key("ECC_256"), "device-1"),
        validity="7d", immediately=1,
        api_passthrough=pb.ApiPassthrough(
            extensions=pb.Extensions(
                key_usage=pb.KeyUsage(digital_signature=True),
                extended_key_usages=["clientAuth"],
                subject_alternative_names=[pb.SubjectAlternativeName(
                    type="uniformResourceIdentifier", value="https://example.test/d/1")]),
            criticals=["ExtendedKeyUsages", "SubjectAlternativeNames"])))
    der = pem_to_der(resp.certificate)
    cert = x509.load_der_x509_certificate(der)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).critical
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    # The CSR's subject is used when api_passthrough.subject is absent.
    assert cert.subject.rfc4514_string() == "CN=device-1"
    assert pkilint_errors(der) == []
    result = openssl_verify(ecc_ca.root_der, ecc_ca.sub_der, der, "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_recorded(pca, resp.identifier, der)


def test_signing_failure_leaves_a_failed_row_with_its_tbs(pca: Pca, hsm_token: Any) -> None:
    """A failure at step 7 marks the reserved row FAILED (kept, with serial and TBS)."""
    from sqlalchemy import select

    from hsm.keys import destroy_key
    from service.storage.schema import certificate as cert_t

    doomed = create_hierarchy(pca, "ECC_256", enable_crl=0)
    with pca.engine.connect() as conn:
        sub = repo.get_ca(conn, OWNER, doomed.sub_id)
    assert sub is not None
    destroy_key(hsm_token, bytes.fromhex(sub.key_id))
    with pytest.raises(grpc.RpcError) as info:
        pca.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
            csr=make_csr(new_key("ECC_256"), "f.example.test"),
            parent_identifier=doomed.sub_id, days=1, immediately=1))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    with pca.engine.connect() as conn:
        rows = conn.execute(select(cert_t).where(
            cert_t.c.issuer_identifier == doomed.sub_id)).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.status == "FAILED" and row.tbs and row.serial and row.failure_reason
    assert row.certificate is None
