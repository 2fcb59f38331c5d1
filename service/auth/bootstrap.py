"""TLS bootstrap and renewal: what ``hsmca serve`` makes once under ``<state_dir>/tls``.

Idempotent: each step runs only when its file is missing (or, for the server certificate,
due for renewal or missing a listen name), so ``make serve`` may run any number of times.

- ``ca.pem``: the operations CA (key non-exportable in the HSM token); clients trust it.
- ``server.pem`` + ``server.key`` (0600): the gRPC server certificate for ``localhost``,
  ``127.0.0.1``, ``::1``, the listen host and ``tls.server_names``; renewed by the running
  supervisor ``tls.renew_before_days`` before it expires, and picked up by every worker on
  its next handshake (no restart). Skipped when ``[tls]`` points at the operator's own files.
- ``admin.pem`` + ``admin.key`` (0600): the first client, principal ``admin``.
- ``ca.crl``: the operations CA's CRL (``hsmca principal revoke`` adds to it).
- ``<state_dir>/policy.toml``: maps ``admin`` to the default tenant with the ``admin`` role.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from hsm.config import TokenRole
from hsm.token import Token
from service.auth.opsca import (
    OpsCa,
    Revocation,
    der_to_pem,
    key_pem,
    new_client_key,
    read_crl,
    write_private,
    write_public,
)
from service.config import Config

__all__ = [
    "ADMIN_PRINCIPAL",
    "IssuedPrincipal",
    "bootstrap",
    "issue_principal",
    "renew_server_certificate_if_due",
    "revoke_principal",
]

log = logging.getLogger(__name__)

#: The principal of the bootstrapped admin client certificate.
ADMIN_PRINCIPAL = "admin"
_ADMIN_DAYS = 365


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def _locked(tls_dir: Path) -> Iterator[None]:
    """One bootstrapper at a time (two `make serve`s, or serve and `principal revoke`)."""
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (tls_dir / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def server_names(config: Config) -> tuple[str, ...]:
    """Names the server certificate carries: loopback, the listen host, tls.server_names."""
    host = config.grpc.listen.rpartition(":")[0].strip("[]")
    names = ["localhost", "127.0.0.1", "::1"]
    if host and host not in ("0.0.0.0", "::"):  # noqa: S104 - a name, not a bind
        names.append(host)
    names.extend(config.tls.server_names)
    return tuple(dict.fromkeys(names))


def _open_ops_ca(config: Config, token: Token) -> OpsCa:
    return OpsCa.open_or_create(token, config.tls.dir / "ca.pem", now=_now())


def _server_due(config: Config, now: dt.datetime) -> str | None:
    """Why the managed server certificate must be (re)issued now, or None."""
    tls = config.tls
    if not tls.server_cert.exists() or not tls.server_key.exists():
        return "missing"
    cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    if cert.not_valid_after_utc - now <= dt.timedelta(days=tls.renew_before_days):
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        have = {str(v) for v in san.value.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.value.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        have = set()
    missing = [n for n in server_names(config) if n not in have]
    if missing:
        return f"lacks {', '.join(missing)}"
    return None


def _issue_server(config: Config, ca: OpsCa, now: dt.datetime) -> None:
    key, spki = new_client_key()
    der = ca.issue_server(server_names(config), spki, now=now,
                          days=config.tls.server_validity_days)
    # Key first: a worker that reloads between the two writes sees a new key with the old
    # certificate and keeps its previous credentials (the pair must match to load).
    write_private(config.tls.server_key, key_pem(key))
    write_public(config.tls.server_cert, der_to_pem(der) + der_to_pem(ca.certificate_der))


def renew_server_certificate_if_due(config: Config, token: Token) -> bool:
    """Reissue the managed server certificate when due; True if it was reissued."""
    if not config.tls.managed:
        return False
    with _locked(config.tls.dir):
        now = _now()
        why = _server_due(config, now)
        if why is None:
            return False
        _issue_server(config, _open_ops_ca(config, token), now)
        log.info("issued the gRPC server certificate (%s before)", why)
        return True


@dataclass(frozen=True)
class IssuedPrincipal:
    """Where ``issue_principal`` wrote a client certificate and its key."""

    principal_id: str
    certificate: Path
    key: Path
    serial: int


def _file_stem(principal_id: str) -> str:
    tail = principal_id.rstrip("/").rsplit("/", 1)[-1] or "principal"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tail)


def _issue_client(ca: OpsCa, principal_id: str, out_dir: Path, name: str, days: int,
                  now: dt.datetime) -> IssuedPrincipal:
    key, spki = new_client_key()
    der = ca.issue_client(principal_id, spki, now=now, days=days)
    key_path, cert_path = out_dir / f"{name}.key", out_dir / f"{name}.pem"
    write_private(key_path, key_pem(key))
    write_public(cert_path, der_to_pem(der))
    return IssuedPrincipal(principal_id, cert_path, key_path,
                           x509.load_der_x509_certificate(der).serial_number)


def issue_principal(config: Config, token: Token, principal_id: str, out_dir: Path, *,
                    name: str | None = None, days: int = 90) -> IssuedPrincipal:
    """Issue a client certificate for ``principal_id`` into ``out_dir/<name>.{pem,key}``."""
    with _locked(config.tls.dir):
        ca = _open_ops_ca(config, token)
        return _issue_client(ca, principal_id, out_dir, name or _file_stem(principal_id),
                             days, _now())


def revoke_principal(config: Config, token: Token, serials: list[int]) -> Path:
    """Add serials to the operations CA's CRL and re-sign it; workers reload it by itself."""
    with _locked(config.tls.dir):
        ca = _open_ops_ca(config, token)
        number, revoked = read_crl(config.tls.crl)
        known = {r.serial for r in revoked}
        now = _now().replace(microsecond=0)
        revoked += [Revocation(s, now) for s in dict.fromkeys(serials) if s not in known]
        write_public(config.tls.crl, ca.sign_crl(revoked, number=number + 1, now=now))
        return config.tls.crl


