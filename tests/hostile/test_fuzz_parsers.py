"""Property tests over every parser a client's input reaches (hypothesis).

Each parser either returns a value or raises the error family's InvalidArgument, whose
message stays bounded; no other exception escapes (it would reach the client as INTERNAL).
The example budget is the active hypothesis profile's: small in ``make test``, large in
``make fuzz``.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from service import limits
from service.errors import MAX_MESSAGE_BYTES, HsmcaError, InvalidArgument
from service.kms.dn import parse_subject, parse_subject_alternative_names
from service.pki.csr import parse_csr
from service.pki.names import (
    build_name,
    normalize_dns_name,
    parse_client_sans,
    parse_domain_list,
    parse_extended_key_usages,
    parse_san,
    validate_oid,
)
from service.pki.serial import validate_custom_serial
from service.pki.validity import parse_validity
from service.private_ca.requests import page_args

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# Text that reaches the corners: controls, bidi overrides, surrogate-free astral characters,
# the separators each grammar uses, and long runs.
SPECIAL = st.sampled_from(["\x00", "\u202e", "\u200f", "\ufeff", "\U0001f600", "*", ".",
                           ",", "+", "=", "\\", "#", '"', ":", "/", "%", "@", "[", "]",
                           "xn--", "-", " ", "\n", "0", "9" * 60])
TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(SPECIAL, st.text(max_size=5)), max_size=30).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "9", "\u00e9", ".", "*."]),
              st.integers(0, 5000)),
)


def _refused_cleanly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except InvalidArgument as e:
        assert e.reason.startswith("InvalidParameter")
        assert len(e.message.encode("utf-8", "backslashreplace")) <= MAX_MESSAGE_BYTES
    except HsmcaError as e:  # another family member is a clean refusal too, never Internal
        assert e.status.name != "INTERNAL", e


@given(TEXT)
def test_dns_names(value: str) -> None:
    _refused_cleanly(lambda: normalize_dns_name(value))
    _refused_cleanly(lambda: parse_domain_list(value))


@given(st.sampled_from(["dNSName", "iPAddress", "rfc822Name", "uniformResourceIdentifier",
                        "x400Address", ""]), TEXT)
def test_san_entries(kind: str, value: str) -> None:
    _refused_cleanly(lambda: parse_san(kind, value))


@given(st.integers(-5, 10), TEXT)
def test_client_sans(kind: int, value: str) -> None:
    _refused_cleanly(lambda: parse_client_sans(kind, value))


@given(TEXT)
def test_kms_subject_and_sans(value: str) -> None:
    _refused_cleanly(lambda: parse_subject(value))
    _refused_cleanly(lambda: parse_subject(f"CN={value},OU=kms,O=hsmca,C=CN"))
    _refused_cleanly(lambda: parse_subject_alternative_names(value))


@given(st.lists(TEXT, max_size=12))
def test_kms_san_json_lists(values: list[str]) -> None:
    import json
    _refused_cleanly(lambda: parse_subject_alternative_names(json.dumps(values)))


@given(TEXT, TEXT)
def test_subject_fields(cn: str, org: str) -> None:
    _refused_cleanly(lambda: build_name(cn, org, custom_attributes=[("2.5.4.5", org)]))


@given(TEXT)
def test_oids_and_ekus(value: str) -> None:
    _refused_cleanly(lambda: validate_oid(value))
    _refused_cleanly(lambda: parse_extended_key_usages([value]))


@given(TEXT)
def test_validity_and_serials(value: str) -> None:
    _refused_cleanly(lambda: parse_validity(value, NOW))
    _refused_cleanly(lambda: validate_custom_serial(value))


@given(st.lists(st.tuples(TEXT, TEXT), max_size=25))
def test_tags(tags: list[tuple[str, str]]) -> None:
    _refused_cleanly(lambda: limits.check_tags(tags, reason="InvalidParameter.Tags"))


@given(st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1))
def test_pagination(page: int, size: int) -> None:
    _refused_cleanly(lambda: page_args(page, size))


def _valid_csr_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz.example.test")])
    ).add_extension(x509.SubjectAlternativeName([x509.DNSName("fuzz.example.test")]),
                    critical=False).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


CSR_DER = _valid_csr_der()


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@st.composite
def _mutated_der(draw: st.DrawFn) -> bytes:
    der = bytearray(CSR_DER)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, len(der) - 1))
        if action == "flip":
            der[pos] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del der[pos:pos + draw(st.integers(1, 16))]
        else:
            der[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        if not der:
            break
    return bytes(der)


@given(_mutated_der())
def test_csr_der_mutations(der: bytes) -> None:
    _refused_cleanly(lambda: parse_csr(_pem(der), min_rsa_bits=2048))


@given(TEXT)
def test_csr_text(value: str) -> None:
    _refused_cleanly(lambda: parse_csr(value, min_rsa_bits=2048))
    _refused_cleanly(lambda: parse_csr(_pem(CSR_DER) + value, min_rsa_bits=2048))
