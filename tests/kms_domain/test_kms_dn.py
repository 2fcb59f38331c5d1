"""KMS Subject (RFC 4514 DN) and SubjectAlternativeNames parsing: table-driven cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography import x509 as cx509
from kms_test_support import SoftwareSigner, openssl

from service.errors import InvalidArgument
from service.kms.csr import build_csr
from service.kms.dn import (
    MAX_SUBJECT_ALTERNATIVE_NAMES,
    format_subject,
    parse_subject,
    parse_subject_alternative_names,
)
from service.pki.signer import SignatureAlgorithm

SUBJECT = "InvalidParameter.Subject"
SANS = "InvalidParameter.SubjectAlternativeNames"


def _encoded(name: x509.Name) -> list[tuple[str, str, str]]:
    """(OID, string type, value) per RDN in encoded order."""
    out = []
    for rdn in name.chosen:
        assert len(rdn) == 1
        ava = rdn[0]
        out.append((ava["type"].dotted, ava["value"].name, ava["value"].native))
    return out


CN, OU, ORG, C, ST, L = "2.5.4.3", "2.5.4.11", "2.5.4.10", "2.5.4.6", "2.5.4.8", "2.5.4.7"
P, U = "printable_string", "utf8_string"

GOOD = [
    # (id, Subject, encoded RDNs in RDNSequence order, format_subject output)
    (
        "plain",
        "CN=userName,OU=kms,O=aliyun,C=CN",
        [(C, P, "CN"), (ORG, U, "aliyun"), (OU, U, "kms"), (CN, U, "userName")],
        "CN=userName,OU=kms,O=aliyun,C=CN",
    ),
    (
        "escaped comma",
        r"CN=www,OU=IT,O=Acme\, Inc.,C=US",
        [(C, P, "US"), (ORG, U, "Acme, Inc."), (OU, U, "IT"), (CN, U, "www")],
        r"CN=www,OU=IT,O=Acme\, Inc.,C=US",
    ),
    (
        "hex escape of UTF-8 bytes",
        r"CN=Caf\C3\A9,OU=a\2Cb,O=o,C=FR",
        [(C, P, "FR"), (ORG, U, "o"), (OU, U, "a,b"), (CN, U, "Café")],
        r"CN=Café,OU=a\,b,O=o,C=FR",
    ),
    (
        "every special escaped",
        r"CN=\"q\"\+\;\<\>\\\=,OU=k,O=o,C=CN",
        [(C, P, "CN"), (ORG, U, "o"), (OU, U, "k"), (CN, U, '"q"+;<>\\=')],
        r"CN=\"q\"\+\;\<\>\\=,OU=k,O=o,C=CN",
    ),
    (
        "leading '#' and leading/trailing spaces escaped",
        r"CN=\#1,OU=\ pad\ ,O=o,C=CN",
        [(C, P, "CN"), (ORG, U, "o"), (OU, U, " pad "), (CN, U, "#1")],
        r"CN=\#1,OU=\ pad\ ,O=o,C=CN",
    ),
    (
        "ST and L present, other order",
        "C=CN,ST=Zhejiang,L=Hangzhou,O=aliyun,OU=kms,CN=userName",
        [
            (CN, U, "userName"),
            (OU, U, "kms"),
            (ORG, U, "aliyun"),
            (L, U, "Hangzhou"),
            (ST, U, "Zhejiang"),
            (C, P, "CN"),
        ],
        "C=CN,ST=Zhejiang,L=Hangzhou,O=aliyun,OU=kms,CN=userName",
    ),
    (
        "type names are case-insensitive; spaces around separators ignored (RFC 2253 4)",
        "cn = userName , ou=kms,  o=aliyun ,c=CN",
        [(C, P, "CN"), (ORG, U, "aliyun"), (OU, U, "kms"), (CN, U, "userName")],
        "CN=userName,OU=kms,O=aliyun,C=CN",
    ),
    (
        "dotted OIDs",
        "2.5.4.3=n,2.5.4.11=u,2.5.4.10=o,2.5.4.6=DE",
        [(C, P, "DE"), (ORG, U, "o"), (OU, U, "u"), (CN, U, "n")],
        "CN=n,OU=u,O=o,C=DE",
    ),
    (
        "unescaped '=' inside a value is allowed by RFC 4514",
        "CN=a=b,OU=k,O=o,C=CN",
        [(C, P, "CN"), (ORG, U, "o"), (OU, U, "k"), (CN, U, "a=b")],
        "CN=a=b,OU=k,O=o,C=CN",
    ),
    (
        "upper bounds exactly",
        f"CN={'c' * 64},OU={'u' * 64},O={'o' * 64},L={'l' * 128},ST={'s' * 128},C=CN",
        [
            (C, P, "CN"),
            (ST, U, "s" * 128),
            (L, U, "l" * 128),
            (ORG, U, "o" * 64),
            (OU, U, "u" * 64),
            (CN, U, "c" * 64),
        ],
        f"CN={'c' * 64},OU={'u' * 64},O={'o' * 64},L={'l' * 128},ST={'s' * 128},C=CN",
    ),
    (
        "non-ASCII counted in characters",
        "CN=" + "中" * 64 + ",OU=k,O=o,C=CN",
        [(C, P, "CN"), (ORG, U, "o"), (OU, U, "k"), (CN, U, "中" * 64)],
        "CN=" + "中" * 64 + ",OU=k,O=o,C=CN",
    ),
]


@pytest.mark.parametrize(
    ("dn", "encoded", "formatted"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD]
)
def test_parse_subject_good(dn: str, encoded: list[tuple[str, str, str]], formatted: str) -> None:
    name = parse_subject(dn)
    assert _encoded(name) == encoded
    assert format_subject(name) == formatted
    # The formatted string parses back to the same DER.
    assert parse_subject(formatted).dump() == name.dump()


BAD = [
    # (id, Subject, a fragment of the message)
    ("empty", "", "is empty"),
    ("blank", "   ", "is empty"),
    ("missing CN", "OU=kms,O=aliyun,C=CN", "missing required attribute CN"),
    ("missing OU", "CN=a,O=aliyun,C=CN", "missing required attribute OU"),
    ("missing O", "CN=a,OU=kms,C=CN", "missing required attribute O "),
    ("missing C", "CN=a,OU=kms,O=aliyun", "missing required attribute C "),
    ("missing several", "CN=a", "missing required attribute OU, O, C"),
    ("three-letter country", "CN=a,OU=k,O=o,C=CHN", "two-letter upper-case ISO 3166-1"),
    ("one-letter country", "CN=a,OU=k,O=o,C=C", "two-letter upper-case ISO 3166-1"),
    ("lower-case country", "CN=a,OU=k,O=o,C=cn", "(upper-case: 'CN')"),
    ("unassigned country", "CN=a,OU=k,O=o,C=QQ", "is not an ISO 3166-1 alpha-2 country code"),
    ("UK for GB", "CN=a,OU=k,O=o,C=UK", "(the United Kingdom is GB)"),
    ("digit country", "CN=a,OU=k,O=o,C=C1", "got 'C1'"),
    (
        "unescaped comma",
        "CN=a,OU=k,O=Acme, Inc.,C=US",
        "unescaped ',' in value of O: 'Inc.' is not a TYPE=value pair; "
        "write ',' inside a value as '\\,'",
    ),
    ("unescaped plus", "CN=a+b,OU=k,O=o,C=US", "unescaped '+' in value of CN"),
    ("unescaped semicolon", "CN=a;OU=k,O=o,C=US", "unescaped ';' in value of CN"),
    ("unescaped quote", 'CN="a",OU=k,O=o,C=US', "unescaped '\"' in value of CN"),
    ("unescaped angle", "CN=<a>,OU=k,O=o,C=US", "unescaped '<' in value of CN"),
    ("dangling backslash", "CN=a,OU=k,O=o,C=US\\", "invalid escape '\\' in value of C"),
    ("bad escape", "CN=a\\q,OU=k,O=o,C=US", "invalid escape '\\q' in value of CN"),
    ("half hex escape", "CN=a\\4,OU=k,O=o,C=US", "invalid escape '\\4,' in value of CN"),
    ("invalid UTF-8 via hex", "CN=\\C3,OU=k,O=o,C=US", "not valid UTF-8"),
    ("control character", "CN=a\\00b,OU=k,O=o,C=US", "value of CN contains a control character"),
    ("hexstring form", "CN=#0c0161,OU=k,O=o,C=US", "#hexstring form is not supported"),
    ("duplicate attribute", "CN=a,OU=k,OU=l,O=o,C=US", "duplicate attribute OU"),
    ("duplicate via OID", "CN=a,2.5.4.3=b,OU=k,O=o,C=US", "duplicate attribute CN"),
    ("empty value", "CN=a,OU=,O=o,C=US", "empty value for OU"),
    ("empty escaped-space-free value", "CN=   ,OU=k,O=o,C=US", "empty value for CN"),
    ("unknown type", "CN=a,OU=k,O=o,C=US,E=x@y", "unsupported attribute type 'E'"),
    ("unknown OID", "CN=a,OU=k,O=o,C=US,2.5.4.5=1", "unsupported attribute type '2.5.4.5'"),
    ("bad type syntax", "C N=a,OU=k,O=o,C=US", "'C N' is not an attribute type"),
    ("no equals sign", "userName", "expected TYPE=value"),
    ("missing type", "=a,OU=k", "missing attribute type before '='"),
    ("trailing comma", "CN=a,OU=k,O=o,C=US,", "trailing ',' after the value of C"),
    ("multi-valued RDN", "CN=a+OU=k,O=o,C=US", "multi-valued RDN CN+OU is not supported"),
    ("CN over 64", f"CN={'x' * 65},OU=k,O=o,C=US", "value of CN is 65 characters"),
    ("OU over 64", f"CN=a,OU={'x' * 65},O=o,C=US", "RFC 5280 allows at most 64"),
    ("O over 64", f"CN=a,OU=k,O={'x' * 65},C=US", "value of O is 65 characters"),
    ("L over 128", f"CN=a,OU=k,O=o,C=US,L={'x' * 129}", "RFC 5280 allows at most 128"),
    ("ST over 128", f"CN=a,OU=k,O=o,C=US,ST={'x' * 129}", "value of ST is 129 characters"),
]


@pytest.mark.parametrize(("dn", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_subject_bad(dn: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_subject(dn)
    assert caught.value.reason == SUBJECT
    assert fragment in caught.value.message


def test_format_subject_of_foreign_name() -> None:
    """Names from uploaded certificates: unknown types as OID=#hex, multi-valued RDNs, escapes."""
    name = x509.Name.build(
        {"common_name": "a,b ", "email_address": "x@example.com", "country_name": "CN"}
    )
    text = format_subject(name)
    # asn1crypto.Name.build orders C first; email has no RFC 4514 short name.
    email_der = x509.EmailAddress("x@example.com").dump().hex()
    assert text == f"1.2.840.113549.1.9.1=#{email_der},CN=a\\,b\\ ,C=CN"
    multi = x509.Name(
        name="",
        value=x509.RDNSequence(
            [
                x509.RelativeDistinguishedName(
                    [
                        {"type": "common_name", "value": x509.DirectoryString("utf8_string", "a")},
                        {"type": "domain_component", "value": "example"},
                    ]
                )
            ]
        ),
    )
    assert format_subject(multi) == "CN=a+DC=example"


