"""The project's own RFC 5280 checks on a TBSCertificate before the token signs it.

DESIGN.md invariant 4. A finding means our builder emitted something wrong (Internal),
except where the caller's input is the cause (subject string types: InvalidArgument).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from asn1crypto import core, x509

from service.errors import Internal, InvalidArgument
from service.pki.builder import (
    Issuer,
    der_children,
    der_sequence,
    der_tlv,
    key_identifier,
    key_type_of,
    read_tlv,
)
from service.pki.profiles import (
    EKU_ANY,
    KeyUsage,
    check_ekus_within_issuer,
    check_key_usage,
    check_key_usage_for_ekus,
)
from service.pki.serial import MAX_SERIAL_OCTETS, serial_octets

_PRINTABLE = 0x13
_UTF8 = 0x0C
_IA5 = 0x16
_OID_COUNTRY = "2.5.4.6"
# RFC 5280 4.1.2.6 / appendix A: emailAddress and domainComponent are IA5String.
_IA5_ATTRIBUTES = {"1.2.840.113549.1.9.1", "0.9.2342.19200300.100.1.25"}
_PRINTABLE_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


class LintError(Internal):
    """Our builder produced a TBS that fails our own checks; the token must not sign it."""

    def __init__(self, findings: tuple[str, ...]) -> None:
        super().__init__("certificate lint failed: " + "; ".join(findings),
                         reason="InternalError.Lint")
        self.findings = findings


def _name_findings(name: x509.Name, what: str) -> list[str]:
    """RFC 5280 4.1.2.4/4.1.2.6: DirectoryString as PrintableString or UTF8String."""
    out: list[str] = []
    for rdn in name.chosen:
        for atv in rdn:
            oid = atv["type"].dotted
            raw = atv["value"].dump()
            tag = raw[0]
            if oid == _OID_COUNTRY:
                # X.520 / RFC 5280 appendix A: PrintableString (SIZE (2)).
                value = atv["value"].native
                if tag != _PRINTABLE or not isinstance(value, str) or len(value) != 2:
                    out.append(f"{what} countryName must be a 2-letter PrintableString")
            elif oid in _IA5_ATTRIBUTES:
                if tag != _IA5:
                    out.append(f"{what} attribute {oid} must be IA5String")
            elif tag == _PRINTABLE:
                value = atv["value"].native
                if not isinstance(value, str) or not set(value) <= _PRINTABLE_CHARS:
                    out.append(f"{what} attribute {oid} has characters outside "
                               "PrintableString")
            elif tag != _UTF8:
                out.append(f"{what} attribute {oid} uses string tag 0x{tag:02x}; only "
                           "PrintableString or UTF8String are allowed")
    return out


def _time_findings(t: x509.Time, what: str) -> tuple[list[str], datetime | None]:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, Z, no fractions."""
    raw = t.chosen.contents
    value: datetime = t.native
    out: list[str] = []
    if t.name == "utc_time":
        if len(raw) != 13 or not raw.endswith(b"Z") or value.year >= 2050:
            out.append(f"{what} is not a valid RFC 5280 UTCTime")
    elif len(raw) != 15 or not raw.endswith(b"Z") or value.year < 2050:
        out.append(f"{what} is not a valid RFC 5280 GeneralizedTime")
    return out, value


def lint_tbs(tbs_der: bytes, issuer: Issuer) -> None:
    """Check a TBSCertificate issued by ``issuer``; raises LintError / InvalidArgument."""
    # The DER walk below makes every check of _lint in ~1/10 of the time of an asn1crypto
    # parse (this runs once per issued certificate). It only says "clean" or "not clean":
    # for anything it does not accept, the asn1crypto checks run and report the findings.
    try:
        clean = _fast_clean(tbs_der, issuer)
    except (ValueError, TypeError, IndexError, KeyError, InvalidArgument):
        clean = False
    if clean:
        return
    _lint(tbs_der, issuer)
    # The reference checks found nothing, yet the walk refused: never sign on a doubt.
    raise LintError(("TBSCertificate is not in the DER form this service emits",))


def lint_self_signed_tbs(tbs_der: bytes) -> None:
    """Check a self-signed root CA TBSCertificate."""
    _lint(tbs_der, None)


