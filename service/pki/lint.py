"""The project's own RFC 5280 checks on a TBSCertificate before the token signs it.

DESIGN.md invariant 4. A finding means our builder emitted something wrong (Internal),
except where the caller's input is the cause (subject string types: InvalidArgument).
"""

from __future__ import annotations

from datetime import UTC, datetime

from asn1crypto import x509

from service.errors import Internal, InvalidArgument
from service.pki.builder import Issuer, key_identifier, key_type_of
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
    _lint(tbs_der, issuer)


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
