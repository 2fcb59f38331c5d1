"""The authorization policy: principals -> tenant and roles; roles -> actions, constraints, rates.

One :class:`Policy` object decides everything, in two places only: the gRPC interceptor asks
:meth:`Policy.authorize` for the action of each call (``Forbidden.Action``), and the issuance
domain asks :func:`check_issuance` for the names, CA and validity of a certificate it is about
to issue (``Forbidden.Policy``). Another tenant's resource is not decided here: every lookup
is scoped by the caller's tenant, so it is simply not found.

File format (TOML; see docs/security.md)::

    [roles.web-issuer]
    actions = ["PrivateCa/CreateServerCertificateWithCsr", "PrivateCa/Describe*"]
    # Exact, a trailing * matching the rest, or "*"; a key export only exact or "*"
    # (KEY_EXPORT_ACTIONS), so Describe* does not include DescribeCertificatePrivateKey.
    cas = ["own"]                         # CA identifiers, or "own" (the tenant's CAs)
    dns_names = ["*.team-a.example.com"]  # allowed dNSName SANs and CNs; absent = any
    ip_ranges = ["10.0.0.0/8"]
    uri_prefixes = ["spiffe://example.org/team-a/"]
    email_domains = ["team-a.example.com"]
    max_validity_days = 90
    rate_per_second = 10                  # issuance; key_use_per_second, reads_per_second
    rate_limit_exempt = false

    [[principals]]
    id = "spiffe://example.org/team-a/*"  # exact, or a trailing * matching the rest
    tenant = "team-a"
    roles = ["web-issuer"]

A file with an error raises :class:`PolicyError` naming the line; the caller keeps the
policy it had (:class:`PolicyHolder`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import enum
import ipaddress
import logging
import os
import re
import threading
import time
import tomllib
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from service.auth.principal import Principal
from service.errors import PermissionDenied
from service.pki.names import looks_like_host_name
from service.storage.schema import END_ENTITY_KINDS, CertificateKind

__all__ = [
    "ActionClass",
    "Grant",
    "IssuanceAuthorizer",
    "IssuanceFacts",
    "KEY_EXPORT_ACTIONS",
    "Policy",
    "PolicyError",
    "PolicyHolder",
    "Role",
    "action_class",
    "check_issuance",
    "current_grant",
    "granted",
    "issuance_facts",
    "parse_policy",
]

log = logging.getLogger(__name__)


class ActionClass(enum.Enum):
    """What a call costs, for rate limits: issuing, using a key, or reading/managing."""

    ISSUANCE = "issuance"
    KEY_USE = "key_use"
    READS = "reads"


_KEY_USE = frozenset({
    "KmsCertificates/CertificatePrivateKeySign", "KmsCertificates/CertificatePrivateKeyDecrypt",
    "KmsCertificates/CertificatePublicKeyEncrypt", "KmsCertificates/CertificatePublicKeyVerify",
    "KmsCertificates/ExportCertificate", "PrivateCa/DescribeCertificatePrivateKey",
})


def action_class(action: str) -> ActionClass:
    """The rate-limit class of ``Service/Method``."""
    if action in _KEY_USE:
        return ActionClass.KEY_USE
    method = action.rpartition("/")[2]
    if method.startswith("Create") and method != "CreateRevokeClientCertificate":
        return ActionClass.ISSUANCE
    return ActionClass.READS


#: Per-second defaults when a role names no rate: issuance follows the API documentation's
#: per-user default of 10/s; key use and reads are cheaper per call.
DEFAULT_RATES = {ActionClass.ISSUANCE: 10.0, ActionClass.KEY_USE: 50.0,
                 ActionClass.READS: 50.0}
_RATE_KEYS = {ActionClass.ISSUANCE: "rate_per_second",
              ActionClass.KEY_USE: "key_use_per_second",
              ActionClass.READS: "reads_per_second"}


class PolicyError(ValueError):
    """The policy file is invalid; the message names the line."""


def _pattern_matches(pattern: str, value: str) -> bool:
    """Exact, or a trailing ``*`` matching any rest (``PrivateCa/Describe*``, ``*``)."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


