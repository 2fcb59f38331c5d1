"""parse_csr's fast path (DER walk + cryptography) agrees with the asn1crypto path.

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

from service.errors import InvalidArgument
from service.pki import csr as csr_module
from service.pki.csr import _parse_fast, decode_pem, parse_csr

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
    saved = csr_module._parse_fast
    csr_module._parse_fast = lambda der, bits: None  # type: ignore[assignment]
    try:
        return parse_csr(text, min_rsa_bits=2048)
    finally:
        csr_module._parse_fast = saved


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
    fast = _parse_fast(decode_pem(text), 2048)
    assert fast is not None, "the common case takes the fast path"
    assert fast == _slow(text)
    assert fast.subject.dump() == fast.subject_der


def test_fast_path_defers_what_it_does_not_handle() -> None:
    pss = _csr("rsa2048", pss=True)
    assert _parse_fast(decode_pem(pss), 2048) is None
    assert parse_csr(pss, min_rsa_bits=2048) == _slow(pss)
    # Policy and signature failures: the reference path raises with its message.
    small = _csr("rsa2048")
    assert _parse_fast(decode_pem(small), 4096) is None
    der = bytearray(decode_pem(_csr("p256")))
    der[-5] ^= 0x01  # inside the signature
    assert _parse_fast(bytes(der), 2048) is None
    # A bad SAN: the message names the SAN's position, as the reference path does.
    bad_san = _csr("p256", sans=[x509.DNSName("bad_name!.example")])
    with pytest.raises(InvalidArgument) as fast_error:
        parse_csr(bad_san, min_rsa_bits=2048)
    with pytest.raises(InvalidArgument) as slow_error:
        _slow(bad_san)
    assert fast_error.value.message == slow_error.value.message
    assert "subject alternative name 1 in the CSR" in fast_error.value.message
