"""The fast path of lint: a DER walk over the TBSCertificates our builder emits.

``is_clean`` makes every check of ``service.pki.lint`` (RFC 5280: version, serial, the
issuer's algorithm and subject byte for byte, validity within the issuer's, subject string
types, SKI/AKI, basicConstraints, keyUsage/EKU consistency, SANs, subject e-mail addresses)
on the DER the builder emits. It only says "clean" or "not clean": for anything it does not
accept, ``lint_tbs`` runs the reference (asn1crypto) checks, which name the findings, and
refuses to sign even when they find nothing.

Why it exists: lint runs once per issued certificate, and this walk takes about 1/10 of the
time of the reference's asn1crypto parse (TBS and lint together ~0.25 ms per certificate
under load; docs/benchmarks.md). tests/pki_builder/test_lint_fast_path.py compares it with
the reference on generated certificates.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from asn1crypto import core, x509

from service.errors import InvalidArgument
from service.pki.builder import (
    Issuer,
    der_sequence,
    der_tlv,
    key_type_and_identifier,
    read_child,
    read_tlv,
)
from service.pki.name_rules import EMAIL_ADDRESS_OID, EMAIL_ADDRESS_OID_TLV, attribute_value_problem
from service.pki.profiles import (
    EKU_ANY,
    KeyType,
    KeyUsage,
    check_ekus_within_issuer,
    check_key_usage,
    check_key_usage_for_ekus,
)
from service.pki.serial import MAX_SERIAL_OCTETS, serial_octets

__all__ = ["DECODE_ERRORS", "is_clean"]

# X.690 tags
_SEQUENCE = 0x30
_SET = 0x31
_INTEGER = 0x02
_BOOLEAN = 0x01
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_EXPLICIT_0 = 0xA0
_EXPLICIT_3 = 0xA3
# RFC 5280 4.2.1 extension OIDs (contents octets)
_EXT_SKI = bytes.fromhex("551d0e")
_EXT_KU = bytes.fromhex("551d0f")
_EXT_SAN = bytes.fromhex("551d11")
_EXT_BC = bytes.fromhex("551d13")
_EXT_EKU = bytes.fromhex("551d25")
_EXT_AKI = bytes.fromhex("551d23")
_KU_NAMES = ("digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only")
# RFC 5280 4.2.1.6 GeneralName tags whose contents are IA5String / OCTET STRING.
_GN_IA5 = frozenset((0x81, 0x82, 0x86))
_GN_RFC822 = 0x81
_GN_IP = 0x87
# Extension { extnID subjectKeyIdentifier, (critical absent: FALSE), extnValue OCTET STRING
# { KeyIdentifier OCTET STRING (SIZE (20)) } }: an SKI as 4.2.1.2 wants it, for a SHA-1
# key identifier; spelled out here rather than taken from the builder it checks.
_SKI_EXTENSION_PREFIX = bytes.fromhex("301d" "0603551d0e" "0416" "0414")


@functools.lru_cache(maxsize=1024)
def _oid_dotted(contents: bytes) -> str:
    """X.690 8.19 OBJECT IDENTIFIER contents -> dotted string (minimal encoding only)."""
    return str(core.ObjectIdentifier.load(bytes([_OID, len(contents)]) + contents).dotted)


#: What decoding malformed DER raises, here and in asn1crypto, which besides ValueError
#: raises KeyError for an unknown public key algorithm and AttributeError for some values
#: (``.native`` of an ObjectDescriptor inside an extension it does not know).
DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


@functools.lru_cache(maxsize=1024)
def _extension_decodes(extension_der: bytes) -> bool:
    """True iff asn1crypto fully decodes the extension value (per-CA parts repeat)."""
    try:
        ext = x509.Extension.load(extension_der, strict=True)
        _ = ext["extn_value"].parsed.native
    except DECODE_ERRORS:
        return False
    return True


def _time(der: bytes, tag: int, start: int, end: int) -> datetime | None:
    """RFC 5280 4.1.2.5 time, or None if it is not in the one form allowed."""
    raw = der[start:end]
    if tag == _UTC_TIME and len(raw) == 13 and raw.endswith(b"Z") and raw[:12].isdigit():
        year = int(raw[0:2])
        if year >= 50:
            return None  # 1950-1999: not something we issue; the slow path names it
        year += 2000
        rest = raw[2:12]
    elif (tag == _GENERALIZED_TIME and len(raw) == 15 and raw.endswith(b"Z")
          and raw[:14].isdigit()):
        year = int(raw[0:4])
        if year < 2050:
            return None
        rest = raw[4:14]
    else:
        return None
    return datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]),
                    int(rest[8:10]), tzinfo=UTC)


def _name_clean(der: bytes, start: int, end: int) -> bool:
    """The reference lint's subject rules (RFC 5280 4.1.2.4/4.1.2.6, Appendix A) on DER."""
    pos = start
    while pos < end:
        tag, rs, nxt = read_child(der, pos, end)
        if tag != _SET or rs == nxt:
            return False  # not a SET, or an empty RDN
        # The commonName differs per certificate; the other RDNs are mostly the issuing
        # CA's defaults, so their (pure) check is remembered by their bytes.
        if der[rs + 2:rs + 7] == _CN_TYPE:
            if not _rdn_clean(der, rs, nxt):
                return False
        elif not _repeated_rdn_clean(der[pos:nxt]):
            return False
        pos = nxt
    return True


