"""Who may call what: the per-call decision the gRPC interceptor asks for, in one place.

Two perimeters:

- :class:`LocalAdmin`: plaintext gRPC on loopback (``grpc.insecure = true``). Every call runs
  as the built-in local admin of the default tenant; no policy, no rate limit.
- :class:`MutualTls`: the peer's certificate was verified by the TLS handshake (chain to the
  trust anchors, validity period). Here: not revoked on the operations CA's CRL, its
  principal (URI SAN, else subject CN) named by the policy, the action allowed by one of
  its roles, and within the rate of that action class.

The transport-specific part (reading the peer certificate from grpc's auth context) stays
in the interceptor, which hands this module the PEM bytes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from service.auth.policy import Grant, PolicyHolder, action_class
from service.auth.principal import LOCAL_ADMIN_ID, Principal
from service.auth.ratelimit import SharedRateLimiter, key_hash
from service.errors import PermissionDenied, ResourceExhausted, Unauthenticated

__all__ = ["CrlHolder", "LocalAdmin", "MutualTls", "Perimeter", "PeerCertificate",
           "principal_id_of"]

log = logging.getLogger(__name__)


class Perimeter(Protocol):
    """Decides one call: its principal and, unless unconstrained, its grant."""

    def admit(self, action: str, peer_pem: bytes | None) -> tuple[Principal, Grant | None]:
        """The caller of ``action`` (``Service/Method``), or an HsmcaError refusing it."""
        ...

    def identify(self, peer_pem: bytes | None) -> tuple[str | None, str | None]:
        """For the log and the audit record of a refused call: the principal id it claimed
        and the tenant the policy gives that id (None where it has none)."""
        ...


class LocalAdmin:
    """Plaintext on loopback: every call is the local admin of ``tenant``."""

    def __init__(self, tenant: str) -> None:
        self.principal = Principal(LOCAL_ADMIN_ID, tenant, ("admin",))

    def admit(self, action: str, peer_pem: bytes | None) -> tuple[Principal, Grant | None]:
        """Always the local admin, with no constraints."""
        return self.principal, None

    def identify(self, peer_pem: bytes | None) -> tuple[str | None, str | None]:
        """Always the local admin."""
        return self.principal.id, self.principal.tenant


def principal_id_of(cert: x509.Certificate) -> str | None:
    """The certificate's first URI SAN (a SPIFFE ID, say), else its subject CN, else None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uris:
            return str(uris[0])
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


@dataclass(frozen=True)
class PeerCertificate:
    """What the perimeter needs from a verified client certificate, parsed once."""

    principal_id: str | None
    issuer_der: bytes
    serial: int
    not_after: float  # POSIX seconds


