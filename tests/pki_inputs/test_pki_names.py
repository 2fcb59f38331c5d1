"""Subject DNs, SANs and EKUs from API parameters: encodings, limits, rejections."""

from __future__ import annotations

import pytest
from asn1crypto import x509

from service.errors import InvalidArgument
from service.pki.names import (
    ISO_3166_ALPHA2,
    SanType,
    SubjectAltName,
    build_name,
    common_names_of,
    parse_client_sans,
    parse_domain_list,
    parse_extended_key_usages,
    parse_san,
    san_extension_value,
)

UTF8, PRINTABLE, IA5 = 0x0C, 0x13, 0x16


def attributes(name: x509.Name) -> list[tuple[str, int, str]]:
    """(dotted OID, DER tag of the value, value) for each RDN, in order; one ATV per RDN."""
    reparsed = x509.Name.load(name.dump(force=True))
    out = []
    for rdn in reparsed.chosen:
        assert len(rdn) == 1
        atv = rdn[0]
        raw = atv["value"].dump()
        value = atv["value"].native
        out.append((atv["type"].dotted, raw[0], value))
    return out


# --- build_name --------------------------------------------------------------------------


def test_full_subject_order_and_string_types() -> None:
    name = build_name(
        common_name="张三",
        organization="XXX公司",
        organization_unit="XXX部门",
        country="CN",
        state="浙江省",
        locality="杭州市",
    )
    assert attributes(name) == [
        ("2.5.4.6", PRINTABLE, "CN"),
        ("2.5.4.8", UTF8, "浙江省"),
        ("2.5.4.7", UTF8, "杭州市"),
        ("2.5.4.10", UTF8, "XXX公司"),
        ("2.5.4.11", UTF8, "XXX部门"),
        ("2.5.4.3", UTF8, "张三"),
    ]
    assert common_names_of(name) == ["张三"]


def test_empty_strings_and_none_are_absent() -> None:
    name = build_name("", None, "", "", state="", locality="Hangzhou")
    assert attributes(name) == [("2.5.4.7", UTF8, "Hangzhou")]
    assert attributes(build_name()) == []
    assert common_names_of(build_name()) == []


def test_custom_attributes_follow_fixed_ones() -> None:
    name = build_name(
        common_name="device",
        country="US",
        custom_attributes=[
            ("2.5.4.12", "Engineer"),
            ("2.5.4.5", "SN-0001"),
            ("1.2.840.113549.1.9.1", "ops@example.com"),
            ("1.3.6.1.4.1.99999.1", "anything ü"),
        ],
    )
    assert attributes(name) == [
        ("2.5.4.6", PRINTABLE, "US"),
        ("2.5.4.3", UTF8, "device"),
        ("2.5.4.12", UTF8, "Engineer"),
        ("2.5.4.5", PRINTABLE, "SN-0001"),
        ("1.2.840.113549.1.9.1", IA5, "ops@example.com"),
        ("1.3.6.1.4.1.99999.1", UTF8, "anything ü"),
    ]


# RFC 5280 4.1.2.4: a value has its attribute type's syntax; these are not DirectoryStrings.
TYPED_ATTRIBUTES = [
    ("1.3.6.1.5.5.7.9.3", "M", PRINTABLE),  # gender (RFC 3739 3.2.2): PrintableString SIZE(1)
    ("1.3.6.1.5.5.7.9.3", "f", PRINTABLE),
    ("1.3.6.1.5.5.7.9.4", "US", PRINTABLE),  # countryOfCitizenship: PrintableString SIZE(2)
    ("1.3.6.1.5.5.7.9.5", "DE", PRINTABLE),  # countryOfResidence
    ("1.3.6.1.4.1.311.60.2.1.3", "CN", PRINTABLE),  # jurisdictionCountryName (EV)
    ("2.5.4.20", "+86 571 8888 0000", PRINTABLE),  # telephoneNumber (X.520)
    ("2.5.4.20", "+1" + "0" * 30, PRINTABLE),  # ub-telephone-number 32
    ("2.23.133.2.1", "制造商 ü", UTF8),  # TCG tpmManufacturer: UTF8String
    ("0.9.2342.19200300.100.1.25", "Example", IA5),  # domainComponent: one DNS label
    ("0.9.2342.19200300.100.1.25", "a-1", IA5),
    ("0.9.2342.19200300.100.1.25", "a" * 63, IA5),
    ("1.2.840.113549.1.9.1", "first.last+tag@example.test", IA5),  # emailAddress: addr-spec
]