_CN_TYPE = b"\x06\x03" + bytes.fromhex("550403")  # the OID TLV of id-at-commonName


@functools.lru_cache(maxsize=1024)
def _repeated_rdn_clean(rdn: bytes) -> bool:
    """_rdn_clean for one whole RDN TLV."""
    try:
        _, start, end = read_tlv(rdn)
        return end == len(rdn) and _rdn_clean(rdn, start, end)
    except ValueError:  # also UnicodeDecodeError
        return False


def _rdn_clean(der: bytes, start: int, end: int) -> bool:
    """The AttributeTypeAndValues of one RDN (contents start..end), as the reference."""
    pos = start
    types: set[bytes] = set()
    while pos < end:
        atag, a_s, pos = read_child(der, pos, end)
        if atag != _SEQUENCE:
            return False
        # AttributeTypeAndValue: exactly an OID and a value.
        otag, os_, oe = read_child(der, a_s, pos)
        if otag != _OID or der[os_:oe] in types:
            return False
        types.add(der[os_:oe])
        vtag, vs, ve = read_child(der, oe, pos)
        if ve != pos:
            return False
        if attribute_value_problem(der[os_:oe], vtag, der[vs:ve]) is not None:
            return False
    return True


def _der_boolean(der: bytes, start: int, end: int) -> bool:
    if end - start != 1 or der[start] not in (0x00, 0xFF):
        raise ValueError("BOOLEAN is not DER")
    return der[start] == 0xFF


def _der_nonnegative_int(der: bytes, start: int, end: int) -> int:
    body = der[start:end]
    if not body or body[0] & 0x80 or (len(body) > 1 and body[0] == 0 and body[1] < 0x80):
        raise ValueError("INTEGER is negative or not minimal")
    return int.from_bytes(body, "big")


def is_clean(tbs: bytes, issuer: Issuer) -> bool:
    """True only if the TBSCertificate passes every check of the reference lint."""
    try:
        return _clean(tbs, issuer)
    except (*DECODE_ERRORS, InvalidArgument):
        return False


