"""TBSCertificate assembly from pre-encoded DER pieces (RFC 5280 section 4.1).

asn1crypto re-serialises on every assignment (~1.5 ms per certificate, docs/architecture.md), so the
per-CA parts (issuer Name, signature AlgorithmIdentifier, AKI, CRL DP) are encoded once in
:class:`Issuer` and each certificate is concatenated from bytes with the minimal DER
helpers below (X.690 section 10). The reference asn1crypto build lives in the tests and must
produce byte-identical output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from asn1crypto import x509

from service import limits
from service.errors import FailedPrecondition, Internal, InvalidArgument
from service.pki.profiles import (
    EKU_ANY,
    EKU_CLIENT_AUTH,
    EKU_SERVER_AUTH,
    ROOT_CA_KEY_USAGE,
    SUB_CA_KEY_USAGE,
    ExtensionName,
    KeyType,
    KeyUsage,
    ProfileKind,
    check_ekus_within_issuer,
    check_key_usage,
    check_key_usage_for_ekus,
    eku_oid,
    end_entity_key_usage,
    parse_criticals,
)
from service.pki.serial import MAX_SERIAL_OCTETS, serial_octets
from service.pki.signer import SignatureAlgorithm

# --- minimal DER (X.690 10) -------------------------------------------------------------


def der_length(n: int) -> bytes:
    """DER definite length octets (X.690 8.1.3, minimal form)."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    """One TLV with a single-octet tag."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    if n < 0x100:
        return bytes((tag, 0x81, n)) + content
    if n < 0x10000:
        return bytes((tag, 0x82, n >> 8, n & 0xFF)) + content
    return bytes((tag,)) + der_length(n) + content


def der_sequence(*parts: bytes) -> bytes:
    """SEQUENCE of already-encoded parts."""
    return der_tlv(0x30, b"".join(parts))