@pytest.mark.parametrize(("oid", "value", "tag"), TYPED_ATTRIBUTES)
def test_custom_attributes_in_their_own_syntax(oid: str, value: str, tag: int) -> None:
    assert attributes(build_name(custom_attributes=[(oid, value)])) == [(oid, tag, value)]


def test_email_address_attribute_in_rfc822_name_normal_form() -> None:
    # The domain in lower case, as the rfc822Name SAN holds it; the local part as given.
    name = build_name(custom_attributes=[("1.2.840.113549.1.9.1", "Ops@Example.TEST")])
    assert attributes(name) == [("1.2.840.113549.1.9.1", IA5, "Ops@example.test")]
    assert parse_san("rfc822Name", "Ops@Example.TEST").value == "Ops@example.test"


MATTER_NOC = [
    ("1.3.6.1.4.1.37244.1.1", "DEDEDEDE00010001"),  # node id
    ("1.3.6.1.4.1.37244.1.5", "FAB000000000001D"),  # fabric id
    ("1.3.6.1.4.1.37244.1.6", "ABCD0002"),  # CASE Authenticated Tag
]


def test_matter_attributes_are_utf8_upper_hex() -> None:
    name = build_name(custom_attributes=MATTER_NOC)
    assert attributes(name) == [(oid, UTF8, value) for oid, value in MATTER_NOC]
    dac = build_name(
        common_name="Matter DAC",
        custom_attributes=[("1.3.6.1.4.1.37244.2.1", "FFF1"), ("1.3.6.1.4.1.37244.2.2", "8000")],
    )
    assert attributes(dac)[1:] == [
        ("1.3.6.1.4.1.37244.2.1", UTF8, "FFF1"),
        ("1.3.6.1.4.1.37244.2.2", UTF8, "8000"),
    ]


