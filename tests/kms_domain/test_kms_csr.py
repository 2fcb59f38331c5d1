"""PKCS#10 CSRs from build_csr, checked by OpenSSL and by pyca/cryptography."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import csr, pem
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kms_test_support import SoftwareSigner, openssl

from service.kms.csr import build_csr, signature_algorithm_identifier
from service.kms.dn import parse_subject
from service.pki.signer import SignatureAlgorithm

DN = r"CN=userName,OU=kms,O=Acme\, Inc.,L=Hangzhou,ST=Zhejiang,C=CN"
SANS = ["test1.example.com", "*.test2.example.com"]


def _signer(
    kind: str, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> SoftwareSigner:
    if kind == "rsa":
        return SoftwareSigner(rsa_key, SignatureAlgorithm.SHA256_RSA)
    if kind == "rsa-pss":
        return SoftwareSigner(rsa_key, SignatureAlgorithm.RSASSA_PSS_SHA256)
    return SoftwareSigner(ec_key, SignatureAlgorithm.SHA256_ECDSA)


@pytest.mark.parametrize("kind", ["rsa", "rsa-pss", "ec"])
def test_csr_verifies_and_carries_subject_and_sans(
    kind: str, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    signer = _signer(kind, rsa_key, ec_key)
    text = build_csr(parse_subject(DN), SANS, signer)
    assert text.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    (tmp_path / "req.pem").write_text(text)

    verified = openssl("req", "-in", "req.pem", "-verify", "-noout", cwd=tmp_path)
    assert "verify OK" in verified.stdout + verified.stderr
    shown = openssl("req", "-in", "req.pem", "-noout", "-text", "-nameopt", "RFC2253", cwd=tmp_path)
    assert f"Subject: {DN}" in shown.stdout
    assert "DNS:test1.example.com, DNS:*.test2.example.com" in shown.stdout

    request = cx509.load_pem_x509_csr(text.encode())
    assert request.is_signature_valid
    assert request.subject.rfc4514_string() == DN
    san = request.extensions.get_extension_for_class(cx509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(cx509.DNSName) == SANS
    spki = request.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki == signer.public_key_info


def test_csr_without_sans_has_no_attributes(
    ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    text = build_csr(
        parse_subject("CN=a,OU=k,O=o,C=CN"),
        [],
        SoftwareSigner(ec_key, SignatureAlgorithm.SHA256_ECDSA),
    )
    _, _, der = pem.unarmor(text.encode())
    info = csr.CertificationRequest.load(der)["certification_request_info"]
    assert info["version"].native == "v1"
    assert len(info["attributes"]) == 0
    (tmp_path / "req.pem").write_text(text)
    openssl("req", "-in", "req.pem", "-verify", "-noout", cwd=tmp_path)


def test_extension_request_attribute_oid(ec_key: ec.EllipticCurvePrivateKey) -> None:
    text = build_csr(
        parse_subject("CN=a,OU=k,O=o,C=CN"),
        ["a.example"],
        SoftwareSigner(ec_key, SignatureAlgorithm.SHA256_ECDSA),
    )
    _, _, der = pem.unarmor(text.encode())
    attributes = csr.CertificationRequest.load(der)["certification_request_info"]["attributes"]
    assert [a["type"].dotted for a in attributes] == ["1.2.840.113549.1.9.14"]


@pytest.mark.parametrize(
    ("algorithm", "oid", "parameters_der"),
    [
        (SignatureAlgorithm.SHA256_RSA, "1.2.840.113549.1.1.11", b"\x05\x00"),  # NULL
        (SignatureAlgorithm.SHA256_ECDSA, "1.2.840.10045.4.3.2", None),  # absent
        (SignatureAlgorithm.SHA384_ECDSA, "1.2.840.10045.4.3.3", None),
        (SignatureAlgorithm.SM3_SM2, "1.2.156.10197.1.501", None),  # absent
    ],
)
def test_signature_algorithm_identifier(
    algorithm: SignatureAlgorithm, oid: str, parameters_der: bytes | None
) -> None:
    identifier = signature_algorithm_identifier(algorithm)
    assert identifier["algorithm"].dotted == oid
    if parameters_der is None:
        # Re-parse so "absent" means absent in the DER, not merely a Python default.
        assert len(identifier.dump()) == 2 + 2 + len(identifier["algorithm"].contents)
    else:
        assert identifier["parameters"].dump() == parameters_der


def test_pss_parameters() -> None:
    parameters = signature_algorithm_identifier(SignatureAlgorithm.RSASSA_PSS_SHA256)["parameters"]
    assert parameters["hash_algorithm"]["algorithm"].native == "sha256"
    assert parameters["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    assert parameters["salt_length"].native == 32
