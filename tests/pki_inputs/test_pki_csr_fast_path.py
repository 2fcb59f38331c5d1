"""csr_fast.parse (DER walk + cryptography) agrees with parse_csr's asn1crypto path.

The fast path may only return what the asn1crypto path returns, and must defer (None) on
anything it does not handle itself, so that path's checks and error messages decide.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from service.errors import InvalidArgument
from service.pki import csr_fast
from service.pki.builder import (
    DER_NULL,
    der_bit_string,
    der_integer,
    der_octet_string,
    der_oid,
    der_sequence,
    der_tlv,
)
from service.pki.csr import decode_pem, parse_csr
from tests.der_mutations import MUTATIONS, Mutation, mutate

_KEYS: dict[str, Any] = {}


def _key(kind: str) -> Any:
    if kind not in _KEYS:
        _KEYS[kind] = (rsa.generate_private_key(65537, 2048) if kind == "rsa2048" else
                       ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1(),
                                                "p521": ec.SECP521R1()}[kind]))
    return _KEYS[kind]


def _csr(kind: str, *, hash_alg: Any = None, sans: list[x509.GeneralName] | None = None,
         cn: str | None = "host.example", extra: bool = False, pss: bool = False) -> str:
    names = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org Ü")]
    if cn is not None:
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if extra:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=True)
    kwargs = {"rsa_padding": padding.PSS(padding.MGF1(hashes.SHA256()), 32)} if pss else {}
    req = builder.sign(_key(kind), hash_alg or hashes.SHA256(), **kwargs)
    return req.public_bytes(serialization.Encoding.PEM).decode()


def _slow(text: str) -> Any:
    saved = csr_fast.parse
    csr_fast.parse = lambda der, bits: None  # type: ignore[assignment]
    try:
        return parse_csr(text, min_rsa_bits=2048)
    finally:
        csr_fast.parse = saved


CASES = {
    "rsa": lambda: _csr("rsa2048", sans=[x509.DNSName("a.example")]),
    "rsa-sha512": lambda: _csr("rsa2048", hash_alg=hashes.SHA512()),
    "p256-ip-and-dns": lambda: _csr("p256", sans=[
        x509.DNSName("a.example"), x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1"))]),
    "p384-email-uri": lambda: _csr("p384", hash_alg=hashes.SHA384(), sans=[
        x509.RFC822Name("a@example.com"),
        x509.UniformResourceIdentifier("https://example.com/x")]),
    "p521-no-cn-no-san": lambda: _csr("p521", hash_alg=hashes.SHA512(), cn=None),
    "p256-other-extension": lambda: _csr("p256", sans=[x509.DNSName("b.example")],
                                         extra=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_equals_reference(case: str) -> None:
    text = CASES[case]()
    fast = csr_fast.parse(decode_pem(text), 2048)
    assert fast is not None, "the common case takes the fast path"
    assert fast == _slow(text)
    assert fast.subject.dump() == fast.subject_der


def test_fast_path_defers_what_it_does_not_handle() -> None:
    pss = _csr("rsa2048", pss=True)
    assert csr_fast.parse(decode_pem(pss), 2048) is None
    assert parse_csr(pss, min_rsa_bits=2048) == _slow(pss)
    # Policy and signature failures: the reference path raises with its message.
    small = _csr("rsa2048")
    assert csr_fast.parse(decode_pem(small), 4096) is None
    der = bytearray(decode_pem(_csr("p256")))
    der[-5] ^= 0x01  # inside the signature
    assert csr_fast.parse(bytes(der), 2048) is None
    # A bad SAN: the message names the SAN's position, as the reference path does.
    bad_san = _csr("p256", sans=[x509.DNSName("bad_name!.example")])
    with pytest.raises(InvalidArgument) as fast_error:
        parse_csr(bad_san, min_rsa_bits=2048)
    with pytest.raises(InvalidArgument) as slow_error:
        _slow(bad_san)
    assert fast_error.value.message == slow_error.value.message
    assert "subject alternative name 1 in the CSR" in fast_error.value.message


# --- hand-built CSRs: whatever the fast path does, parse_csr answers as the reference --------

_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_SAN = "2.5.29.17"


def _outcome(text: str, fast: bool) -> tuple[Any, ...]:
    try:
        return ("accepted", parse_csr(text, min_rsa_bits=2048) if fast else _slow(text))
    except InvalidArgument as e:
        return ("refused", e.reason, e.message)
    except Exception as e:  # whatever the reference path raises, the same
        return ("raised", type(e), str(e))


def _ext(oid: str, value: bytes, critical: bytes = b"") -> bytes:
    return der_sequence(der_oid(oid), critical, der_octet_string(value))


def _ext_request(*extensions: bytes) -> bytes:
    return der_sequence(der_oid(_EXTENSION_REQUEST), der_tlv(0x31, der_sequence(*extensions)))


def _dns_san(*names: bytes) -> bytes:
    return der_sequence(*(der_tlv(0x82, n) for n in names))


def _rdn(oid: str, tag: int, value: bytes) -> bytes:
    return der_tlv(0x31, der_sequence(der_oid(oid), der_tlv(tag, value)))


_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_P256 = "1.2.840.10045.3.1.7"


def _p256_point() -> bytes:
    """The subjectPublicKey BIT STRING TLV of the P-256 test key."""
    return der_bit_string(_key("p256").public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


_SUBJECT = der_sequence(_rdn("2.5.4.6", 0x13, b"CN"), _rdn("2.5.4.3", 0x0C, b"host.example"))
_ECDSA_SHA256 = der_sequence(der_oid("1.2.840.10045.4.3.2"))


def _hand_csr(*, subject: bytes = _SUBJECT, attributes: tuple[bytes, ...] = (),
              spki: bytes | None = None, version: int = 0, unused_bits: int = 0,
              sort: bool = True) -> str:
    """A P-256 CSR assembled from DER pieces and really signed (RFC 2986 4)."""
    key = _key("p256")
    if spki is None:
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    attrs = b"".join(sorted(attributes) if sort else attributes)
    info = der_sequence(der_integer(version), subject, spki, der_tlv(0xA0, attrs))
    while True:
        signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
        if unused_bits == 0 or signature[-1] & ((1 << unused_bits) - 1) == 0:
            break  # padding bits must be zero for the DER parser to take it
    der = der_sequence(info, _ECDSA_SHA256, der_tlv(0x03, bytes((unused_bits,)) + signature))
    return _pem(der)


def _pem(der: bytes) -> str:
    import base64
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


HAND_BUILT: dict[str, Any] = {
    "plain": lambda: _hand_csr(attributes=(_ext_request(_ext(_SAN, _dns_san(b"a.example"))),)),
    "no-attributes": lambda: _hand_csr(),
    "san-critical": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, _dns_san(b"a.example"), b"\x01\x01\xff")),)),
    "critical-false-encoded": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, _dns_san(b"a.example"), b"\x01\x01\x00")),)),
    "duplicate-extension": lambda: _hand_csr(attributes=(_ext_request(
        _ext(_SAN, _dns_san(b"a.example")), _ext(_SAN, _dns_san(b"b.example"))),)),
    "two-extension-requests": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, _dns_san(b"a.example"))),
        _ext_request(_ext(_SAN, _dns_san(b"b.example"))))),
    "extension-request-two-values": lambda: _hand_csr(attributes=(der_sequence(
        der_oid(_EXTENSION_REQUEST),
        der_tlv(0x31, der_sequence(_ext(_SAN, _dns_san(b"a.example")))
                + der_sequence(_ext(_SAN, _dns_san(b"b.example"))))),)),
    "challenge-password": lambda: _hand_csr(attributes=(
        der_sequence(der_oid("1.2.840.113549.1.9.7"), der_tlv(0x31, der_tlv(0x0C, b"pw"))),
        _ext_request(_ext(_SAN, _dns_san(b"a.example"))))),
    "empty-san-value": lambda: _hand_csr(attributes=(_ext_request(_ext(_SAN, b"")),)),
    "san-not-a-sequence": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, der_tlv(0x31, der_tlv(0x82, b"a.example")))),)),
    "san-trailing-octets": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, _dns_san(b"a.example") + b"\x05\x00")),)),
    "empty-san": lambda: _hand_csr(attributes=(_ext_request(_ext(_SAN, _dns_san())),)),
    "extension-without-value": lambda: _hand_csr(attributes=(
        _ext_request(der_sequence(der_oid(_SAN))),)),
    "extension-value-not-octets": lambda: _hand_csr(attributes=(
        _ext_request(der_sequence(der_oid(_SAN), der_tlv(0x03, b"\x00" + _dns_san(b"a")))),)),
    "extension-request-empty": lambda: _hand_csr(attributes=(_ext_request(),)),
    "other-extension": lambda: _hand_csr(attributes=(_ext_request(
        _ext("2.5.29.19", der_sequence()), _ext(_SAN, _dns_san(b"a.example"))),)),
    "bad-dns-san": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, _dns_san(b"-bad.example"))),)),
    "ip-san-5-octets": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, der_sequence(der_tlv(0x87, b"\x01\x02\x03\x04\x05")))),)),
    "non-ascii-dns-san": lambda: _hand_csr(attributes=(
        _ext_request(_ext(_SAN, _dns_san("b\u00fccher.example".encode()))),)),
    "cn-bmpstring": lambda: _hand_csr(subject=der_sequence(
        _rdn("2.5.4.3", 0x1E, "host.example".encode("utf-16-be")))),
    "cn-teletex": lambda: _hand_csr(subject=der_sequence(_rdn("2.5.4.3", 0x14, b"host"))),
    "cn-printable": lambda: _hand_csr(subject=der_sequence(_rdn("2.5.4.3", 0x13, b"host"))),
    "two-cns": lambda: _hand_csr(subject=der_sequence(
        _rdn("2.5.4.3", 0x0C, b"first.example"), _rdn("2.5.4.3", 0x0C, b"last.example"))),
    "empty-rdn": lambda: _hand_csr(subject=der_sequence(der_tlv(0x31, b""),
                                                        _rdn("2.5.4.3", 0x0C, b"h"))),
    "multi-valued-rdn": lambda: _hand_csr(subject=der_sequence(der_tlv(0x31, b"".join(sorted((
        der_sequence(der_oid("2.5.4.3"), der_tlv(0x0C, b"h.example")),
        der_sequence(der_oid("2.5.4.10"), der_tlv(0x0C, b"Org")))))))),
    "atv-with-three-parts": lambda: _hand_csr(subject=der_sequence(der_tlv(0x31, der_sequence(
        der_oid("2.5.4.3"), der_tlv(0x0C, b"h"), der_tlv(0x0C, b"i"))))),
    "empty-subject": lambda: _hand_csr(subject=der_sequence()),
    "version-1": lambda: _hand_csr(version=1),
    "signature-unused-bits": lambda: _hand_csr(unused_bits=1),
    "ec-spki-extra-parameter": lambda: _hand_csr(spki=der_sequence(
        der_sequence(der_oid(_EC_PUBLIC_KEY), der_oid(_P256), DER_NULL), _p256_point())),
    "ec-spki-p384-oid-for-p256-point": lambda: _hand_csr(spki=der_sequence(
        der_sequence(der_oid(_EC_PUBLIC_KEY), der_oid("1.3.132.0.34")), _p256_point())),
    "ec-spki-no-curve": lambda: _hand_csr(spki=der_sequence(
        der_sequence(der_oid(_EC_PUBLIC_KEY)), _p256_point())),
    "ec-spki-compressed-point": lambda: _hand_csr(spki=der_sequence(
        der_sequence(der_oid(_EC_PUBLIC_KEY), der_oid(_P256)),
        der_bit_string(_key("p256").public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)))),
}


@pytest.mark.parametrize("case", sorted(HAND_BUILT))
def test_hand_built_csr_same_answer_as_reference(case: str) -> None:
    text = HAND_BUILT[case]()
    assert _outcome(text, fast=True) == _outcome(text, fast=False)


def test_hand_built_common_cases_take_the_fast_path() -> None:
    for case in ("plain", "no-attributes", "san-critical", "challenge-password",
                 "other-extension", "cn-printable", "multi-valued-rdn"):
        assert csr_fast.parse(decode_pem(HAND_BUILT[case]()), 2048) is not None, case


def test_two_common_names_are_left_to_the_reference_which_refuses() -> None:
    text = HAND_BUILT["two-cns"]()
    assert csr_fast.parse(decode_pem(text), 2048) is None
    assert _outcome(text, fast=True) == ("refused", "InvalidParameter.Csr", (
        "the CSR's subject has 2 commonName attributes ('first.example', 'last.example'); "
        "a subject has at most one"))


def test_fast_path_defers_signature_with_unused_bits() -> None:
    # A signature BIT STRING that is not octet-aligned is left to the reference path.
    text = HAND_BUILT["signature-unused-bits"]()
    assert csr_fast.parse(decode_pem(text), 2048) is None
    assert _outcome(text, fast=True) == _outcome(text, fast=False)


def test_parsed_subject_decodes_on_use() -> None:
    parsed = parse_csr(HAND_BUILT["plain"](), min_rsa_bits=2048)
    assert parsed.subject.native == {"country_name": "CN", "common_name": "host.example"}
    assert parsed.subject.dump() == parsed.subject_der == _SUBJECT


@pytest.mark.parametrize("case", sorted(HAND_BUILT))
def test_hand_built_csr_is_accepted_or_refused_never_an_internal_error(case: str) -> None:
    """Invariant 5 (docs/architecture.md): a bad CSR is InvalidParameter.Csr, never Internal."""
    outcome = _outcome(HAND_BUILT[case](), fast=True)
    assert outcome[0] in ("accepted", "refused"), outcome
    if outcome[0] == "refused":
        assert outcome[1] == "InvalidParameter.Csr", outcome


# --- generated CSRs: hypothesis draws the names, a real key signs them ------------------------

# Printable text with some non-ASCII, and DNS-like strings that are sometimes valid names: the
# fast path must hand back exactly what the reference path makes of either.
_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1,
                max_size=24)
_DNS_LIKE = st.from_regex(r"(\*\.)?([a-z0-9-]{1,10}\.){0,3}[a-z0-9-]{1,10}\.?", fullmatch=True)
_ATTRIBUTES = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME,
               NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.LOCALITY_NAME]


@st.composite
def _generated_csr(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["p256", "p384", "rsa2048"]))
    subject = [x509.NameAttribute(oid, draw(_TEXT))
               for oid in draw(st.lists(st.sampled_from(_ATTRIBUTES), max_size=4))]
    if draw(st.booleans()):
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, draw(_DNS_LIKE)))
    sans: list[x509.GeneralName] = draw(st.lists(st.one_of(
        _DNS_LIKE.map(x509.DNSName),
        st.ip_addresses().map(x509.IPAddress),
        st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.example", fullmatch=True).map(x509.RFC822Name),
    ), max_size=4))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans),
                                        critical=draw(st.booleans()))
    hash_alg = {"p384": hashes.SHA384()}.get(kind, hashes.SHA256())
    return builder.sign(_key(kind), hash_alg).public_bytes(
        serialization.Encoding.PEM).decode()


@given(_generated_csr())
def test_generated_csr_same_answer_as_reference(text: str) -> None:
    fast = csr_fast.parse(decode_pem(text), 2048)
    outcome = _outcome(text, fast=True)
    assert outcome == _outcome(text, fast=False)
    if fast is not None:
        assert outcome == ("accepted", fast)


@given(_generated_csr(), MUTATIONS)
def test_mutated_csr_same_answer_as_reference(text: str, mutations: list[Mutation]) -> None:
    # Most mutations break the signature or the DER; both paths must refuse them alike.
    der = mutate(decode_pem(text), mutations)
    mutated = _pem(der)
    assert _outcome(mutated, fast=True) == _outcome(mutated, fast=False)
