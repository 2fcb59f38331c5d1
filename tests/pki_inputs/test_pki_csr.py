"""parse_csr: strict PEM/DER, self-signature verification, key policy, requested SANs."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from service.errors import InvalidArgument
from service.pki.algorithms import CaAlgorithm
from service.pki.csr import ParsedCsr, parse_csr
from service.pki.names import SanType, SubjectAltName

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_KEYS: dict[str, PrivateKey] = {}


def key(kind: str) -> PrivateKey:
    """Generate each test key once per session."""
    if kind not in _KEYS:
        if kind.startswith("rsa"):
            _KEYS[kind] = rsa.generate_private_key(65537, int(kind[3:]))
        elif kind == "ed25519":
            _KEYS[kind] = ed25519.Ed25519PrivateKey.generate()
        else:
            curve = {
                "p256": ec.SECP256R1(),
                "p384": ec.SECP384R1(),
                "p521": ec.SECP521R1(),
                "k256": ec.SECP256K1(),
            }[kind]
            _KEYS[kind] = ec.generate_private_key(curve)
    return _KEYS[kind]


def make_csr(
    kind: str = "p256",
    cn: str | None = "test.example.com",
    sans: list[x509.GeneralName] | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    pss: bool = False,
) -> str:
    """A PEM CSR made with cryptography."""
    private_key = key(kind)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if kind == "ed25519":
        request = builder.sign(private_key, None)  # type: ignore[arg-type]
    elif pss:
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        request = builder.sign(private_key, hashes.SHA256(), rsa_padding=pad)  # type: ignore[arg-type]
    else:
        request = builder.sign(private_key, hash_alg or hashes.SHA256())  # type: ignore[arg-type]
    return request.public_bytes(serialization.Encoding.PEM).decode()


def pem(der: bytes, label: str = "CERTIFICATE REQUEST") -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def der_of(text: str) -> bytes:
    lines = [line for line in text.strip().splitlines() if not line.startswith("-----")]
    return base64.b64decode("".join(lines))


def sm2_csr(tamper: bool = False) -> str:
    """An SM2 CSR signed SM3withSM2 by tongsuopy (asn1crypto lacks an SM2 CSR builder)."""
    from tongsuopy.crypto import hashes as sm_hashes
    from tongsuopy.crypto import serialization as sm_serialization
    from tongsuopy.crypto.asymciphers import ec as sm_ec

    private_key = sm_ec.generate_private_key(sm_ec.SM2())
    spki = private_key.public_key().public_bytes(
        sm_serialization.Encoding.DER, sm_serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": asn1_x509.Name.build({"common_name": "sm2.example.com"}),
            "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki),
            "attributes": [],
        }
    )
    signature = private_key.sign(info.dump(), sm_ec.ECDSA(sm_hashes.SM3()))
    if tamper:
        info = asn1_csr.CertificationRequestInfo(
            {
                "version": "v1",
                "subject": asn1_x509.Name.build({"common_name": "sm2.example.org"}),
                "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki),
                "attributes": [],
            }
        )
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": "sm3_sm2"},
            "signature": signature,
        }
    )
    return pem(request.dump())


# --- accepted ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "extra", "family", "bits", "curve", "sig", "alg"),
    [
        ("rsa2048", {}, "RSA", 2048, None, "sha256_rsa", CaAlgorithm.RSA_2048),
        ("rsa3072", {"hash_alg": hashes.SHA384()}, "RSA", 3072, None, "sha384_rsa", None),
        ("rsa2048", {"pss": True}, "RSA", 2048, None, "rsassa_pss", CaAlgorithm.RSA_2048),
        ("p256", {}, "ECC", 256, "secp256r1", "sha256_ecdsa", CaAlgorithm.ECC_256),
        (
            "p384",
            {"hash_alg": hashes.SHA384()},
            "ECC",
            384,
            "secp384r1",
            "sha384_ecdsa",
            CaAlgorithm.ECC_384,
        ),
        (
            "p521",
            {"hash_alg": hashes.SHA512()},
            "ECC",
            521,
            "secp521r1",
            "sha512_ecdsa",
            CaAlgorithm.ECC_512,
        ),
    ],
)
def test_accepts(kind, extra, family, bits, curve, sig, alg) -> None:
    text = make_csr(kind, **extra)
    parsed = parse_csr(text, min_rsa_bits=2048)
    assert isinstance(parsed, ParsedCsr)
    assert (parsed.key_family, parsed.key_bits, parsed.curve) == (family, bits, curve)
    assert parsed.signature_algorithm == sig
    assert parsed.algorithm is alg
    assert parsed.der == der_of(text)
    assert parsed.common_name == "test.example.com"
    assert parsed.subject.native == {"organization_name": "Acme", "common_name": "test.example.com"}
    assert parsed.subject_der == parsed.subject.dump()
    expected_spki = (
        key(kind)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert parsed.public_key_info == expected_spki
    assert parsed.requested_sans == ()


def test_rsa_1024_allowed_when_policy_allows() -> None:
    parsed = parse_csr(make_csr("rsa1024"), min_rsa_bits=1024)
    assert parsed.key_bits == 1024
    assert parsed.algorithm is CaAlgorithm.RSA_1024


def test_sm2_csr_verified_with_sm3() -> None:
    parsed = parse_csr(sm2_csr(), min_rsa_bits=2048)
    assert (parsed.key_family, parsed.curve, parsed.key_bits) == ("SM2", "sm2p256v1", 256)
    assert parsed.signature_algorithm == "sm3_sm2"
    assert parsed.algorithm is CaAlgorithm.SM2_256
    assert parsed.common_name == "sm2.example.com"


def test_sm2_tampered_refused() -> None:
    with pytest.raises(InvalidArgument, match="does not verify") as e:
        parse_csr(sm2_csr(tamper=True), min_rsa_bits=2048)
    assert e.value.reason == "InvalidParameter.Csr"


GOLDEN = Path(__file__).parent / "golden"


def test_sm2_openssl_default_id_accepted() -> None:
    parsed = parse_csr((GOLDEN / "sm2-openssl-distid.csr").read_text(), min_rsa_bits=2048)
    assert (parsed.key_family, parsed.signature_algorithm) == ("SM2", "sm3_sm2")
    assert parsed.common_name == "sm2-distid.example.com"


def test_sm2_openssl_empty_id_refused_with_hint() -> None:
    with pytest.raises(InvalidArgument, match="distid:1234567812345678"):
        parse_csr((GOLDEN / "sm2-openssl-noid.csr").read_text(), min_rsa_bits=2048)


def test_no_common_name() -> None:
    assert parse_csr(make_csr(cn=None), min_rsa_bits=2048).common_name is None


@pytest.mark.parametrize(
    "transform",
    [
        lambda t: t.replace("\n", "\r\n"),
        lambda t: "\n\n  " + t + "\n\n",
        lambda t: t.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
        # The API docs' example: the whole PEM on one line, separated by spaces.
        lambda t: " ".join(t.split("\n")),
    ],
    ids=["crlf", "surrounding-whitespace", "new-label", "one-line"],
)
def test_pem_variants_accepted(transform: Callable[[str], str]) -> None:
    text = make_csr()
    assert parse_csr(transform(text), min_rsa_bits=2048).der == der_of(text)


def test_requested_sans_extracted() -> None:
    sans = [
        x509.DNSName("WWW.Example.com"),
        x509.DNSName("*.example.com"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.RFC822Name("ops@example.com"),
        x509.UniformResourceIdentifier("spiffe://example.com/workload"),
    ]
    parsed = parse_csr(make_csr(sans=sans), min_rsa_bits=2048)
    assert parsed.requested_sans == (
        SubjectAltName(SanType.DNS_NAME, "www.example.com"),
        SubjectAltName(SanType.DNS_NAME, "*.example.com"),
        SubjectAltName(SanType.IP_ADDRESS, "10.0.0.1"),
        SubjectAltName(SanType.IP_ADDRESS, "2001:db8::1"),
        SubjectAltName(SanType.RFC822_NAME, "ops@example.com"),
        SubjectAltName(SanType.URI, "spiffe://example.com/workload"),
    )


# --- refused -----------------------------------------------------------------------------


def _tampered() -> str:
    text = make_csr(cn="tamper-me.example.com")
    der = der_of(text).replace(b"tamper-me", b"tamper-mf")
    return pem(der)


def _non_der() -> str:
    der = der_of(make_csr())
    assert der[0] == 0x30 and der[1] == 0x81  # P-256 CSRs are 128..255 octets long
    return pem(b"\x30\x82\x00" + der[2:])  # a non-minimal length: BER, not DER


def _sha1_signed() -> str:
    """cryptography no longer signs CSRs with SHA-1: re-sign a P-256 CSR by hand."""
    request = asn1_csr.CertificationRequest.load(der_of(make_csr("p256")))
    info = request["certification_request_info"]
    signature = key("p256").sign(info.dump(), ec.ECDSA(hashes.SHA1()))  # type: ignore[union-attr,call-arg]
    resigned = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": "sha1_ecdsa"},
            "signature": signature,
        }
    )
    return pem(resigned.dump())


def _subject_csr(name: x509.Name) -> str:
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(
        key("p256"), hashes.SHA256())  # type: ignore[arg-type]
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _two_common_names() -> str:
    """CN=evil.example.net then CN=alice: the CN must not be a choice between them."""
    return _subject_csr(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.example.net"),
                                   x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))


def _two_common_names_in_one_rdn() -> str:
    return _subject_csr(x509.Name([x509.RelativeDistinguishedName([
        x509.NameAttribute(NameOID.COMMON_NAME, "evil.example.net"),
        x509.NameAttribute(NameOID.COMMON_NAME, "alice")])]))


def _two_blocks() -> str:
    return make_csr() + make_csr("p384")


def _bad_signature_bits() -> str:
    der = bytearray(der_of(make_csr("rsa2048")))
    der[-1] ^= 0x01  # last octet of the RSA signature
    return pem(bytes(der))


REFUSED: list[tuple[str, Callable[[], str], str]] = [
    ("empty", lambda: "", "not PEM"),
    ("garbage", lambda: "hello world", "not PEM"),
    ("base64-no-armour", lambda: base64.b64encode(der_of(make_csr())).decode(), "not PEM"),
    ("trailing-data", lambda: make_csr() + "extra\n", "trailing data after the PEM block"),
    ("trailing-junk-line", lambda: make_csr() + "-----\n", "trailing data after the PEM block"),
    ("leading-data", lambda: "subject=foo\n" + make_csr(), "unexpected data before"),
    ("two-blocks", _two_blocks, "contains 2 PEM blocks"),
    (
        "certificate-label",
        lambda: make_csr().replace("CERTIFICATE REQUEST", "CERTIFICATE"),
        "'CERTIFICATE', not a 'CERTIFICATE REQUEST'",
    ),
    (
        "private-key",
        lambda: (
            key("p256")
            .private_bytes(  # type: ignore[union-attr]
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        ),
        "'PRIVATE KEY', not a 'CERTIFICATE REQUEST'",
    ),
    ("no-end", lambda: make_csr().split("-----END")[0], "no '-----END CERTIFICATE REQUEST-----'"),
    (
        "mismatched-end",
        lambda: make_csr().replace("END CERTIFICATE REQUEST", "END X509 CRL"),
        "ends as 'X509 CRL'",
    ),
    ("bad-base64", lambda: pem(b"x").replace("eA==", "e!A="), "not valid base64"),
    ("bad-padding", lambda: pem(b"xy").replace("eHk=", "eHk"), "not valid base64"),
    (
        "headers",
        lambda: make_csr().replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
        "headers",
    ),
    ("empty-body", lambda: pem(b""), "empty"),
    ("not-asn1", lambda: pem(b"hello world"), "not a DER-encoded PKCS#10 request"),
    ("certificate-der", lambda: pem(der_of(make_csr())[:40]), "not a DER-encoded PKCS#10 request"),
    ("not-der", _non_der, "not a DER-encoded PKCS#10 request"),
    ("tampered-subject", _tampered, "does not verify"),
    ("tampered-signature", _bad_signature_bits, "does not verify"),
    ("rsa-1024", lambda: make_csr("rsa1024"), "RSA key is 1024 bits; the minimum is 2048 bits"),
    ("sha1", _sha1_signed, "signed with SHA1"),
    ("secp256k1", lambda: make_csr("k256"), "unsupported elliptic curve 'secp256k1'"),
    ("ed25519", lambda: make_csr("ed25519"), "unsupported public key algorithm 'ed25519'"),
    (
        "bad-dns-san",
        lambda: make_csr(sans=[x509.DNSName("bad_name.example.com")]),
        "subject alternative name 1 in the CSR: DNS name 'bad_name.example.com' has an invalid",
    ),
    (
        "dirname-san",
        lambda: make_csr(sans=[x509.DirectoryName(x509.Name([]))]),
        "type 'directory_name' is not supported",
    ),
    ("too-long", lambda: "x" * 70000, "at most 65536"),
    ("two-common-names", _two_common_names,
     "2 commonName attributes ('evil.example.net', 'alice'); a subject has at most one"),
    ("two-common-names-one-rdn", _two_common_names_in_one_rdn, "2 commonName attributes"),
]


@pytest.mark.parametrize(("case", "make", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: str, make: Callable[[], str], message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_csr(make(), min_rsa_bits=2048)
    assert e.value.reason == "InvalidParameter.Csr"
    assert message in e.value.message


def test_private_key_never_echoed() -> None:
    text = (
        key("p256")
        .private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(InvalidArgument) as e:
        parse_csr(text, min_rsa_bits=2048)
    body = text.splitlines()[1]
    assert body[:16] not in e.value.message