BAD_NAMES: list[tuple[str, dict[str, object], str, str]] = [
    ("country-lower", {"country": "cn"}, "Country", "two-letter upper-case ISO 3166-1"),
    ("country-3", {"country": "CHN"}, "Country", "at most 2"),
    ("country-1", {"country": "C"}, "Country", "two-letter upper-case"),
    ("country-digit", {"country": "C1"}, "Country", "two-letter upper-case"),
    # X.520 / RFC 5280 Appendix A: ISO 3166 codes only, not any two letters.
    ("country-uk", {"country": "UK"}, "Country",
     "'UK' is not an ISO 3166-1 alpha-2 country code (the United Kingdom is GB)"),
    ("country-unassigned", {"country": "AA"}, "Country", "not an ISO 3166-1 alpha-2"),
    ("country-reserved", {"country": "EU"}, "Country", "not an ISO 3166-1 alpha-2"),
    ("cn-65", {"common_name": "a" * 65}, "CommonName", "65 characters long; at most 64"),
    ("o-65", {"organization": "o" * 65}, "Organization", "at most 64"),
    ("ou-65", {"organization_unit": "u" * 65}, "OrganizationUnit", "at most 64"),
    ("st-129", {"state": "s" * 129}, "State", "at most 128"),
    ("l-129", {"locality": "l" * 129}, "Locality", "at most 128"),
    ("cn-control", {"common_name": "a\x00b"}, "CommonName", "control characters"),
    ("cn-newline", {"common_name": "a\nb"}, "CommonName", "control characters"),
    ("o-whitespace", {"organization": " Acme"}, "Organization", "leading or trailing whitespace"),
    (
        "custom-bad-oid",
        {"custom_attributes": [("abc", "x")]},
        "CustomAttributes",
        "not a dotted-decimal object identifier",
    ),
    (
        "custom-oid-arc",
        {"custom_attributes": [("1.40.1", "x")]},
        "CustomAttributes",
        "X.660 arc ranges",
    ),
    ("custom-oid-3", {"custom_attributes": [("3.1", "x")]}, "CustomAttributes", "X.660"),
    (
        "custom-oid-leading-zero",
        {"custom_attributes": [("1.02.3", "x")]},
        "CustomAttributes",
        "dotted-decimal",
    ),
    ("custom-empty", {"custom_attributes": [("2.5.4.12", "")]}, "CustomAttributes", "empty value"),
    (
        "custom-repeats-cn",
        {"common_name": "a", "custom_attributes": [("2.5.4.3", "b")]},
        "CustomAttributes",
        "repeats CommonName",
    ),
    (
        "custom-second-cn",
        {"custom_attributes": [("2.5.4.3", "alice"), ("2.5.4.3", "evil.example.net")]},
        "CustomAttributes",
        "second commonName",
    ),
    (
        "custom-title-65",
        {"custom_attributes": [("2.5.4.12", "t" * 65)]},
        "CustomAttributes",
        "at most 64",
    ),
    # X.520 bounds pkilint also applies (ub-street-address, ub-postal-code).
    ("custom-street-129", {"custom_attributes": [("2.5.4.9", "s" * 129)]}, "CustomAttributes",
     "at most 128"),
    ("custom-postal-code-41", {"custom_attributes": [("2.5.4.17", "1" * 41)]},
     "CustomAttributes", "at most 40"),
    ("custom-jurisdiction-locality-129",
     {"custom_attributes": [("1.3.6.1.4.1.311.60.2.1.1", "l" * 129)]}, "CustomAttributes",
     "at most 128"),
    (
        "custom-serial-not-printable",
        {"custom_attributes": [("2.5.4.5", "SN_1")]},
        "CustomAttributes",
        "outside PrintableString",
    ),
    (
        "custom-country-lower",
        {"custom_attributes": [("2.5.4.6", "us")]},
        "CustomAttributes",
        "ISO 3166-1",
    ),
    (
        "custom-country-unassigned",
        {"custom_attributes": [("2.5.4.6", "QQ")]},
        "CustomAttributes",
        "not an ISO 3166-1 alpha-2",
    ),
    ("gender-other", {"custom_attributes": [("1.3.6.1.5.5.7.9.3", "X")]}, "CustomAttributes",
     "must be M, F, m or f"),
    ("gender-long", {"custom_attributes": [("1.3.6.1.5.5.7.9.3", "MF")]}, "CustomAttributes",
     "at most 1"),
    ("citizenship-not-iso", {"custom_attributes": [("1.3.6.1.5.5.7.9.4", "UK")]},
     "CustomAttributes", "countryOfCitizenship (1.3.6.1.5.5.7.9.4)) 'UK' is not an ISO"),
    ("residence-3-letters", {"custom_attributes": [("1.3.6.1.5.5.7.9.5", "DEU")]},
     "CustomAttributes", "at most 2"),
    ("jurisdiction-country-lower", {"custom_attributes": [("1.3.6.1.4.1.311.60.2.1.3", "us")]},
     "CustomAttributes", "ISO 3166-1"),
    ("telephone-33", {"custom_attributes": [("2.5.4.20", "+1" + "0" * 31)]}, "CustomAttributes",
     "at most 32"),
    ("telephone-not-printable", {"custom_attributes": [("2.5.4.20", "+86#1")]},
     "CustomAttributes", "outside PrintableString"),
    ("telephone-non-ascii", {"custom_attributes": [("2.5.4.20", "电话")]},
     "CustomAttributes", "outside PrintableString"),
    # RFC 4519 2.4: a domainComponent is one DNS label.
    ("dc-space", {"custom_attributes": [("0.9.2342.19200300.100.1.25", "exa mple")]},
     "CustomAttributes", "must be one DNS label"),
    ("dc-hyphen-underscore", {"custom_attributes": [("0.9.2342.19200300.100.1.25", "-bad_")]},
     "CustomAttributes", "must be one DNS label"),
    ("dc-two-labels",
     {"custom_attributes": [("0.9.2342.19200300.100.1.25", "example.test")]},
     "CustomAttributes", "give each label its own domainComponent"),
    ("dc-non-ascii", {"custom_attributes": [("0.9.2342.19200300.100.1.25", "bücher")]},
     "CustomAttributes", "must be one DNS label"),
    ("dc-kelvin", {"custom_attributes": [("0.9.2342.19200300.100.1.25", "\u212aelvin")]},
     "CustomAttributes", "must be one DNS label"),
    ("dc-64", {"custom_attributes": [("0.9.2342.19200300.100.1.25", "a" * 64)]},
     "CustomAttributes", "at most 63"),
    # emailAddress: an RFC 5322 addr-spec, as the rfc822Name SAN.
    ("email-no-at", {"custom_attributes": [("1.2.840.113549.1.9.1", "not-an-email")]},
     "CustomAttributes", "is not an e-mail address"),
    ("email-bad-local", {"custom_attributes": [("1.2.840.113549.1.9.1", "a..b@example.test")]},
     "CustomAttributes", "invalid local part"),
    ("email-bad-domain", {"custom_attributes": [("1.2.840.113549.1.9.1", "a@exa_mple.test")]},
     "CustomAttributes", "invalid domain"),
    ("date-of-birth", {"custom_attributes": [("1.3.6.1.5.5.7.9.1", "19700101000000Z")]},
     "CustomAttributes", "dateOfBirth is a GeneralizedTime"),
    ("unique-identifier", {"custom_attributes": [("2.5.4.45", "ab")]}, "CustomAttributes",
     "BIT STRING"),
    (
        "matter-node-lower",
        {"custom_attributes": [("1.3.6.1.4.1.37244.1.1", "dededede00010001")]},
        "CustomAttributes",
        "exactly 16 upper-case hexadecimal digits",
    ),
    (
        "matter-node-short",
        {"custom_attributes": [("1.3.6.1.4.1.37244.1.1", "0001")]},
        "CustomAttributes",
        "exactly 16",
    ),
    (
        "matter-node-range",
        {"custom_attributes": [("1.3.6.1.4.1.37244.1.1", "FFFFFFFF00000001")]},
        "CustomAttributes",
        "operational node ID range",
    ),
    (
        "matter-node-zero",
        {"custom_attributes": [("1.3.6.1.4.1.37244.1.1", "0000000000000000")]},
        "CustomAttributes",
        "operational node ID range",
    ),
    (
        "matter-fabric-zero",
        {"custom_attributes": [("1.3.6.1.4.1.37244.1.5", "0" * 16)]},
        "CustomAttributes",
        "must not be 0",
    ),
    (
        "matter-vid-long",
        {"custom_attributes": [("1.3.6.1.4.1.37244.2.1", "0FFF1")]},
        "CustomAttributes",
        "exactly 4 upper-case",
    ),
    (
        "matter-pid-nonhex",
        {"custom_attributes": [("1.3.6.1.4.1.37244.2.2", "80G0")]},
        "CustomAttributes",
        "exactly 4",
    ),
    (
        "matter-cat-version-0",
        {"custom_attributes": [("1.3.6.1.4.1.37244.1.6", "ABCD0000")]},
        "CustomAttributes",
        "CAT version",
    ),
    (
        "matter-unknown",
        {"custom_attributes": [("1.3.6.1.4.1.37244.9.9", "00")]},
        "CustomAttributes",
        "not a known Matter DN attribute",
    ),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "field", "message"), BAD_NAMES, ids=[c[0] for c in BAD_NAMES]
)
def test_bad_names_refused(case: str, kwargs: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        build_name(**kwargs)  # type: ignore[arg-type]
    assert e.value.reason == f"InvalidParameter.Subject.{field}"
    assert message in e.value.message


def test_country_codes_are_iso_3166_alpha2() -> None:
    # The same set pkilint's CA/B Forum linter accepts (the iso3166 package, plus XX).
    from iso3166 import countries_by_alpha2

    assert ISO_3166_ALPHA2 == set(countries_by_alpha2) | {"XX"}
    assert len(ISO_3166_ALPHA2) == 249 + 2  # the assigned codes, XK and XX
    for code in sorted(ISO_3166_ALPHA2):
        assert attributes(build_name(country=code)) == [("2.5.4.6", PRINTABLE, code)]


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("common_name", 64),
        ("organization", 64),
        ("organization_unit", 64),
        ("state", 128),
        ("locality", 128),
    ],
)
def test_upper_bounds_inclusive(field: str, limit: int) -> None:
    # The bound counts characters, not UTF-8 octets.
    assert len(attributes(build_name(**{field: "字" * limit}))) == 1


