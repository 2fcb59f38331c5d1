"""CRL publishing: every CA with CRLs enabled has a current, signed, verified CRL.

A CRL is (re)issued after revocations under the CA and again before its nextUpdate (the
background thread calls :meth:`CrlPublisher.publish_due`). The background thread also
re-issues a CRL that may miss a revocation: one committed at or after its thisUpdate, whose
own re-issue failed (token or database error) or never ran (the process died in between).
The steps of :meth:`CrlPublisher.publish`:
  1. read the CA's last cRLNumber, its revocation count and its current CRL's thisUpdate,
     then its revoked entries (no write lock);
  2. build the TBSCertList (v2, AKI, cRLNumber n + 1; reasonCode only when not
     unspecified) with thisUpdate = max(now, the last thisUpdate, every listed
     revocationDate), so thisUpdate never goes backwards as cRLNumber rises and no entry
     is dated after the CRL that lists it;
  3. sign it in the token with the CA key;
  4. verify the signature against the CA public key (docs/architecture.md, invariant 3);
  5. in one short write transaction: advance the cRLNumber from n to n + 1 (compare and
     set: a publisher that lost the race to another process starts again at 1) and store
     the CRL as the CA's current one with the revocation count it saw; older CRLs are
     dropped, their numbers and SHA-256 kept (repo.store_crl). The HTTP endpoint
     (service/http.py) serves the current one. A CRL whose count is below the CA's (a
     revocation committed after it read its entries, whose own re-issue did not happen) is
     re-issued by the background check (repo.list_crl_due).

Why the order: the CRL used to be built and signed while the write lock was held, so with
thousands of entries every revocation stalled issuance on the whole service (measured: 366
-> 25 certs/s). Only step 5 holds the lock now. A higher number still never lists fewer
revocations: the entries of CRL n were read before n was stored, and CRL n + 1 reads its
entries after it read n (RFC 5280 5.2.3: strictly increasing).

Why revocations are coalesced: each re-issue reads and signs every entry, so one per
revocation made concurrent revocations queue behind each other's re-issues. A revocation
asks :meth:`CrlPublisher.after_revocation`, which returns once a CRL read after that
revocation's commit is stored: one re-issue in the process at a time per CA, and everyone
who asked while it ran is served by the next one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading

from service import audit
from service.audit import KeyRef
from service.errors import FailedPrecondition, NotFound, Unavailable, quote
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
#: Attempts of one publish that lost the cRLNumber to another process before giving up.
PUBLISH_ATTEMPTS = 8


class CrlPublisher:
    """Issues and stores CRLs for the CAs of a PrivateCaService."""

    def __init__(self, svc: PrivateCaService) -> None:
        self._svc = svc
        # Per CA: revocations that asked for a re-issue, and how many of them the last
        # stored CRL covers; the CAs whose re-issue is running now.
        self._changed = threading.Condition()
        self._asked: dict[str, int] = {}
        self._covered: dict[str, int] = {}
        self._running: set[str] = set()

    def publish(self, ca_identifier: str) -> CrlRow:
        """Issue, verify and store a new CRL for one CA (steps 1-5)."""
        for _ in range(PUBLISH_ATTEMPTS):
            row = self._publish_once(ca_identifier)
            if row is not None:
                return row
        raise Unavailable(f"the CRL of CA {ca_identifier} kept being re-issued by another "
                          "process; retry", reason="ServiceUnavailable.Crl")

    def _publish_once(self, ca_identifier: str) -> CrlRow | None:
        svc = self._svc
        with svc.store.read() as conn:
            # Step 1; the number before the entries (see the module docstring).
            ca = repo.get_ca_any_owner(conn, ca_identifier)
            if ca is None or ca.certificate is None:
                raise NotFound(f"no CA {quote(ca_identifier)}", reason="NotFound.Identifier")
            if not ca.enable_crl or not ca.crl_day:
                raise FailedPrecondition(f"CA {ca_identifier} has CRLs disabled",
                                         reason="IncorrectStatus.CrlDisabled")
            current = repo.get_latest_crl(conn, ca.identifier)
            entries = repo.list_revoked(conn, ca.identifier)
        previous = ca.last_crl_number
        revoked = [RevokedCertificate(int(e.serial, 16),
                                      e.revoked_at.astimezone(dt.UTC).replace(microsecond=0),
                                      ReasonCode(e.revocation_reason or 0))
                   for e in entries]
        # Step 2. Times are whole seconds (RFC 5280 5.1.2.4 encodes them so).
        this_update = max([svc.now(), *(r.revocation_date for r in revoked),
                           *([current.this_update.astimezone(dt.UTC)]
                             if current is not None and current.crl_number == previous
                             else [])])
        # RFC 5280 5.1.2.5: nextUpdate is when the next CRL will be issued at the latest.
        next_update = this_update + dt.timedelta(days=ca.crl_day)
        state = svc.registry.state(ca.owner, ca)
        issuer = state.issuer
        tbs = build_tbs_crl(issuer, previous + 1, this_update, next_update, revoked)
        # Steps 3-4, outside any transaction.
        signature = state.signer.sign(tbs)
        der = assemble_crl(tbs, issuer.signature_algorithm_der, signature)
        verify_crl(der, issuer.public_key_info)
        row = CrlRow(ca_identifier=ca.identifier, crl_number=previous + 1, owner=ca.owner,
                     this_update=this_update, next_update=next_update, der=der,
                     created_at=svc.now(), revocation_count=ca.revocation_count)
        # Step 5.
        with svc.store.write() as conn:
            if not repo.advance_crl_number(conn, ca.identifier, previous):
                _log.info("CA %s: CRL %d was issued by another process; again",
                          ca.identifier, previous + 1)
                return None
            digest = hashlib.sha256(der).digest()
            repo.store_crl(conn, row, digest)
            # The CA key's use, committed with the CRL it made.
            audit.record_op("crl.sign", resources=[ca.identifier], tenant=ca.owner,
                            key=KeyRef(ca.key_token, ca.key_id),
                            details={"crl_number": row.crl_number, "entries": len(revoked),
                                     "crl_sha256": digest.hex()})(conn)
        _log.info("CA %s: CRL %d with %d entries", ca.identifier, row.crl_number,
                  len(revoked))
        return row

    def publish_if_enabled(self, ca_identifier: str) -> CrlRow | None:
        """Publish when the CA has CRLs enabled; None otherwise."""
        with self._svc.store.read() as conn:
            ca = repo.get_ca_any_owner(conn, ca_identifier)
        if ca is None or not ca.enable_crl or not ca.crl_day:
            return None
        return self.publish(ca_identifier)

    def after_revocation(self, ca_identifier: str) -> None:
        """Re-issue the CRL of a CA after a revocation under it committed; returns once a
        CRL that lists it is stored. Concurrent callers share re-issues (see above)."""
        with self._changed:
            ticket = self._asked[ca_identifier] = self._asked.get(ca_identifier, 0) + 1
            while (ca_identifier in self._running
                   and self._covered.get(ca_identifier, 0) < ticket):
                self._changed.wait()
            if self._covered.get(ca_identifier, 0) >= ticket:
                return  # a re-issue that started after our commit has stored its CRL
            self._running.add(ca_identifier)
            covers = self._asked[ca_identifier]  # every revocation committed by now
        done = False
        try:
            self.publish_if_enabled(ca_identifier)
            done = True
        finally:
            with self._changed:
                self._running.discard(ca_identifier)
                if done:
                    self._covered[ca_identifier] = max(
                        self._covered.get(ca_identifier, 0), covers)
                self._changed.notify_all()

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