def _clean(tbs: bytes, issuer: Issuer) -> bool:
    """is_clean without the exception guard (a check that raises means not clean)."""
    tag, start, end = read_tlv(tbs)
    if tag != _SEQUENCE or end != len(tbs):
        return False
    # TBSCertificate: version, serialNumber, signature, issuer, validity, subject,
    # subjectPublicKeyInfo, [3] extensions, in this order and nothing else (v1/v2 forms and
    # unique identifiers are never emitted).
    # 4.1.2.1 version v3.
    if tbs[start:start + 5] != b"\xa0\x03\x02\x01\x02":
        return False
    # 4.1.2.2 serial positive, at most 20 octets, minimal.
    tag, s, pos = read_child(tbs, start + 5, end)
    if tag != _INTEGER:
        return False
    serial_value = _der_nonnegative_int(tbs, s, pos)
    if serial_value <= 0 or pos - s > MAX_SERIAL_OCTETS + 1 or (
            serial_octets(serial_value) > MAX_SERIAL_OCTETS):
        return False
    # 4.1.2.3 / 4.1.2.4: the issuer's algorithm and its subject, byte for byte.
    tag, _, nxt = read_child(tbs, pos, end)
    if tag != _SEQUENCE or tbs[pos:nxt] != issuer.signature_algorithm_der:
        return False
    tag, _, pos = read_child(tbs, nxt, end)
    if tag != _SEQUENCE or tbs[nxt:pos] != issuer.subject_der:
        return False
    # 4.1.2.5 validity: encodings, order, within the issuer's.
    tag, vs, pos = read_child(tbs, pos, end)
    if tag != _SEQUENCE:
        return False
    t0, s0, e0 = read_child(tbs, vs, pos)
    t1, s1, e1 = read_child(tbs, e0, pos)
    if e1 != pos:
        return False
    nb = _time(tbs, t0, s0, e0)
    na = _time(tbs, t1, s1, e1)
    if nb is None or na is None or nb >= na:
        return False
    if nb < issuer.not_before.astimezone(UTC) or na > issuer.not_after.astimezone(UTC):
        return False
    # 4.1.2.6 subject: string types (the caller's input).
    tag, ss, se = read_child(tbs, pos, end)
    if tag != _SEQUENCE or not _name_clean(tbs, ss, se):
        return False
    subject_der = tbs[pos:se]
    # Rarely present, so looked for by its OID's octets before the walk that reads them.
    emails = _subject_emails(tbs, ss, se) if EMAIL_ADDRESS_OID_TLV in subject_der else ()
    tag, _, pos = read_child(tbs, se, end)
    if tag != _SEQUENCE:
        return False
    spki = tbs[se:pos]
    key_type, own_ki = key_type_and_identifier(spki)
    # The subjectKeyIdentifier our builder emits for this key (4.2.1.2: non-critical, the
    # key's identifier); any other encoding is decoded and judged below.
    expected_ski = _SKI_EXTENSION_PREFIX + own_ki
    # Extensions: [3] EXPLICIT SEQUENCE OF Extension (the last field), no duplicates (4.2).
    tag, xs, xe = read_child(tbs, pos, end)
    if tag != _EXPLICIT_3 or xe != end:
        return False
    tag, pos, le = read_child(tbs, xs, xe)
    if tag != _SEQUENCE or le != xe:
        return False
    exts: dict[bytes, tuple[bool, Any]] = {}
    while pos < le:
        tag, es, ee = read_child(tbs, pos, le)
        if tag != _SEQUENCE:
            return False
        ext = tbs[pos:ee]
        # subjectKeyIdentifier and subjectAltName differ per certificate; every other
        # extension we emit is one of a few per CA and profile, decoded once (a pure
        # function of its bytes).
        if ext == expected_ski:
            decoded: tuple[bytes, bool, Any] | None = (_EXT_SKI, False, own_ki)
        elif tbs[es:es + 5] in _PER_CERTIFICATE:
            decoded = _decode_extension(ext)
        else:
            decoded = _decode_repeated_extension(ext)
        if decoded is None:
            return False
        oid, critical, value = decoded
        if oid in exts:
            return False
        exts[oid] = critical, value
        pos = ee
    return _extensions_clean(exts, key_type, own_ki, subject_der, emails, issuer)


# The extnID TLVs of the extensions whose value is per certificate.
_PER_CERTIFICATE = frozenset((b"\x06\x03" + _EXT_SKI, b"\x06\x03" + _EXT_SAN))


