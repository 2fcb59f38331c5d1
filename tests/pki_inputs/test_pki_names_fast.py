"""dns_name_syntax / normalize_ip_address shortcuts give exactly the checks' answers.

The regex shortcuts only accept; every refusal still comes from the rule-by-rule checks. The
reference functions below are those checks as they stood before the shortcuts; for every
input both must return the same value or raise with the same reason and message.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable

import pytest

from service.errors import InvalidArgument, quote
from service.pki.names import (
    REASON_DOMAIN,
    REASON_SAN,
    SanType,
    SubjectAltName,
    dns_name_syntax,
    normalize_ip_address,
    parse_domain_list,
)

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def _fail(reason: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason)


def _reference_dns(value: str, *, reason: str = REASON_SAN, wildcard: bool = True) -> str:
    if value == "":
        raise _fail(reason, "DNS name is empty")
    if not value.isascii() or any(not (0x21 <= ord(c) <= 0x7E) for c in value):
        raise _fail(
            reason,
            f"DNS name {quote(value)} contains whitespace, control or non-ASCII characters "
            "(IA5String values in certificates; use the A-label/punycode or "
            "percent-encoded form)",
        )
    name = value.lower()
    if len(name) > 253:
        raise _fail(reason, f"DNS name {quote(value)} is {len(name)} characters long; at most 253")
    if name.endswith("."):
        raise _fail(reason, f"DNS name {quote(value)} must not end with a dot")
    labels = name.split(".")
    if labels[0] == "*":
        if not wildcard:
            raise _fail(reason, f"DNS name {quote(value)}: a wildcard is not allowed here")
        if len(labels) < 2:
            raise _fail(reason, f"DNS name {quote(value)}: a wildcard needs a domain after '*.'")
        labels = labels[1:]
    for label in labels:
        if label == "":
            raise _fail(reason, f"DNS name {quote(value)} has an empty label ('..' or leading dot)")
        if "*" in label:
            raise _fail(
                reason,
                f"DNS name {quote(value)}: '*' is only allowed as the whole left-most label ('*.')",
            )
        if len(label) > 63:
            raise _fail(reason, f"DNS name {quote(value)} has a label longer than 63 characters")
        if not _LABEL.match(label):
            raise _fail(
                reason,
                f"DNS name {quote(value)} has an invalid label {quote(label)}: labels use letters, "
                "digits and hyphens, and neither start nor end with a hyphen",
            )
    if labels[-1].isdigit():
        raise _fail(
            reason,
            f"DNS name {quote(value)} ends in an all-numeric label; IP addresses go in iPAddress",
        )
    return name


def _reference_ip(value: str, *, reason: str = REASON_SAN) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise _fail(reason, f"{quote(value)} is not an IPv4 or IPv6 address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise _fail(reason, f"IP address {quote(value)} must not carry a zone ('%...')")
    return addr.compressed


def _outcome(fn: Callable[[], str]) -> tuple[str, ...]:
    try:
        value = fn()
    except InvalidArgument as e:
        return ("refused", e.reason, e.message)
    assert type(value) is str
    return ("accepted", value)


DNS_CASES = [
    "", "a", "A", "example.com", "WWW.Example.COM", "*.example.com", "*.EXAMPLE.com", "*",
    "*.", "*.*.example.com", "a.*.example.com", "*a.example.com", "a*.example.com",
    "example.com.", ".example.com", "a..b", "-a.example", "a-.example", "a-b.example",
    "xn--bcher-kva.example", "a_b.example", "a b.example", "a\tb", "a\nb", "example.com\n",
    "a.123", "123", "1.2.3.4", "a.1b", "a.b1", "0", "0a", "\u212a.example", "k\u0130.example",
    "b\u00fccher.example", "a" * 63 + ".example", "a" * 64 + ".example",
    ".".join(["a" * 63] * 4)[:253], ".".join(["a" * 63] * 4)[:254],
    ".".join(["a" * 63] * 4)[:252] + "-", "a." * 126 + "b", "a." * 127 + "b",
    "*." + "a" * 63, "*.1", "*.a1", "a.b.c.d.e.f", "A-1.B-2", "--.example", "a--b.example",
    "\x7f.example", "~.example", "!", "a!.example",
]


@pytest.mark.parametrize("wildcard", [True, False])
@pytest.mark.parametrize("value", DNS_CASES)
def test_dns_name_matches_reference(value: str, wildcard: bool) -> None:
    assert _outcome(lambda: dns_name_syntax(value, wildcard=wildcard)) == _outcome(
        lambda: _reference_dns(value, wildcard=wildcard))
    assert _outcome(lambda: dns_name_syntax(value, reason=REASON_DOMAIN)) == _outcome(
        lambda: _reference_dns(value, reason=REASON_DOMAIN))


def test_dns_name_matches_reference_random() -> None:
    rng = random.Random(5280)
    alphabet = "abz09AZ-.*_ \u212a\u0130\u00e9\n"
    for _ in range(20000):
        if rng.random() < 0.5:
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        else:  # mostly valid names near the length limits, with a few changes
            labels = ["".join(rng.choice("ab0-") for _ in range(rng.randint(1, 70)))
                      for _ in range(rng.randint(1, 6))]
            value = ".".join(labels)
            if rng.random() < 0.3:
                value = "*." + value
        wildcard = rng.random() < 0.8
        assert _outcome(lambda: dns_name_syntax(value, wildcard=wildcard)) == _outcome(
            lambda: _reference_dns(value, wildcard=wildcard)), value


IP_CASES = [
    "", "0.0.0.0", "10.0.0.1", "255.255.255.255", "256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
    "1.2.3.4 ", " 1.2.3.4", "1.2.3.04", "1..2.3", "\u0661.2.3.4", "1.2.3.\u0664", "::", "::1",
    "2001:db8::1", "2001:DB8::1", "2001:db8:0:0:0:0:0:1", "fe80::1%eth0", "::ffff:1.2.3.4",
    "1.2.3.4/24", "example.com", "a", "1e3", "0x1.2.3.4", "1.2.3.4\n", "1.2.3.255",
    "192.168.001.1", "9.9.9.9", "99.99.99.99", "199.249.250.251", "200.1.1.1",
]


@pytest.mark.parametrize("value", IP_CASES)
def test_ip_address_matches_reference(value: str) -> None:
    assert _outcome(lambda: normalize_ip_address(value)) == _outcome(
        lambda: _reference_ip(value))


def test_ip_address_matches_reference_random() -> None:
    rng = random.Random(791)
    for _ in range(20000):
        if rng.random() < 0.7:
            value = ".".join(str(rng.choice([rng.randint(0, 300), rng.randint(0, 9)]))
                             for _ in range(rng.choice([3, 4, 4, 4, 5])))
            if rng.random() < 0.1:
                value = "0" + value
        else:
            value = "".join(rng.choice("0123456789.:abf%x ") for _ in range(rng.randint(0, 12)))
        assert _outcome(lambda: normalize_ip_address(value)) == _outcome(
            lambda: _reference_ip(value)), value


def test_domain_list_and_san_objects_unchanged() -> None:
    assert parse_domain_list("WWW.Example.com,10.0.0.1,2001:DB8::1,*.example.com") == [
        SubjectAltName(SanType.DNS_NAME, "www.example.com"),
        SubjectAltName(SanType.IP_ADDRESS, "10.0.0.1"),
        SubjectAltName(SanType.IP_ADDRESS, "2001:db8::1"),
        SubjectAltName(SanType.DNS_NAME, "*.example.com"),
    ]
    with pytest.raises(InvalidArgument) as e:
        parse_domain_list("01.2.3.4")  # not an IP (leading zero), not a DNS name (numeric)
    assert e.value.reason == REASON_DOMAIN
    assert "all-numeric" in e.value.message


@pytest.mark.parametrize(("san_type", "value"), [
    (SanType.DNS_NAME, "WWW.Example.com"), (SanType.DNS_NAME, "*.example.com"),
    (SanType.IP_ADDRESS, "10.0.0.1"), (SanType.IP_ADDRESS, "2001:DB8:0::1"),
    (SanType.RFC822_NAME, "Ops@Example.COM"), (SanType.URI, "HTTPS://example.com/A"),
])
def test_of_equals_the_checked_constructor(san_type: SanType, value: str) -> None:
    san = SubjectAltName.of(san_type, value)
    checked = SubjectAltName(san_type, san.value)  # __post_init__: normalised already
    assert san == checked and hash(san) == hash(checked)
    assert (san.type, san.value) == (checked.type, checked.value)
    assert SubjectAltName.of(san_type, san.value) == san  # idempotent


def test_of_refuses_as_before() -> None:
    with pytest.raises(InvalidArgument) as e:
        SubjectAltName.of(SanType.DNS_NAME, "bad_name.example", reason=REASON_DOMAIN)
    assert e.value.reason == REASON_DOMAIN
    with pytest.raises(KeyError):
        SubjectAltName.of("dNSName", "a.example")  # type: ignore[arg-type]