@dataclass(frozen=True)
class _Decision:
    """A (principal id, action) decision under one policy: cached until the policy changes."""

    principal: Principal | None
    grant: Grant | None
    refusal: PermissionDenied | None
    limit_key: int  # the rate bucket's hash (ratelimit.key_hash)
    rate: float
    exempt: bool


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class CrlHolder:
    """Revoked (issuer, serial) pairs from the operations CA's CRL, reloaded when it changes.

    A CRL whose signature does not verify against the CA certificate is ignored (the
    previous one stays); no CRL file means nothing is revoked (an operator's own trust
    bundle may not come with one).
    """

    def __init__(self, crl_path: Path, ca_path: Path, *, check_seconds: float = 1.0) -> None:
        self.crl_path = crl_path
        self.ca_path = ca_path
        self.check_seconds = check_seconds
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._revoked: frozenset[tuple[bytes, int]] = frozenset()
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        stamp = _file_stamp(self.crl_path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            self._revoked = frozenset()
            return
        try:
            crl = x509.load_der_x509_crl(self.crl_path.read_bytes())
            ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                raise ValueError("its signature does not verify with the operations CA")
        except (OSError, ValueError) as e:
            log.error("client CRL %s not loaded, the previous one stays: %s", self.crl_path, e)
            return
        issuer = crl.issuer.public_bytes()
        self._revoked = frozenset((issuer, r.serial_number) for r in crl)
        log.info("client CRL loaded: %d revoked certificate(s)", len(self._revoked))

    def is_revoked(self, issuer_der: bytes, serial: int) -> bool:
        """True if the CRL in force lists this certificate."""
        now = time.monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._next_check = now + self.check_seconds
                    self._load()
        return (issuer_der, serial) in self._revoked


class MutualTls:
    """mTLS perimeter: revocation, policy lookup, action authorization and rate limits.

    Per call it costs a few dictionary lookups and one rate-limit bucket update: the peer
    certificate is parsed once per distinct certificate, and the decision for a (principal,
    action) pair once per policy (both caches are bounded and cleared when full).
    """

    _CACHE = 4096

    def __init__(self, policy: PolicyHolder, limiter: SharedRateLimiter, crl: CrlHolder) -> None:
        self.policy = policy
        self.limiter = limiter
        self.crl = crl
        self._peers: dict[bytes, PeerCertificate] = {}
        self._decisions: dict[tuple[str, str], _Decision] = {}
        self._decisions_policy: object = None

    def _peer(self, pem: bytes) -> PeerCertificate:
        peer = self._peers.get(pem)
        if peer is None:
            cert = x509.load_pem_x509_certificate(pem)
            peer = PeerCertificate(principal_id_of(cert), cert.issuer.public_bytes(),
                                   cert.serial_number, cert.not_valid_after_utc.timestamp())
            if len(self._peers) >= self._CACHE:
                self._peers.clear()
            self._peers[pem] = peer
        return peer

    def _decide(self, principal_id: str, action: str) -> _Decision:
        policy = self.policy.current()
        if policy is not self._decisions_policy:
            self._decisions = {}
            self._decisions_policy = policy
        decision = self._decisions.get((principal_id, action))
        if decision is not None:
            return decision
        principal = policy.principal(principal_id)
        grant: Grant | None = None
        refusal: PermissionDenied | None = None
        rate, exempt = 0.0, True
        if principal is None:
            refusal = policy.unknown(principal_id, action)
        else:
            try:
                grant = policy.authorize(principal, action)
                rate, exempt = grant.rate(), grant.rate_limit_exempt
            except PermissionDenied as e:
                refusal = e
        cls = action_class(action).value
        # One bucket per (principal, class, rate): actions of one class granted at different
        # rates (two roles) must not refill each other's bucket, or calls of the generous
        # action would let the other one past its own rate.
        decision = _Decision(principal, grant, refusal,
                             key_hash(f"{principal_id}\0{cls}\0{rate!r}"), rate, exempt)
        if len(self._decisions) >= self._CACHE:
            self._decisions.clear()
        self._decisions[(principal_id, action)] = decision
        return decision

    def identify(self, peer_pem: bytes | None) -> tuple[str | None, str | None]:
        """The URI SAN or CN of the peer certificate (parsed once, cached), and the tenant
        the policy gives it (None for an id the policy does not know)."""
        principal_id = self._peer(peer_pem).principal_id if peer_pem else None
        if principal_id is None:
            return None, None
        known = self.policy.current().principal(principal_id)
        return principal_id, known.tenant if known is not None else None

    def admit(self, action: str, peer_pem: bytes | None) -> tuple[Principal, Grant | None]:
        """Authenticate the peer certificate, authorize ``action``, charge the rate limit."""
        if not peer_pem:
            # The handshake requires a certificate; this is a transport without one.
            raise Unauthenticated("a client certificate is required",
                                  reason="Unauthenticated.NoClientCertificate")
        peer = self._peer(peer_pem)
        if peer.not_after <= time.time():
            # Connections outlive certificates: the handshake checked it when it was valid.
            raise Unauthenticated("the client certificate has expired",
                                  reason="Unauthenticated.CertificateExpired")
        if self.crl.is_revoked(peer.issuer_der, peer.serial):
            raise Unauthenticated("the client certificate is revoked",
                                  reason="Unauthenticated.CertificateRevoked")
        if peer.principal_id is None:
            raise Unauthenticated("the client certificate names no principal (no URI SAN, "
                                  "no subject CN)", reason="Unauthenticated.NoPrincipal")
        decision = self._decide(peer.principal_id, action)
        if decision.refusal is not None:
            # A fresh exception per call: the interceptor attaches the traceback context.
            raise PermissionDenied(decision.refusal.message, reason=decision.refusal.reason)
        assert decision.principal is not None and decision.grant is not None
        if not decision.exempt:
            taken = self.limiter.acquire_hashed(decision.limit_key, decision.rate)
            if not taken.allowed:
                cls = action_class(action).value
                raise ResourceExhausted(
                    f"principal {peer.principal_id!r} exceeded {decision.rate:g} {cls} call(s) "
                    "per second", reason="LimitExceeded.RateLimit",
                    retry_after=taken.retry_after,
                    quota_subject=f"principal:{peer.principal_id}/{cls}")
        return decision.principal, decision.grant
