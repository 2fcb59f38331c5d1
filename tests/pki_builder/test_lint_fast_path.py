"""lint_fast.is_clean accepts what the builder emits and nothing the reference _lint refuses.

The walk remembers the decoding of extensions that repeat per CA and profile, and compares
the subjectKeyIdentifier with the encoding it expects; every other form is decoded. These
tests pin: every kind of TBS the builder emits is clean without the asn1crypto fallback;
a TBS with one extension or field altered is not clean and lint_tbs raises; and remembered
answers never leak from one extension or issuer to another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import assume, given
from hypothesis import strategies as st
from pkib_support import NOW, Hierarchy, ec_signer, name, rsa_signer

from service.errors import HsmcaError
from service.pki import lint as lint_module
from service.pki import lint_fast
from service.pki.builder import (
    DER_TRUE,
    IssuanceRequest,
    build_tbs,
    der_bit_string,
    der_octet_string,
    der_oid,
    der_sequence,
    der_tlv,
    key_identifier,
    read_tlv,
)
from service.pki.lint import LintError, lint_tbs
from service.pki.names import build_name
from service.pki.profiles import KeyUsage, ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from tests.der_mutations import MUTATIONS, Mutation, mutate

_EC = ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA)
_RSA = rsa_signer()
_SANS = ax509.GeneralNames([ax509.GeneralName("dns_name", "x.example.test"),
                            ax509.GeneralName("ip_address", "192.0.2.1")])


def _request(**kw: object) -> IssuanceRequest:
    base = IssuanceRequest(
        profile=ProfileKind.SERVER, subject=name("x.example.test"),
        public_key_info=_EC.public_key_info, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=30), subject_alt_names=_SANS)
    return replace(base, **kw)  # type: ignore[arg-type]


REQUESTS: dict[str, Callable[[], IssuanceRequest]] = {
    "server-ec": lambda: _request(),
    "server-rsa-crl": lambda: _request(public_key_info=_RSA.public_key_info, enable_crl=True),
    "client": lambda: _request(profile=ProfileKind.CLIENT),
    "client-no-san": lambda: _request(profile=ProfileKind.CLIENT, subject_alt_names=None),
    "custom-criticals": lambda: _request(
        profile=ProfileKind.CUSTOM, key_usage=KeyUsage(digital_signature=True,
                                                       key_agreement=True),
        extended_key_usages=("serverAuth", "clientAuth", "1.3.6.1.4.1.311.20.2.2"),
        criticals=("KeyUsage", "ExtendedKeyUsages", "SubjectAlternativeNames")),
    "custom-no-ku-no-eku": lambda: _request(profile=ProfileKind.CUSTOM, key_usage=None),
    "custom-empty-subject": lambda: _request(profile=ProfileKind.CUSTOM, subject=b"\x30\x00",
                                             key_usage=KeyUsage(digital_signature=True)),
    "custom-uri-email-sans": lambda: _request(
        profile=ProfileKind.CLIENT, subject_alt_names=ax509.GeneralNames([
            ax509.GeneralName("rfc822_name", "a@example.test"),
            ax509.GeneralName("uniform_resource_identifier", "https://example.test/a")])),
    "sub-ca": lambda: _request(profile=ProfileKind.SUB_CA, subject_alt_names=None),
    # Every value at its RFC 5280 Appendix A upper bound, counted in characters (a CJK CN
    # of 64 characters is 192 UTF-8 octets), and attributes in their own syntax.
    "custom-subject-at-bounds": lambda: _request(
        profile=ProfileKind.CUSTOM, key_usage=KeyUsage(digital_signature=True),
        subject=build_name("字" * 64, "o" * 64, "u" * 64, "CN", "省" * 128, "l" * 128, [
            ("2.5.4.5", "S" * 64), ("1.3.6.1.5.5.7.9.4", "US"), ("1.3.6.1.5.5.7.9.3", "F"),
            ("0.9.2342.19200300.100.1.25", "a" * 63), ("2.5.4.17", "p" * 40)])),
    # RFC 5280 4.1.2.6: an emailAddress in the subject next to the same rfc822Name SAN.
    "custom-email-in-subject-and-san": lambda: _request(
        profile=ProfileKind.CUSTOM, key_usage=KeyUsage(digital_signature=True),
        subject=build_name("mail", custom_attributes=[
            ("1.2.840.113549.1.9.1", "ops@example.test"),
            ("1.2.840.113549.1.9.1", "Second@example.test")]),
        subject_alt_names=ax509.GeneralNames([
            ax509.GeneralName("dns_name", "x.example.test"),
            ax509.GeneralName("rfc822_name", "Second@example.test"),
            ax509.GeneralName("rfc822_name", "ops@example.test")])),
}


def _issuer(hierarchy: Hierarchy, case: str):  # type: ignore[no-untyped-def]
    # A sub CA under the root (pathLen unconstrained) for "sub-ca"; the sub CA otherwise.
    return hierarchy.root_issuer if case == "sub-ca" else hierarchy.sub_issuer


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_builder_output_is_clean_without_fallback(hierarchy: Hierarchy, case: str) -> None:
    issuer = _issuer(hierarchy, case)
    tbs = build_tbs(issuer, REQUESTS[case]())
    for _ in range(2):  # the second time from the remembered extension decodings
        assert lint_fast.is_clean(tbs, issuer) is True
        lint_module._lint(tbs, issuer)  # the reference checks agree
        lint_tbs(tbs, issuer)


# --- altered TBSCertificates ---------------------------------------------------------------


def _fields(tbs: bytes) -> list[bytes]:
    _, pos, end = read_tlv(tbs)
    out = []
    while pos < end:
        _, _, nxt = read_tlv(tbs, pos)
        out.append(tbs[pos:nxt])
        pos = nxt
    return out


def _extensions(tbs: bytes) -> list[bytes]:
    explicit = _fields(tbs)[-1]
    _, seq, _ = read_tlv(explicit)  # [3] EXPLICIT holds exactly the SEQUENCE OF Extension
    return _fields(explicit[seq:])


def _with_extensions(tbs: bytes, exts: list[bytes]) -> bytes:
    return der_sequence(*_fields(tbs)[:-1], der_tlv(0xA3, der_sequence(*exts)))


def _with_field(tbs: bytes, index: int, value: bytes) -> bytes:
    fields = _fields(tbs)
    fields[index] = value
    return der_sequence(*fields)


def _subject(*atvs: tuple[str, int, bytes]) -> bytes:
    """A Name of one-attribute RDNs (OID, string tag, value octets)."""
    return der_sequence(*(der_tlv(0x31, der_sequence(der_oid(oid), der_tlv(tag, value)))
                          for oid, tag, value in atvs))


def _oid_of(ext: bytes) -> bytes:
    _, start, _ = read_tlv(ext)
    _, s, e = read_tlv(ext, start)
    return ext[s:e]


def _replace_ext(oid: str, new: Callable[[bytes], bytes | None]) -> Callable[[bytes], bytes]:
    """Replace (or drop, for None) the extension with ``oid``."""
    target = der_oid(oid)[2:]

    def alter(tbs: bytes) -> bytes:
        exts = []
        for ext in _extensions(tbs):
            if _oid_of(ext) == target:
                replacement = new(ext)
                if replacement is not None:
                    exts.append(replacement)
            else:
                exts.append(ext)
        return _with_extensions(tbs, exts)
    return alter


def _ext(oid: str, value: bytes, critical: bool = False) -> bytes:
    return der_sequence(der_oid(oid), DER_TRUE if critical else b"", der_octet_string(value))


_SKI, _AKI, _BC, _KU, _EKU, _SAN = ("2.5.29.14", "2.5.29.35", "2.5.29.19", "2.5.29.15",
                                    "2.5.29.37", "2.5.29.17")
_OTHER_KEY_ID = key_identifier(_RSA.public_key_info)


ALTERED: dict[str, Callable[[bytes], bytes]] = {
    "ski-critical": _replace_ext(_SKI, lambda e: _ext(
        _SKI, der_octet_string(key_identifier(_EC.public_key_info)), critical=True)),
    "ski-other-key": _replace_ext(_SKI, lambda e: _ext(_SKI, der_octet_string(_OTHER_KEY_ID))),
    "ski-short": _replace_ext(_SKI, lambda e: _ext(_SKI, der_octet_string(b"\x01" * 8))),
    "ski-trailing-octets": _replace_ext(_SKI, lambda e: _ext(
        _SKI, der_octet_string(key_identifier(_EC.public_key_info)) + b"\x05\x00")),
    "ski-missing": _replace_ext(_SKI, lambda e: None),
    "aki-critical": _replace_ext(_AKI, lambda e: _ext(
        _AKI, e[e.index(b"\x04\x18") + 2:], critical=True)),
    "aki-other-key": _replace_ext(_AKI, lambda e: _ext(
        _AKI, der_sequence(der_tlv(0x80, _OTHER_KEY_ID)))),
    "aki-missing": _replace_ext(_AKI, lambda e: None),
    "bc-ca-false-encoded": _replace_ext(_BC, lambda e: _ext(
        _BC, der_sequence(b"\x01\x01\x00"), critical=True)),
    "bc-path-len-without-ca": _replace_ext(_BC, lambda e: _ext(
        _BC, der_sequence(b"\x02\x01\x00"), critical=True)),
    "bc-ca-true-on-leaf": _replace_ext(_BC, lambda e: _ext(
        _BC, der_sequence(DER_TRUE), critical=True)),
    "bc-missing": _replace_ext(_BC, lambda e: None),
    "ku-trailing-zero-bits": _replace_ext(_KU, lambda e: _ext(
        _KU, der_bit_string(b"\x80\x00", 7), critical=True)),
    "ku-key-cert-sign-on-leaf": _replace_ext(_KU, lambda e: _ext(
        _KU, der_bit_string(b"\x84", 2), critical=True)),
    "ku-key-encipherment-on-ec": _replace_ext(_KU, lambda e: _ext(
        _KU, der_bit_string(b"\xa0", 5), critical=True)),
    # keyAgreement, encipherOnly and decipherOnly (bits 4, 7, 8): RFC 5280 4.2.1.3.
    "ku-encipher-and-decipher-only": _replace_ext(_KU, lambda e: _ext(
        _KU, der_bit_string(b"\x09\x80", 7), critical=True)),
    "eku-empty": _replace_ext(_EKU, lambda e: _ext(_EKU, der_sequence())),
    "eku-any-critical": _replace_ext(_EKU, lambda e: _ext(
        _EKU, der_sequence(der_oid("2.5.29.37.0")), critical=True)),
    "eku-code-signing-without-digital-signature": lambda tbs: _replace_ext(_KU, lambda e: _ext(
        _KU, der_bit_string(b"\x08", 3), critical=True))(_replace_ext(_EKU, lambda e: _ext(
            _EKU, der_sequence(der_oid("1.3.6.1.5.5.7.3.3"))))(tbs)),
    "san-empty": _replace_ext(_SAN, lambda e: _ext(_SAN, der_sequence())),
    "san-ip-5-octets": _replace_ext(_SAN, lambda e: _ext(
        _SAN, der_sequence(der_tlv(0x87, b"\x01\x02\x03\x04\x05")))),
    "san-non-ascii-dns": _replace_ext(_SAN, lambda e: _ext(
        _SAN, der_sequence(der_tlv(0x82, "b\u00fccher.test".encode())))),
    "duplicate-aki": lambda tbs: _with_extensions(
        tbs, [*_extensions(tbs), next(e for e in _extensions(tbs)
                                      if _oid_of(e) == der_oid(_AKI)[2:])]),
    "unknown-extension-not-decodable": lambda tbs: _with_extensions(
        tbs, [*_extensions(tbs), _ext("2.5.29.31", b"\x30\x03\x02\x01")]),
    "issuer-name-other": lambda tbs: _with_field(tbs, 3, name("someone else").dump()),
    "validity-reversed": lambda tbs: _with_field(tbs, 4, der_sequence(
        *reversed(_fields(_fields(tbs)[4])))),
    "subject-teletex": lambda tbs: _with_field(tbs, 5, der_sequence(der_tlv(
        0x31, der_sequence(der_oid("2.5.4.3"), der_tlv(0x14, b"x"))))),
    "subject-country-utf8": lambda tbs: _with_field(tbs, 5, der_sequence(der_tlv(
        0x31, der_sequence(der_oid("2.5.4.6"), der_tlv(0x0C, b"CN"))))),
    # The commonName RDN is checked on every certificate, the others remembered by bytes.
    "subject-cn-65": lambda tbs: _with_field(tbs, 5, _subject(("2.5.4.3", 0x0C, b"c" * 65))),
    "subject-cn-empty": lambda tbs: _with_field(tbs, 5, _subject(("2.5.4.3", 0x0C, b""))),
    "subject-o-65": lambda tbs: _with_field(tbs, 5, _subject(
        ("2.5.4.10", 0x0C, b"o" * 65), ("2.5.4.3", 0x0C, b"x"))),
    "subject-serial-number-utf8": lambda tbs: _with_field(tbs, 5, _subject(
        ("2.5.4.5", 0x0C, b"1"), ("2.5.4.3", 0x0C, b"x"))),
    # 4.1.2.6: the base request's SAN holds a dNSName and an iPAddress, no rfc822Name.
    "subject-email-not-in-san": lambda tbs: _with_field(tbs, 5, _subject(
        ("2.5.4.3", 0x0C, b"x"), ("1.2.840.113549.1.9.1", 0x16, b"ops@example.test"))),
}


@pytest.mark.parametrize("case", sorted(ALTERED))
def test_altered_tbs_is_not_clean(ec_hierarchy: Hierarchy, case: str) -> None:
    issuer = ec_hierarchy.sub_issuer
    good = build_tbs(issuer, _request())
    assert lint_fast.is_clean(good, issuer) is True  # the remembered parts are warm
    bad = ALTERED[case](good)
    assert bad != good
    assert lint_fast.is_clean(bad, issuer) is False
    with pytest.raises(HsmcaError):
        lint_tbs(bad, issuer)
    # The good TBS is still clean afterwards: nothing remembered from the bad one.
    assert lint_fast.is_clean(good, issuer) is True


def test_internal_findings_are_lint_errors(ec_hierarchy: Hierarchy) -> None:
    issuer = ec_hierarchy.sub_issuer
    good = build_tbs(issuer, _request())
    with pytest.raises(LintError):
        lint_tbs(ALTERED["aki-other-key"](good), issuer)


def test_remembered_aki_is_per_issuer(ec_hierarchy: Hierarchy,
                                      rsa_hierarchy: Hierarchy) -> None:
    """The AKI decoding is remembered by its bytes; the comparison is with each issuer."""
    ec_tbs = build_tbs(ec_hierarchy.sub_issuer, _request())
    rsa_tbs = build_tbs(rsa_hierarchy.sub_issuer, _request())
    assert lint_fast.is_clean(ec_tbs, ec_hierarchy.sub_issuer) is True
    assert lint_fast.is_clean(rsa_tbs, rsa_hierarchy.sub_issuer) is True
    # A TBS carrying the EC sub CA's AKI but checked against the RSA sub CA.
    aki = next(e for e in _extensions(ec_tbs) if _oid_of(e) == der_oid(_AKI)[2:])
    mixed = _replace_ext(_AKI, lambda e: aki)(rsa_tbs)
    assert lint_fast.is_clean(mixed, rsa_hierarchy.sub_issuer) is False
    with pytest.raises(LintError):
        lint_tbs(mixed, rsa_hierarchy.sub_issuer)


# --- generated inputs (hypothesis) ------------------------------------------------------------

_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=64)
_DNS = st.from_regex(r"(\*\.)?([a-z0-9-]{1,12}\.){1,3}example\.test", fullmatch=True)
_SAN_ENTRY = st.one_of(_DNS.map(lambda v: ax509.GeneralName("dns_name", v)),
                       st.ip_addresses().map(
                           lambda v: ax509.GeneralName("ip_address", str(v))))


@st.composite
def _generated_request(draw: st.DrawFn) -> IssuanceRequest:
    profile = draw(st.sampled_from([ProfileKind.SERVER, ProfileKind.CLIENT, ProfileKind.CUSTOM]))
    try:
        subject = build_name(draw(_TEXT), draw(st.none() | _TEXT), draw(st.none() | _TEXT),
                             draw(st.sampled_from([None, "CN", "DE", "US"])), None,
                             draw(st.none() | _TEXT))
    except HsmcaError:
        assume(False)
    sans = draw(st.lists(_SAN_ENTRY, max_size=4))
    return _request(
        profile=profile, subject=subject,
        public_key_info=draw(st.sampled_from([_EC, _RSA])).public_key_info,
        not_after=NOW + timedelta(days=draw(st.integers(1, 3650))),
        subject_alt_names=ax509.GeneralNames(sans) if sans else None,
        key_usage=KeyUsage(digital_signature=True) if profile == ProfileKind.CUSTOM else None)


@given(_generated_request())
def test_generated_requests_are_clean_both_ways(ec_hierarchy: Hierarchy,
                                               request_: IssuanceRequest) -> None:
    issuer = ec_hierarchy.sub_issuer
    try:
        tbs = build_tbs(issuer, request_)
    except HsmcaError:
        assume(False)  # a request the builder refuses never reaches the lint
    lint_module._lint(tbs, issuer)
    assert lint_fast.is_clean(tbs, issuer) is True


@given(_generated_request(), MUTATIONS)
def test_a_mutated_tbs_is_clean_only_if_the_reference_passes_it(
        ec_hierarchy: Hierarchy, request_: IssuanceRequest, mutations: list[Mutation]) -> None:
    issuer = ec_hierarchy.sub_issuer
    try:
        tbs = build_tbs(issuer, request_)
    except HsmcaError:
        assume(False)
    mutated = mutate(tbs, mutations)
    if lint_fast.is_clean(mutated, issuer):
        lint_module._lint(mutated, issuer)  # raises if the reference refuses it
    else:
        # Refused with the lint's own errors, never another exception (which would end
        # the request as an internal error).
        with contextlib.suppress(HsmcaError):
            lint_tbs(mutated, issuer)
