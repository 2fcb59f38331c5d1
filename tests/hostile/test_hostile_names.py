"""The one DNS-name validator (KMS and Private CA): wildcards, IDNA 2008, URI schemes."""

from __future__ import annotations

import pytest

from service.errors import InvalidArgument
from service.kms.dn import parse_subject_alternative_names
from service.pki.names import (
    REASON_SAN,
    normalize_dns_name,
    normalize_uri,
    parse_domain_list,
)

# (name, fragment of the refusal)
REFUSED_DNS = [
    ("*", "needs a domain after"),
    ("*.com", "public suffix"),
    ("*.co.uk", "public suffix"),
    ("*.COM", "public suffix"),
    ("*.test", "public suffix"),  # not in the list: the PSL default rule makes it a suffix
    ("a.*.example.com", "left-most label"),
    ("*a.example.com", "left-most label"),
    ("*.*.example.com", "left-most label"),
    ("xn--zz.example.com", "IDNA 2008"),
    ("a.xn--.example.com", "invalid label"),
    ("xn--a.example.com", "IDNA 2008"),
]
ACCEPTED_DNS = ["*.example.com", "*.example.co.uk", "*.example.test", "xn--bcher-kva.example",
                "xn--fiqs8s.example", "*.github.io", "a--b.example.com", "localhost"]


@pytest.mark.parametrize(("name", "fragment"), REFUSED_DNS, ids=[n for n, _ in REFUSED_DNS])
def test_refused_dns_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalize_dns_name(name)
    assert caught.value.reason == REASON_SAN
    assert fragment in caught.value.message
    # The KMS SubjectAlternativeNames go through the same validator.
    with pytest.raises(InvalidArgument) as kms:
        parse_subject_alternative_names(f'["{name}"]')
    assert fragment in kms.value.message


@pytest.mark.parametrize("name", ACCEPTED_DNS)
def test_accepted_dns_names(name: str) -> None:
    assert normalize_dns_name(name) == name.lower()
    assert parse_subject_alternative_names(f'["{name}"]') == [name]


def test_domain_list_refuses_a_public_suffix_wildcard() -> None:
    with pytest.raises(InvalidArgument, match="public suffix"):
        parse_domain_list("a.example.com,*.co.uk")


REFUSED_URIS = ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x",
                "vbscript:x", "no scheme", "http://exa mple.com/", "http://[::1/", "http://a..b/",
                "spiffe://", "urn:"]
ACCEPTED_URIS = ["spiffe://example.org/ns/default/sa/web", "urn:uuid:6e8bc430-9c3a-11d9-9669",
                 "https://example.com/a?b=c", "ldap://ldap.example.com/cn=x", "mailto:a@b.example"]


@pytest.mark.parametrize("uri", REFUSED_URIS)
def test_refused_uris(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_uri(uri)


@pytest.mark.parametrize("uri", ACCEPTED_URIS)
def test_accepted_uris(uri: str) -> None:
    assert normalize_uri(uri)