def refresh_crl_if_due(config: Config, token: Token) -> bool:
    """Re-sign the CRL when half its validity has passed (its entries stay)."""
    with _locked(config.tls.dir):
        path = config.tls.crl
        if path.exists():
            crl = x509.load_der_x509_crl(path.read_bytes())
            next_update = crl.next_update_utc
            if next_update is not None and next_update - _now() > dt.timedelta(days=3):
                return False
        ca = _open_ops_ca(config, token)
        number, revoked = read_crl(path)
        write_public(path, ca.sign_crl(revoked, number=number + 1,
                                       now=_now().replace(microsecond=0)))
        return True


_POLICY_TEMPLATE = """\
# hsmca authorization policy: principals -> tenant and roles; roles -> actions, limits.
# Reloaded on SIGHUP and when this file changes; a file with an error is refused (the
# log names the line) and the previous policy stays in force. See docs/security.md.

[roles.admin]
actions = ["*"]
rate_limit_exempt = true

[[principals]]
id = "{admin}"
tenant = "{tenant}"
roles = ["admin"]
"""


def bootstrap(config: Config) -> None:
    """Create whatever of the operations CA, certificates, CRL and policy is missing."""
    token = Token(config.token_config(TokenRole.HSM))
    try:
        with _locked(config.tls.dir):
            now = _now()
            ca = _open_ops_ca(config, token)
            if config.tls.managed:
                why = _server_due(config, now)
                if why is not None:
                    _issue_server(config, ca, now)
                    log.info("issued the gRPC server certificate (%s before)", why)
            if not (config.tls.dir / "admin.pem").exists():
                _issue_client(ca, ADMIN_PRINCIPAL, config.tls.dir, "admin", _ADMIN_DAYS, now)
                log.info("issued the admin client certificate %s", config.tls.dir / "admin.pem")
            if not config.tls.crl.exists():
                write_public(config.tls.crl, ca.sign_crl([], number=1, now=now.replace(
                    microsecond=0)))
        if not config.auth.policy_file.exists():
            config.auth.policy_file.parent.mkdir(parents=True, exist_ok=True)
            write_public(config.auth.policy_file, _POLICY_TEMPLATE.format(
                admin=ADMIN_PRINCIPAL, tenant=config.policy.default_owner).encode())
            log.info("wrote the initial policy %s", config.auth.policy_file)
    finally:
        token.close()
