"""Root -> sub -> leaf issuance: fast path == reference path, and independent checkers agree."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

import pkib_reference as ref
import pytest
from asn1crypto import x509 as ax509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ec
from pki_checkers import errors, openssl_verify, pkilint_rfc5280
from pkib_support import (
    NOW,
    Hierarchy,
    SoftwareSigner,
    ec_signer,
    name,
    rsa_signer,
    sign_and_check,
)

from service.pki.builder import (
    IssuanceRequest,
    build_tbs,
    der_oid,
    der_sequence,
    der_tlv,
)
from service.pki.profiles import KeyUsage, ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm

_RSA_LEAF = rsa_signer()
_EC_LEAF = ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA)


def matter_subject() -> bytes:
    """A Matter-style operational subject: CN plus Node ID and Fabric ID (UTF8String)."""
    def rdn(oid: str, value: bytes) -> bytes:
        return der_tlv(0x31, der_sequence(der_oid(oid), der_tlv(0x0C, value)))
    return der_sequence(rdn("2.5.4.3", b"Matter node"),
                        rdn("1.3.6.1.4.1.37244.1.1", b"DEDEDEDE00010001"),
                        rdn("1.3.6.1.4.1.37244.1.5", b"FAB000000000001D"))


def sans(*items: tuple[str, str]) -> ax509.GeneralNames:
    return ax509.GeneralNames([ax509.GeneralName(kind, value) for kind, value in items])


@dataclass(frozen=True)
class Case:
    """One leaf kind: the request and the reference extensions we expect."""

    id: str
    leaf: SoftwareSigner
    purpose: str
    make: Callable[[Hierarchy, SoftwareSigner], tuple[IssuanceRequest, list[ax509.Extension]]]


def _server(h: Hierarchy, leaf: SoftwareSigner):
    san = sans(("dns_name", "www.example.test"), ("dns_name", "example.test"),
               ("ip_address", "192.0.2.10"), ("ip_address", "2001:db8::1"))
    req = IssuanceRequest(
        profile=ProfileKind.SERVER, subject=name("www.example.test"),
        public_key_info=leaf.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=90), subject_alt_names=san, enable_crl=True)
    ku = {"digital_signature"} | ({"key_encipherment"} if isinstance(
        leaf.key, type(_RSA_LEAF.key)) else set())
    return req, ref.leaf_extensions(
        spki_der=leaf.public_key_info, issuer_ski=h.sub_issuer.key_identifier, key_usage=ku,
        ekus=["server_auth"], sans=san, crl_url=h.sub_issuer.crl_url)


def _client(h: Hierarchy, leaf: SoftwareSigner):
    san = sans(("rfc822_name", "alice@example.test"),
               ("uniform_resource_identifier", "https://id.example.test/alice"))
    req = IssuanceRequest(
        profile=ProfileKind.CLIENT, subject=name("alice"),
        public_key_info=leaf.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=365), subject_alt_names=san)
    ku = {"digital_signature"} | ({"key_encipherment"} if isinstance(
        leaf.key, type(_RSA_LEAF.key)) else set())
    return req, ref.leaf_extensions(
        spki_der=leaf.public_key_info, issuer_ski=h.sub_issuer.key_identifier, key_usage=ku,
        ekus=["client_auth"], sans=san)


def _custom_matter(h: Hierarchy, leaf: SoftwareSigner):
    san = sans(("dns_name", "node.example.test"))
    serial = 16889526086333
    req = IssuanceRequest(
        profile=ProfileKind.CUSTOM, subject=matter_subject(),
        public_key_info=leaf.public_key_info, serial=serial, not_before=NOW,
        not_after=NOW + timedelta(days=30),
        key_usage=KeyUsage(digital_signature=True, key_agreement=True),
        extended_key_usages=("serverAuth", "clientAuth"), subject_alt_names=san,
        criticals=("ExtendedKeyUsages", "SubjectAlternativeNames", "KeyUsage"),
        enable_crl=True)
    return req, ref.leaf_extensions(
        spki_der=leaf.public_key_info, issuer_ski=h.sub_issuer.key_identifier,
        key_usage={"digital_signature", "key_agreement"}, ekus=["server_auth", "client_auth"],
        sans=san, san_critical=True, eku_critical=True, crl_url=h.sub_issuer.crl_url)


def _custom_rsa_email(h: Hierarchy, leaf: SoftwareSigner):
    san = sans(("rfc822_name", "bob@example.test"))
    req = IssuanceRequest(
        profile=ProfileKind.CUSTOM, subject=name("bob"),
        public_key_info=leaf.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=30),
        key_usage=KeyUsage(digital_signature=True, content_commitment=True,
                           key_encipherment=True),
        extended_key_usages=("emailProtection", "clientAuth", "1.3.6.1.4.1.311.20.2.2"),
        subject_alt_names=san)
    return req, ref.leaf_extensions(
        spki_der=leaf.public_key_info, issuer_ski=h.sub_issuer.key_identifier,
        key_usage={"digital_signature", "non_repudiation", "key_encipherment"},
        ekus=["email_protection", "client_auth", "1.3.6.1.4.1.311.20.2.2"], sans=san)


def _custom_empty_subject(h: Hierarchy, leaf: SoftwareSigner):
    san = sans(("dns_name", "anonymous.example.test"))
    req = IssuanceRequest(
        profile=ProfileKind.CUSTOM, subject=b"\x30\x00",
        public_key_info=leaf.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=30), key_usage=KeyUsage(digital_signature=True),
        extended_key_usages=("serverAuth",), subject_alt_names=san)
    return req, ref.leaf_extensions(
        spki_der=leaf.public_key_info, issuer_ski=h.sub_issuer.key_identifier,
        key_usage={"digital_signature"}, ekus=["server_auth"], sans=san, san_critical=True)


CASES = [
    Case("server-rsa", _RSA_LEAF, "sslserver", _server),
    Case("server-ec", _EC_LEAF, "sslserver", _server),
    Case("client-ec", _EC_LEAF, "sslclient", _client),
    Case("client-rsa", _RSA_LEAF, "sslclient", _client),
    Case("custom-matter-ec", _EC_LEAF, "sslclient", _custom_matter),
    Case("custom-email-rsa", _RSA_LEAF, "smimesign", _custom_rsa_email),
    Case("custom-empty-subject", _EC_LEAF, "sslserver", _custom_empty_subject),
]


def _issue(h: Hierarchy, req: IssuanceRequest) -> tuple[bytes, bytes]:
    tbs = build_tbs(h.sub_issuer, req)
    return tbs, sign_and_check(h.sub_issuer, h.sub_signer, tbs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_leaf(hierarchy: Hierarchy, case: Case) -> None:
    req, expected_exts = case.make(hierarchy, case.leaf)
    tbs, cert_der = _issue(hierarchy, req)

    # Fast path == slow reference path, byte for byte.
    subject = req.subject if isinstance(req.subject, ax509.Name) else ax509.Name.load(
        req.subject)
    expected = ref.reference_tbs(
        alg=hierarchy.sub_signer.algorithm, serial=req.serial,
        issuer=ax509.Name.load(hierarchy.sub_issuer.subject_der), not_before=req.not_before,
        not_after=req.not_after, subject=subject, spki_der=req.public_key_info,
        extensions=expected_exts)
    assert tbs == expected

    # cryptography parses it and the signature verifies with the sub CA key.
    cert = cx509.load_der_x509_certificate(cert_der)
    sub = cx509.load_der_x509_certificate(hierarchy.sub_der)
    cert.verify_directly_issued_by(sub)
    assert cert.serial_number == req.serial
    assert cert.issuer.public_bytes() == sub.subject.public_bytes()

    findings = pkilint_rfc5280(cert_der)
    assert errors(findings) == [], findings

    result = openssl_verify(hierarchy.root_der, hierarchy.sub_der, cert_der, case.purpose)
    assert result.returncode == 0, result.stdout + result.stderr


def test_custom_serial_and_ip_san(rsa_hierarchy: Hierarchy) -> None:
    req, _ = _custom_matter(rsa_hierarchy, _EC_LEAF)
    _, cert_der = _issue(rsa_hierarchy, req)
    cert = cx509.load_der_x509_certificate(cert_der)
    assert cert.serial_number == 16889526086333
    assert cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).critical
    san_req, _ = _server(rsa_hierarchy, _EC_LEAF)
    _, san_cert = _issue(rsa_hierarchy, san_req)
    got = cx509.load_der_x509_certificate(san_cert).extensions.get_extension_for_class(
        cx509.SubjectAlternativeName).value
    assert got.get_values_for_type(cx509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::1")]


def test_ca_certificates_match_reference(hierarchy: Hierarchy) -> None:
    root = ax509.Certificate.load(hierarchy.root_der)
    sub = ax509.Certificate.load(hierarchy.sub_der)
    root_tbs = root["tbs_certificate"]
    root_spki = root_tbs["subject_public_key_info"].dump()
    expected_root = ref.reference_tbs(
        alg=hierarchy.root_signer.algorithm, serial=root.serial_number,
        issuer=root_tbs["subject"], not_before=root_tbs["validity"]["not_before"].native,
        not_after=root_tbs["validity"]["not_after"].native, subject=root_tbs["subject"],
        spki_der=root_spki,
        extensions=ref.ca_extensions(spki_der=root_spki, issuer_ski=ref.ski_of(root_spki),
                                     path_len=None, key_usage={"key_cert_sign", "crl_sign"}))
    assert root_tbs.dump() == expected_root
    sub_tbs = sub["tbs_certificate"]
    sub_spki = sub_tbs["subject_public_key_info"].dump()
    expected_sub = ref.reference_tbs(
        alg=hierarchy.root_signer.algorithm, serial=sub.serial_number,
        issuer=root_tbs["subject"], not_before=sub_tbs["validity"]["not_before"].native,
        not_after=sub_tbs["validity"]["not_after"].native, subject=sub_tbs["subject"],
        spki_der=sub_spki,
        extensions=ref.ca_extensions(
            spki_der=sub_spki, issuer_ski=ref.ski_of(root_spki), path_len=0,
            key_usage={"digital_signature", "key_cert_sign", "crl_sign"},
            crl_url=hierarchy.root_issuer.crl_url))
    assert sub_tbs.dump() == expected_sub

    for der in (hierarchy.root_der, hierarchy.sub_der):
        findings = pkilint_rfc5280(der)
        assert errors(findings) == [], findings
    # The sub CA chains to the root (openssl: sub as leaf, purpose any).
    r = openssl_verify(hierarchy.root_der, hierarchy.root_der, hierarchy.sub_der, "any")
    assert r.returncode == 0, r.stdout + r.stderr
    cx509.load_der_x509_certificate(hierarchy.sub_der).verify_directly_issued_by(
        cx509.load_der_x509_certificate(hierarchy.root_der))


def test_generalized_time_after_2049(rsa_hierarchy: Hierarchy) -> None:
    root = ax509.Certificate.load(rsa_hierarchy.root_der)
    assert root["tbs_certificate"]["validity"]["not_after"].name == "general_time"
    assert root["tbs_certificate"]["validity"]["not_before"].name == "utc_time"


def test_cryptography_path_validation(hierarchy: Hierarchy) -> None:
    """cryptography's RFC 5280 path builder accepts the server certificate."""
    from cryptography.x509 import DNSName
    from cryptography.x509.verification import PolicyBuilder, Store

    req, _ = _server(hierarchy, _EC_LEAF)
    _, cert_der = _issue(hierarchy, replace(req, enable_crl=False))
    store = Store([cx509.load_der_x509_certificate(hierarchy.root_der)])
    verifier = PolicyBuilder().store(store).time(NOW + timedelta(hours=1)).build_server_verifier(
        DNSName("www.example.test"))
    chain = verifier.verify(cx509.load_der_x509_certificate(cert_der),
                            [cx509.load_der_x509_certificate(hierarchy.sub_der)])
    assert len(chain) == 3