def der_integer(n: int) -> bytes:
    """INTEGER in minimal two's complement (X.690 8.3)."""
    if n >= 0:
        body = n.to_bytes((n.bit_length() + 8) // 8, "big")
    else:
        body = n.to_bytes((n + 1).bit_length() // 8 + 1, "big", signed=True)
    return der_tlv(0x02, body)


def der_oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from dotted form (X.690 8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    values = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    out = bytearray()
    for v in values:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        out.extend(reversed(chunk))
    return der_tlv(0x06, bytes(out))


def der_octet_string(data: bytes) -> bytes:
    """OCTET STRING."""
    return der_tlv(0x04, data)


def der_bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    """BIT STRING with the given number of unused trailing bits."""
    return der_tlv(0x03, bytes((unused_bits,)) + data)


def der_explicit(number: int, content: bytes) -> bytes:
    """Context-specific constructed [number] EXPLICIT wrapper (number < 31)."""
    return der_tlv(0xA0 | number, content)


DER_NULL = b"\x05\x00"
DER_TRUE = b"\x01\x01\xff"
_GENERALIZED_TIME_FROM = 2050


def der_time(value: datetime) -> bytes:
    """RFC 5280 4.1.2.5 Time: UTCTime through 2049, GeneralizedTime from 2050, seconds, Z."""
    if value.tzinfo is None:
        raise InvalidArgument("times must be timezone-aware (UTC)",
                              reason="InvalidParameter.Validity")
    return _der_time_utc(value if value.tzinfo is UTC else value.astimezone(UTC))


def _der_time_utc(v: datetime) -> bytes:
    """der_time for a datetime whose tzinfo is UTC."""
    # RFC 5280 4.1.2.5.1/2: YYMMDDHHMMSSZ / YYYYMMDDHHMMSSZ, no fractional seconds.
    if v.year < _GENERALIZED_TIME_FROM:
        text = b"%02d%02d%02d%02d%02d%02dZ" % (v.year % 100, v.month, v.day, v.hour,
                                                 v.minute, v.second)
        return b"\x17\x0d" + text
    text = b"%04d%02d%02d%02d%02d%02dZ" % (v.year, v.month, v.day, v.hour, v.minute, v.second)
    return b"\x18\x0f" + text


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """Parse one DER TLV at ``offset``: (tag, content start, content end); refuses BER."""
    try:
        tag = data[offset]
        if tag & 0x1F == 0x1F:
            raise ValueError("multi-octet tags are not used here")
        first = data[offset + 1]
        pos = offset + 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise ValueError("indefinite or oversized length")
            length = int.from_bytes(data[pos:pos + count], "big")
            if length < 0x80 or data[pos] == 0:
                raise ValueError("non-minimal length")
            pos += count
    except IndexError as e:
        raise ValueError("truncated DER") from e
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, pos, end



def read_child(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """read_tlv at ``pos`` for an element that must lie inside a parent ending at ``end``."""
    if pos >= end:
        raise ValueError("a required element is missing")
    if end > len(der):
        raise ValueError("truncated DER")
    # read_tlv's checks, inlined for the DER walks that run on every certificate.
    tag = der[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-octet tags are not used here")
    if pos + 1 >= end:
        raise ValueError("child overruns its parent")
    first = der[pos + 1]
    if first < 0x80:
        cstart = pos + 2
        cend = cstart + first
    else:
        tag, cstart, cend = read_tlv(der, pos)
    if cend > end:
        raise ValueError("child overruns its parent")
    return tag, cstart, cend


def _whole_tlv(data: bytes, tag: int, what: str) -> None:
    """Refuse ``data`` unless it is exactly one TLV with ``tag``."""
    try:
        t, _, end = read_tlv(data)
    except ValueError as e:
        raise InvalidArgument(f"{what} is not valid DER: {e}",
                              reason=f"InvalidParameter.{what}") from e
    if t != tag or end != len(data):
        raise InvalidArgument(f"{what} is not a single DER element",
                              reason=f"InvalidParameter.{what}")


# --- OIDs, algorithm identifiers ----------------------------------------------------------

OID_BASIC_CONSTRAINTS = der_oid("2.5.29.19")
OID_KEY_USAGE = der_oid("2.5.29.15")
OID_EXT_KEY_USAGE = der_oid("2.5.29.37")
OID_SUBJECT_KEY_IDENTIFIER = der_oid("2.5.29.14")
OID_AUTHORITY_KEY_IDENTIFIER = der_oid("2.5.29.35")
OID_SUBJECT_ALT_NAME = der_oid("2.5.29.17")
OID_CRL_DISTRIBUTION_POINTS = der_oid("2.5.29.31")
OID_AUTHORITY_INFO_ACCESS = der_oid("1.3.6.1.5.5.7.1.1")
_OID_AD_OCSP = der_oid("1.3.6.1.5.5.7.48.1")
_OID_AD_CA_ISSUERS = der_oid("1.3.6.1.5.5.7.48.2")

_OID_RSA = der_oid("1.2.840.113549.1.1.1")
_OID_EC_PUBLIC_KEY = der_oid("1.2.840.10045.2.1")
_OID_SM2 = der_oid("1.2.156.10197.1.301")
_OID_ED25519 = der_oid("1.3.101.112")
_OID_ED448 = der_oid("1.3.101.113")


def _alg_id(oid: str, params: bytes = b"") -> bytes:
    return der_sequence(der_oid(oid), params)


def _hash_alg_id(oid: str) -> bytes:
    # RFC 4055 2.1: inside RSASSA-PSS-params the hash AlgorithmIdentifiers carry NULL.
    return _alg_id(oid, DER_NULL)


_SHA256 = _hash_alg_id("2.16.840.1.101.3.4.2.1")
# RFC 4055 3.1 RSASSA-PSS-params: [0] SHA-256, [1] MGF1(SHA-256), [2] saltLength 32;
# trailerField is the default and omitted. Byte-identical to CA/B BR 7.1.3.2.1.
_PSS_PARAMS = der_sequence(
    der_explicit(0, _SHA256),
    der_explicit(1, _alg_id("1.2.840.113549.1.1.8", _SHA256)),
    der_explicit(2, der_integer(32)),
)

SIGNATURE_ALGORITHM_IDENTIFIERS: dict[SignatureAlgorithm, bytes] = {
    # RFC 4055 5 / RFC 3279 2.2.1: PKCS#1 v1.5 identifiers carry NULL parameters.
    SignatureAlgorithm.SHA256_RSA: _alg_id("1.2.840.113549.1.1.11", DER_NULL),
    SignatureAlgorithm.SHA384_RSA: _alg_id("1.2.840.113549.1.1.12", DER_NULL),
    SignatureAlgorithm.SHA512_RSA: _alg_id("1.2.840.113549.1.1.13", DER_NULL),
    SignatureAlgorithm.RSASSA_PSS_SHA256: _alg_id("1.2.840.113549.1.1.10", _PSS_PARAMS),
    # RFC 5758 3.2: ecdsa-with-SHA* MUST omit the parameters.
    SignatureAlgorithm.SHA256_ECDSA: _alg_id("1.2.840.10045.4.3.2"),
    SignatureAlgorithm.SHA384_ECDSA: _alg_id("1.2.840.10045.4.3.3"),
    SignatureAlgorithm.SHA512_ECDSA: _alg_id("1.2.840.10045.4.3.4"),
    # GM/T 0015 / RFC 8998: SM3withSM2, parameters absent.
    SignatureAlgorithm.SM3_SM2: _alg_id("1.2.156.10197.1.501"),
}
ALGORITHM_BY_IDENTIFIER: dict[bytes, SignatureAlgorithm] = {
    v: k for k, v in SIGNATURE_ALGORITHM_IDENTIFIERS.items()
}

_KEY_TYPES_FOR_ALGORITHM: dict[SignatureAlgorithm, tuple[KeyType, ...]] = {
    SignatureAlgorithm.SHA256_RSA: (KeyType.RSA,),
    SignatureAlgorithm.SHA384_RSA: (KeyType.RSA,),
    SignatureAlgorithm.SHA512_RSA: (KeyType.RSA,),
    SignatureAlgorithm.RSASSA_PSS_SHA256: (KeyType.RSA,),
    SignatureAlgorithm.SHA256_ECDSA: (KeyType.EC,),
    SignatureAlgorithm.SHA384_ECDSA: (KeyType.EC,),
    SignatureAlgorithm.SHA512_ECDSA: (KeyType.EC,),
    SignatureAlgorithm.SM3_SM2: (KeyType.SM2,),
}


# --- SubjectPublicKeyInfo ---------------------------------------------------------------


def _spki_parts(spki: bytes) -> tuple[bytes, bytes, bytes]:
    """(algorithm OID TLV, parameters TLVs, subjectPublicKey BIT STRING contents)."""
    _, start, end = read_tlv(spki)
    tag, alg_start, alg_end = read_tlv(spki, start)
    if tag != 0x30:
        raise ValueError("AlgorithmIdentifier is not a SEQUENCE")
    _, _, oid_end = read_tlv(spki, alg_start)
    tag, bits_start, bits_end = read_tlv(spki, alg_end)
    if tag != 0x03 or bits_end != end or bits_start == bits_end:
        raise ValueError("subjectPublicKey is not a BIT STRING")
    return spki[alg_start:oid_end], spki[oid_end:alg_end], spki[bits_start:bits_end]


def _key_type(oid: bytes, params: bytes) -> KeyType:
    if oid == _OID_RSA:
        return KeyType.RSA
    if oid == _OID_EC_PUBLIC_KEY:
        # GB/T 35276: SM2 keys are id-ecPublicKey with the sm2p256v1 named curve.
        return KeyType.SM2 if params == _OID_SM2 else KeyType.EC
    if oid == _OID_SM2:
        return KeyType.SM2
    if oid == _OID_ED25519:
        return KeyType.ED25519
    if oid == _OID_ED448:
        return KeyType.ED448
    return KeyType.OTHER


def _checked_spki_parts(spki: bytes) -> tuple[bytes, bytes, bytes]:
    try:
        return _spki_parts(spki)
    except ValueError as e:
        raise InvalidArgument(f"public key is not a valid SubjectPublicKeyInfo: {e}",
                              reason="InvalidParameter.PublicKey") from e


def key_type_of(spki: bytes) -> KeyType:
    """The key family named by a SubjectPublicKeyInfo's algorithm (RFC 5480 2.1.1)."""
    oid, params, _ = _checked_spki_parts(spki)
    return _key_type(oid, params)


def _key_id(bits: bytes) -> bytes:
    # Key identifier, not a security use of SHA-1; bits[0] is the unused-bits octet.
    return hashlib.sha1(bits[1:], usedforsecurity=False).digest()


def key_identifier(spki: bytes) -> bytes:
    """RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value."""
    return _key_id(_checked_spki_parts(spki)[2])


def key_type_and_identifier(spki: bytes) -> tuple[KeyType, bytes]:
    """key_type_of and key_identifier with one parse of the SubjectPublicKeyInfo."""
    oid, params, bits = _checked_spki_parts(spki)
    return _key_type(oid, params), _key_id(bits)


# --- extensions (RFC 5280 4.2) ----------------------------------------------------------


def der_extension(oid: bytes, critical: bool, value: bytes) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE (omitted), extnValue }."""
    return der_sequence(oid, DER_TRUE if critical else b"", der_octet_string(value))


def basic_constraints_extension(ca: bool, path_len: int | None = None) -> bytes:
    """basicConstraints, always critical here (RFC 5280 4.2.1.9; BR 7.1.2.7.8 allows it)."""
    body = (DER_TRUE if ca else b"") + (der_integer(path_len) if path_len is not None else b"")
    return der_extension(OID_BASIC_CONSTRAINTS, True, der_tlv(0x30, body))


@lru_cache(maxsize=256)
def key_usage_extension(ku: KeyUsage, critical: bool) -> bytes:
    """keyUsage BIT STRING with trailing zero bits removed (X.690 11.2.2)."""
    value = 0
    last = -1
    for i, on in enumerate(ku.bits()):
        if on:
            value |= 1 << (15 - i)  # bit 0 is the most significant bit of the first octet
            last = i
    if last < 0:
        raise Internal("empty keyUsage")
    nbytes = last // 8 + 1
    data = value.to_bytes(2, "big")[:nbytes]
    unused = nbytes * 8 - (last + 1)
    return der_extension(OID_KEY_USAGE, critical, der_bit_string(data, unused))


@lru_cache(maxsize=256)
def ext_key_usage_extension(oids: tuple[str, ...], critical: bool) -> bytes:
    """extKeyUsage SEQUENCE OF KeyPurposeId (RFC 5280 4.2.1.12)."""
    return der_extension(OID_EXT_KEY_USAGE, critical,
                         der_sequence(*(der_oid(o) for o in oids)))


def subject_key_identifier_extension(ski: bytes) -> bytes:
    """subjectKeyIdentifier, non-critical (RFC 5280 4.2.1.2)."""
    if len(ski) == 20:
        return _SKI_EXTENSION_PREFIX + ski  # the SHA-1 identifiers of key_identifier
    return der_extension(OID_SUBJECT_KEY_IDENTIFIER, False, der_octet_string(ski))


# SEQUENCE { extnID, OCTET STRING { OCTET STRING (20 octets) } }
_SKI_EXTENSION_PREFIX = der_extension(OID_SUBJECT_KEY_IDENTIFIER, False,
                                      der_octet_string(bytes(20)))[:-20]


def authority_key_identifier_extension(ski: bytes) -> bytes:
    """authorityKeyIdentifier with keyIdentifier only, non-critical (RFC 5280 4.2.1.1)."""
    return der_extension(OID_AUTHORITY_KEY_IDENTIFIER, False,
                         der_sequence(der_tlv(0x80, ski)))


def crl_distribution_points_extension(url: str) -> bytes:
    """cRLDistributionPoints with one fullName URI, non-critical (RFC 5280 4.2.1.13)."""
    try:
        uri = url.encode("ascii")
    except UnicodeEncodeError as e:
        raise InvalidArgument("CRL URL must be ASCII (IA5String)",
                              reason="InvalidParameter.CrlUrl") from e
    # DistributionPoint { distributionPoint [0] { fullName [0] { [6] URI } } }
    full_name = der_tlv(0xA0, der_tlv(0x86, uri))
    return der_extension(OID_CRL_DISTRIBUTION_POINTS, False,
                         der_sequence(der_sequence(der_tlv(0xA0, full_name))))


def _uri(url: str, what: str) -> bytes:
    try:
        return der_tlv(0x86, url.encode("ascii"))  # GeneralName uniformResourceIdentifier
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"{what} URL must be ASCII (IA5String)",
                              reason="InvalidParameter.PublicBaseUrl") from e


def authority_information_access_extension(ca_issuers_url: str | None,
                                           ocsp_url: str | None) -> bytes:
    """authorityInfoAccess: id-ad-ocsp and id-ad-caIssuers URIs, non-critical (RFC 5280
    4.2.2.1; the CA's certificate is served as DER over HTTP)."""
    descriptions = []
    if ocsp_url is not None:
        descriptions.append(der_sequence(_OID_AD_OCSP, _uri(ocsp_url, "OCSP")))
    if ca_issuers_url is not None:
        descriptions.append(der_sequence(_OID_AD_CA_ISSUERS, _uri(ca_issuers_url, "caIssuers")))
    if not descriptions:
        raise Internal("authorityInfoAccess needs at least one access description")
    return der_extension(OID_AUTHORITY_INFO_ACCESS, False, der_sequence(*descriptions))


def subject_alt_name_extension(general_names_der: bytes, critical: bool) -> bytes:
    """subjectAltName from encoded GeneralNames (RFC 5280 4.2.1.6)."""
    return der_extension(OID_SUBJECT_ALT_NAME, critical, general_names_der)


_LEAF_BASIC_CONSTRAINTS = basic_constraints_extension(False)
_NO_CRITICALS: frozenset[ExtensionName] = frozenset()
_V3 = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT Version v3 (RFC 5280 4.1.2.1)
EMPTY_NAME = b"\x30\x00"


# --- issuer and request -----------------------------------------------------------------


def _to_der(value: x509.Name | x509.GeneralNames | bytes) -> bytes:
    return value if isinstance(value, bytes) else bytes(value.dump())


def _utc(value: datetime) -> datetime:
    """Aware UTC datetime truncated to whole seconds, as it will be encoded."""
    tz = value.tzinfo
    if tz is None:
        raise InvalidArgument("times must be timezone-aware (UTC)",
                              reason="InvalidParameter.Validity")
    if tz is not UTC:
        value = value.astimezone(UTC)
    return value.replace(microsecond=0) if value.microsecond else value


@dataclass(frozen=True)
class Issuer:
    """A CA as seen by the builder: its certificate and the DER of every per-CA piece."""

    certificate: x509.Certificate = field(repr=False, compare=False)
    certificate_der: bytes = field(repr=False)
    subject_der: bytes = field(repr=False)  # exactly as in the CA certificate (RFC 5280 4.1.2.4)
    public_key_info: bytes = field(repr=False)
    key_identifier: bytes
    algorithm: SignatureAlgorithm
    signature_algorithm_der: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime
    path_len: int | None
    ext_key_usages: frozenset[str] | None  # dotted OIDs; None = unconstrained
    can_sign_crl: bool
    self_signed: bool
    crl_url: str | None
    aki_extension_der: bytes = field(repr=False)
    crl_dp_extension_der: bytes | None = field(repr=False)
    # Every certificate this CA issues carries it (None: no AIA, as in the builder tests).
    aia_extension_der: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_certificate(cls, certificate_der: bytes, algorithm: SignatureAlgorithm, *,
                         crl_url: str | None = None, ca_issuers_url: str | None = None,
                         ocsp_url: str | None = None) -> Issuer:
        """Build once per CA from its certificate and its signer's algorithm; checks the CA.

        ``ca_issuers_url`` and ``ocsp_url`` become the authorityInfoAccess extension of
        every certificate the CA issues (encoded here, once per CA).
        """
        try:
            cert = x509.Certificate.load(certificate_der, strict=True)
            tbs = cert["tbs_certificate"]
            subject_der = bytes(tbs["subject"].dump())
            spki = bytes(tbs["subject_public_key_info"].dump())
            bc = cert.basic_constraints_value
            ku = cert.key_usage_value
            eku = cert.extended_key_usage_value
            ski = cert.key_identifier
            not_before = tbs["validity"]["not_before"].native
            not_after = tbs["validity"]["not_after"].native
            ku_names = set(ku.native) if ku is not None else set()
            eku_oids = [e.dotted for e in eku] if eku is not None else None
            self_signed = bytes(tbs["issuer"].dump()) == subject_der
        except (ValueError, TypeError, KeyError) as e:
            raise Internal(f"CA certificate does not parse: {e}") from e
        if subject_der != certificate_der[_subject_span(certificate_der)]:
            raise Internal("CA subject did not round-trip byte for byte")
        if bc is None or not bc["ca"].native:
            raise FailedPrecondition("the parent certificate is not a CA",
                                     reason="IncorrectStatus.ParentCertificate")
        if "key_cert_sign" not in ku_names:
            raise FailedPrecondition("the parent CA certificate lacks keyCertSign",
                                     reason="IncorrectStatus.ParentCertificate")
        if ski is None:
            raise Internal("CA certificate has no subjectKeyIdentifier")
        if key_type_of(spki) not in _KEY_TYPES_FOR_ALGORITHM[algorithm]:
            raise Internal(f"signature algorithm {algorithm.value} does not match the CA key")
        path_len = bc["path_len_constraint"].native
        allowed = None if eku_oids is None or EKU_ANY in eku_oids else frozenset(eku_oids)
        return cls(
            certificate=cert,
            certificate_der=certificate_der,
            subject_der=subject_der,
            public_key_info=spki,
            key_identifier=bytes(ski),
            algorithm=algorithm,
            signature_algorithm_der=SIGNATURE_ALGORITHM_IDENTIFIERS[algorithm],
            not_before=not_before,
            not_after=not_after,
            path_len=path_len,
            ext_key_usages=allowed,
            can_sign_crl="crl_sign" in ku_names,
            self_signed=self_signed,
            crl_url=crl_url,
            aki_extension_der=authority_key_identifier_extension(bytes(ski)),
            crl_dp_extension_der=(crl_distribution_points_extension(crl_url)
                                  if crl_url is not None else None),
            aia_extension_der=(authority_information_access_extension(ca_issuers_url,
                                                                      ocsp_url)
                               if ca_issuers_url is not None or ocsp_url is not None
                               else None),
        )


def _subject_span(cert_der: bytes) -> slice:
    """Byte range of the subject Name inside a Certificate (to prove it is untouched)."""
    _, pos, _ = read_tlv(cert_der)
    _, pos, _ = read_tlv(cert_der, pos)  # into TBSCertificate
    for _ in range(5):  # version, serial, signature, issuer, validity
        _, _, pos = read_tlv(cert_der, pos)
    _, _, end = read_tlv(cert_der, pos)
    return slice(pos, end)


_COMMON_NAME_OID_TLV = bytes.fromhex("0603550403")  # id-at-commonName
# Largest TBSCertificate issued: room for limits.max_sans names of 253 characters and a full
# subject, while a list page of certificates stays far below a response's 4 MiB.
MAX_TBS_BYTES = 32 * 1024


def _check_san_count(general_names: bytes) -> None:
    """At most limits.max_sans names, from every source together (CSR, Domain, passthrough)."""
    _, pos, end = read_tlv(general_names)
    count = 0
    while pos < end:
        _, _, pos = read_child(general_names, pos, end)
        count += 1
    limits.check_count(count, limits.active().max_sans, "subject alternative names",
                       "InvalidParameter.SubjectAlternativeNames")


@dataclass(frozen=True)
class IssuanceRequest:
    """Everything that varies per certificate; the issuer supplies the rest."""

    profile: ProfileKind
    subject: x509.Name | bytes  # Name, encoded as it will appear
    public_key_info: bytes  # SubjectPublicKeyInfo DER, copied as given
    serial: int
    not_before: datetime
    not_after: datetime
    key_usage: KeyUsage | None = None  # None: profile default (CUSTOM: no extension)
    extended_key_usages: tuple[str, ...] = ()  # API names or dotted OIDs
    subject_alt_names: x509.GeneralNames | bytes | None = None
    criticals: tuple[str, ...] = ()  # CUSTOM only: extension names to mark critical
    path_len: int | None = None  # SUB_CA only; default 0
    enable_crl: bool = False


def _validity(issuer: Issuer | None, not_before: datetime, not_after: datetime) -> bytes:
    nb, na = _utc(not_before), _utc(not_after)
    if nb >= na:
        raise InvalidArgument("notBefore must be before notAfter",
                              reason="InvalidParameter.Validity")
    if issuer is not None:
        # RFC 5280 6.1.3 (a)(2): a certificate outside its issuer's validity cannot chain.
        if na > issuer.not_after:
            raise InvalidArgument(
                f"notAfter {na:%Y-%m-%dT%H:%M:%SZ} is beyond the issuing CA's notAfter "
                f"{issuer.not_after:%Y-%m-%dT%H:%M:%SZ}", reason="InvalidParameter.Validity")
        if nb < issuer.not_before:
            raise InvalidArgument("notBefore is before the issuing CA's notBefore",
                                  reason="InvalidParameter.Validity")
    return der_sequence(_der_time_utc(nb), _der_time_utc(na))


def _check_serial(serial: int) -> bytes:
    if serial <= 0 or serial_octets(serial) > MAX_SERIAL_OCTETS:
        raise InvalidArgument("serial number must be positive and at most 20 octets "
                              "(RFC 5280 4.1.2.2)", reason="InvalidParameter.SerialNumber")
    return der_integer(serial)


def _tbs(serial_der: bytes, sig_alg: bytes, issuer_name: bytes, validity: bytes,
         subject: bytes, spki: bytes, extensions: list[bytes]) -> bytes:
    return der_sequence(_V3, serial_der, sig_alg, issuer_name, validity, subject, spki,
                        der_explicit(3, der_sequence(*extensions)))


def build_tbs(issuer: Issuer, req: IssuanceRequest) -> bytes:
    """TBSCertificate DER for a sub-CA or end-entity certificate signed by ``issuer``."""
    if req.profile is ProfileKind.ROOT_CA:
        raise Internal("root certificates are built with build_self_signed_tbs")
    subject = _to_der(req.subject)
    _whole_tlv(subject, 0x30, "Subject")
    spki = req.public_key_info
    key_type, ski = key_type_and_identifier(spki)
    serial_der = _check_serial(req.serial)
    validity = _validity(issuer, req.not_before, req.not_after)
    ekus = tuple(eku_oid(e) for e in req.extended_key_usages) if req.extended_key_usages else ()
    if len(set(ekus)) != len(ekus):
        raise InvalidArgument("duplicate extended key usage",
                              reason="InvalidParameter.ExtendedKeyUsages")
    empty_subject = subject == EMPTY_NAME
    sans = _to_der(req.subject_alt_names) if req.subject_alt_names is not None else None
    if sans is not None:
        _check_san_count(sans)
    if sans is not None:
        _whole_tlv(sans, 0x30, "SubjectAlternativeNames")
        if sans == EMPTY_NAME:
            sans = None  # GeneralNames is SIZE (1..MAX): no names, no extension

    exts: list[bytes]
    if req.profile is ProfileKind.SUB_CA:
        if empty_subject:
            raise InvalidArgument("a CA certificate needs a non-empty subject "
                                  "(RFC 5280 4.1.2.6)", reason="InvalidParameter.Subject")
        path_len = 0 if req.path_len is None else req.path_len
        if path_len < 0:
            raise InvalidArgument("path_len_constraint must not be negative",
                                  reason="InvalidParameter.PathLenConstraint")
        if issuer.path_len is not None and path_len >= issuer.path_len:
            # RFC 5280 4.2.1.9 / 6.1.4 (l)-(m): the parent's pathLen bounds the chain below.
            raise InvalidArgument(
                f"path_len_constraint {path_len} is not allowed under a parent with "
                f"pathLenConstraint {issuer.path_len}",
                reason="InvalidParameter.PathLenConstraint")
        check_key_usage(SUB_CA_KEY_USAGE, key_type, is_ca=True)
        check_ekus_within_issuer(ekus, issuer.ext_key_usages)
        exts = [basic_constraints_extension(True, path_len),
                key_usage_extension(SUB_CA_KEY_USAGE, True)]
        if ekus:
            exts.append(ext_key_usage_extension(ekus, False))
        exts.append(subject_key_identifier_extension(ski))
        exts.append(issuer.aki_extension_der)
        if sans is not None:
            exts.append(subject_alt_name_extension(sans, False))
    else:
        criticals = _NO_CRITICALS
        if req.profile is ProfileKind.CUSTOM:
            criticals = parse_criticals(req.criticals)
            ku = req.key_usage if req.key_usage is not None and not \
                req.key_usage.is_empty() else None
        elif req.profile in (ProfileKind.SERVER, ProfileKind.CLIENT):
            ku = req.key_usage if req.key_usage is not None else end_entity_key_usage(key_type)
            if not ekus:
                ekus = (EKU_SERVER_AUTH if req.profile is ProfileKind.SERVER
                        else EKU_CLIENT_AUTH,)
            if req.profile is ProfileKind.SERVER and sans is None:
                raise InvalidArgument("a server certificate needs at least one DNS name or "
                                      "IP address", reason="InvalidParameter.Domain")
            if req.profile is ProfileKind.CLIENT and sans is None and \
                    _COMMON_NAME_OID_TLV not in subject:
                # Neither a commonName nor a SAN: the certificate would identify nobody.
                raise InvalidArgument("a client certificate needs a common name or a subject "
                                      "alternative name", reason="InvalidParameter.Subject")
        else:
            raise Internal(f"unsupported profile {req.profile}")
        check_ekus_within_issuer(ekus, issuer.ext_key_usages)
        if ku is not None:
            check_key_usage(ku, key_type, is_ca=False)
        check_key_usage_for_ekus(ku, ekus)
        eku_critical = san_critical = False
        if criticals:
            if ExtensionName.KEY_USAGE in criticals and ku is None:
                raise InvalidArgument("KeyUsage is listed in criticals but no key usage is set",
                                      reason="InvalidParameter.Criticals")
            if ExtensionName.EXTENDED_KEY_USAGE in criticals and not ekus:
                raise InvalidArgument("ExtendedKeyUsages is listed in criticals but none is "
                                      "set", reason="InvalidParameter.Criticals")
            if ExtensionName.SUBJECT_ALT_NAME in criticals and sans is None:
                raise InvalidArgument("SubjectAlternativeNames is listed in criticals but none "
                                      "is set", reason="InvalidParameter.Criticals")
            eku_critical = ExtensionName.EXTENDED_KEY_USAGE in criticals
            if eku_critical and EKU_ANY in ekus:
                raise InvalidArgument("an extended key usage list containing 'any' must not be "
                                      "critical (RFC 5280 4.2.1.12)",
                                      reason="InvalidParameter.Criticals")
            san_critical = ExtensionName.SUBJECT_ALT_NAME in criticals
        if empty_subject and sans is None:
            raise InvalidArgument("a certificate with an empty subject needs subject "
                                  "alternative names (RFC 5280 4.2.1.6)",
                                  reason="InvalidParameter.SubjectAlternativeNames")
        # basicConstraints cA=FALSE, always present and critical: one rule for every
        # end-entity profile (RFC 5280 4.2.1.9 MAY; BR 7.1.2.7.8 allows it).
        exts = [_LEAF_BASIC_CONSTRAINTS]
        if ku is not None:
            # RFC 5280 4.2.1.3: SHOULD be critical; the criticals list cannot lower it.
            exts.append(key_usage_extension(ku, True))
        if ekus:
            exts.append(ext_key_usage_extension(ekus, eku_critical))
        exts.append(subject_key_identifier_extension(ski))
        exts.append(issuer.aki_extension_der)
        if sans is not None:
            # RFC 5280 4.2.1.6: MUST be critical when the subject is empty.
            exts.append(subject_alt_name_extension(sans, empty_subject or san_critical))
    if issuer.aia_extension_der is not None:
        exts.append(issuer.aia_extension_der)
    if req.enable_crl:
        if issuer.crl_dp_extension_der is None:
            raise FailedPrecondition("the issuing CA has no CRL distribution point",
                                     reason="IncorrectStatus.CrlDisabled")
        exts.append(issuer.crl_dp_extension_der)
    tbs = _tbs(serial_der, issuer.signature_algorithm_der, issuer.subject_der, validity,
               subject, spki, exts)
    if len(tbs) > MAX_TBS_BYTES:
        raise InvalidArgument(f"the certificate would be {len(tbs)} octets long; at most "
                              f"{MAX_TBS_BYTES} (fewer or shorter names or attributes)",
                              reason="InvalidParameter.CertificateSize")
    return tbs


def build_self_signed_tbs(subject: x509.Name | bytes, public_key_info: bytes,
                          algorithm: SignatureAlgorithm, serial: int, not_before: datetime,
                          not_after: datetime, path_len: int | None = None) -> bytes:
    """TBSCertificate DER for a self-signed root CA (issuer = subject, AKI = SKI)."""
    subject_der = _to_der(subject)
    _whole_tlv(subject_der, 0x30, "Subject")
    if subject_der == EMPTY_NAME:
        raise InvalidArgument("a CA certificate needs a non-empty subject (RFC 5280 4.1.2.6)",
                              reason="InvalidParameter.Subject")
    if path_len is not None and path_len < 0:
        raise InvalidArgument("path_len_constraint must not be negative",
                              reason="InvalidParameter.PathLenConstraint")
    key_type = key_type_of(public_key_info)
    if key_type not in _KEY_TYPES_FOR_ALGORITHM[algorithm]:
        raise InvalidArgument(f"algorithm {algorithm.value} does not match the key",
                              reason="InvalidParameter.Algorithm")
    ski = key_identifier(public_key_info)
    exts = [
        basic_constraints_extension(True, path_len),
        key_usage_extension(ROOT_CA_KEY_USAGE, True),
        subject_key_identifier_extension(ski),
        # RFC 5280 4.2.1.1 MAY for self-signed; keyIdentifier = own SKI.
        authority_key_identifier_extension(ski),
    ]
    return _tbs(_check_serial(serial), SIGNATURE_ALGORITHM_IDENTIFIERS[algorithm], subject_der,
                _validity(None, not_before, not_after), subject_der, public_key_info, exts)


def assemble_signed(tbs: bytes, signature_algorithm_der: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature } (Certificate, CertificateList)."""
    return der_sequence(tbs, signature_algorithm_der, der_bit_string(signature))


def assemble_certificate(tbs: bytes, signature_algorithm_der: bytes, signature: bytes) -> bytes:
    """Certificate DER (RFC 5280 4.1.1): signatureAlgorithm must equal the TBS signature field."""
    return assemble_signed(tbs, signature_algorithm_der, signature)