# --- SANs --------------------------------------------------------------------------------

GOOD_SANS = [
    ("dNSName", "Learn.AliyunDoc.com", "learn.aliyundoc.com"),
    ("dNSName", "*.example.com", "*.example.com"),
    ("dNSName", "localhost", "localhost"),
    ("dNSName", "xn--fiqs8s.example", "xn--fiqs8s.example"),
    ("dNSName", "a-b.c1.example", "a-b.c1.example"),
    ("iPAddress", "127.0.0.1", "127.0.0.1"),
    ("iPAddress", "2001:DB8:0:0::1", "2001:db8::1"),
    ("rfc822Name", "Some.Body+tag@Example.COM", "Some.Body+tag@example.com"),
    ("uniformResourceIdentifier", "https://example.com/a?b=c", "https://example.com/a?b=c"),
    ("uniformResourceIdentifier", "spiffe://trust.example/ns/x", "spiffe://trust.example/ns/x"),
    (
        "uniformResourceIdentifier",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    ),
    (
        "uniformResourceIdentifier",
        "acs:ecs:regionid:15619224785*****:instance/i-bp1bzvz55uz27hf*****",
        "acs:ecs:regionid:15619224785*****:instance/i-bp1bzvz55uz27hf*****",
    ),
    ("uniformResourceIdentifier", "https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443/x"),
    ("uniformResourceIdentifier", "HTTPS://10.0.0.1/%20x", "https://10.0.0.1/%20x"),
]