#: Actions that hand the caller a private key (PKCS#8 or PKCS#12 under a passphrase the caller
#: chooses): once answered, the key is out of the service for good, and the role's ``cas`` and
#: ``dns_names`` do not bound which keys. A prefix pattern does not grant them -- written for
#: "read" (``PrivateCa/Describe*``) or "the KMS" (``KmsCertificates/*``), it would otherwise
#: hand out keys as a side effect of a method's name. Only a role that names the action
#: exactly, or the bare ``*``, grants it: ``*`` is an explicit "every action", the bootstrap's
#: ``admin`` role (docs/security.md) is all-powerful by design, and narrowing it would leave
#: no role that holds every permission. Sign and decrypt use a key without releasing it and
#: stay ordinary actions.
KEY_EXPORT_ACTIONS = frozenset({
    "PrivateCa/DescribeCertificatePrivateKey", "KmsCertificates/ExportCertificate",
})


def _action_matches(pattern: str, action: str) -> bool:
    """A role's action pattern against ``Service/Method``; see :data:`KEY_EXPORT_ACTIONS`."""
    if action in KEY_EXPORT_ACTIONS:
        return pattern in (action, "*")
    return _pattern_matches(pattern, action)


def _dns_matches(pattern: str, name: str) -> bool:
    """``*.example.com`` matches one or more labels below example.com; else exact."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


@dataclasses.dataclass(frozen=True)
class Role:
    """What a role may do and within which limits (None: unconstrained)."""

    name: str
    actions: tuple[str, ...]
    cas: tuple[str, ...] | None = None
    dns_names: tuple[str, ...] | None = None
    ip_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    uri_prefixes: tuple[str, ...] | None = None
    email_domains: tuple[str, ...] | None = None
    max_validity_days: int | None = None
    rates: tuple[tuple[ActionClass, float], ...] = ()
    rate_limit_exempt: bool = False

    def allows(self, action: str) -> bool:
        """True if one of the role's action patterns matches ``Service/Method`` (a key export
        only by its exact name or ``*``: :data:`KEY_EXPORT_ACTIONS`)."""
        return any(_action_matches(p, action) for p in self.actions)

    def rate(self, cls: ActionClass) -> float:
        """Calls per second this role grants for an action class."""
        return dict(self.rates).get(cls, DEFAULT_RATES[cls])


@dataclasses.dataclass(frozen=True)
class _PrincipalRule:
    pattern: str
    tenant: str
    roles: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class IssuanceFacts:
    """What an issuance would put in a certificate, as the domain knows it before signing."""

    ca_identifier: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    validity_days: float = 0.0


def _violation(role: Role, facts: IssuanceFacts, tenant_cas: bool) -> str | None:
    """The first value of ``facts`` this role does not allow, described; None if all fit."""
    if role.cas is not None:
        ok = facts.ca_identifier in role.cas or ("own" in role.cas and tenant_cas)
        if not ok:
            return f"CA {facts.ca_identifier!r} is not among the role's cas"
    if role.dns_names is not None:
        for name in facts.dns_names:
            if not any(_dns_matches(p, name) for p in role.dns_names):
                return f"DNS name {name!r} is outside the role's dns_names"
    if role.ip_ranges is not None:
        for ip in facts.ip_addresses:
            addr = ipaddress.ip_address(ip)
            if not any(addr.version == net.version and addr in net for net in role.ip_ranges):
                return f"IP address {ip} is outside the role's ip_ranges"
    if role.uri_prefixes is not None:
        for uri in facts.uris:
            if not any(uri.startswith(p) for p in role.uri_prefixes):
                return f"URI {uri!r} is outside the role's uri_prefixes"
    if role.email_domains is not None:
        for email in facts.emails:
            domain = email.rpartition("@")[2].lower()
            if domain not in role.email_domains:
                return f"email address {email!r} is outside the role's email_domains"
    if role.max_validity_days is not None and facts.validity_days > role.max_validity_days:
        return (f"validity of {facts.validity_days:.0f} days exceeds the role's "
                f"max_validity_days {role.max_validity_days}")
    return None


@dataclasses.dataclass(frozen=True)
class Grant:
    """A principal's authorization for one action: the roles that allow it."""

    principal: Principal
    action: str
    roles: tuple[Role, ...]

    @property
    def rate_limit_exempt(self) -> bool:
        """True if any granting role is exempt from rate limits."""
        return any(r.rate_limit_exempt for r in self.roles)

    def rate(self) -> float:
        """Calls per second for this action's class: the most generous granting role's."""
        cls = action_class(self.action)
        return max(r.rate(cls) for r in self.roles)

    def check_issuance(self, facts: IssuanceFacts) -> None:
        """Refuse (Forbidden.Policy, naming the value) unless one granting role allows all."""
        # Every CA an issuance can reach was found for the caller's tenant (lookups are
        # tenant-scoped), so "own" holds for it by construction.
        problems = [_violation(role, facts, tenant_cas=True) for role in self.roles]
        if any(p is None for p in problems):
            return
        problem = next(p for p in problems if p is not None)
        raise PermissionDenied(f"{self.action}: {problem} (principal "
                               f"{self.principal.id!r})", reason="Forbidden.Policy")


