"""Certificate profiles: what each kind carries, and the key usage / EKU rules (RFC 5280 4.2)."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields

from service.errors import InvalidArgument


class ProfileKind(enum.Enum):
    """The kinds of certificate the service issues."""

    ROOT_CA = "root_ca"
    SUB_CA = "sub_ca"
    SERVER = "server"
    CLIENT = "client"
    CUSTOM = "custom"

    @property
    def is_ca(self) -> bool:
        """True for CA certificates (basicConstraints cA=TRUE)."""
        return self in (ProfileKind.ROOT_CA, ProfileKind.SUB_CA)


class KeyType(enum.Enum):
    """Subject public key families, from the SPKI algorithm (RFC 3279, RFC 5480, RFC 8410)."""

    RSA = "rsa"
    EC = "ec"
    SM2 = "sm2"
    ED25519 = "ed25519"
    ED448 = "ed448"
    OTHER = "other"


@dataclass(frozen=True)
class KeyUsage:
    """The keyUsage bits of RFC 5280 4.2.1.3, in snake_case RFC names."""

    digital_signature: bool = False
    content_commitment: bool = False  # formerly nonRepudiation
    key_encipherment: bool = False
    data_encipherment: bool = False
    key_agreement: bool = False
    key_cert_sign: bool = False
    crl_sign: bool = False
    encipher_only: bool = False
    decipher_only: bool = False

    def bits(self) -> tuple[bool, ...]:
        """The flags in bit order 0..8 of the KeyUsage BIT STRING."""
        return (self.digital_signature, self.content_commitment, self.key_encipherment,
                self.data_encipherment, self.key_agreement, self.key_cert_sign,
                self.crl_sign, self.encipher_only, self.decipher_only)

    def is_empty(self) -> bool:
        """True when no bit is set (then the extension is omitted, RFC 5280 4.2.1.3)."""
        return not any(self.bits())

    def names(self) -> tuple[str, ...]:
        """The snake_case names of the set bits."""
        return tuple(name for name, on in zip(_KEY_USAGE_NAMES, self.bits(), strict=True) if on)


# The KeyUsage field names, in bit order (as bits() lists them).
_KEY_USAGE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(KeyUsage))


# RFC 5280 4.2.1.12 and the API's ExtendedKeyUsages names.
EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
EKU_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
EKU_CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
EKU_EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
EKU_TIME_STAMPING = "1.3.6.1.5.5.7.3.8"
EKU_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9"
EKU_ANY = "2.5.29.37.0"

EKU_BY_NAME: dict[str, str] = {
    "serverAuth": EKU_SERVER_AUTH,
    "clientAuth": EKU_CLIENT_AUTH,
    "codeSigning": EKU_CODE_SIGNING,
    "emailProtection": EKU_EMAIL_PROTECTION,
    "timeStamping": EKU_TIME_STAMPING,
    "OCSPSigning": EKU_OCSP_SIGNING,
    "any": EKU_ANY,
}
_EKU_BY_LOWER = {k.lower(): v for k, v in EKU_BY_NAME.items()}
_EKU_BY_LOWER["anyextendedkeyusage"] = EKU_ANY
EKU_NAME_BY_OID: dict[str, str] = {v: k for k, v in EKU_BY_NAME.items()}

_DOTTED_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def is_dotted_oid(value: str) -> bool:
    """True for a syntactically valid dotted OID (first arc 0-2, second < 40 under 0/1)."""
    if not _DOTTED_OID.match(value):
        return False
    arcs = value.split(".")
    return arcs[0] == "2" or int(arcs[1]) < 40


def eku_oid(value: str) -> str:
    """Map an API EKU value (serverAuth, ..., any, or a dotted OID) to its dotted OID."""
    oid = _EKU_BY_LOWER.get(value.strip().lower())
    if oid is not None:
        return oid
    if is_dotted_oid(value.strip()):
        return value.strip()
    raise InvalidArgument(f"unknown extended key usage {value!r}",
                          reason="InvalidParameter.ExtendedKeyUsages")


def eku_name(oid: str) -> str:
    """A readable name for an EKU OID (the API name when there is one)."""
    return EKU_NAME_BY_OID.get(oid, oid)


class ExtensionName(enum.Enum):
    """Extensions whose criticality a caller may set through ``criticals``."""

    BASIC_CONSTRAINTS = "basicConstraints"
    KEY_USAGE = "keyUsage"
    EXTENDED_KEY_USAGE = "extendedKeyUsage"
    SUBJECT_ALT_NAME = "subjectAltName"


# Accepted spellings, compared case-insensitively: the API's parameter names
# (KeyUsage, ExtendedKeyUsages, SubjectAlternativeNames), RFC 5280's ASN.1 names
# (keyUsage, extKeyUsage, subjectAltName, basicConstraints) and their long forms.
_CRITICAL_SPELLINGS: dict[str, ExtensionName] = {
    "basicconstraints": ExtensionName.BASIC_CONSTRAINTS,
    "keyusage": ExtensionName.KEY_USAGE,
    "keyusages": ExtensionName.KEY_USAGE,
    "extkeyusage": ExtensionName.EXTENDED_KEY_USAGE,
    "extendedkeyusage": ExtensionName.EXTENDED_KEY_USAGE,
    "extendedkeyusages": ExtensionName.EXTENDED_KEY_USAGE,
    "subjectaltname": ExtensionName.SUBJECT_ALT_NAME,
    "subjectalternativename": ExtensionName.SUBJECT_ALT_NAME,
    "subjectalternativenames": ExtensionName.SUBJECT_ALT_NAME,
}


def parse_criticals(names: Iterable[str]) -> frozenset[ExtensionName]:
    """Map the api_passthrough ``criticals`` list to extension names; unknown ones are refused."""
    out: set[ExtensionName] = set()
    for name in names:
        ext = _CRITICAL_SPELLINGS.get(name.strip().lower())
        if ext is None:
            raise InvalidArgument(
                f"unknown critical extension {name!r}; expected one of KeyUsage, "
                "ExtendedKeyUsages, SubjectAlternativeNames, BasicConstraints",
                reason="InvalidParameter.Criticals",
            )
        out.add(ext)
    return frozenset(out)


# Default key usages per profile.
ROOT_CA_KEY_USAGE = KeyUsage(key_cert_sign=True, crl_sign=True)
SUB_CA_KEY_USAGE = KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True)


_END_ENTITY_KEY_USAGE = KeyUsage(digital_signature=True)
_END_ENTITY_KEY_USAGE_RSA = KeyUsage(digital_signature=True, key_encipherment=True)


def end_entity_key_usage(key_type: KeyType) -> KeyUsage:
    """Server/client default: digitalSignature, plus keyEncipherment for RSA keys only."""
    # keyEncipherment is RSA key transport (RFC 3279 2.3.1); RFC 5480 3 forbids it for EC.
    # KeyUsage is frozen: the two defaults are shared.
    return _END_ENTITY_KEY_USAGE_RSA if key_type is KeyType.RSA else _END_ENTITY_KEY_USAGE


def _ku_error(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="InvalidParameter.KeyUsage")


def check_key_usage(ku: KeyUsage, key_type: KeyType, *, is_ca: bool) -> None:
    """Refuse key usage bits that contradict the key type or basicConstraints."""
    # RFC 5280 4.2.1.3: keyCertSign iff cA; encipherOnly/decipherOnly need keyAgreement
    # and exclude each other.
    if ku.key_cert_sign and not is_ca:
        raise _ku_error("keyCertSign is only for CA certificates (RFC 5280 4.2.1.3)")
    if is_ca and not ku.key_cert_sign:
        raise _ku_error("a CA certificate needs keyCertSign (RFC 5280 4.2.1.3)")
    if (ku.encipher_only or ku.decipher_only) and not ku.key_agreement:
        raise _ku_error("encipher_only and decipher_only require key_agreement "
                        "(RFC 5280 4.2.1.3)")
    if ku.encipher_only and ku.decipher_only:
        # RFC 5280 4.2.1.3: the key may be used "only for enciphering" resp. "only for
        # deciphering" data while performing key agreement; both at once contradict.
        raise _ku_error("encipher_only and decipher_only are mutually exclusive: set at "
                        "most one of them (RFC 5280 4.2.1.3)")
    if key_type in (KeyType.EC, KeyType.SM2):
        # RFC 5480 3: keyEncipherment and dataEncipherment MUST NOT be set for EC keys.
        if ku.key_encipherment or ku.data_encipherment:
            raise _ku_error("key_encipherment and data_encipherment are not allowed for "
                            "EC keys (RFC 5480 section 3)")
    elif key_type is KeyType.RSA:
        # RFC 3279 2.3.1: RSA keys carry no keyAgreement.
        if ku.key_agreement or ku.encipher_only or ku.decipher_only:
            raise _ku_error("key_agreement is not allowed for RSA keys (RFC 3279 2.3.1)")
    elif key_type in (KeyType.ED25519, KeyType.ED448):
        # RFC 8410 5: only signature usages.
        if ku.key_encipherment or ku.data_encipherment or ku.key_agreement:
            raise _ku_error("EdDSA keys allow only signature key usages (RFC 8410 5)")


# RFC 5280 4.2.1.12: key usage bits consistent with each EKU; a certificate that has a
# keyUsage extension must set at least one of them.
_EKU_COMPATIBLE_KU: dict[str, tuple[str, ...]] = {
    EKU_SERVER_AUTH: ("digital_signature", "key_encipherment", "key_agreement"),
    EKU_CLIENT_AUTH: ("digital_signature", "key_agreement"),
    EKU_CODE_SIGNING: ("digital_signature",),
    EKU_EMAIL_PROTECTION: ("digital_signature", "content_commitment", "key_encipherment",
                           "key_agreement"),
    EKU_TIME_STAMPING: ("digital_signature", "content_commitment"),
    EKU_OCSP_SIGNING: ("digital_signature", "content_commitment"),
}


def check_key_usage_for_ekus(ku: KeyUsage | None, ekus: Iterable[str], *,
                             is_ca: bool = False) -> None:
    """Refuse EKUs whose purpose the keyUsage bits do not allow (RFC 5280 4.2.1.12)."""
    if ku is None or is_ca or ku.is_empty():
        return
    for oid in ekus:
        allowed = _EKU_COMPATIBLE_KU.get(oid)
        if allowed is not None and not any(getattr(ku, name) for name in allowed):
            raise _ku_error(f"extended key usage {eku_name(oid)} needs one of the key usages "
                            f"{', '.join(allowed)} (RFC 5280 4.2.1.12)")


def check_ekus_within_issuer(ekus: tuple[str, ...], allowed: frozenset[str] | None) -> None:
    """Refuse EKUs the issuing CA's own EKU extension does not permit."""
    # A CA's EKU extension constrains what it may issue (the rule browsers and OpenSSL
    # apply); anyExtendedKeyUsage in the CA lifts the constraint (``allowed`` is None).
    if allowed is None:
        return
    permitted = ", ".join(sorted(eku_name(o) for o in allowed))
    if not ekus:
        raise InvalidArgument(
            f"the issuing CA restricts extended key usages to {permitted}; the certificate "
            "must list a subset of them", reason="InvalidParameter.ExtendedKeyUsages")
    for oid in ekus:
        if oid not in allowed:
            raise InvalidArgument(
                f"extended key usage {eku_name(oid)} is not allowed by the issuing CA "
                f"(allowed: {permitted})", reason="InvalidParameter.ExtendedKeyUsages")
