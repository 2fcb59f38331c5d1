"""Table-driven rejections: bad KU/EKU, EKU outside the sub CA's, serials, validity, lint."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives.asymmetric import ec
from pkib_support import NOW, Hierarchy, ec_signer, name, rsa_signer

from service.errors import FailedPrecondition, HsmcaError, Internal, InvalidArgument
from service.pki.builder import (
    IssuanceRequest,
    build_self_signed_tbs,
    build_tbs,
    der_oid,
    der_sequence,
    der_tlv,
)
from service.pki.lint import LintError, lint_tbs
from service.pki.profiles import KeyUsage, ProfileKind
from service.pki.serial import new_serial, validate_custom_serial
from service.pki.signer import SignatureAlgorithm

_EC = ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA)
_RSA = rsa_signer()
_SAN = ax509.GeneralNames([ax509.GeneralName("dns_name", "x.example.test")])


def _custom(**kw: object) -> IssuanceRequest:
    base = IssuanceRequest(
        profile=ProfileKind.CUSTOM, subject=name("x"), public_key_info=_EC.public_key_info,
        serial=new_serial(), not_before=NOW, not_after=NOW + timedelta(days=1),
        key_usage=KeyUsage(digital_signature=True), extended_key_usages=("serverAuth",),
        subject_alt_names=_SAN)
    return replace(base, **kw)  # type: ignore[arg-type]


CUSTOM_REJECTIONS = [
    ("keyEncipherment-on-EC", dict(key_usage=KeyUsage(key_encipherment=True)),
     "InvalidParameter.KeyUsage"),
    ("dataEncipherment-on-EC", dict(key_usage=KeyUsage(digital_signature=True,
                                                       data_encipherment=True)),
     "InvalidParameter.KeyUsage"),
    ("encipherOnly-without-keyAgreement",
     dict(key_usage=KeyUsage(digital_signature=True, encipher_only=True)),
     "InvalidParameter.KeyUsage"),
    ("decipherOnly-without-keyAgreement",
     dict(key_usage=KeyUsage(digital_signature=True, decipher_only=True)),
     "InvalidParameter.KeyUsage"),
    ("encipherOnly-and-decipherOnly",
     dict(key_usage=KeyUsage(key_agreement=True, encipher_only=True, decipher_only=True)),
     "InvalidParameter.KeyUsage"),
    ("keyAgreement-on-RSA", dict(public_key_info=_RSA.public_key_info,
                                 key_usage=KeyUsage(key_agreement=True)),
     "InvalidParameter.KeyUsage"),
    ("serverAuth-with-contentCommitment-only",
     dict(key_usage=KeyUsage(content_commitment=True)), "InvalidParameter.KeyUsage"),
    ("codeSigning-with-keyAgreement-only",
     dict(key_usage=KeyUsage(key_agreement=True), extended_key_usages=("codeSigning",)),
     "InvalidParameter.KeyUsage"),
    ("keyCertSign-on-leaf", dict(key_usage=KeyUsage(digital_signature=True,
                                                    key_cert_sign=True)),
     "InvalidParameter.KeyUsage"),
    ("unknown-eku", dict(extended_key_usages=("webAuth",)),
     "InvalidParameter.ExtendedKeyUsages"),
    ("bad-dotted-eku", dict(extended_key_usages=("3.1.2",)),
     "InvalidParameter.ExtendedKeyUsages"),
    ("duplicate-eku", dict(extended_key_usages=("serverAuth", "1.3.6.1.5.5.7.3.1")),
     "InvalidParameter.ExtendedKeyUsages"),
    ("unknown-critical", dict(criticals=("NameConstraints",)), "InvalidParameter.Criticals"),
    ("critical-absent-ku", dict(key_usage=None, criticals=("KeyUsage",)),
     "InvalidParameter.Criticals"),
    ("critical-any-eku", dict(extended_key_usages=("any",),
                              criticals=("ExtendedKeyUsages",)), "InvalidParameter.Criticals"),
    ("empty-subject-no-san", dict(subject=b"\x30\x00", subject_alt_names=None),
     "InvalidParameter.SubjectAlternativeNames"),
    ("serial-zero", dict(serial=0), "InvalidParameter.SerialNumber"),
    ("serial-negative", dict(serial=-5), "InvalidParameter.SerialNumber"),
    ("serial-21-octets", dict(serial=1 << 159), "InvalidParameter.SerialNumber"),
    ("not-after-before-not-before", dict(not_after=NOW - timedelta(days=1)),
     "InvalidParameter.Validity"),
    ("beyond-ca-not-after", dict(not_after=NOW + timedelta(days=20 * 365)),
     "InvalidParameter.Validity"),
    ("naive-time", dict(not_before=datetime(2030, 1, 1)), "InvalidParameter.Validity"),
    ("subject-trailing-bytes", dict(subject=name("x").dump() + b"\x00"),
     "InvalidParameter.Subject"),
    ("bad-spki", dict(public_key_info=b"\x30\x03\x02\x01\x00"), "InvalidParameter.PublicKey"),
]


@pytest.mark.parametrize("kw,reason", [c[1:] for c in CUSTOM_REJECTIONS],
                         ids=[c[0] for c in CUSTOM_REJECTIONS])
def test_custom_rejections(ec_hierarchy: Hierarchy, kw: dict[str, object],
                           reason: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        build_tbs(ec_hierarchy.sub_issuer, _custom(**kw))
    assert e.value.reason == reason


@pytest.mark.parametrize("kw", [
    dict(),  # the default EKU set contains serverAuth
    dict(extended_key_usages=("serverAuth",)),
    dict(extended_key_usages=("clientAuth", "codeSigning")),
    dict(extended_key_usages=("any",)),
    dict(extended_key_usages=(), key_usage=KeyUsage(digital_signature=True)),
], ids=["default", "serverAuth", "codeSigning", "any", "none"])
def test_eku_outside_sub_ca(constrained_hierarchy: Hierarchy, kw: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument) as e:
        build_tbs(constrained_hierarchy.sub_issuer, _custom(**kw))
    assert e.value.reason == "InvalidParameter.ExtendedKeyUsages"
    assert "clientAuth" in e.value.message


def test_eku_outside_sub_ca_server_profile(constrained_hierarchy: Hierarchy) -> None:
    req = replace(_custom(), profile=ProfileKind.SERVER, extended_key_usages=(),
                  key_usage=None)
    with pytest.raises(InvalidArgument) as e:
        build_tbs(constrained_hierarchy.sub_issuer, req)
    assert "serverAuth is not allowed" in e.value.message


def test_sub_ca_path_len_under_path_len_zero(ec_hierarchy: Hierarchy) -> None:
    req = replace(_custom(), profile=ProfileKind.SUB_CA, extended_key_usages=(),
                  subject_alt_names=None)
    with pytest.raises(InvalidArgument) as e:
        build_tbs(ec_hierarchy.sub_issuer, req)
    assert e.value.reason == "InvalidParameter.PathLenConstraint"


def test_server_needs_san(ec_hierarchy: Hierarchy) -> None:
    req = replace(_custom(), profile=ProfileKind.SERVER, subject_alt_names=None)
    with pytest.raises(InvalidArgument):
        build_tbs(ec_hierarchy.sub_issuer, req)


def test_crl_requires_issuer_url(ec_hierarchy: Hierarchy) -> None:
    issuer = replace(ec_hierarchy.sub_issuer, crl_url=None, crl_dp_extension_der=None)
    with pytest.raises(FailedPrecondition):
        build_tbs(issuer, _custom(enable_crl=True))


def test_root_needs_subject() -> None:
    with pytest.raises(InvalidArgument):
        build_self_signed_tbs(b"\x30\x00", _EC.public_key_info, SignatureAlgorithm.SHA256_ECDSA,
                              1, NOW, NOW + timedelta(days=1))
    with pytest.raises(InvalidArgument):
        build_self_signed_tbs(name("r"), _EC.public_key_info, SignatureAlgorithm.SHA256_RSA,
                              1, NOW, NOW + timedelta(days=1))


@pytest.mark.parametrize("value", [0, -1, 1 << 159, "abc", "-5", "1e5", " ", True, 1.5])
def test_validate_custom_serial_rejects(value: object) -> None:
    with pytest.raises(InvalidArgument) as e:
        validate_custom_serial(value)  # type: ignore[arg-type]
    assert e.value.reason == "InvalidParameter.SerialNumber"


@pytest.mark.parametrize("value,expected", [
    (1, 1), ("16889526086333", 16889526086333), ((1 << 159) - 1, (1 << 159) - 1)])
def test_validate_custom_serial_accepts(value: int | str, expected: int) -> None:
    assert validate_custom_serial(value) == expected


def test_new_serial() -> None:
    serials = {new_serial() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(0 < s < (1 << 127) for s in serials)
    assert max(serials).bit_length() > 120


# --- lint: a tampered issuer or TBS is caught before signing ------------------------------

def _good_tbs(h: Hierarchy) -> bytes:
    return build_tbs(h.sub_issuer, _custom())


def test_lint_detects_issuer_dn_mismatch(ec_hierarchy: Hierarchy) -> None:
    tampered = replace(ec_hierarchy.sub_issuer, subject_der=name("someone else").dump())
    tbs = build_tbs(tampered, _custom())
    with pytest.raises(LintError) as e:
        lint_tbs(tbs, ec_hierarchy.sub_issuer)
    assert any("issuer DN" in f for f in e.value.findings)
    assert isinstance(e.value, Internal)


def test_lint_detects_aki_mismatch(ec_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> None:
    tampered = replace(ec_hierarchy.sub_issuer,
                       aki_extension_der=rsa_hierarchy.sub_issuer.aki_extension_der)
    with pytest.raises(LintError) as e:
        lint_tbs(build_tbs(tampered, _custom()), ec_hierarchy.sub_issuer)
    assert any("authorityKeyIdentifier" in f for f in e.value.findings)


def test_lint_detects_validity_beyond_issuer(ec_hierarchy: Hierarchy) -> None:
    tampered = replace(ec_hierarchy.sub_issuer,
                       not_after=datetime(2099, 1, 1, tzinfo=UTC))
    tbs = build_tbs(tampered, _custom(not_after=datetime(2098, 1, 1, tzinfo=UTC)))
    with pytest.raises(LintError) as e:
        lint_tbs(tbs, ec_hierarchy.sub_issuer)
    assert any("validity" in f for f in e.value.findings)


def test_lint_detects_eku_outside_issuer(constrained_hierarchy: Hierarchy) -> None:
    tampered = replace(constrained_hierarchy.sub_issuer, ext_key_usages=None)
    tbs = build_tbs(tampered, _custom())
    with pytest.raises(LintError):
        lint_tbs(tbs, constrained_hierarchy.sub_issuer)


def test_lint_detects_duplicate_extension_and_bad_ku(ec_hierarchy: Hierarchy) -> None:
    tbs = _good_tbs(ec_hierarchy)
    # Duplicate the AKI extension inside [3] by rebuilding the TBS by hand.
    from service.pki.builder import read_tlv
    _, start, end = read_tlv(tbs)
    parts = []
    pos = start
    while pos < end:
        _, _, nxt = read_tlv(tbs, pos)
        parts.append(tbs[pos:nxt])
        pos = nxt
    _, ext_seq_start, _ = read_tlv(parts[-1])
    _, exts_start, exts_end = read_tlv(parts[-1], ext_seq_start)
    exts = parts[-1][exts_start:exts_end] + ec_hierarchy.sub_issuer.aki_extension_der
    bad = der_sequence(*parts[:-1], der_tlv(0xA3, der_tlv(0x30, exts)))
    with pytest.raises(LintError) as e:
        lint_tbs(bad, ec_hierarchy.sub_issuer)
    assert any("more than once" in f for f in e.value.findings)


@pytest.mark.parametrize("string_tag,oid,value", [
    (0x14, "2.5.4.3", b"teletex"),      # TeletexString
    (0x1E, "2.5.4.3", "bmp".encode("utf-16-be")),  # BMPString
    (0x0C, "2.5.4.6", b"CN"),           # country as UTF8String
    (0x13, "2.5.4.6", b"CHN"),          # 3-letter country
    (0x13, "2.5.4.3", b"a*b"),          # '*' is not PrintableString
    # RFC 5280 Appendix A: SIZE (1..ub-...), in characters (as a CSR subject may carry them).
    (0x0C, "2.5.4.3", b"a" * 65),       # ub-common-name 64
    (0x13, "2.5.4.3", b"a" * 65),
    (0x0C, "2.5.4.3", "字".encode() * 65),
    (0x0C, "2.5.4.10", b"o" * 100),     # ub-organization-name 64
    (0x0C, "2.5.4.8", b"s" * 129),      # ub-state-name 128
    (0x0C, "2.5.4.3", b""),             # empty
    (0x0C, "2.5.4.11", b""),
    (0x0C, "1.3.6.1.4.1.99999.1", b""),  # empty, also where no upper bound is known
    (0x0C, "2.5.4.3", b"\xff\xfe"),     # not UTF-8
    (0x04, "2.5.4.3", b"a"),            # an OCTET STRING: asn1crypto does not decode it
    # The attribute's own syntax, as build_name encodes it (names.ATTRIBUTE_RULES).
    (0x0C, "2.5.4.5", b"SN1"),          # serialNumber is a PrintableString
    (0x0C, "1.3.6.1.5.5.7.9.4", b"US"),  # countryOfCitizenship is a PrintableString
    (0x13, "1.3.6.1.5.5.7.9.3", b"X"),  # gender M, F, m or f
    (0x13, "2.5.4.6", b"UK"),           # not ISO 3166-1 alpha-2
    (0x16, "0.9.2342.19200300.100.1.25", b"exa mple"),  # not one DNS label
    (0x0C, "0.9.2342.19200300.100.1.25", b"example"),  # domainComponent is an IA5String
])
def test_lint_rejects_subject_encodings(ec_hierarchy: Hierarchy, string_tag: int, oid: str,
                                        value: bytes) -> None:
    subject = der_sequence(der_tlv(0x31, der_sequence(der_oid(oid), der_tlv(string_tag, value))))
    tbs = build_tbs(ec_hierarchy.sub_issuer, _custom(subject=subject))
    with pytest.raises(HsmcaError) as e:
        lint_tbs(tbs, ec_hierarchy.sub_issuer)
    assert isinstance(e.value, InvalidArgument)
    assert e.value.reason == "InvalidParameter.Subject"


_EMAIL = "1.2.840.113549.1.9.1"


def _email_subject(email: bytes) -> bytes:
    return der_sequence(der_tlv(0x31, der_sequence(der_oid("2.5.4.3"), der_tlv(0x0C, b"m"))),
                        der_tlv(0x31, der_sequence(der_oid(_EMAIL), der_tlv(0x16, email))))


def _sans(*names: tuple[int, bytes]) -> bytes:
    return der_sequence(*(der_tlv(tag, value) for tag, value in names))


# RFC 5280 4.1.2.6: an e-mail address in the subject must also be an rfc822Name SAN
# (pkilint: pkix.subject_email_address_not_in_san, which compares them octet for octet).
@pytest.mark.parametrize("email,sans,message", [
    (b"ops@example.test", _sans((0x82, b"x.example.test")), "add 'ops@example.test' as an "
     "rfc822Name SAN"),
    (b"ops@example.test", _sans((0x81, b"other@example.test")), "is not an rfc822Name"),
    (b"ops@example.test", None, "is not an rfc822Name"),
    (b"Ops@Example.TEST", _sans((0x81, b"Ops@example.test")),
     "SANs hold the address as 'Ops@example.test' (domain in lower case)"),
], ids=["dns-san-only", "other-address", "no-san", "domain-case"])
def test_lint_refuses_subject_email_not_in_san(ec_hierarchy: Hierarchy, email: bytes,
                                               sans: bytes | None, message: str) -> None:
    tbs = build_tbs(ec_hierarchy.sub_issuer, _custom(subject=_email_subject(email),
                                                     subject_alt_names=sans))
    with pytest.raises(HsmcaError) as e:
        lint_tbs(tbs, ec_hierarchy.sub_issuer)
    assert isinstance(e.value, InvalidArgument)
    assert e.value.reason == "InvalidParameter.Subject"
    assert message in e.value.message


def test_lint_accepts_subject_email_in_san(ec_hierarchy: Hierarchy) -> None:
    tbs = build_tbs(ec_hierarchy.sub_issuer, _custom(
        subject=_email_subject(b"ops@example.test"),
        subject_alt_names=_sans((0x82, b"x.example.test"), (0x81, b"ops@example.test"))))
    lint_tbs(tbs, ec_hierarchy.sub_issuer)


def test_lint_accepts_good(ec_hierarchy: Hierarchy) -> None:
    lint_tbs(_good_tbs(ec_hierarchy), ec_hierarchy.sub_issuer)