class Policy:
    """A parsed policy file: principal rules and roles."""

    def __init__(self, roles: dict[str, Role], principals: Sequence[_PrincipalRule],
                 source: str = "") -> None:
        self.roles = roles
        self.principals = tuple(principals)
        self.source = source

    def principal(self, principal_id: str) -> Principal | None:
        """The tenant and roles of an authenticated id (first matching rule), or None."""
        for rule in self.principals:
            if _pattern_matches(rule.pattern, principal_id):
                return Principal(principal_id, rule.tenant, rule.roles)
        return None

    def authorize(self, principal: Principal, action: str) -> Grant:
        """The grant for ``action``, or PermissionDenied Forbidden.Action naming it."""
        roles = tuple(self.roles[r] for r in principal.roles
                      if r in self.roles and self.roles[r].allows(action))
        if not roles:
            raise PermissionDenied(
                f"principal {principal.id!r} may not call {action}",
                reason="Forbidden.Action")
        return Grant(principal, action, roles)

    def unknown(self, principal_id: str, action: str) -> PermissionDenied:
        """The refusal for an authenticated id that no rule names."""
        return PermissionDenied(
            f"principal {principal_id!r} is not in the policy; it may not call {action}",
            reason="Forbidden.Action")


# --- parsing -------------------------------------------------------------------------------

_ROLE_KEYS = {"actions", "cas", "dns_names", "ip_ranges", "uri_prefixes", "email_domains",
              "max_validity_days", "rate_per_second", "key_use_per_second",
              "reads_per_second", "rate_limit_exempt", "description"}
