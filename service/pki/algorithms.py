"""The CA key algorithms of the Private CA API and how public keys map onto them.

API names (``RSA_2048``, ``ECC_256``, ``SM2_256``, ...) follow the Private CA documentation;
signature algorithms follow the issue: RSA keys sign sha256WithRSAEncryption (RFC 4055),
ECC keys sign ECDSA with the hash matching the curve (RFC 5480 4: P-256/SHA-256,
P-384/SHA-384, P-521/SHA-512), SM2 keys sign SM3withSM2 (GB/T 32918, RFC 8998).

Importing this module registers the SM2 curve and the SM3/SM3withSM2 OIDs with asn1crypto,
which does not know them: ``keys.PublicKeyInfo(...).curve`` then reads ``sm2p256v1`` and
``SignedDigestAlgorithmId`` round-trips ``sm3_sm2``.
"""

from __future__ import annotations

import enum
from typing import Literal

from asn1crypto import algos, keys

from service.errors import InvalidArgument
from service.hints import PCA_ALGORITHM_FOR_KMS, spelling_hint
from service.pki.signer import SignatureAlgorithm

KeyFamily = Literal["RSA", "ECC", "SM2"]

# GM/T 0006-2012 object identifiers.
OID_SM2_CURVE = "1.2.156.10197.1.301"
OID_SM3 = "1.2.156.10197.1.401"
OID_SM3_WITH_SM2 = "1.2.156.10197.1.501"

SM2_CURVE = "sm2p256v1"

# asn1crypto named curve -> field size in bits (the "key size" of an EC key).
CURVE_BITS: dict[str, int] = {
    "secp256r1": 256,
    "secp384r1": 384,
    "secp521r1": 521,
    SM2_CURVE: 256,
}


def _register_oid(cls: type, oid: str, name: str) -> None:
    """Add one OID <-> name pair to an asn1crypto ObjectIdentifier map (idempotent)."""
    mapping: dict[str, str] = cls._map  # type: ignore[attr-defined]
    mapping[oid] = name
    reverse: dict[str, str] | None = cls._reverse_map  # type: ignore[attr-defined]
    if reverse is not None:
        reverse[name] = oid


def register_sm_oids() -> None:
    """Teach asn1crypto the SM2 curve, SM3 and SM3withSM2 OIDs (safe to call repeatedly)."""
    if keys.NamedCurve._map.get(OID_SM2_CURVE) != SM2_CURVE:
        keys.NamedCurve.register(SM2_CURVE, OID_SM2_CURVE, 32)
    _register_oid(algos.SignedDigestAlgorithmId, OID_SM3_WITH_SM2, "sm3_sm2")
    _register_oid(algos.DigestAlgorithmId, OID_SM3, "sm3")


register_sm_oids()


class CaAlgorithm(enum.Enum):
    """A key algorithm by its Private CA API name (``Algorithm`` request parameter)."""

    RSA_1024 = "RSA_1024"
    RSA_2048 = "RSA_2048"
    RSA_4096 = "RSA_4096"
    ECC_256 = "ECC_256"
    ECC_384 = "ECC_384"
    ECC_512 = "ECC_512"
    SM2_256 = "SM2_256"

    @property
    def family(self) -> KeyFamily:
        """``RSA``, ``ECC`` or ``SM2``; a CA issues only within its own family."""
        return _FAMILY[self]

    @property
    def key_bits(self) -> int:
        """RSA modulus size, or the curve's field size (ECC_512 is P-521, so 521)."""
        return _KEY_BITS[self]

    @property
    def curve(self) -> str | None:
        """The asn1crypto named curve (``secp256r1``, ``sm2p256v1``, ...); None for RSA."""
        return _CURVE.get(self)

    @property
    def signature_algorithm(self) -> SignatureAlgorithm:
        """The algorithm a key of this kind signs certificates and CRLs with."""
        return _SIGNATURE[self]

    @property
    def hsm_key_spec(self) -> str:
        """The token layer's key spec name (``RSA_2048``, ``EC_P256``, ``EC_SM2``, ...)."""
        return _HSM_KEY_SPEC[self]

    @classmethod
    def for_key(cls, family: KeyFamily, bits_or_curve: int | str) -> CaAlgorithm | None:
        """The algorithm whose keys look like this, or None (e.g. RSA-3072 has no API name)."""
        for alg in cls:
            if alg.family != family:
                continue
            if family == "RSA" and alg.key_bits == bits_or_curve:
                return alg
            if family != "RSA" and alg.curve == bits_or_curve:
                return alg
        return None


