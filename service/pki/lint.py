"""The project's own RFC 5280 checks on a TBSCertificate before the token signs it.

docs/architecture.md, invariant 4. A finding means our builder emitted something wrong (Internal),
except where the caller's input is the cause (the subject's attributes: InvalidArgument).
"""

from __future__ import annotations

from datetime import UTC, datetime

from asn1crypto import x509

from service.errors import Internal, InvalidArgument
from service.pki import lint_fast
from service.pki.builder import Issuer, key_identifier, key_type_of, read_tlv
from service.pki.name_rules import EMAIL_ADDRESS_OID, attribute_value_problem
from service.pki.names import normalize_email
from service.pki.profiles import (
    EKU_ANY,
    KeyUsage,
    check_ekus_within_issuer,
    check_key_usage,
    check_key_usage_for_ekus,
)
from service.pki.serial import MAX_SERIAL_OCTETS, serial_octets


class LintError(Internal):
    """Our builder produced a TBS that fails our own checks; the token must not sign it."""

    def __init__(self, findings: tuple[str, ...]) -> None:
        super().__init__("certificate lint failed: " + "; ".join(findings),
                         reason="InternalError.Lint")
        self.findings = findings


def _name_findings(name: x509.Name, what: str) -> list[str]:
    """RFC 5280 4.1.2.4/4.1.2.6, Appendix A: each value in its syntax, 1..ub characters."""
    out: list[str] = []
    for index, rdn in enumerate(name.chosen, 1):
        if len(rdn) == 0:
            # RFC 5280 4.1.2.4 / X.501: RelativeDistinguishedName ::= SET SIZE (1..MAX).
            out.append(f"{what} RDN {index} is empty (an RDN holds at least one attribute)")
        types = [atv["type"].dotted for atv in rdn]
        if len(set(types)) != len(types):
            out.append(f"{what} RDN {index} holds the same attribute type twice "
                       "(a multi-valued RDN names distinct types)")
        for atv in rdn:
            oid = atv["type"]
            try:
                raw = atv["value"].dump()  # asn1crypto refuses a tag its spec does not allow
                tag, start, end = read_tlv(raw)
            except ValueError:
                out.append(f"{what} attribute {oid.dotted} does not decode as a string")
                continue
            problem = attribute_value_problem(oid.contents, tag, raw[start:end])
            if problem is not None:
                out.append(f"{what} attribute {oid.dotted} {problem}")
    return out


def _subject_email_findings(subject: x509.Name, san: x509.Extension | None) -> list[str]:
    """RFC 5280 4.1.2.6: an e-mail address goes in an rfc822Name SAN; in the subject only too."""
    emails: list[bytes] = []
    for rdn in subject.chosen:
        for atv in rdn:
            if atv["type"].contents == EMAIL_ADDRESS_OID:
                try:
                    emails.append(atv["value"].contents)
                except ValueError:
                    pass  # _name_findings reports it
    if not emails:
        return []
    in_san: set[bytes] = set()
    if san is not None:
        try:
            in_san = {gn.chosen.contents for gn in san["extn_value"].parsed
                      if gn.name == "rfc822_name"}
        except ValueError:
            pass  # the extension checks report it
    out: list[str] = []
    for email in emails:
        if email in in_san:
            continue  # the same octets, as checkers compare them
        text = email.decode("ascii", errors="replace")
        message = (f"subject emailAddress {text!r} is not an rfc822Name subject alternative "
                   f"name: add {text!r} as an rfc822Name SAN, or leave it out of the subject "
                   "(RFC 5280 4.1.2.6: e-mail addresses go in subjectAltName)")
        try:
            normal = normalize_email(text)
        except InvalidArgument:
            normal = text
        if normal != text:
            message += (f"; SANs hold the address as {normal!r} (domain in lower case), so "
                        "write it that way in the subject too")
        out.append(message)
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
    # The DER walk (service.pki.lint_fast) makes every check of _lint in ~1/10 of the time
    # of an asn1crypto parse (this runs once per issued certificate). It only says "clean"
    # or "not clean": for anything it does not accept, the asn1crypto checks run and report
    # the findings.
    if lint_fast.is_clean(tbs_der, issuer):
        return
    _lint(tbs_der, issuer)
    # The reference checks found nothing, yet the walk refused: never sign on a doubt.
    raise LintError(("TBSCertificate is not in the DER form this service emits",))


def lint_self_signed_tbs(tbs_der: bytes) -> None:
    """Check a self-signed root CA TBSCertificate."""
    _lint(tbs_der, None)


def _lint(tbs_der: bytes, issuer: Issuer | None) -> None:
    try:
        _check(tbs_der, issuer)
    except lint_fast.DECODE_ERRORS as e:
        # asn1crypto decodes lazily, so malformed DER surfaces where the TBS is loaded or in
        # whichever check first touches it: either is a lint failure, never another exception.
        raise LintError((f"TBSCertificate does not decode: {e}",)) from e


def _check(tbs_der: bytes, issuer: Issuer | None) -> None:
    findings: list[str] = []
    input_findings: list[str] = []
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
    except lint_fast.DECODE_ERRORS as e:
        findings.append(f"an extension does not decode: {e}")
    input_findings += _subject_email_findings(subject, ext_by_name.get("subject_alt_name"))

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
