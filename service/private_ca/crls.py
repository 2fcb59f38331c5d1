"""CRL publishing: every CA with CRLs enabled has a current, signed, verified CRL.

A CRL is (re)issued on every revocation under the CA and again before its nextUpdate (the
background thread calls :meth:`CrlPublisher.publish_due`). The background thread also
re-issues a CRL that may miss a revocation: one committed at or after its thisUpdate, whose
own re-issue failed (token or database error) or never ran (the process died in between).
The steps:
  1. take the next cRLNumber in the same write transaction that reads the revoked entries,
     so a higher number never lists fewer revocations (RFC 5280 5.2.3: strictly increasing);
  2. build the TBSCertList (v2, AKI, cRLNumber; reasonCode only when not unspecified);
  3. sign it in the token with the CA key;
  4. verify the signature against the CA public key (docs/architecture.md, invariant 3);
  5. store it; the HTTP endpoint (service/http.py) serves the latest one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

from service import audit
from service.audit import KeyRef
from service.errors import FailedPrecondition, NotFound, quote
from service.pki.crl import ReasonCode, RevokedCertificate, assemble_crl, build_tbs_crl
from service.pki.verify import verify_crl
from service.private_ca.service import PrivateCaService
from service.storage import repo
from service.storage.repo import CrlRow
from service.storage.schema import CaStatus

__all__ = ["CRL_RENEW_MARGIN", "CrlPublisher"]

_log = logging.getLogger("hsmca.private_ca.crls")

# A CRL is re-issued once its nextUpdate is less than this far away, so relying parties
# never see an expired one (crl_day is at least one day).
CRL_RENEW_MARGIN = dt.timedelta(hours=6)


class CrlPublisher:
    """Issues and stores CRLs for the CAs of a PrivateCaService."""

    def __init__(self, svc: PrivateCaService) -> None:
        self._svc = svc

    def publish(self, ca_identifier: str) -> CrlRow:
        """Issue, verify and store a new CRL for one CA (steps 1-5)."""
        svc = self._svc
        with svc.store.read() as conn:
            ca = repo.get_ca_any_owner(conn, ca_identifier)
        if ca is None or ca.certificate is None:
            raise NotFound(f"no CA {quote(ca_identifier)}", reason="NotFound.Identifier")
        if not ca.enable_crl or not ca.crl_day:
            raise FailedPrecondition(f"CA {ca_identifier} has CRLs disabled",
                                     reason="IncorrectStatus.CrlDisabled")
        state = svc.registry.state(ca.owner, ca)
        issuer = state.issuer
        this_update = svc.now()
        # RFC 5280 5.1.2.5: nextUpdate is when the next CRL will be issued at the latest.
        next_update = this_update + dt.timedelta(days=ca.crl_day)
        with svc.store.write() as conn:
            number = repo.next_crl_number(conn, ca.identifier)
            revoked = [
                RevokedCertificate(int(e.serial, 16),
                                   e.revoked_at.astimezone(dt.UTC).replace(microsecond=0),
                                   ReasonCode(e.revocation_reason or 0))
                for e in repo.list_revoked(conn, ca.identifier)]
            tbs = build_tbs_crl(issuer, number, this_update, next_update, revoked)
            # Signing inside the transaction keeps numbers and contents in one order across
            # processes; it holds the write lock for one signature (about a millisecond).
            signature = state.signer.sign(tbs)
            der = assemble_crl(tbs, issuer.signature_algorithm_der, signature)
            verify_crl(der, issuer.public_key_info)
            row = CrlRow(ca_identifier=ca.identifier, crl_number=number, owner=ca.owner,
                         this_update=this_update, next_update=next_update, der=der,
                         created_at=this_update)
            repo.insert_crl(conn, row)
            # The CA key's use, committed with the CRL it made.
            audit.record_op("crl.sign", resources=[ca.identifier], tenant=ca.owner,
                            key=KeyRef(ca.key_token, ca.key_id),
                            details={"crl_number": number, "entries": len(revoked),
                                     "crl_sha256": hashlib.sha256(der).hexdigest()})(conn)
        _log.info("CA %s: CRL %d with %d entries", ca.identifier, number, len(revoked))
        return row

    def publish_if_enabled(self, ca_identifier: str) -> CrlRow | None:
        """Publish when the CA has CRLs enabled; None otherwise."""
        with self._svc.store.read() as conn:
            ca = repo.get_ca_any_owner(conn, ca_identifier)
        if ca is None or not ca.enable_crl or not ca.crl_day:
            return None
        return self.publish(ca_identifier)

    def publish_due(self) -> int:
        """Re-issue every CRL whose nextUpdate is near, that may miss a revocation, or that
        does not exist yet."""
        with self._svc.store.read() as conn:
            due = repo.list_crl_due(conn, self._svc.now() + CRL_RENEW_MARGIN)
        done = 0
        for identifier in due:
            try:
                self.publish(identifier)
                done += 1
            except Exception:
                # One CA's failure (e.g. its key gone) must not keep the others' CRLs stale.
                _log.exception("could not publish the CRL of CA %s", identifier)
        return done

    def ca_certificate(self, ca_identifier: str) -> bytes | None:
        """The CA's certificate DER once issued (public: the caIssuers URL serves it)."""
        with self._svc.store.read() as conn:
            ca = repo.get_ca_any_owner(conn, ca_identifier)
        if ca is None or ca.status not in (CaStatus.ISSUE, CaStatus.REVOKE):
            return None
        return ca.certificate

    def latest(self, ca_identifier: str) -> CrlRow | None:
        """The CA's current CRL (public: not owner-scoped)."""
        with self._svc.store.read() as conn:
            return repo.get_latest_crl(conn, ca_identifier)