def _lint(tbs_der: bytes, issuer: Issuer | None) -> None:
    findings: list[str] = []
    input_findings: list[str] = []
    try:
        tbs = x509.TbsCertificate.load(tbs_der, strict=True)
        version = tbs["version"].native
        serial = tbs["serial_number"].native
        sig_der = tbs["signature"].dump()
        issuer_der = tbs["issuer"].dump()
        subject = tbs["subject"]
        subject_der = subject.dump()
        spki = tbs["subject_public_key_info"].dump()
        validity = tbs["validity"]
        ext_list = list(tbs["extensions"])
    except (ValueError, TypeError) as e:
        raise LintError((f"TBSCertificate does not parse: {e}",)) from e

    if version != "v3":
        findings.append("version is not v3 (RFC 5280 4.1.2.1)")
    if not isinstance(serial, int) or serial <= 0 or serial_octets(serial) > MAX_SERIAL_OCTETS:
        findings.append("serialNumber must be positive and at most 20 octets (4.1.2.2)")

    self_signed = issuer is None
    if issuer is None:
        if issuer_der != subject_der:
            findings.append("self-signed certificate: issuer differs from subject")
    else:
        if issuer_der != issuer.subject_der:
            findings.append("issuer DN is not byte-equal to the CA subject (4.1.2.4)")
        if sig_der != issuer.signature_algorithm_der:
            findings.append("signature algorithm is not the issuer's (4.1.2.3)")

    nb_findings, nb = _time_findings(validity["not_before"], "notBefore")
    na_findings, na = _time_findings(validity["not_after"], "notAfter")
    findings += nb_findings + na_findings
    if nb is not None and na is not None:
        if nb >= na:
            findings.append("notBefore is not before notAfter (4.1.2.5)")
        if issuer is not None and (nb < issuer.not_before.astimezone(UTC)
                                   or na > issuer.not_after.astimezone(UTC)):
            findings.append("validity is not within the issuer's validity")

    input_findings += _name_findings(subject, "subject")

    # Extensions (RFC 5280 4.2): no duplicates (4.2), decode each we rely on.
    seen: set[str] = set()
    ext_by_name: dict[str, x509.Extension] = {}
    for ext in ext_list:
        oid = ext["extn_id"].dotted
        if oid in seen:
            findings.append(f"extension {oid} appears more than once (4.2)")
        seen.add(oid)
        ext_by_name[ext["extn_id"].native] = ext
    try:
        _lint_extensions(ext_by_name, spki, subject_der, issuer, self_signed, findings)
    except (ValueError, TypeError) as e:
        findings.append(f"an extension does not decode: {e}")

    if findings:
        raise LintError(tuple(findings + input_findings))
    if input_findings:
        raise InvalidArgument("; ".join(input_findings), reason="InvalidParameter.Subject")