_FAMILY: dict[CaAlgorithm, KeyFamily] = {
    CaAlgorithm.RSA_1024: "RSA",
    CaAlgorithm.RSA_2048: "RSA",
    CaAlgorithm.RSA_4096: "RSA",
    CaAlgorithm.ECC_256: "ECC",
    CaAlgorithm.ECC_384: "ECC",
    CaAlgorithm.ECC_512: "ECC",
    CaAlgorithm.SM2_256: "SM2",
}
_KEY_BITS: dict[CaAlgorithm, int] = {
    CaAlgorithm.RSA_1024: 1024,
    CaAlgorithm.RSA_2048: 2048,
    CaAlgorithm.RSA_4096: 4096,
    CaAlgorithm.ECC_256: 256,
    CaAlgorithm.ECC_384: 384,
    CaAlgorithm.ECC_512: 521,
    CaAlgorithm.SM2_256: 256,
}
_CURVE: dict[CaAlgorithm, str] = {
    CaAlgorithm.ECC_256: "secp256r1",
    CaAlgorithm.ECC_384: "secp384r1",
    CaAlgorithm.ECC_512: "secp521r1",
    CaAlgorithm.SM2_256: SM2_CURVE,
}
# The API docs list "Sha256WithECDSA" for every ECC size; RFC 5480 4 matches
# the hash to the curve, which is what we do.
_SIGNATURE: dict[CaAlgorithm, SignatureAlgorithm] = {
    CaAlgorithm.RSA_1024: SignatureAlgorithm.SHA256_RSA,
    CaAlgorithm.RSA_2048: SignatureAlgorithm.SHA256_RSA,
    CaAlgorithm.RSA_4096: SignatureAlgorithm.SHA256_RSA,
    CaAlgorithm.ECC_256: SignatureAlgorithm.SHA256_ECDSA,
    CaAlgorithm.ECC_384: SignatureAlgorithm.SHA384_ECDSA,
    CaAlgorithm.ECC_512: SignatureAlgorithm.SHA512_ECDSA,
    CaAlgorithm.SM2_256: SignatureAlgorithm.SM3_SM2,
}
_HSM_KEY_SPEC: dict[CaAlgorithm, str] = {
    CaAlgorithm.RSA_1024: "RSA_1024",
    CaAlgorithm.RSA_2048: "RSA_2048",
    CaAlgorithm.RSA_4096: "RSA_4096",
    CaAlgorithm.ECC_256: "EC_P256",
    CaAlgorithm.ECC_384: "EC_P384",
    CaAlgorithm.ECC_512: "EC_P521",
    CaAlgorithm.SM2_256: "EC_SM2",
}

_VALID_NAMES_LIST = [a.value for a in CaAlgorithm]
_VALID_NAMES = ", ".join(_VALID_NAMES_LIST)


def parse_algorithm(s: str, *, reason: str = "InvalidParameter.Algorithm") -> CaAlgorithm:
    """Map an API algorithm name (exact spelling, e.g. ``RSA_2048``) to a CaAlgorithm."""
    try:
        return CaAlgorithm(s)
    except ValueError:
        hint = spelling_hint(s, _VALID_NAMES_LIST, other_api=PCA_ALGORITHM_FOR_KMS,
                             this_api="the Private CA")
        raise InvalidArgument(
            f"unknown algorithm {s!r}{hint} (valid values: {_VALID_NAMES})", reason=reason
        ) from None


def key_family_of_spki(
    spki: bytes | keys.PublicKeyInfo, *, reason: str = "InvalidParameter.Csr"
) -> tuple[KeyFamily, int | str]:
    """Classify a SubjectPublicKeyInfo: ("RSA", modulus bits) or ("ECC"|"SM2", curve name)."""
    try:
        info = spki if isinstance(spki, keys.PublicKeyInfo) else keys.PublicKeyInfo.load(spki)
        algorithm = info["algorithm"]["algorithm"].native
        if algorithm == "rsa":
            bits = info["public_key"].parsed["modulus"].native.bit_length()
            return "RSA", int(bits)
        if algorithm == "ec":
            kind, curve = info.curve
        else:
            kind, curve = "", ""
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidArgument(
            f"the public key is not a well-formed SubjectPublicKeyInfo: {e}", reason=reason
        ) from e
    if algorithm != "ec":
        raise InvalidArgument(
            f"unsupported public key algorithm {algorithm!r}; supported: RSA, "
            "EC (P-256, P-384, P-521) and SM2",
            reason=reason,
        )
    if kind != "named":
        # RFC 5480 2.1.1: specifiedCurve and implicitCurve MUST NOT be used.
        raise InvalidArgument(
            "EC public keys must name their curve (RFC 5480 2.1.1); explicit curve "
            "parameters are not accepted",
            reason=reason,
        )
    if curve == SM2_CURVE:
        return "SM2", curve
    if curve in CURVE_BITS:
        return "ECC", str(curve)
    raise InvalidArgument(
        f"unsupported elliptic curve {curve!r}; supported: secp256r1 (P-256), "
        f"secp384r1 (P-384), secp521r1 (P-521), {SM2_CURVE} (SM2)",
        reason=reason,
    )
