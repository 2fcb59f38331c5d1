"""CRL publishing: every CA with CRLs enabled has a current, signed, verified CRL.

A CRL is (re)issued after revocations under the CA and again before its nextUpdate (the
background thread calls :meth:`CrlPublisher.publish_due`). The background thread also
re-issues a CRL that may miss a revocation: one committed at or after its thisUpdate, whose
own re-issue failed (token or database error) or never ran (the process died in between).
The steps of :meth:`CrlPublisher.publish`:
  1. read the CA's last cRLNumber, its revocation count and its current CRL's thisUpdate,
     then its revoked entries (no write lock): only the revocations numbered after those
     this process listed last time (:class:`_Lists`);
  2. build the TBSCertList (v2, AKI, cRLNumber n + 1; reasonCode only when not
     unspecified) with thisUpdate = max(now, the last thisUpdate, every listed
     revocationDate), so thisUpdate never goes backwards as cRLNumber rises and no entry
     is dated after the CRL that lists it;
  3. sign it in the token with the CA key;
  4. verify the signature against the CA public key (docs/architecture.md, invariant 3);
  5. in one short write transaction: advance the cRLNumber from n to n + 1 (compare and
     set) and store the CRL as the CA's current one with the revocation count it saw;
     older CRLs are dropped, their numbers and SHA-256 kept (repo.store_crl). A publisher
     that lost the number to another process is done if that process's CRL saw at least
     the count it saw (it lists everything this one would), and starts again at 1
     otherwise. The HTTP endpoint (service/http.py) serves the current one. A CRL whose
     count is below the CA's (a revocation committed after it read its entries, whose own
     re-issue did not happen) is re-issued by the background check (repo.list_crl_due).

Why the order: the CRL used to be built and signed while the write lock was held, so with
thousands of entries every revocation stalled issuance on the whole service (measured: 366
-> 25 certs/s). Only step 5 holds the lock now. A higher number still never lists fewer
revocations: the entries of CRL n were read before n was stored, and CRL n + 1 reads its
entries after it read n (RFC 5280 5.2.3: strictly increasing).

Why a re-issue reads only what changed: re-reading and re-encoding every entry made each
re-issue cost linear Python work in the CRL's size (at 20,000 entries: ~110 ms to encode,
more to read the rows), on the cores issuance needs. A revocation is final, so the entries
stay encoded in the process and a re-issue adds the new ones and joins bytes
(docs/operations.md, "CRLs").

Why revocations are coalesced: a revocation asks :meth:`CrlPublisher.after_revocation`,
which returns once a CRL read after that revocation's commit is stored: one re-issue in the
process at a time per CA, and everyone who asked while it ran is served by the next one. A
re-issue also waits until the CA's current CRL (whoever stored it) is CRL_MIN_INTERVAL old,
so a stream of revocations costs a few re-issues a second, not one each, and the revocations
that arrive meanwhile share it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection

from service import audit
from service.audit import KeyRef
from service.errors import FailedPrecondition, NotFound, Unavailable, quote
from service.pki.crl import (
    CrlEntries,
    ReasonCode,
    RevokedCertificate,
    assemble_crl,
    build_tbs_crl,
)
from service.pki.verify import verify_crl
from service.private_ca.service import PrivateCaService
from service.storage import repo
from service.storage.repo import CaRow, CrlRow, RevokedEntry
from service.storage.schema import CaStatus

__all__ = ["CRL_MIN_INTERVAL", "CRL_READ_ALL_EVERY", "CRL_RENEW_MARGIN", "CrlPublisher"]

_T = TypeVar("_T")

_log = logging.getLogger("hsmca.private_ca.crls")

# A CRL is re-issued once its nextUpdate is less than this far away, so relying parties
# never see an expired one (crl_day is at least one day).
CRL_RENEW_MARGIN = dt.timedelta(hours=6)
#: Attempts of one publish that lost the cRLNumber to another process before giving up.
PUBLISH_ATTEMPTS = 8
#: A re-issue after a revocation starts no sooner than this after the CA's current CRL was
#: stored (by any process): a burst of revocations costs a few re-issues, not one each, and
#: a revocation is on the served CRL within about this plus one re-issue.
CRL_MIN_INTERVAL = dt.timedelta(milliseconds=250)
#: How often a process reads every revoked entry of a CA again instead of those numbered
#: since its last read (see _Lists).
CRL_READ_ALL_EVERY = dt.timedelta(hours=1)


@dataclasses.dataclass
class _Listed:
    """The revoked entries of one CA as this process last read them (see :class:`_Lists`)."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    entries: CrlEntries | None = None  # None: read them all next time
    last_seq: int = 0  # the highest revocation_seq in ``entries``
    read_all_at: float = 0.0  # time.monotonic() of the last read of every entry