@pytest.mark.parametrize(("type_name", "value", "expected"), GOOD_SANS)
def test_parse_san_valid(type_name: str, value: str, expected: str) -> None:
    san = parse_san(type_name, value)
    assert san.type is SanType(type_name)
    assert san.value == expected
    general_name = san.to_asn1()
    assert general_name.name == san.type.asn1_name
    # Round-trips through DER and back.
    again = SubjectAltName.from_asn1(x509.GeneralName.load(general_name.dump()))
    assert again == san


BAD_SANS = [
    ("dnsName", "example.com", "unknown subject alternative name type"),
    ("dNSName", "", "empty"),
    ("dNSName", "bad_label.example.com", "invalid label"),
    ("dNSName", "-a.example.com", "invalid label"),
    ("dNSName", "a-.example.com", "invalid label"),
    ("dNSName", "a..example.com", "empty label"),
    ("dNSName", ".example.com", "empty label"),
    ("dNSName", "example.com.", "must not end with a dot"),
    ("dNSName", "a.*.example.com", "only allowed as the whole left-most label"),
    ("dNSName", "*a.example.com", "only allowed as the whole left-most label"),
    ("dNSName", "*", "needs a domain"),
    ("dNSName", "10.0.0.1", "IP addresses go in iPAddress"),
    ("dNSName", "bücher.example", "non-ASCII"),
    ("dNSName", "a b.example", "whitespace"),
    ("dNSName", ("a" * 64) + ".example", "longer than 63"),
    ("dNSName", ".".join(["a" * 63] * 4) + ".com", "at most 253"),
    ("iPAddress", "10.0.0.256", "not an IPv4 or IPv6 address"),
    ("iPAddress", "10.0.0.0/8", "not an IPv4 or IPv6 address"),
    ("iPAddress", "fe80::1%eth0", "zone"),
    ("iPAddress", "example.com", "not an IPv4 or IPv6 address"),
    ("rfc822Name", "example.aliyundoc.com", "local-part@domain"),
    ("rfc822Name", "@example.com", "local-part@domain"),
    ("rfc822Name", "a..b@example.com", "invalid local part"),
    ("rfc822Name", "a b@example.com", "whitespace"),
    ("rfc822Name", "a@b@example.com", "invalid local part"),
    ("rfc822Name", "a@exa_mple.com", "invalid domain"),
    ("rfc822Name", "a@*.example.com", "wildcard is not allowed"),
    ("uniformResourceIdentifier", "/relative/path", "not absolute"),
    ("uniformResourceIdentifier", "example.com", "not absolute"),
    ("uniformResourceIdentifier", "1http://x", "not absolute"),
    ("uniformResourceIdentifier", "https:", "no scheme-specific part"),
    ("uniformResourceIdentifier", "https://", "no scheme-specific part"),
    ("uniformResourceIdentifier", "https://exa mple.com", "whitespace"),
    ("uniformResourceIdentifier", "https://example.com/a#frag", "fragment"),
    ("uniformResourceIdentifier", "https://example.com/%zz", "percent-encoded"),
    ("uniformResourceIdentifier", "https://example.com/<x>", "percent-encoded"),
    ("uniformResourceIdentifier", "https:///path", "empty host"),
    ("uniformResourceIdentifier", "https://bad_host/x", "invalid host"),
    ("uniformResourceIdentifier", "https://[zz::1]/", "invalid IPv6 host"),
]