def _lint_extensions(exts: dict[str, x509.Extension], spki: bytes, subject_der: bytes,
                     issuer: Issuer | None, self_signed: bool, findings: list[str]) -> None:
    ski = exts.get("key_identifier")
    aki = exts.get("authority_key_identifier")
    bc = exts.get("basic_constraints")
    ku_ext = exts.get("key_usage")
    eku_ext = exts.get("extended_key_usage")
    san = exts.get("subject_alt_name")

    own_ki = key_identifier(spki)
    if ski is None:
        findings.append("subjectKeyIdentifier missing (4.2.1.2)")
    else:
        if ski["critical"].native:
            findings.append("subjectKeyIdentifier must be non-critical (4.2.1.2)")
        if ski["extn_value"].parsed.native != own_ki:
            findings.append("subjectKeyIdentifier does not match the public key")

    expected_aki = own_ki if issuer is None else issuer.key_identifier
    if aki is None:
        if not self_signed:
            findings.append("authorityKeyIdentifier missing (4.2.1.1)")
    else:
        if aki["critical"].native:
            findings.append("authorityKeyIdentifier must be non-critical (4.2.1.1)")
        if aki["extn_value"].parsed["key_identifier"].native != expected_aki:
            findings.append("authorityKeyIdentifier keyIdentifier != issuer SKI (4.2.1.1)")

    is_ca = False
    path_len = None
    if bc is None:
        findings.append("basicConstraints missing")
    else:
        bcv = bc["extn_value"].parsed
        is_ca = bool(bcv["ca"].native)
        path_len = bcv["path_len_constraint"].native
        if is_ca and not bc["critical"].native:
            findings.append("CA basicConstraints must be critical (4.2.1.9)")
        if path_len is not None and not is_ca:
            findings.append("pathLenConstraint without cA (4.2.1.9)")

    if is_ca and subject_der == b"\x30\x00":
        findings.append("CA with an empty subject (4.1.2.6)")
    if issuer is not None:
        if issuer.path_len is not None and is_ca and (
                path_len is None or path_len >= issuer.path_len):
            findings.append("pathLenConstraint exceeds what the issuer allows (4.2.1.9)")

    ku: KeyUsage | None = None
    if ku_ext is not None:
        bits = set(ku_ext["extn_value"].parsed.native)
        ku = KeyUsage(**{name: name in bits for name in (
            "digital_signature", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")},
            content_commitment="non_repudiation" in bits)
        if ku.is_empty():
            findings.append("keyUsage with no bit set (4.2.1.3)")
    elif is_ca:
        findings.append("CA certificate without keyUsage (4.2.1.3)")
    if ku is not None:
        try:
            check_key_usage(ku, key_type_of(spki), is_ca=is_ca)
        except InvalidArgument as e:
            findings.append(e.message)

    ekus: tuple[str, ...] = ()
    if eku_ext is not None:
        ekus = tuple(p.dotted for p in eku_ext["extn_value"].parsed)
        if EKU_ANY in ekus and eku_ext["critical"].native:
            findings.append("anyExtendedKeyUsage in a critical EKU (4.2.1.12)")
    try:
        check_key_usage_for_ekus(ku, ekus, is_ca=is_ca)
        if issuer is not None:
            check_ekus_within_issuer(ekus, issuer.ext_key_usages)
    except InvalidArgument as e:
        findings.append(e.message)

    if subject_der == b"\x30\x00":
        if san is None:
            findings.append("empty subject without subjectAltName (4.2.1.6)")
        elif not san["critical"].native:
            findings.append("subjectAltName must be critical with an empty subject (4.2.1.6)")
    if san is not None and len(san["extn_value"].parsed) == 0:
        findings.append("empty subjectAltName (4.2.1.6)")
    # Decode every extension value fully so a malformed one is caught here, not by a client.
    for ext in exts.values():
        _ = ext["extn_value"].parsed.native


# --- the fast path: a DER walk over what our builder emits ---------------------------------
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
_OID_COUNTRY_DER = bytes.fromhex("550406")
_IA5_ATTRIBUTES_DER = frozenset(
    (bytes.fromhex("2a864886f70d010901"), bytes.fromhex("0992268993f22c640119")))
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
_GN_IP = 0x87


@functools.lru_cache(maxsize=1024)
def _oid_dotted(contents: bytes) -> str:
    """X.690 8.19 OBJECT IDENTIFIER contents -> dotted string (minimal encoding only)."""
    return str(core.ObjectIdentifier.load(bytes([_OID, len(contents)]) + contents).dotted)


@functools.lru_cache(maxsize=1024)
def _extension_decodes(extension_der: bytes) -> bool:
    """True iff asn1crypto fully decodes the extension value (per-CA parts repeat)."""
    try:
        ext = x509.Extension.load(extension_der, strict=True)
        _ = ext["extn_value"].parsed.native
    except (ValueError, TypeError, KeyError, IndexError):
        return False
    return True


def _fast_time(der: bytes, tag: int, start: int, end: int) -> datetime | None:
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


def _fast_name_clean(der: bytes, start: int, end: int) -> bool:
    """The subject string rules of _name_findings (RFC 5280 4.1.2.4/4.1.2.6) on DER."""
    for tag, _, rs, re_ in der_children(der, start, end):
        if tag != _SET:
            return False
        atvs = der_children(der, rs, re_)
        if not atvs:
            return False
        for atag, _, a_s, a_e in atvs:
            if atag != _SEQUENCE:
                return False
            parts = der_children(der, a_s, a_e)
            if len(parts) != 2 or parts[0][0] != _OID:
                return False
            oid = der[parts[0][2]:parts[0][3]]
            vtag, _, vs, ve = parts[1]
            value = der[vs:ve]
            if oid == _OID_COUNTRY_DER:
                if vtag != _PRINTABLE or len(value) != 2 or not _printable(value):
                    return False
            elif oid in _IA5_ATTRIBUTES_DER:
                if vtag != _IA5 or not value.isascii():
                    return False
            elif vtag == _PRINTABLE:
                if not _printable(value):
                    return False
            elif vtag == _UTF8:
                value.decode("utf-8")  # UnicodeDecodeError is a ValueError: not clean
            else:
                return False
    return True


def _printable(value: bytes) -> bool:
    return value.isascii() and set(value.decode("ascii")) <= _PRINTABLE_CHARS


def _der_boolean(der: bytes, start: int, end: int) -> bool:
    if end - start != 1 or der[start] not in (0x00, 0xFF):
        raise ValueError("BOOLEAN is not DER")
    return der[start] == 0xFF


def _der_nonnegative_int(der: bytes, start: int, end: int) -> int:
    body = der[start:end]
    if not body or body[0] & 0x80 or (len(body) > 1 and body[0] == 0 and body[1] < 0x80):
        raise ValueError("INTEGER is negative or not minimal")
    return int.from_bytes(body, "big")


def _fast_clean(tbs: bytes, issuer: Issuer) -> bool:
    """Every check of _lint on a DER walk; True only if the TBS passes them all."""
    tag, start, end = read_tlv(tbs)
    if tag != _SEQUENCE or end != len(tbs):
        return False
    fields = der_children(tbs, start, end)
    if len(fields) != 8 or [f[0] for f in fields] != [
            _EXPLICIT_0, _INTEGER, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE,
            _EXPLICIT_3]:
        return False  # v1/v2 forms and unique identifiers are never emitted
    version, serial, sig, iss, validity, subject, spki_f, exts_f = fields
    # 4.1.2.1 version v3; 4.1.2.2 serial positive, at most 20 octets, minimal.
    if tbs[version[1]:version[3]] != b"\xa0\x03\x02\x01\x02":
        return False
    serial_value = _der_nonnegative_int(tbs, serial[2], serial[3])
    if serial_value <= 0 or serial[3] - serial[2] > MAX_SERIAL_OCTETS + 1 or (
            serial_octets(serial_value) > MAX_SERIAL_OCTETS):
        return False
    # 4.1.2.3 / 4.1.2.4: the issuer's algorithm and its subject, byte for byte.
    if tbs[sig[1]:sig[3]] != issuer.signature_algorithm_der:
        return False
    if tbs[iss[1]:iss[3]] != issuer.subject_der:
        return False
    # 4.1.2.5 validity: encodings, order, within the issuer's.
    times = der_children(tbs, validity[2], validity[3])
    if len(times) != 2:
        return False
    nb = _fast_time(tbs, times[0][0], times[0][2], times[0][3])
    na = _fast_time(tbs, times[1][0], times[1][2], times[1][3])
    if nb is None or na is None or nb >= na:
        return False
    if nb < issuer.not_before.astimezone(UTC) or na > issuer.not_after.astimezone(UTC):
        return False
    subject_der = tbs[subject[1]:subject[3]]
    if not _fast_name_clean(tbs, subject[2], subject[3]):
        return False
    spki = tbs[spki_f[1]:spki_f[3]]
    # Extensions: [3] EXPLICIT SEQUENCE OF Extension, no duplicates (4.2).
    outer = der_children(tbs, exts_f[2], exts_f[3])
    if len(outer) != 1 or outer[0][0] != _SEQUENCE:
        return False
    values: dict[bytes, tuple[bool, int, int]] = {}
    for etag, estart, es, ee in der_children(tbs, outer[0][2], outer[0][3]):
        if etag != _SEQUENCE:
            return False
        parts = der_children(tbs, es, ee)
        if len(parts) == 3 and parts[1][0] == _BOOLEAN:
            critical = _der_boolean(tbs, parts[1][2], parts[1][3])
            if not critical:
                return False  # DER: DEFAULT FALSE is not encoded (X.690 11.5)
            parts = [parts[0], parts[2]]
        else:
            critical = False
        if len(parts) != 2 or parts[0][0] != _OID or parts[1][0] != _OCTET_STRING:
            return False
        oid = tbs[parts[0][2]:parts[0][3]]
        if oid in values:
            return False
        values[oid] = (critical, parts[1][2], parts[1][3])
        if oid not in (_EXT_SKI, _EXT_AKI, _EXT_BC, _EXT_KU, _EXT_EKU, _EXT_SAN) and (
                not _extension_decodes(tbs[estart:ee])):
            return False
    return _fast_extensions_clean(tbs, values, spki, subject_der, issuer)


def _single(tbs: bytes, start: int, end: int, tag: int) -> tuple[int, int]:
    """The contents span of the one TLV filling start..end, which must have ``tag``."""
    kids = der_children(tbs, start, end)
    if len(kids) != 1 or kids[0][0] != tag:
        raise ValueError("unexpected extension value")
    return kids[0][2], kids[0][3]


def _fast_extensions_clean(tbs: bytes, exts: dict[bytes, tuple[bool, int, int]], spki: bytes,
                           subject_der: bytes, issuer: Issuer) -> bool:
    # 4.2.1.2 SKI: present, non-critical, the key's identifier.
    if _EXT_SKI not in exts or exts[_EXT_SKI][0]:
        return False
    s, e = _single(tbs, exts[_EXT_SKI][1], exts[_EXT_SKI][2], _OCTET_STRING)
    if tbs[s:e] != key_identifier(spki):
        return False
    # 4.2.1.1 AKI: present, non-critical, keyIdentifier = the issuer's SKI.
    if _EXT_AKI not in exts or exts[_EXT_AKI][0]:
        return False
    s, e = _single(tbs, exts[_EXT_AKI][1], exts[_EXT_AKI][2], _SEQUENCE)
    aki_fields = der_children(tbs, s, e)
    if not aki_fields or aki_fields[0][0] != 0x80 or (
            tbs[aki_fields[0][2]:aki_fields[0][3]] != issuer.key_identifier):
        return False
    if any(t not in (0x80, 0xA1, 0x82) for t, *_ in aki_fields):
        return False
    # 4.2.1.9 basicConstraints: present; cA needs critical; pathLen only with cA and
    # below the issuer's.
    if _EXT_BC not in exts:
        return False
    critical, vs, ve = exts[_EXT_BC]
    s, e = _single(tbs, vs, ve, _SEQUENCE)
    bc = der_children(tbs, s, e)
    is_ca = False
    path_len: int | None = None
    if bc and bc[0][0] == _BOOLEAN:
        is_ca = _der_boolean(tbs, bc[0][2], bc[0][3])
        if not is_ca:
            return False  # DEFAULT FALSE is not encoded
        bc = bc[1:]
    if bc:
        if len(bc) != 1 or bc[0][0] != _INTEGER:
            return False
        path_len = _der_nonnegative_int(tbs, bc[0][2], bc[0][3])
    if (is_ca and not critical) or (path_len is not None and not is_ca):
        return False
    if is_ca and subject_der == b"\x30\x00":
        return False
    if issuer.path_len is not None and is_ca and (path_len is None or
                                                  path_len >= issuer.path_len):
        return False
    # 4.2.1.3 keyUsage: a non-empty DER BIT STRING consistent with the key and cA.
    ku: KeyUsage | None = None
    if _EXT_KU in exts:
        s, e = _single(tbs, exts[_EXT_KU][1], exts[_EXT_KU][2], _BIT_STRING)
        body = tbs[s:e]
        if len(body) < 2 or body[0] > 7 or body[-1] & ((1 << body[0]) - 1) or body[-1] == 0:
            return False  # empty, or not DER (X.690 11.2.2: no trailing zero bits)
        bits = int.from_bytes(body[1:], "big") >> body[0]
        nbits = (len(body) - 1) * 8 - body[0]
        if nbits > len(_KU_NAMES):
            return False
        ku = KeyUsage(**{name: bool(bits >> (nbits - 1 - i) & 1)
                         for i, name in enumerate(_KU_NAMES[:nbits])})
        if ku.is_empty():
            return False
        check_key_usage(ku, key_type_of(spki), is_ca=is_ca)
    elif is_ca:
        return False
    # 4.2.1.12 EKU: anyExtendedKeyUsage not critical; consistent with KU; within the issuer's.
    ekus: tuple[str, ...] = ()
    if _EXT_EKU in exts:
        critical, vs, ve = exts[_EXT_EKU]
        s, e = _single(tbs, vs, ve, _SEQUENCE)
        purposes = der_children(tbs, s, e)
        if not purposes or any(t != _OID for t, *_ in purposes):
            return False
        ekus = tuple(_oid_dotted(tbs[ps:pe]) for _, _, ps, pe in purposes)
        if EKU_ANY in ekus and critical:
            return False
    check_key_usage_for_ekus(ku, ekus, is_ca=is_ca)
    check_ekus_within_issuer(ekus, issuer.ext_key_usages)
    # 4.2.1.6 SAN: non-empty; critical when the subject is empty; names well formed.
    if _EXT_SAN in exts:
        critical, vs, ve = exts[_EXT_SAN]
        s, e = _single(tbs, vs, ve, _SEQUENCE)
        names = der_children(tbs, s, e)
        if not names:
            return False
        for t, ts, ns, ne in names:
            if t in _GN_IA5:
                if not tbs[ns:ne].isascii():
                    return False
            elif t == _GN_IP:
                if ne - ns not in (4, 16):
                    return False
            elif not _extension_decodes(_wrap_san(tbs[ts:ne])):
                return False
        if subject_der == b"\x30\x00" and not critical:
            return False
    elif subject_der == b"\x30\x00":
        return False
    return True


def _wrap_san(general_name: bytes) -> bytes:
    """A SAN extension holding one GeneralName, for the asn1crypto decode check."""
    inner = der_sequence(general_name)
    return der_sequence(der_tlv(_OID, _EXT_SAN), der_tlv(_OCTET_STRING, inner))