class _Lists:
    """Per CA, the revoked entries already encoded, brought up to date from the database.

    A revocation is final and numbered per CA in commit order (certificate.revocation_seq),
    so the entries of the last CRL plus the revocations numbered after it are the entries
    of the next: a re-issue reads and encodes only those (repo.list_revoked_since) and joins
    the bytes of the others. The first re-issue of a process reads them all, and so does one
    ``read_all_every`` after that: a revoked row that something other than repo's
    revocations wrote has no number, and is listed from then on (a warning says so).
    """

    def __init__(self, read_all_every: dt.timedelta) -> None:
        self._read_all_every = read_all_every.total_seconds()
        self._lock = threading.Lock()
        self._by_ca: dict[str, _Listed] = {}

    def build_tbs(self, conn: Connection, ca: CaRow, build: Callable[[CrlEntries], _T]
                  ) -> tuple[_T, int]:
        """``build`` over the CA's current entries: (its result, how many entries)."""
        with self._lock:
            listed = self._by_ca.setdefault(ca.identifier, _Listed())
        with listed.lock:  # one reader per CA; the result is built before the next adds
            entries, now = listed.entries, time.monotonic()
            if entries is None or now - listed.read_all_at >= self._read_all_every:
                listed.entries = None  # until read: an error leaves nothing half-read
                rows = repo.list_revoked(conn, ca.identifier)
                entries = CrlEntries(_revoked(r) for r in rows)
                listed.last_seq = max((r.revocation_seq or 0 for r in rows), default=0)
                listed.read_all_at = now
                unnumbered = sum(r.revocation_seq is None for r in rows)
                if unnumbered:
                    _log.warning("CA %s: %d revoked certificates without a revocation_seq "
                                 "(not revoked through repo); listed, but a CRL only lists "
                                 "such a revocation once every entry is read again",
                                 ca.identifier, unnumbered)
            else:
                try:
                    rows = repo.list_revoked_since(conn, ca.identifier, listed.last_seq)
                    entries.add(_revoked(r) for r in rows)
                except BaseException:
                    listed.entries = None  # whatever went wrong, start again from the rows
                    raise
                listed.last_seq = max((r.revocation_seq or 0 for r in rows),
                                      default=listed.last_seq)
            listed.entries = entries
            return build(entries), len(entries)


def _revoked(e: RevokedEntry) -> RevokedCertificate:
    # Times are whole seconds (RFC 5280 5.1.2.4 encodes them so).
    return RevokedCertificate(int(e.serial, 16),
                              e.revoked_at.astimezone(dt.UTC).replace(microsecond=0),
                              ReasonCode(e.revocation_reason or 0))


