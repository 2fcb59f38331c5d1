"""Software signers and a CA hierarchy built with the fast builder, for builder tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from service.pki.builder import (
    SIGNATURE_ALGORITHM_IDENTIFIERS,
    IssuanceRequest,
    Issuer,
    assemble_certificate,
    build_self_signed_tbs,
    build_tbs,
)
from service.pki.lint import lint_self_signed_tbs, lint_tbs
from service.pki.profiles import ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from service.pki.verify import verify_certificate

# Whole seconds, an hour in the past so OpenSSL sees every certificate as valid now.
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

_HASH = {
    SignatureAlgorithm.SHA256_RSA: hashes.SHA256,
    SignatureAlgorithm.SHA384_RSA: hashes.SHA384,
    SignatureAlgorithm.SHA512_RSA: hashes.SHA512,
    SignatureAlgorithm.RSASSA_PSS_SHA256: hashes.SHA256,
    SignatureAlgorithm.SHA256_ECDSA: hashes.SHA256,
    SignatureAlgorithm.SHA384_ECDSA: hashes.SHA384,
    SignatureAlgorithm.SHA512_ECDSA: hashes.SHA512,
}


@dataclass(frozen=True)
class SoftwareSigner:
    """A Signer backed by a cryptography private key (tests only)."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    algorithm: SignatureAlgorithm

    @property
    def public_key_info(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        h = _HASH[self.algorithm]()
        if isinstance(self.key, rsa.RSAPrivateKey):
            if self.algorithm is SignatureAlgorithm.RSASSA_PSS_SHA256:
                return self.key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), h)
            return self.key.sign(data, padding.PKCS1v15(), h)
        return self.key.sign(data, ec.ECDSA(h))


def rsa_signer(alg: SignatureAlgorithm = SignatureAlgorithm.SHA256_RSA) -> SoftwareSigner:
    return SoftwareSigner(rsa.generate_private_key(65537, 2048), alg)


def ec_signer(curve: ec.EllipticCurve, alg: SignatureAlgorithm) -> SoftwareSigner:
    return SoftwareSigner(ec.generate_private_key(curve), alg)


def name(cn: str, o: str = "hsmca test", c: str = "CN") -> ax509.Name:
    """A subject with country PrintableString and the rest UTF8String."""
    return ax509.Name.build({"country_name": c, "organization_name": o, "common_name": cn})


@dataclass(frozen=True)
class Hierarchy:
    """Root -> sub CA, with the Issuer objects the builder needs."""

    label: str
    root_signer: SoftwareSigner
    root_der: bytes
    root_issuer: Issuer
    sub_signer: SoftwareSigner
    sub_der: bytes
    sub_issuer: Issuer


def sign_and_check(issuer: Issuer | None, signer: SoftwareSigner, tbs: bytes) -> bytes:
    """The service's steps after the build: lint, sign, assemble, verify."""
    if issuer is None:
        lint_self_signed_tbs(tbs)
    else:
        lint_tbs(tbs, issuer)
    cert = assemble_certificate(tbs, SIGNATURE_ALGORITHM_IDENTIFIERS[signer.algorithm],
                                signer.sign(tbs))
    verify_certificate(cert, signer.public_key_info if issuer is None
                       else issuer.public_key_info)
    return cert


def build_hierarchy(label: str, root_signer: SoftwareSigner, sub_signer: SoftwareSigner,
                    root_years: int = 10, sub_ekus: tuple[str, ...] = ()) -> Hierarchy:
    root_tbs = build_self_signed_tbs(name(f"{label} root"), root_signer.public_key_info,
                                     root_signer.algorithm, new_serial(), NOW,
                                     NOW.replace(year=NOW.year + root_years))
    root_der = sign_and_check(None, root_signer, root_tbs)
    root_issuer = Issuer.from_certificate(root_der, root_signer.algorithm,
                                          crl_url=f"http://127.0.0.1:8080/crl/{label}-root.crl")
    sub_req = IssuanceRequest(
        profile=ProfileKind.SUB_CA, subject=name(f"{label} sub"),
        public_key_info=sub_signer.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=5 * 365), extended_key_usages=sub_ekus,
        enable_crl=True)
    sub_der = sign_and_check(root_issuer, root_signer, build_tbs(root_issuer, sub_req))
    sub_issuer = Issuer.from_certificate(sub_der, sub_signer.algorithm,
                                         crl_url=f"http://127.0.0.1:8080/crl/{label}-sub.crl")
    return Hierarchy(label, root_signer, root_der, root_issuer, sub_signer, sub_der, sub_issuer)