@pytest.mark.parametrize(("type_name", "value", "message"), BAD_SANS)
def test_parse_san_invalid(type_name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_san(type_name, value)
    assert e.value.reason == "InvalidParameter.SubjectAlternativeNames"
    assert message in e.value.message


def test_subject_alt_name_constructor_requires_normal_form() -> None:
    with pytest.raises(InvalidArgument, match="not normalised"):
        SubjectAltName(SanType.DNS_NAME, "Example.com")
    with pytest.raises(InvalidArgument):
        SubjectAltName(SanType.IP_ADDRESS, "not-an-ip")


def test_domain_list() -> None:
    names = parse_domain_list("a.example.com, 10.0.0.1 ,2001:db8::1,*.Example.com")
    assert names == [
        SubjectAltName(SanType.DNS_NAME, "a.example.com"),
        SubjectAltName(SanType.IP_ADDRESS, "10.0.0.1"),
        SubjectAltName(SanType.IP_ADDRESS, "2001:db8::1"),
        SubjectAltName(SanType.DNS_NAME, "*.example.com"),
    ]
    ext = san_extension_value(names)
    assert isinstance(ext, x509.GeneralNames)
    assert ext.native == ["a.example.com", "10.0.0.1", "2001:db8::1", "*.example.com"]
    assert parse_domain_list("") == []
    assert parse_domain_list("  ") == []


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("a.example.com,", "item 2 of 2 is empty"),
        (",a.example.com", "item 1 of 2 is empty"),
        ("a.example.com,,b.example.com", "item 2 of 3 is empty"),
        ("a.example.com,A.EXAMPLE.COM", "listed more than once"),
        ("10.0.0.1,10.0.0.1", "listed more than once"),
        ("2001:db8::1,2001:DB8:0::1", "listed more than once"),
        ("a.example.com,bad_name", "invalid label"),
        ("1.2.3", "all-numeric"),
    ],
)
def test_domain_list_invalid(domain: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_domain_list(domain)
    assert e.value.reason == "InvalidParameter.Domain"
    assert message in e.value.message


def test_san_extension_value_accepts_general_names_and_refuses_empty() -> None:
    gn = x509.GeneralName(name="dns_name", value="x.example")
    assert san_extension_value([gn, SubjectAltName(SanType.IP_ADDRESS, "::1")]).native == [
        "x.example",
        "::1",
    ]
    with pytest.raises(ValueError):
        san_extension_value([])


def test_client_sans() -> None:
    assert parse_client_sans(1, "somebody@example.com, b@Example.org") == [
        SubjectAltName(SanType.RFC822_NAME, "somebody@example.com"),
        SubjectAltName(SanType.RFC822_NAME, "b@example.org"),
    ]
    assert parse_client_sans(6, "spiffe://example.com/a,https://example.com/b") == [
        SubjectAltName(SanType.URI, "spiffe://example.com/a"),
        SubjectAltName(SanType.URI, "https://example.com/b"),
    ]
    assert parse_client_sans(0, "") == []
    assert parse_client_sans(1, "") == []


@pytest.mark.parametrize(
    ("san_type", "san_value", "reason", "message"),
    [
        (0, "a@example.com", "InvalidParameter.SanType", "san_type is required"),
        (2, "a.example.com", "InvalidParameter.SanType", "san_type 2 is invalid"),
        (7, "", "InvalidParameter.SanType", "san_type 7 is invalid"),
        (1, "not-an-email", "InvalidParameter.SanValue", "local-part@domain"),
        (1, "a@example.com,", "InvalidParameter.SanValue", "item 2 of 2 is empty"),
        (1, "a@example.com,a@EXAMPLE.com", "InvalidParameter.SanValue", "more than once"),
        (6, "relative/uri", "InvalidParameter.SanValue", "not absolute"),
    ],
)
def test_client_sans_invalid(san_type: int, san_value: str, reason: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_client_sans(san_type, san_value)
    assert e.value.reason == reason
    assert message in e.value.message


# --- EKU ---------------------------------------------------------------------------------


def test_extended_key_usages() -> None:
    assert parse_extended_key_usages(
        [
            "serverAuth",
            "clientAuth",
            "codeSigning",
            "emailProtection",
            "timeStamping",
            "OCSPSigning",
            "any",
            "1.3.6.1.4.1.311.20.2.2",
            "1.3.6.1.5.5.7.3.17",
        ]
    ) == [
        "1.3.6.1.5.5.7.3.1",
        "1.3.6.1.5.5.7.3.2",
        "1.3.6.1.5.5.7.3.3",
        "1.3.6.1.5.5.7.3.4",
        "1.3.6.1.5.5.7.3.8",
        "1.3.6.1.5.5.7.3.9",
        "2.5.29.37.0",
        "1.3.6.1.4.1.311.20.2.2",
        "1.3.6.1.5.5.7.3.17",
    ]
    assert parse_extended_key_usages(["ServerAuth"]) == ["1.3.6.1.5.5.7.3.1"]
    assert parse_extended_key_usages([]) == []


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["webAuth"], "unknown extended key usage 'webAuth'"),
        ([""], "unknown extended key usage ''"),
        (["1.40.2"], "X.660"),
        (["serverAuth", "1.3.6.1.5.5.7.3.1"], "listed more than once"),
    ],
)
def test_extended_key_usages_invalid(items: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_extended_key_usages(items)
    assert e.value.reason == "InvalidParameter.ExtendedKeyUsages"
    assert message in e.value.message