def _decode_extension(ext: bytes) -> tuple[bytes, bool, Any] | None:
    """(extnID contents, critical, checked value) of one Extension; None if not clean.

    The value is what _extensions_clean needs: the keyIdentifier (SKI, AKI),
    (cA, pathLenConstraint), the KeyUsage, the EKU OIDs, a well-formed SAN's rfc822Names,
    True for any other extension that decodes.
    """
    try:
        tag, start, end = read_tlv(ext)
        if tag != _SEQUENCE or end != len(ext):
            return None
        tag, os_, pos = read_child(ext, start, end)
        if tag != _OID:
            return None
        oid = ext[os_:pos]
        tag, s, e = read_child(ext, pos, end)
        critical = False
        if tag == _BOOLEAN:
            if not _der_boolean(ext, s, e):
                return None  # DER: DEFAULT FALSE is not encoded (X.690 11.5)
            critical = True
            tag, s, e = read_child(ext, e, end)
        if tag != _OCTET_STRING or e != end:
            return None
        value: Any
        if oid == _EXT_SKI:
            vs, ve = _single(ext, s, e, _OCTET_STRING)
            value = ext[vs:ve]
        elif oid == _EXT_AKI:
            value = _aki_key_identifier(ext, s, e)
        elif oid == _EXT_BC:
            value = _basic_constraints(ext, s, e)
        elif oid == _EXT_KU:
            value = _key_usage(ext, s, e)
        elif oid == _EXT_EKU:
            value = _ext_key_usages(ext, s, e)
        elif oid == _EXT_SAN:
            value = _san_rfc822_names(ext, s, e)
        else:
            value = _extension_decodes(ext) or None
    except (*DECODE_ERRORS, InvalidArgument):
        return None
    return None if value is None else (oid, critical, value)


_decode_repeated_extension = functools.lru_cache(maxsize=512)(_decode_extension)


def _single(der: bytes, start: int, end: int, tag: int) -> tuple[int, int]:
    """The contents span of the one TLV filling start..end, which must have ``tag``."""
    t, s, e = read_child(der, start, end)
    if t != tag or e != end:
        raise ValueError("unexpected extension value")
    return s, e


def _aki_key_identifier(der: bytes, start: int, end: int) -> bytes | None:
    """4.2.1.1: the keyIdentifier [0], first of only the fields AuthorityKeyIdentifier has."""
    s, e = _single(der, start, end, _SEQUENCE)
    if s == e:
        return None
    tag, ks, pos = read_child(der, s, e)
    if tag != 0x80:
        return None
    key_id = der[ks:pos]
    while pos < e:
        tag, _, pos = read_child(der, pos, e)
        if tag not in (0x80, 0xA1, 0x82):
            return None
    return key_id


def _basic_constraints(der: bytes, start: int, end: int) -> tuple[bool, int | None] | None:
    """4.2.1.9: (cA, pathLenConstraint) in DER (cA DEFAULT FALSE not encoded)."""
    s, e = _single(der, start, end, _SEQUENCE)
    is_ca = False
    path_len: int | None = None
    if s < e:
        tag, bs, pos = read_child(der, s, e)
        if tag == _BOOLEAN:
            is_ca = _der_boolean(der, bs, pos)
            if not is_ca:
                return None  # DEFAULT FALSE is not encoded
            s = pos
    if s < e:
        tag, ps, pe = read_child(der, s, e)
        if tag != _INTEGER or pe != e:
            return None
        path_len = _der_nonnegative_int(der, ps, pe)
    return is_ca, path_len


def _key_usage(der: bytes, start: int, end: int) -> KeyUsage | None:
    """4.2.1.3: a non-empty DER BIT STRING (X.690 11.2.2: no trailing zero bits)."""
    s, e = _single(der, start, end, _BIT_STRING)
    body = der[s:e]
    if len(body) < 2 or body[0] > 7 or body[-1] & ((1 << body[0]) - 1) or body[-1] == 0:
        return None
    bits = int.from_bytes(body[1:], "big") >> body[0]
    nbits = (len(body) - 1) * 8 - body[0]
    if nbits > len(_KU_NAMES):
        return None
    ku = KeyUsage(**{name: bool(bits >> (nbits - 1 - i) & 1)
                     for i, name in enumerate(_KU_NAMES[:nbits])})
    return None if ku.is_empty() else ku


def _ext_key_usages(der: bytes, start: int, end: int) -> tuple[str, ...] | None:
    """4.2.1.12: a non-empty SEQUENCE OF KeyPurposeId, as dotted OIDs."""
    s, e = _single(der, start, end, _SEQUENCE)
    ekus: list[str] = []
    while s < e:
        tag, ps, s = read_child(der, s, e)
        if tag != _OID:
            return None
        ekus.append(_oid_dotted(der[ps:s]))
    return tuple(ekus) if ekus else None