class CrlPublisher:
    """Issues and stores CRLs for the CAs of a PrivateCaService."""

    def __init__(self, svc: PrivateCaService, *,
                 min_interval: dt.timedelta = CRL_MIN_INTERVAL,
                 read_all_every: dt.timedelta = CRL_READ_ALL_EVERY) -> None:
        self._svc = svc
        self._min_interval = min_interval
        self._lists = _Lists(read_all_every)
        # Per CA: revocations that asked for a re-issue, and how many of them the last
        # stored CRL covers; the CAs whose re-issue is running now.
        self._changed = threading.Condition()
        self._asked: dict[str, int] = {}
        self._covered: dict[str, int] = {}
        self._running: set[str] = set()
        # The last CRL this process stored or served, per CA: served again without reading
        # its DER from the database while it is still the current one.
        self._served: dict[str, CrlRow] = {}

    def publish(self, ca_identifier: str) -> CrlRow:
        """Issue, verify and store a new CRL for one CA (steps 1-5); or, when another process
        stored one that lists every revocation this one read, that one."""
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
            current = repo.get_latest_crl_head(conn, ca.identifier)
        previous, crl_day = ca.last_crl_number, ca.crl_day
        state = svc.registry.state(ca.owner, ca)
        issuer = state.issuer
        now = svc.now()

        def build(entries: CrlEntries) -> tuple[bytes, dt.datetime, dt.datetime]:
            # Step 2. Times are whole seconds (RFC 5280 5.1.2.4 encodes them so).
            latest = entries.latest_revocation_date
            this_update = max([now, *([latest] if latest is not None else []),
                               *([current.this_update.astimezone(dt.UTC)]
                                 if current is not None and current.crl_number == previous
                                 else [])])
            # RFC 5280 5.1.2.5: nextUpdate is when the next CRL will be issued at the latest.
            next_update = this_update + dt.timedelta(days=crl_day)
            return (build_tbs_crl(issuer, previous + 1, this_update, next_update, entries),
                    this_update, next_update)

        with svc.store.read() as conn:  # the entries, after the number
            (tbs, this_update, next_update), listed = self._lists.build_tbs(conn, ca, build)
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
                winner = repo.get_latest_crl(conn, ca.identifier)
                if winner is not None and winner.revocation_count >= ca.revocation_count:
                    # Another process stored one that lists at least what this one read.
                    _log.info("CA %s: CRL %d by another process covers this re-issue",
                              ca.identifier, winner.crl_number)
                    return winner
                _log.info("CA %s: CRL %d was issued by another process; again",
                          ca.identifier, previous + 1)
                return None
            digest = hashlib.sha256(der).digest()
            repo.store_crl(conn, row, digest)
            # The CA key's use, committed with the CRL it made.
            audit.record_op("crl.sign", resources=[ca.identifier], tenant=ca.owner,
                            key=KeyRef(ca.key_token, ca.key_id),
                            details={"crl_number": row.crl_number, "entries": listed,
                                     "crl_sha256": digest.hex()})(conn)
        self._served[ca.identifier] = row
        _log.info("CA %s: CRL %d with %d entries", ca.identifier, row.crl_number, listed)
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
        done = False
        try:
            self._wait_min_interval(ca_identifier)
            with self._changed:
                covers = self._asked[ca_identifier]  # every revocation committed by now
            self.publish_if_enabled(ca_identifier)
            done = True
        finally:
            with self._changed:
                self._running.discard(ca_identifier)
                if done:
                    self._covered[ca_identifier] = max(
                        self._covered.get(ca_identifier, 0), covers)
                self._changed.notify_all()

    def _wait_min_interval(self, ca_identifier: str) -> None:
        """Sleep until the CA's current CRL is CRL_MIN_INTERVAL old (see there)."""
        if self._min_interval <= dt.timedelta(0):
            return
        with self._svc.store.read() as conn:
            head = repo.get_latest_crl_head(conn, ca_identifier)
        if head is not None:
            wait = (head.created_at + self._min_interval - self._svc.now()).total_seconds()
            # Bounded: a clock that jumped back must not hold revocations for long.
            time.sleep(min(max(0.0, wait), self._min_interval.total_seconds()))

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
            head = repo.get_latest_crl_head(conn, ca_identifier)
            if head is None:
                return None
            known = self._served.get(ca_identifier)
            if known is not None and known.crl_number == head.crl_number:
                return known
            row = repo.get_latest_crl(conn, ca_identifier)
        if row is not None:
            self._served[ca_identifier] = row
        return row
