"""PKCS#10 certification requests (RFC 2986) for KMS certificates, signed by a Signer.

The request is version v1 (0) with the signer's SubjectPublicKeyInfo; SANs travel as
dNSName entries of a subjectAltName extension inside a PKCS#9 extensionRequest attribute
(1.2.840.113549.1.9.14, RFC 2985 5.4.2). The signature AlgorithmIdentifier is spelled out
per algorithm: RSA with NULL parameters (RFC 4055 5), ECDSA with parameters absent
(RFC 5758 3.2), RSASSA-PSS with explicit SHA-256 parameters (RFC 4055 3.1), SM3withSM2
(1.2.156.10197.1.501, GM/T 0006) with parameters absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from asn1crypto import algos, core, csr, keys, x509

from service.pki.pem import encode as pem_encode
from service.pki.signer import SignatureAlgorithm, Signer

_SIGNATURE_OIDS: Mapping[SignatureAlgorithm, str] = MappingProxyType(
    {
        SignatureAlgorithm.SHA256_RSA: "1.2.840.113549.1.1.11",
        SignatureAlgorithm.SHA384_RSA: "1.2.840.113549.1.1.12",
        SignatureAlgorithm.SHA512_RSA: "1.2.840.113549.1.1.13",
        SignatureAlgorithm.RSASSA_PSS_SHA256: "1.2.840.113549.1.1.10",
        SignatureAlgorithm.SHA256_ECDSA: "1.2.840.10045.4.3.2",
        SignatureAlgorithm.SHA384_ECDSA: "1.2.840.10045.4.3.3",
        SignatureAlgorithm.SHA512_ECDSA: "1.2.840.10045.4.3.4",
        SignatureAlgorithm.SM3_SM2: "1.2.156.10197.1.501",
    }
)
_NULL_PARAMETERS = frozenset(
    {SignatureAlgorithm.SHA256_RSA, SignatureAlgorithm.SHA384_RSA, SignatureAlgorithm.SHA512_RSA}
)


def signature_algorithm_identifier(algorithm: SignatureAlgorithm) -> algos.SignedDigestAlgorithm:
    """The AlgorithmIdentifier for ``algorithm``, with parameters as the RFCs require."""
    value: dict[str, object] = {"algorithm": _SIGNATURE_OIDS[algorithm]}
    if algorithm in _NULL_PARAMETERS:
        value["parameters"] = core.Null()
    elif algorithm is SignatureAlgorithm.RSASSA_PSS_SHA256:
        # RFC 4055 3.1: SHA-256, MGF1 with SHA-256, salt length 32, trailer field 1.
        sha256 = {"algorithm": "sha256", "parameters": core.Null()}
        value["parameters"] = algos.RSASSAPSSParams(
            {
                "hash_algorithm": sha256,
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": sha256},
                "salt_length": 32,
                "trailer_field": "trailer_field_bc",
            }
        )
    return algos.SignedDigestAlgorithm(value)


def _extension_request(sans: list[str]) -> csr.CRIAttribute:
    # RFC 5280 4.2.1.6: the subject is never empty here, so the SAN extension is
    # non-critical; each name is a dNSName (IA5String).
    san = x509.Extension(
        {
            "extn_id": "subject_alt_name",
            "critical": False,
            "extn_value": x509.GeneralNames(
                [x509.GeneralName(name="dns_name", value=name) for name in sans]
            ),
        }
    )
    return csr.CRIAttribute({"type": "extension_request", "values": [x509.Extensions([san])]})


def build_certification_request_info(
    subject: x509.Name, sans: list[str], public_key_info: bytes
) -> bytes:
    """The DER CertificationRequestInfo (RFC 2986 4.1) that the signer signs."""
    attributes = [_extension_request(sans)] if sans else []
    info = csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": subject,
            "subject_pk_info": keys.PublicKeyInfo.load(public_key_info),
            "attributes": csr.CRIAttributes(attributes),
        }
    )
    return bytes(info.dump())


def build_csr(subject: x509.Name, sans: list[str], signer: Signer) -> str:
    """Build and sign a PKCS#10 CSR (RFC 2986) for ``subject`` and dNSName ``sans``; PEM."""
    info_der = build_certification_request_info(subject, sans, signer.public_key_info)
    request = csr.CertificationRequest(
        {
            "certification_request_info": csr.CertificationRequestInfo.load(info_der),
            "signature_algorithm": signature_algorithm_identifier(signer.algorithm),
            "signature": signer.sign(info_der),
        }
    )
    return pem_encode(request.dump(), "CERTIFICATE REQUEST")