def _san_rfc822_names(der: bytes, start: int, end: int) -> tuple[bytes, ...] | None:
    """4.2.1.6: a non-empty GeneralNames whose names are well formed; its rfc822Names."""
    s, e = _single(der, start, end, _SEQUENCE)
    if s == e:
        return None
    rfc822_names: list[bytes] = []
    while s < e:
        t, ns, ne = read_child(der, s, e)
        if t in _GN_IA5:
            if not der[ns:ne].isascii():
                return None
            if t == _GN_RFC822:
                rfc822_names.append(der[ns:ne])
        elif t == _GN_IP:
            if ne - ns not in (4, 16):
                return None
        elif not _extension_decodes(_wrap_san(der[s:ne])):
            return None
        s = ne
    return tuple(rfc822_names)


def _subject_emails(der: bytes, start: int, end: int) -> tuple[bytes, ...]:
    """The emailAddress values of a Name (contents start..end) _name_clean accepted."""
    emails: list[bytes] = []
    while start < end:
        _, pos, start = read_child(der, start, end)  # RelativeDistinguishedName
        while pos < start:
            _, a_s, pos = read_child(der, pos, start)  # AttributeTypeAndValue
            _, os_, oe = read_child(der, a_s, pos)
            _, vs, ve = read_child(der, oe, pos)
            if der[os_:oe] == EMAIL_ADDRESS_OID:
                emails.append(der[vs:ve])
    return tuple(emails)


def _extensions_clean(exts: dict[bytes, tuple[bool, Any]], key_type: KeyType,
                           own_ki: bytes, subject_der: bytes, subject_emails: tuple[bytes, ...],
                           issuer: Issuer) -> bool:
    # 4.2.1.2 SKI: present, non-critical, the key's identifier.
    ski = exts.get(_EXT_SKI)
    if ski is None or ski[0] or ski[1] != own_ki:
        return False
    # 4.2.1.1 AKI: present, non-critical, keyIdentifier = the issuer's SKI.
    aki = exts.get(_EXT_AKI)
    if aki is None or aki[0] or aki[1] != issuer.key_identifier:
        return False
    # 4.2.1.9 basicConstraints: present; cA needs critical; pathLen only with cA and
    # below the issuer's.
    bc = exts.get(_EXT_BC)
    if bc is None:
        return False
    critical, (is_ca, path_len) = bc
    if (is_ca and not critical) or (path_len is not None and not is_ca):
        return False
    if is_ca and subject_der == b"\x30\x00":
        return False
    if issuer.path_len is not None and is_ca and (path_len is None or
                                                  path_len >= issuer.path_len):
        return False
    # 4.2.1.3 keyUsage: a non-empty DER BIT STRING consistent with the key and cA.
    ku: KeyUsage | None = None
    ku_ext = exts.get(_EXT_KU)
    if ku_ext is not None:
        ku = ku_ext[1]
        check_key_usage(ku, key_type, is_ca=is_ca)
    elif is_ca:
        return False
    # 4.2.1.12 EKU: anyExtendedKeyUsage not critical; consistent with KU; within the issuer's.
    ekus: tuple[str, ...] = ()
    eku_ext = exts.get(_EXT_EKU)
    if eku_ext is not None:
        critical, ekus = eku_ext
        if EKU_ANY in ekus and critical:
            return False
    check_key_usage_for_ekus(ku, ekus, is_ca=is_ca)
    check_ekus_within_issuer(ekus, issuer.ext_key_usages)
    # 4.2.1.6 SAN: non-empty, names well formed (decoded); critical when the subject is empty.
    san = exts.get(_EXT_SAN)
    if subject_der == b"\x30\x00" and (san is None or not san[0]):
        return False
    # 4.1.2.6: every subject emailAddress is also an rfc822Name SAN, octet for octet.
    if subject_emails and (san is None or not set(subject_emails) <= set(san[1])):
        return False
    return True


def _wrap_san(general_name: bytes) -> bytes:
    """A SAN extension holding one GeneralName, for the asn1crypto decode check."""
    inner = der_sequence(general_name)
    return der_sequence(der_tlv(_OID, _EXT_SAN), der_tlv(_OCTET_STRING, inner))
