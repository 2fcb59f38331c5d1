"""Verify signatures after signing (docs/architecture.md inv. 3; RFC 5280 4.1.1.3, 5.1.1.3)."""

from __future__ import annotations

import functools
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from service.errors import FailedPrecondition, Internal
from service.pki.builder import ALGORITHM_BY_IDENTIFIER, read_tlv
from service.pki.signer import SignatureAlgorithm

_HASHES: dict[SignatureAlgorithm, type[hashes.HashAlgorithm]] = {
    SignatureAlgorithm.SHA256_RSA: hashes.SHA256,
    SignatureAlgorithm.SHA384_RSA: hashes.SHA384,
    SignatureAlgorithm.SHA512_RSA: hashes.SHA512,
    SignatureAlgorithm.RSASSA_PSS_SHA256: hashes.SHA256,
    SignatureAlgorithm.SHA256_ECDSA: hashes.SHA256,
    SignatureAlgorithm.SHA384_ECDSA: hashes.SHA384,
    SignatureAlgorithm.SHA512_ECDSA: hashes.SHA512,
}

# Per algorithm: the key class it needs and the verify() arguments after (signature, data).
# Built once: padding, ECDSA and hash objects hold no state.
_VERIFY_ARGS: dict[SignatureAlgorithm, tuple[type[Any], tuple[Any, ...]]] = {
    # RFC 4055 3.1 as encoded by the builder: MGF1-SHA-256, salt 32.
    SignatureAlgorithm.RSASSA_PSS_SHA256: (rsa.RSAPublicKey, (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())),
    **{alg: (rsa.RSAPublicKey, (padding.PKCS1v15(), _HASHES[alg]()))
       for alg in (SignatureAlgorithm.SHA256_RSA, SignatureAlgorithm.SHA384_RSA,
                   SignatureAlgorithm.SHA512_RSA)},
    **{alg: (ec.EllipticCurvePublicKey, (ec.ECDSA(_HASHES[alg]()),))
       for alg in (SignatureAlgorithm.SHA256_ECDSA, SignatureAlgorithm.SHA384_ECDSA,
                   SignatureAlgorithm.SHA512_ECDSA)},
}


@functools.lru_cache(maxsize=256)
def _public_key(spki_der: bytes) -> Any:
    """The loaded public key of an issuer SPKI, or None if it does not load.

    Issuer keys repeat on every certificate and CRL they sign, and loading one costs about
    as much as a tenth of an ECDSA verification; key objects are immutable, so they are
    cached by their exact DER.
    """
    try:
        return serialization.load_der_public_key(spki_der)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _verify_sm2(spki_der: bytes, data: bytes, signature: bytes) -> bool:
    """SM2 with SM3 and the default distinguishing ID, through tongsuopy (software)."""
    try:
        from tongsuopy.crypto import hashes as sm_hashes
        from tongsuopy.crypto import serialization as sm_serialization
        from tongsuopy.crypto.asymciphers import ec as sm_ec
        from tongsuopy.crypto.exceptions import InvalidSignature as SmInvalidSignature
    except ImportError as e:  # pragma: no cover - tongsuopy is a declared dependency
        raise FailedPrecondition("SM2 verification needs tongsuopy, which is not installed",
                                 reason="UnsupportedOperation.SM2") from e
    try:
        key = sm_serialization.load_der_public_key(spki_der)
    except ValueError:
        return False
    if not isinstance(key, sm_ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, sm_ec.ECDSA(sm_hashes.SM3()))
    except SmInvalidSignature:
        return False
    return True


def verify_signature(spki_der: bytes, algorithm: SignatureAlgorithm, data: bytes,
                     signature: bytes) -> bool:
    """True iff ``signature`` over ``data`` verifies with the SPKI under ``algorithm``."""
    if algorithm is SignatureAlgorithm.SM3_SM2:
        return _verify_sm2(spki_der, data, signature)
    key = _public_key(bytes(spki_der))
    key_class, args = _VERIFY_ARGS[algorithm]
    if not isinstance(key, key_class):
        return False  # also a key that did not load (None)
    try:
        key.verify(signature, data, *args)
    except InvalidSignature:
        return False
    return True


def _split_signed(der: bytes, what: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(tbs, inner signature AlgorithmIdentifier, outer AlgorithmIdentifier, signature)."""
    try:
        tag, start, end = read_tlv(der)
        if tag != 0x30 or end != len(der):
            raise ValueError("not a single SEQUENCE")
        tag, tbs_start, tbs_end = read_tlv(der, start)
        tbs = der[start:tbs_end]
        _, alg_start, alg_end = read_tlv(der, tbs_end)
        outer_alg = der[tbs_end:alg_end]
        tag, sig_start, sig_end = read_tlv(der, alg_end)
        if tag != 0x03 or sig_end != end or der[sig_start] != 0:
            raise ValueError("signatureValue is not an octet-aligned BIT STRING")
        signature = der[sig_start + 1:sig_end]
        # Inside the TBS: skip [0] version (certificates) / INTEGER version (CRLs), serial.
        pos = tbs_start
        tag, _, nxt = read_tlv(der, pos)
        if what == "certificate":
            if tag == 0xA0:
                pos = nxt
            _, _, pos = read_tlv(der, pos)  # serialNumber
        elif tag == 0x02:
            pos = nxt  # CRL version
        _, _, inner_end = read_tlv(der, pos)
        inner_alg = der[pos:inner_end]
    except (ValueError, IndexError) as e:
        raise Internal(f"signed {what} does not parse: {e}") from e
    return tbs, inner_alg, outer_alg, signature


def _verify_signed(der: bytes, issuer_spki_der: bytes, what: str) -> None:
    tbs, inner_alg, outer_alg, signature = _split_signed(der, what)
    # RFC 5280 4.1.1.2 / 5.1.1.2: signatureAlgorithm MUST equal the TBS signature field.
    if inner_alg != outer_alg:
        raise Internal(f"{what} signatureAlgorithm differs from the TBS signature field")
    algorithm = ALGORITHM_BY_IDENTIFIER.get(outer_alg)
    if algorithm is None:
        raise Internal(f"{what} has an unknown signature algorithm")
    if not verify_signature(issuer_spki_der, algorithm, tbs, signature):
        raise Internal(f"{what} signature does not verify against the issuer key")


def verify_certificate(cert_der: bytes, issuer_spki_der: bytes) -> None:
    """Raise Internal unless the certificate's signature verifies with the issuer's key."""
    _verify_signed(cert_der, issuer_spki_der, "certificate")


def verify_crl(crl_der: bytes, issuer_spki_der: bytes) -> None:
    """Raise Internal unless the CRL's signature verifies with the issuer's key."""
    _verify_signed(crl_der, issuer_spki_der, "CRL")