_PRINCIPAL_KEYS = {"id", "tenant", "roles"}
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _line_of(text: str, *needles: str) -> int:
    """1-based line of the first line containing each needle in turn (0 if not found)."""
    lines = text.splitlines()
    start = 0
    found = 0
    for needle in needles:
        for i in range(start, len(lines)):
            if needle in lines[i]:
                found, start = i + 1, i + 1
                break
    return found


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, message: str, *where: str) -> PolicyError:
        line = _line_of(self.text, *where) if where else 0
        at = f" (line {line})" if line else ""
        return PolicyError(f"{self.source}{at}: {message}")

    def strings(self, value: Any, what: str, *where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{what} must be a list of non-empty strings", *where)
        return tuple(value)

    def role(self, name: str, table: Any) -> Role:
        head = f"[roles.{name}]"
        if not isinstance(table, dict):
            raise self.fail(f"roles.{name} must be a table", head)
        for key in table:
            if key not in _ROLE_KEYS:
                raise self.fail(f"roles.{name}: unknown key {key!r} (known: "
                                f"{', '.join(sorted(_ROLE_KEYS))})", head, key)
        if "actions" not in table:
            raise self.fail(f"roles.{name}: actions is required", head)

        def opt(key: str) -> tuple[str, ...] | None:
            return (self.strings(table[key], f"roles.{name}.{key}", head, key)
                    if key in table else None)

        ranges = None
        if "ip_ranges" in table:
            try:
                ranges = tuple(ipaddress.ip_network(r, strict=False) for r in
                               self.strings(table["ip_ranges"], f"roles.{name}.ip_ranges",
                                            head, "ip_ranges"))
            except ValueError as e:
                raise self.fail(f"roles.{name}.ip_ranges: {e}", head, "ip_ranges") from None
        days = table.get("max_validity_days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                 or days < 1):
            raise self.fail(f"roles.{name}.max_validity_days must be a positive integer",
                            head, "max_validity_days")
        rates: list[tuple[ActionClass, float]] = []
        for cls, key in _RATE_KEYS.items():
            if key in table:
                value = table[key]
                if (not isinstance(value, int | float) or isinstance(value, bool)
                        or not value > 0):
                    raise self.fail(f"roles.{name}.{key} must be a positive number", head, key)
                rates.append((cls, float(value)))
        exempt = table.get("rate_limit_exempt", False)
        if not isinstance(exempt, bool):
            raise self.fail(f"roles.{name}.rate_limit_exempt must be true or false", head,
                            "rate_limit_exempt")
        emails = opt("email_domains")
        return Role(
            name=name, actions=self.strings(table["actions"], f"roles.{name}.actions", head,
                                            "actions"),
            cas=opt("cas"), dns_names=opt("dns_names"), ip_ranges=ranges,
            uri_prefixes=opt("uri_prefixes"),
            email_domains=tuple(e.lower() for e in emails) if emails is not None else None,
            max_validity_days=days, rates=tuple(rates), rate_limit_exempt=exempt)

    def principal(self, index: int, table: Any, roles: dict[str, Role]) -> _PrincipalRule:
        where = ["[[principals]]"] * (index + 1)
        if not isinstance(table, dict):
            raise self.fail(f"principals[{index}] must be a table", *where)
        for key in table:
            if key not in _PRINCIPAL_KEYS:
                raise self.fail(f"principals[{index}]: unknown key {key!r} (known: id, "
                                "tenant, roles)", *where, key)
        pid, tenant = table.get("id"), table.get("tenant")
        if not isinstance(pid, str) or not pid:
            raise self.fail(f"principals[{index}].id must be a non-empty string", *where)
        if "*" in pid[:-1]:
            raise self.fail(f"principals[{index}].id: '*' is allowed only at the end",
                            *where, "id")
        if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
            raise self.fail(f"principals[{index}].tenant must be 1-64 letters, digits, '.', "
                            "'_' or '-'", *where)
        names = self.strings(table.get("roles", []), f"principals[{index}].roles", *where)
        for r in names:
            if r not in roles:
                raise self.fail(f"principals[{index}]: unknown role {r!r}", *where, "roles")
        return _PrincipalRule(pid, tenant, names)


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse and validate a policy document; PolicyError names the line of the problem."""
    parser = _Parser(text, source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        where = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = f" (line {where.group(1)})" if where else ""
        raise PolicyError(f"{source}{line}: invalid TOML: {e}") from None
    for key in doc:
        if key not in ("roles", "principals"):
            raise parser.fail(f"unknown top-level key {key!r} (known: roles, principals)", key)
    raw_roles = doc.get("roles", {})
    if not isinstance(raw_roles, dict):
        raise parser.fail("roles must be a table of [roles.NAME] tables", "roles")
    roles = {name: parser.role(name, table) for name, table in raw_roles.items()}
    raw_principals = doc.get("principals", [])
    if not isinstance(raw_principals, list):
        raise parser.fail("principals must be an array of [[principals]] tables", "principals")
    rules = [parser.principal(i, t, roles) for i, t in enumerate(raw_principals)]
    return Policy(roles, rules, source)


class PolicyHolder:
    """The policy in force, reloaded when its file changes or on :meth:`reload`.

    The file's (mtime, size, inode) is looked at no more than once per ``check_seconds``,
    so a call costs one clock read. A file that fails to parse is logged with its line and
    the previous policy stays in force.
    """

    def __init__(self, path: Path, *, check_seconds: float = 1.0) -> None:
        self.path = path
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.last_error: str | None = None
        self._policy = self._load_or_raise()

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load_or_raise(self) -> Policy:
        stamp = self._file_stamp()
        policy = parse_policy(self.path.read_text(encoding="utf-8"), str(self.path))
        self._stamp = stamp
        return policy

    def reload(self) -> bool:
        """Re-read the file now; True if a new policy is in force."""
        with self._lock:
            try:
                policy = self._load_or_raise()
            except (OSError, PolicyError, UnicodeDecodeError) as e:
                self.last_error = str(e)
                try:
                    self._stamp = self._file_stamp()  # do not re-parse the same bad file
                except OSError:
                    pass
                log.error("policy not reloaded, the previous one stays in force: %s", e)
                return False
            self._policy = policy
            self.last_error = None
            log.info("policy reloaded from %s: %d principal rule(s), %d role(s)",
                     self.path, len(policy.principals), len(policy.roles))
            return True

    def current(self) -> Policy:
        """The policy in force, after a cheap check whether the file changed."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_seconds
            try:
                changed = self._file_stamp() != self._stamp
            except OSError:
                changed = False
            if changed:
                self.reload()
        return self._policy


# --- the grant of the call being served ------------------------------------------------------

_grant: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("hsmca_grant",
                                                                      default=None)


def current_grant() -> Grant | None:
    """The grant of the call being served, or None (local admin, background jobs)."""
    return _grant.get()


class _Granted:
    """The context manager of :func:`granted` (a class: see principal.acting_as)."""

    __slots__ = ("_grant_value", "_token")

    def __init__(self, grant: Grant | None) -> None:
        self._grant_value = grant

    def __enter__(self) -> None:
        self._token = _grant.set(self._grant_value)

    def __exit__(self, *exc_info: object) -> None:
        _grant.reset(self._token)


def granted(grant: Grant | None) -> AbstractContextManager[None]:
    """Run the enclosed block under ``grant`` (the interceptor wraps each call in this)."""
    return _Granted(grant)


def check_issuance(facts: IssuanceFacts) -> None:
    """The domain's one question before it issues: does the caller's role allow these values?"""
    grant = _grant.get()
    if grant is not None:
        grant.check_issuance(facts)


class IssuanceAuthorizer:
    """The Private CA's issuance observer that asks the caller's grant before anything is
    stored or generated (service/private_ca/issuance.py, ``IssuanceObserver``).

    End-entity requests are held to every constraint of the role; a subordinate CA to the
    role's ``cas`` (its parent); a root CA, which no CA issues, to the action alone. Outside
    a call (the job thread replaying a stored request) there is no grant: the request was
    checked when it was submitted.
    """

    def authorize(self, event: Any) -> None:
        """Refuse with Forbidden.Policy unless a granting role allows the event's values."""
        kind = event.kind
        if kind in END_ENTITY_KINDS:  # held to every constraint of the role
            assert event.not_before is not None and event.not_after is not None
            check_issuance(issuance_facts(event.ca_identifier, event.names, event.common_name,
                                          event.not_before, event.not_after))
        elif kind == CertificateKind.SUBCA:
            check_issuance(IssuanceFacts(ca_identifier=event.ca_identifier))

    def issued(self, event: Any, certificate: bytes) -> None:
        """Nothing to do after issuance."""

    def failed(self, event: Any, error: BaseException) -> None:
        """Nothing to do after a failure."""


def issuance_facts(ca_identifier: str, sans: Iterable[tuple[str, str]],
                   common_name: str | None, not_before: dt.datetime,
                   not_after: dt.datetime) -> IssuanceFacts:
    """The facts of a planned certificate: (API SAN type, value) pairs, CN and validity.

    A CN that is a host name (dotted labels) counts as a DNS name, so dns_names bounds it
    too; a CN such as "alice" is not a name the policy constrains.
    """
    by_type: dict[str, list[str]] = {}
    for kind, value in sans:
        by_type.setdefault(kind, []).append(value)
    dns = by_type.get("dNSName", [])
    if (common_name and looks_like_host_name(common_name)
            and common_name.lower() not in dns):
        dns = [*dns, common_name.lower()]
    return IssuanceFacts(
        ca_identifier=ca_identifier, dns_names=tuple(dns),
        ip_addresses=tuple(by_type.get("iPAddress", ())),
        uris=tuple(by_type.get("uniformResourceIdentifier", ())),
        emails=tuple(by_type.get("rfc822Name", ())),
        validity_days=(not_after - not_before).total_seconds() / 86400.0)
