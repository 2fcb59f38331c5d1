"""The policy file: parsing with line numbers, principal patterns, actions, constraints, reload."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor

from service.auth.policy import (
    KEY_EXPORT_ACTIONS,
    ActionClass,
    IssuanceFacts,
    PolicyError,
    PolicyHolder,
    action_class,
    check_issuance,
    granted,
    issuance_facts,
    parse_policy,
)
from service.auth.principal import Principal
from service.errors import PermissionDenied
from service.gen.hsmca.v1 import kms_pb2, private_ca_pb2

POLICY = """\
[roles.web-issuer]
actions = ["PrivateCa/CreateServerCertificateWithCsr", "PrivateCa/Describe*", "PrivateCa/List*"]
cas = ["own"]
dns_names = ["*.team-a.example.com", "api.example.com"]
ip_ranges = ["10.0.0.0/8"]
uri_prefixes = ["spiffe://example.org/team-a/"]
email_domains = ["team-a.example.com"]
max_validity_days = 90
rate_per_second = 10

[roles.pinned]
actions = ["PrivateCa/Create*"]
cas = ["ca-1"]

[roles.admin]
actions = ["*"]
rate_limit_exempt = true

[[principals]]
id = "spiffe://example.org/team-a/*"
tenant = "team-a"
roles = ["web-issuer"]

[[principals]]
id = "ops"
tenant = "default"
roles = ["admin", "pinned"]
"""


def test_principals_match_exactly_or_by_trailing_star() -> None:
    policy = parse_policy(POLICY)
    p = policy.principal("spiffe://example.org/team-a/web")
    assert p == Principal("spiffe://example.org/team-a/web", "team-a", ("web-issuer",))
    assert policy.principal("spiffe://example.org/team-b/web") is None
    assert policy.principal("ops") is not None and policy.principal("ops2") is None


def test_actions_are_allowed_by_pattern_and_refusals_name_the_action() -> None:
    policy = parse_policy(POLICY)
    web = policy.principal("spiffe://example.org/team-a/web")
    assert web is not None
    policy.authorize(web, "PrivateCa/DescribeCACertificate")
    policy.authorize(web, "PrivateCa/ListClientCertificate")
    with pytest.raises(PermissionDenied) as e:
        policy.authorize(web, "PrivateCa/CreateRootCACertificate")
    assert e.value.reason == "Forbidden.Action"
    assert "PrivateCa/CreateRootCACertificate" in e.value.message
    assert policy.unknown("x", "KmsCertificates/GetCertificate").reason == "Forbidden.Action"


def test_rates_come_from_the_granting_roles() -> None:
    policy = parse_policy(POLICY)
    web = policy.principal("spiffe://example.org/team-a/web")
    ops = policy.principal("ops")
    assert web is not None and ops is not None
    grant = policy.authorize(web, "PrivateCa/CreateServerCertificateWithCsr")
    assert grant.rate() == 10 and not grant.rate_limit_exempt
    assert policy.authorize(web, "PrivateCa/ListClientCertificate").rate() == 50  # default
    assert policy.authorize(ops, "PrivateCa/CreateRootCACertificate").rate_limit_exempt


EXPORT_POLICY = """\
[roles.reader]
actions = ["PrivateCa/Describe*", "KmsCertificates/Get*"]

[roles.service-wide]
actions = ["PrivateCa/*", "KmsCertificates/*", "Kms*", "P*"]

[roles.exporter]
actions = ["PrivateCa/DescribeCertificatePrivateKey", "KmsCertificates/ExportCertificate"]

[roles.admin]
actions = ["*"]

[[principals]]
id = "reader"
tenant = "t"
roles = ["reader"]

[[principals]]
id = "wide"
tenant = "t"
roles = ["service-wide"]

[[principals]]
id = "exporter"
tenant = "t"
roles = ["exporter"]

