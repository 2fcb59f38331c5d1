"""What certificate, CRL and CSR builders need from a key: an algorithm and a sign call.

The token layer (hsm/) provides signers backed by PKCS#11 keys; tests may provide software
ones. Builders stay pure: they take a Signer and never know where the key lives.
"""

from __future__ import annotations

import enum
from typing import Protocol


class SignatureAlgorithm(enum.Enum):
    """Signature algorithms by asn1crypto's ``signed_digest_algorithm`` names.

    Mechanism and encoding are fixed per value: RSA PKCS#1 v1.5 (RFC 8017 8.2), RSASSA-PSS
    with MGF1 of the same hash and salt length = hash length (RFC 4055), ECDSA with the
    signature DER-encoded as Ecdsa-Sig-Value (RFC 3279 2.2.3), SM2 with SM3 and the default
    distinguishing ID 1234567812345678 (GB/T 32918, RFC 8998).
    """

    SHA256_RSA = "sha256_rsa"
    SHA384_RSA = "sha384_rsa"
    SHA512_RSA = "sha512_rsa"
    RSASSA_PSS_SHA256 = "rsassa_pss"
    SHA256_ECDSA = "sha256_ecdsa"
    SHA384_ECDSA = "sha384_ecdsa"
    SHA512_ECDSA = "sha512_ecdsa"
    SM3_SM2 = "sm3_sm2"


class Signer(Protocol):
    """A private key that signs; the public half is known as SubjectPublicKeyInfo DER."""

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """The algorithm every ``sign`` call uses."""
        ...

    @property
    def public_key_info(self) -> bytes:
        """The signer's SubjectPublicKeyInfo, DER."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (the full message, not a digest); returns the BIT STRING contents."""
        ...
