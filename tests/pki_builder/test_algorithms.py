"""Signature algorithm identifiers, RSASSA-PSS and SM2 hierarchies, and CA/B BR findings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pkib_reference as ref
import pytest
from asn1crypto import x509 as ax509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ec
from pki_checkers import errors, openssl_verify, pkilint_rfc5280, pkilint_serverauth
from pkib_support import NOW, Hierarchy, build_hierarchy, ec_signer, name, rsa_signer

from service.pki.builder import (
    SIGNATURE_ALGORITHM_IDENTIFIERS,
    IssuanceRequest,
    build_tbs,
    key_type_of,
)
from service.pki.profiles import KeyType, ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from service.pki.verify import verify_signature

_SAN = ax509.GeneralNames([ax509.GeneralName("dns_name", "www.example.test")])


@pytest.mark.parametrize("alg", list(SignatureAlgorithm), ids=lambda a: a.value)
def test_algorithm_identifiers_match_asn1crypto(alg: SignatureAlgorithm) -> None:
    assert SIGNATURE_ALGORITHM_IDENTIFIERS[alg] == ref.signature_algorithm(alg).dump()


def test_pss_identifier_is_the_br_encoding() -> None:
    # CA/B BR 7.1.3.2.1: the exact RSASSA-PSS SHA-256 AlgorithmIdentifier bytes.
    assert SIGNATURE_ALGORITHM_IDENTIFIERS[SignatureAlgorithm.RSASSA_PSS_SHA256].hex() == (
        "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a8648"
        "86f70d010108300d06096086480165030402010500a203020120")


def _server(h: Hierarchy) -> bytes:
    from pkib_support import sign_and_check

    leaf = ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA)
    req = IssuanceRequest(
        profile=ProfileKind.SERVER, subject=name("www.example.test"),
        public_key_info=leaf.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=30), subject_alt_names=_SAN)
    return sign_and_check(h.sub_issuer, h.sub_signer, build_tbs(h.sub_issuer, req))


@pytest.mark.parametrize("alg", [SignatureAlgorithm.RSASSA_PSS_SHA256,
                                 SignatureAlgorithm.SHA384_RSA,
                                 SignatureAlgorithm.SHA512_ECDSA])
def test_other_algorithms_chain(alg: SignatureAlgorithm) -> None:
    signer = (ec_signer(ec.SECP521R1(), alg) if "ecdsa" in alg.value else rsa_signer(alg))
    h = build_hierarchy(alg.value, signer, signer.__class__(signer.key, alg))
    cert_der = _server(h)
    cx509.load_der_x509_certificate(cert_der).verify_directly_issued_by(
        cx509.load_der_x509_certificate(h.sub_der))
    for der in (h.root_der, h.sub_der, cert_der):
        assert errors(pkilint_rfc5280(der)) == []
    r = openssl_verify(h.root_der, h.sub_der, cert_der, "sslserver")
    assert r.returncode == 0, r.stdout + r.stderr


@dataclass(frozen=True)
class Sm2Signer:
    """SM2 with SM3 in software through tongsuopy (the SOFTWARE protection path)."""

    key: object
    algorithm: SignatureAlgorithm = SignatureAlgorithm.SM3_SM2

    @property
    def public_key_info(self) -> bytes:
        from tongsuopy.crypto import serialization

        return self.key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        from tongsuopy.crypto import hashes
        from tongsuopy.crypto.asymciphers import ec as sm_ec

        return self.key.sign(data, sm_ec.ECDSA(hashes.SM3()))  # type: ignore[attr-defined]


def test_sm2_hierarchy() -> None:
    pytest.importorskip("tongsuopy")
    from tongsuopy.crypto.asymciphers import ec as sm_ec

    root, sub, leaf = (Sm2Signer(sm_ec.generate_private_key(sm_ec.SM2())) for _ in range(3))
    assert key_type_of(root.public_key_info) is KeyType.SM2
    h = build_hierarchy("sm2", root, sub)  # type: ignore[arg-type]
    from pkib_support import sign_and_check

    req = IssuanceRequest(
        profile=ProfileKind.SERVER, subject=name("www.example.test"),
        public_key_info=leaf.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=30), subject_alt_names=_SAN)
    tbs = build_tbs(h.sub_issuer, req)
    sign_and_check(h.sub_issuer, sub, tbs)  # type: ignore[arg-type]
    assert not verify_signature(root.public_key_info, SignatureAlgorithm.SM3_SM2, tbs,
                                sub.sign(tbs))
    assert b"\x06\x08\x2a\x81\x1c\xcf\x55\x01\x83\x75" in h.sub_der


def test_verify_signature_rejects() -> None:
    s = rsa_signer()
    sig = s.sign(b"data")
    assert verify_signature(s.public_key_info, SignatureAlgorithm.SHA256_RSA, b"data", sig)
    assert not verify_signature(s.public_key_info, SignatureAlgorithm.SHA256_RSA, b"datb", sig)
    assert not verify_signature(s.public_key_info, SignatureAlgorithm.SHA384_RSA, b"data", sig)
    assert not verify_signature(s.public_key_info, SignatureAlgorithm.SHA256_ECDSA, b"data",
                                sig)
    assert not verify_signature(b"\x30\x00", SignatureAlgorithm.SHA256_RSA, b"data", sig)


# CA/B BR TLS findings that only concern publicly-trusted PKI; a private CA does not carry
# certificatePolicies / AIA, uses internal names (.test, 127.0.0.1 CRL host) and may leave
# out stateOrProvince/locality. The RFC 5280 validator is the gate (no ERROR/FATAL).
_BR_PRIVATE_PKI_ONLY = {
    "cabf.serverauth.subscriber_stateprovince_and_locality_missing",
    "cabf.internal_domain_name",
    "cabf.serverauth.subscriber.authority_info_access_extension_absent",
    "cabf.serverauth.subscriber.certificate_policies_extension_absent",
    "cabf.serverauth.ca.certificate_policies_extension_absent",
    "cabf.serverauth.ca.extended_key_usage_extension_absent",
    # enable_crl = 0 is the caller's choice; with it the certificate carries a CRL DP.
    "cabf.serverauth.subscriber.revocation_information_absent",
    "msft.end_entity.revocation_information_absent",
}


def test_br_serverauth_findings_are_private_pki_only(ec_hierarchy: Hierarchy) -> None:
    from pkilint.cabf.serverauth.serverauth_constants import CertificateType as T

    cert_der = _server(ec_hierarchy)
    for der, t in ((cert_der, T.OV_FINAL_CERTIFICATE),
                   (ec_hierarchy.sub_der, T.INTERNAL_UNCONSTRAINED_TLS_CA),
                   (ec_hierarchy.root_der, T.ROOT_CA)):
        codes = {code.split(" @ ")[0] for _, code in errors(pkilint_serverauth(der, t))}
        assert codes <= _BR_PRIVATE_PKI_ONLY, codes