[[principals]]
id = "admin"
tenant = "t"
roles = ["admin"]
"""
EXPORTS = ["PrivateCa/DescribeCertificatePrivateKey", "KmsCertificates/ExportCertificate"]


@pytest.mark.parametrize("action", EXPORTS)
def test_a_prefix_pattern_does_not_grant_a_key_export(action: str) -> None:
    """`PrivateCa/Describe*` reads; it does not hand out keys, nor does `PrivateCa/*`."""
    policy = parse_policy(EXPORT_POLICY)  # loads: the prefixes are valid, just narrower
    for who in ("reader", "wide"):
        principal = policy.principal(who)
        assert principal is not None
        with pytest.raises(PermissionDenied) as e:
            policy.authorize(principal, action)
        assert e.value.reason == "Forbidden.Action"
        assert action in e.value.message
    reader, wide = policy.principal("reader"), policy.principal("wide")
    assert reader is not None and wide is not None
    for other in ("PrivateCa/DescribeCACertificate", "PrivateCa/DescribeClientCertificate",
                  "PrivateCa/DescribeClientCertificateStatus", "KmsCertificates/GetCertificate"):
        policy.authorize(reader, other)
    for other in ("PrivateCa/CreateRootCACertificate", "KmsCertificates/CertificatePrivateKeySign",
                  "KmsCertificates/CertificatePrivateKeyDecrypt"):
        policy.authorize(wide, other)


@pytest.mark.parametrize("action", EXPORTS)
@pytest.mark.parametrize("who", ["exporter", "admin"])
def test_a_key_export_is_granted_by_its_exact_name_or_bare_star(who: str, action: str) -> None:
    policy = parse_policy(EXPORT_POLICY)
    principal = policy.principal(who)
    assert principal is not None
    assert policy.authorize(principal, action).action == action


def test_key_export_actions_are_every_call_that_answers_with_a_private_key() -> None:
    """A new RPC whose answer carries a private key must join KEY_EXPORT_ACTIONS."""
    def carries_key(message: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
        name = message.full_name
        if name in seen:
            return False
        for field in message.fields:
            if field.message_type is not None:
                if carries_key(field.message_type, seen | {name}):
                    return True
            elif ("private_key" in field.name or "pkcs12" in field.name) and \
                    field.type in (field.TYPE_STRING, field.TYPE_BYTES):
                return True
        return False

    found = {f"{service.name}/{method.name}"
             for module in (private_ca_pb2, kms_pb2)
             for service in module.DESCRIPTOR.services_by_name.values()
             for method in service.methods if carries_key(method.output_type)}
    assert found == KEY_EXPORT_ACTIONS


@pytest.mark.parametrize(("action", "cls"), [
    ("PrivateCa/CreateServerCertificateWithCsr", ActionClass.ISSUANCE),
    ("PrivateCa/CreateRootCACertificate", ActionClass.ISSUANCE),
    ("KmsCertificates/CreateCertificate", ActionClass.ISSUANCE),
    ("PrivateCa/CreateRevokeClientCertificate", ActionClass.READS),
    ("KmsCertificates/CertificatePrivateKeySign", ActionClass.KEY_USE),
    ("KmsCertificates/ExportCertificate", ActionClass.KEY_USE),
    ("PrivateCa/DescribeCertificatePrivateKey", ActionClass.KEY_USE),
    ("PrivateCa/ListClientCertificate", ActionClass.READS),
])
def test_action_classes(action: str, cls: ActionClass) -> None:
    assert action_class(action) is cls


FACTS_OK = IssuanceFacts("ca-9", dns_names=("www.team-a.example.com", "api.example.com"),
                         ip_addresses=("10.1.2.3",), uris=("spiffe://example.org/team-a/x",),
                         emails=("a@team-a.example.com",), validity_days=90)


@pytest.mark.parametrize(("change", "offending"), [
    ({"dns_names": ("team-a.example.com",)}, "team-a.example.com"),
    ({"dns_names": ("x.team-b.example.com",)}, "x.team-b.example.com"),
    ({"dns_names": ("evil-team-a.example.com",)}, "evil-team-a.example.com"),
    ({"ip_addresses": ("192.168.0.1",)}, "192.168.0.1"),
    ({"ip_addresses": ("::1",)}, "::1"),
    ({"uris": ("spiffe://example.org/team-b/x",)}, "spiffe://example.org/team-b/x"),
    ({"emails": ("a@example.com",)}, "a@example.com"),
    ({"validity_days": 90.5}, "max_validity_days 90"),
])
def test_constraints_name_the_offending_value(change: dict[str, object], offending: str) -> None:
    policy = parse_policy(POLICY)
    web = policy.principal("spiffe://example.org/team-a/web")
    assert web is not None
    grant = policy.authorize(web, "PrivateCa/CreateServerCertificateWithCsr")
    grant.check_issuance(FACTS_OK)
    import dataclasses
    with pytest.raises(PermissionDenied) as e:
        grant.check_issuance(dataclasses.replace(FACTS_OK, **change))  # type: ignore[arg-type]
    assert e.value.reason == "Forbidden.Policy"
    assert offending in e.value.message


def test_named_cas_and_one_role_suffices() -> None:
    policy = parse_policy(POLICY)
    ops = policy.principal("ops")
    assert ops is not None
    grant = policy.authorize(ops, "PrivateCa/CreateCustomCertificate")
    # admin (unconstrained) also grants it: any one granting role that allows all is enough.
    grant.check_issuance(IssuanceFacts("ca-other"))
    pinned_only = parse_policy(POLICY.replace('roles = ["admin", "pinned"]',
                                              'roles = ["pinned"]'))
    p = pinned_only.principal("ops")
    assert p is not None
    g = pinned_only.authorize(p, "PrivateCa/CreateCustomCertificate")
    g.check_issuance(IssuanceFacts("ca-1"))
    with pytest.raises(PermissionDenied, match="ca-other"):
        g.check_issuance(IssuanceFacts("ca-other"))


def test_the_domain_asks_through_the_call_grant() -> None:
    policy = parse_policy(POLICY)
    web = policy.principal("spiffe://example.org/team-a/web")
    assert web is not None
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    facts = issuance_facts("ca-9", [("dNSName", "x.team-b.example.com")], None, now,
                           now + dt.timedelta(days=30))
    check_issuance(facts)  # outside a call (local admin, jobs): nothing to check
    with granted(policy.authorize(web, "PrivateCa/CreateServerCertificateWithCsr")), \
            pytest.raises(PermissionDenied, match="x.team-b.example.com"):
        check_issuance(facts)
    # A host-name CN counts as a DNS name; a person's CN does not.
    cn = issuance_facts("ca-9", [], "www.evil.example", now, now + dt.timedelta(days=1))
    assert cn.dns_names == ("www.evil.example",)
    assert issuance_facts("ca-9", [], "alice", now, now).dns_names == ()
    # Looser than a dNSName on purpose: a CN no SAN could carry is still held to dns_names.
    odd = issuance_facts("ca-9", [], "-Www.Evil.example.", now, now)
    assert odd.dns_names == ("-www.evil.example.",)


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[roles.a]\nactions = ["*"]\nbogus = 1\n', 3, "unknown key 'bogus'"),
    ('[roles.a]\nactions = "x"\n', 2, "list of non-empty strings"),
    ('[roles.a]\nactions = ["*"]\nip_ranges = ["10.0.0.0/33"]\n', 3, "ip_ranges"),
    ('[roles.a]\nactions = ["*"]\nmax_validity_days = 0\n', 3, "positive integer"),
    ('[roles.a]\nactions = ["*"]\n\n[[principals]]\nid = "x"\ntenant = "t"\n'
     'roles = ["b"]\n', 7, "unknown role 'b'"),
    ('[roles.a]\nactions = ["*"]\n\n[[principals]]\nid = "x"\ntenant = "t t"\n', 4,
     "tenant"),
    ('[roles.a]\nactions = ["*"]\n\n[[principals]]\nid = "a*b"\ntenant = "t"\n', 5, "'*'"),
    ('[roles.a]\nactions = ["*"\nbogus = 1\n', 3, "invalid TOML"),
])
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "policy.toml")
    assert f"(line {line})" in str(e.value)
    assert words in str(e.value)


def test_holder_reloads_on_change_and_keeps_the_old_policy_on_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    holder = PolicyHolder(path, check_seconds=0)
    assert holder.current().principal("ops") is not None
    path.write_text(POLICY.replace('id = "ops"', 'id = "ops2"'))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert holder.current().principal("ops2") is not None
    path.write_text(POLICY + "\n[roles.x]\nactions = 1\n")
    assert holder.current().principal("ops2") is not None
    assert holder.last_error is not None and "(line " in holder.last_error
    path.write_text(POLICY)
    assert holder.reload() and holder.current().principal("ops") is not None