@pytest.mark.parametrize(
    ("dn", "printed"),
    [
        ("CN=userName,OU=kms,O=aliyun,C=CN", "CN=userName,OU=kms,O=aliyun,C=CN"),
        (r"CN=www,OU=IT,O=Acme\, Inc.,L=Springfield,ST=Oregon,C=US", None),
    ],
)
def test_openssl_prints_subject_as_given(
    dn: str, printed: str | None, ec_key: object, tmp_path: Path
) -> None:
    signer = SoftwareSigner(ec_key, SignatureAlgorithm.SHA256_ECDSA)  # type: ignore[arg-type]
    (tmp_path / "req.pem").write_text(build_csr(parse_subject(dn), [], signer))
    out = openssl(
        "req", "-in", "req.pem", "-noout", "-subject", "-nameopt", "RFC2253", cwd=tmp_path
    )
    assert out.stdout.strip() == f"subject={printed or dn}"
    # cryptography reads the same RDN order (its rfc4514_string is most-specific first).
    request = cx509.load_pem_x509_csr((tmp_path / "req.pem").read_bytes())
    assert request.subject.rfc4514_string() == (printed or dn)


def _sans(n: int) -> str:
    return json.dumps([f"host{i}.example.com" for i in range(n)])


SAN_GOOD = [
    ("none", None, []),
    ("empty string", "", []),
    ("empty array", "[]", []),
    (
        "two",
        '["test1.example.com","test2.example.com"]',
        ["test1.example.com", "test2.example.com"],
    ),
    ("wildcard", '["*.example.com"]', ["*.example.com"]),
    ("single label", '["localhost"]', ["localhost"]),
    ("punycode", '["xn--fiqs8s.example"]', ["xn--fiqs8s.example"]),
    ("digits and hyphens", '["a-1.0b.example.com"]', ["a-1.0b.example.com"]),
    ("ten", _sans(10), [f"host{i}.example.com" for i in range(10)]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [g[1:] for g in SAN_GOOD], ids=[g[0] for g in SAN_GOOD]
)
def test_sans_good(text: str | None, expected: list[str]) -> None:
    assert parse_subject_alternative_names(text) == expected


SAN_BAD = [
    ("eleven", _sans(11), "11 names given; at most 10 are allowed"),
    ("not JSON", "test1.example.com", "not valid JSON"),
    ("not an array", '"test1.example.com"', "expected a JSON array of domain names, got str"),
    ("object", '{"a": 1}', "got dict"),
    ("number entry", '["a.example.com", 5]', "entry 2 is 5, not a string"),
    ("null entry", "[null]", "entry 1 is null, not a string"),
    ("empty entry", '[""]', "entry 1 is empty"),
    ("underscore", '["a_b.example.com"]', "invalid label 'a_b'"),
    ("leading hyphen", '["-a.example.com"]', "invalid label '-a'"),
    ("trailing dot", '["a.example.com."]', "must not end with a dot"),
    ("double dot", '["a..example.com"]', "has an empty label"),
    ("label over 63", json.dumps(["a" * 64 + ".com"]), "label longer than 63"),
    ("name over 253", json.dumps([".".join(["a" * 63] * 4) + ".com"]), "at most 253"),
    ("wildcard inside", '["a.*.example.com"]', "'*' is only allowed"),
    ("partial wildcard", '["f*.example.com"]', "'*' is only allowed"),
    ("bare wildcard", '["*."]', "must not end with a dot"),
    ("lone star", '["*"]', "needs a domain after"),
    ("wildcard public suffix", '["*.com"]', "public suffix"),
    ("wildcard two-label public suffix", '["*.co.uk"]', "public suffix"),
    ("invalid A-label", '["xn--zz.example.com"]', "IDNA 2008"),
    ("deep nesting", "[" * 5000 + "]" * 5000, "characters long"),
    ("nesting", "[" * 2000 + "]" * 2000, "nested too deeply"),
    ("IP address", '["192.168.1.1"]', "IP addresses go in iPAddress"),
    ("unicode", '["例子.example"]', "A-label"),
    ("space", '["a b.example.com"]', "whitespace"),
    ("duplicate", '["a.example.com","A.example.com"]', "entry 2 ('A.example.com') is a duplicate"),
    ("URI", '["https://a.example.com"]', "invalid label 'https:"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [b[1:] for b in SAN_BAD], ids=[b[0] for b in SAN_BAD]
)
def test_sans_bad(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_subject_alternative_names(text)
    assert caught.value.reason == SANS
    assert fragment in caught.value.message


def test_san_limit_is_the_documented_ten() -> None:
    assert MAX_SUBJECT_ALTERNATIVE_NAMES == 10