def test_constrained_sub_ca_issues_allowed_eku(constrained_hierarchy: Hierarchy) -> None:
    req, _ = _client(constrained_hierarchy, _EC_LEAF)
    _, cert_der = _issue(constrained_hierarchy, req)
    r = openssl_verify(constrained_hierarchy.root_der, constrained_hierarchy.sub_der, cert_der,
                       "sslclient")
    assert r.returncode == 0, r.stdout + r.stderr
    assert errors(pkilint_rfc5280(constrained_hierarchy.sub_der)) == []


def test_non_web_uri_san_pkilint_limitation(ec_hierarchy: Hierarchy) -> None:
    """pkilint checks URI SANs with validators.url (web URLs only): the one accepted finding."""
    san = sans(("uniform_resource_identifier", "spiffe://example.test/workload"))
    req = IssuanceRequest(
        profile=ProfileKind.CLIENT, subject=name("workload"),
        public_key_info=_EC_LEAF.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=1), subject_alt_names=san)
    _, cert_der = _issue(ec_hierarchy, req)
    assert [code for _, code in errors(pkilint_rfc5280(cert_der))] == [
        "pkix.invalid_uri_syntax @ certificate.tbsCertificate.extensions.5.extnValue"
        ".subjectAltName.0.uniformResourceIdentifier"]
    r = openssl_verify(ec_hierarchy.root_der, ec_hierarchy.sub_der, cert_der, "sslclient")
    assert r.returncode == 0, r.stdout + r.stderr
