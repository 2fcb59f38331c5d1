"""What a strictly parsed, verified CSR yields: the result of both CSR parsers.

``service.pki.csr`` (the reference, asn1crypto) and ``service.pki.csr_fast`` (a DER walk for
the common request) both return a ParsedCsr; it lives here so neither imports the other's
internals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from asn1crypto import x509

from service.pki.algorithms import CaAlgorithm, KeyFamily
from service.pki.names import SubjectAltName

__all__ = ["MAX_RSA_BITS", "REASON_CSR", "ParsedCsr"]

REASON_CSR = "InvalidParameter.Csr"

# Larger RSA keys only cost verification time; nobody needs them (and RSA_4096 is the API max).
MAX_RSA_BITS = 16384


@dataclass(frozen=True)
class ParsedCsr:
    """A CSR that parsed strictly, verified, and passed the key policy."""

    der: bytes
    subject_der: bytes  # the subject Name, exactly as in the CSR
    public_key_info: bytes  # SubjectPublicKeyInfo DER, as in the CSR
    key_family: KeyFamily
    key_bits: int  # RSA modulus bits, or the curve's field size (256/384/521)
    curve: str | None  # asn1crypto named curve for ECC/SM2, None for RSA
    signature_algorithm: str  # asn1crypto name of the CSR's signature, e.g. "sha256_ecdsa"
    requested_sans: tuple[SubjectAltName, ...]  # from the extensionRequest attribute
    common_name: str | None  # the subject's commonName (parse_csr refuses a second one)

    def __post_init__(self) -> None:
        """Keep the fields consistent with each other."""
        if (self.key_family == "RSA") != (self.curve is None):
            raise ValueError("ParsedCsr.curve must be set exactly for ECC and SM2 keys")
        if self.key_bits <= 0:
            raise ValueError("ParsedCsr.key_bits must be positive")

    @functools.cached_property
    def subject(self) -> x509.Name:
        """The subject as an asn1crypto Name (decoded on first use; issuance needs only DER)."""
        return x509.Name.load(self.subject_der, strict=True)

    @property
    def algorithm(self) -> CaAlgorithm | None:
        """The API algorithm name of the CSR's key, if it has one (RSA-3072 has none)."""
        bits_or_curve: int | str = self.curve if self.curve is not None else self.key_bits
        return CaAlgorithm.for_key(self.key_family, bits_or_curve)
