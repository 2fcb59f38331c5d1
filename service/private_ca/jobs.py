"""Asynchronous issuance jobs (immediately = 0) and custom_identifier idempotency.

This module stores, claims, replays and finishes jobs; what to issue, and when, is the
issuance cycle's decision (service/private_ca/issuance.py). A job is a ``certificate`` row
in status PENDING holding the normalized request as JSON. Every request is validated in
full before the row is written (invariant 5): the cycle builds and lints its
TBSCertificate as a dry run, and a custom serial is stored with the job, so a bad request
is refused synchronously with nothing stored. A background :class:`JobWorker` thread in
every worker process runs claimed jobs through the same cycle (with the row's identifier
and ``repo.reserve_claimed`` at step 6). Exactly once, across processes and kill -9:
- the lease is a compare-and-set UPDATE, so one claimer wins; an expired lease is reclaimed;
  a worker renews the lease of the job in its hands only, so a job it put down after an
  outage (deferred with a backoff, or not even that while the database was away) is free
  again once its deferral is made or its lease runs out;
- a job that died after step 6 (RESERVED) is re-signed from its stored TBS, so the serial
  reserved first is the only one it ever gets, and ``mark_issued`` (from RESERVED only)
  records at most one certificate. (The claim also returns the leftover of a CA's creation,
  which is failed, not re-signed: PrivateCaService.run_next_job.)

custom_identifier is an idempotency key per owner: a request carrying it is always stored
as a job row first, so the UNIQUE (owner, custom_identifier) constraint decides between
racing requests; the loser re-reads the winner's row and returns its result if the request
fingerprints (SHA-256 of the canonical JSON) are equal, else AlreadyExists.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Protocol, Union

from service import audit
from service.entropy import new_identifier
from service.errors import (
    AlreadyExists,
    FailedPrecondition,
    HsmcaError,
    Unavailable,
    outage,
)
from service.pki.pem import encode as pem_encode
from service.private_ca.plans import LeafPlan
from service.private_ca.registry import CaState
from service.private_ca.requests import (
    CreateClientCertificate,
    CreateCustomCertificate,
    CreateServerCertificate,
    IssuedCertificate,
)
from service.storage import repo
from service.storage.repo import CertificateRow, serial_hex
from service.storage.schema import CaStatus, CertificateKind, CertificateStatus
from service.storage.store import Store

__all__ = ["JobLease", "JobQueue", "JobRunner", "JobWorker", "Submitted", "decode_request",
           "encode_request", "fingerprint"]

_log = logging.getLogger("hsmca.private_ca.jobs")

#: How long a claimed job is held before another worker may take it (jobs.lease_seconds).
LEASE_SECONDS = 30.0
# Backoff of a job that met an outage of the token or the database: 0.5 s, doubling, 30 s.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# How long a synchronous call waits for a racing identical request (same custom_identifier)
# to finish issuing before answering UNAVAILABLE (retry-safe: same key, same result).
REPLAY_WAIT_SECONDS = 30.0

Request = CreateServerCertificate | CreateClientCertificate | CreateCustomCertificate
_TYPES: dict[str, type[Any]] = {
    CertificateKind.SERVER: CreateServerCertificate,
    CertificateKind.CLIENT: CreateClientCertificate,
    CertificateKind.CUSTOM: CreateCustomCertificate,
}


@dataclasses.dataclass(frozen=True)
class JobLease:
    """A job row this worker holds the lease of: issue it under its own identifier."""

    identifier: str
    worker_id: str


# --- the normalized request as JSON ------------------------------------------------------


def encode_request(req: Request) -> dict[str, Any]:
    """The request as a JSON-ready object: {"type": SERVER|CLIENT|CUSTOM, "request": {...}}."""
    kind = next(k for k, t in _TYPES.items() if isinstance(req, t))
    return {"type": str(kind), "request": dataclasses.asdict(req)}


def fingerprint(encoded: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON, ignoring ``immediately`` (how much to return)."""
    body = json.loads(json.dumps(encoded))  # a deep copy with tuples as lists
    body["request"]["common"].pop("immediately", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def decode_request(encoded: Mapping[str, Any]) -> Request:
    """The request dataclass back from :func:`encode_request`'s output."""
    cls = _TYPES[encoded["type"]]
    value: Request = _decode(cls, encoded["request"])
    return value


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _decode(hints[f.name], value[f.name])
                       for f in dataclasses.fields(hint) if f.name in value})
    if origin is tuple:
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(_decode(items[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(items, value, strict=True))
    if origin is not None and issubclass(origin, Mapping):
        return dict(value)
    return value


# --- the job queue -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Submitted:
    """The outcome of :meth:`JobQueue.submit`.

    ``lease`` set: a synchronous idempotent request stored as its own job and leased to the
    caller, who issues it now. Otherwise ``answer`` is the reply: the job's identifier (it
    runs later) or the result recorded under the same custom_identifier.
    """

    answer: IssuedCertificate
    lease: JobLease | None = None


class JobQueue:
    """Stores, claims, replays and finishes jobs (certificate rows in status PENDING)."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime],
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self.lease_seconds = lease_seconds
        self._mutex = threading.Lock()
        # worker -> the job it runs now: the one lease its renewer extends. A job that met
        # an outage leaves the worker's hands with its lease, so the lease must run out (or
        # be given back), not be renewed for as long as the worker lives.
        self._in_hand: dict[str, str] = {}
        # Deferrals the database refused (it was away): job -> (worker, claimable from),
        # made by the worker's next claim, once the database is back.
        self._owed: dict[str, tuple[str, dt.datetime]] = {}

    def submit(self, owner: str, state: CaState, plan: LeafPlan, req: Request,
               now: dt.datetime) -> Submitted:
        """Store a validated request as a job, or replay the one its custom_identifier names."""
        encoded = encode_request(req)
        digest = fingerprint(encoded)
        custom = plan.custom_identifier
        if custom is not None:
            existing = self._by_custom_identifier(owner, custom)
            if existing is not None:
                replayed = self._replay(owner, existing, digest, plan, state)
                if replayed is not None:
                    return Submitted(replayed)
                # The first request with this custom_identifier failed before its
                # reservation while this one waited for it, and its row went with its error
                # (abandon): this request is stored in its place, as if it came first.
        identifier = new_identifier()
        # A synchronous idempotent call holds the lease of its own job, so no background
        # worker takes it meanwhile; if this process dies, the lease runs out and a worker
        # finishes it.
        lease = None if plan.asynchronous else JobLease(identifier, f"sync-{new_identifier()}")
        row = CertificateRow(
            identifier=identifier, owner=owner, issuer_identifier=state.ca.identifier,
            status=CertificateStatus.PENDING, kind=plan.kind, created_at=now, updated_at=now,
            common_name=plan.common_name,
            # A custom serial is stored with the job, so the UNIQUE (issuer, serial)
            # constraint refuses a used one now (AlreadyExists.SerialNumber), not later.
            serial=serial_hex(plan.custom_serial) if plan.custom_serial is not None else None,
            request=encoded, request_fingerprint=digest, custom_identifier=custom,
            asynchronous=True, lease_owner=lease.worker_id if lease else None,
            lease_expires_at=now + dt.timedelta(seconds=self.lease_seconds) if lease else None,
            tags=dict(plan.common.tags), resource_group_id=plan.common.resource_group_id or None,
            enable_crl=plan.common.enable_crl)
        try:
            with self._store.write() as conn:
                # Read inside the write transaction: a CA revoked by another process is seen.
                ca = repo.get_ca(conn, owner, state.ca.identifier)
                if ca is None or ca.status != CaStatus.ISSUE:
                    raise FailedPrecondition(
                        f"the issuing CA is {ca.status if ca else 'gone'}, not ISSUE",
                        reason="IncorrectStatus.CA")
                repo.insert_pending(conn, row)
                # The stored request is a state change of its own (the signing, later, is
                # recorded by the cycle); the record commits with the row.
                audit.record_op("certificate.request", resources=[identifier,
                                                                  state.ca.identifier],
                                tenant=owner, details={"kind": str(plan.kind),
                                                       "asynchronous": plan.asynchronous})(conn)
        except AlreadyExists:
            # Lost the race to an identical (or conflicting) request, on the
            # custom_identifier or on the custom serial both carry: the winner's row decides.
            winner = self._by_custom_identifier(owner, custom) if custom is not None else None
            if winner is None:
                raise
            replayed = self._replay(owner, winner, digest, plan, state)
            if replayed is None:
                raise Unavailable(f"the request first made with custom_identifier {custom!r} "
                                  "failed meanwhile; send it again",
                                  reason="ServiceUnavailable.Issuing") from None
            return Submitted(replayed)
        return Submitted(IssuedCertificate(identifier, "", row.serial or "", ""), lease)

    def abandon(self, lease: JobLease, error: HsmcaError) -> None:
        """A synchronous idempotent call failed: drop its job, retry it later, or fail it."""
        with self._store.write() as conn:
            # Refused before its reservation (the CA revoked meanwhile, the token away): the
            # caller has the error and nothing was reserved or signed, so the row goes and
            # the custom_identifier stays free for the retry.
            if repo.discard_pending(conn, lease.identifier, lease.worker_id):
                return
            if outage(error) is not None:
                # Reserved, then the token or the database went away: not the request's
                # fault, and the caller's UNAVAILABLE invites a retry of the same request.
                # As for an asynchronous job, the job thread signs the stored TBS (same
                # serial) once the outage ends, and that retry returns the certificate.
                until = self._clock() + dt.timedelta(seconds=retry_delay(1))
                repo.defer_job(conn, lease.identifier, lease.worker_id, until)
            else:
                # The row stays, FAILED, with its serial and TBS (never silent); only while
                # this call holds its lease: a job thread that took the job over (the lease
                # ran out) issues it, and its outcome stands.
                repo.mark_failed(conn, lease.identifier, _reason(error),
                                 leased_by=lease.worker_id)

    def claim(self, worker_id: str) -> CertificateRow | None:
        """Lease one claimable job (committed at once so other processes see the lease).

        The job is in ``worker_id``'s hands (its lease renewed) until :meth:`put_down`.
        """
        with self._mutex:
            owed = {k: v for k, v in self._owed.items() if v[0] == worker_id}
        with self._store.write() as conn:
            for identifier, (_, until) in owed.items():
                repo.defer_job(conn, identifier, worker_id, until)
            row = repo.claim_pending(conn, worker_id, self.lease_seconds, self._clock())
        with self._mutex:
            for identifier in owed:
                self._owed.pop(identifier, None)
            if row is not None:
                self._in_hand[worker_id] = row.identifier
        return row

    def put_down(self, worker_id: str) -> None:
        """The job ``worker_id`` claimed is finished, failed or deferred: stop renewing it."""
        with self._mutex:
            self._in_hand.pop(worker_id, None)

    def finish_failed(self, row: CertificateRow, error: BaseException, worker_id: str) -> None:
        """A claimed job could not be issued: FAILED, or retried later after an outage."""
        unavailable = outage(error)
        if unavailable is not None:
            # The token or the database is away: not the job's fault. It is retried after
            # a backoff, as often as it takes, and never ends FAILED for it.
            self._retry_later(row, worker_id, unavailable)
            return
        if not isinstance(error, HsmcaError):
            _log.error("job %s failed", row.identifier, exc_info=error)
        _log.info("job %s failed: %s", row.identifier, _reason(error))
        with self._store.write() as conn:
            if row.status == CertificateStatus.RESERVED:
                # Reserved before its process died: the token may have signed its TBS, so
                # the serial goes on the CA's CRL (a no-op if the pipeline revoked it).
                repo.revoke_reserved(conn, row.identifier, _reason(error), now=self._clock())
            else:
                repo.mark_failed(conn, row.identifier, _reason(error))

    def renew(self, worker_id: str) -> int:
        """Extend the lease of the job in ``worker_id``'s hands by a lease from now."""
        with self._mutex:
            identifier = self._in_hand.get(worker_id)
        if identifier is None:
            return 0
        with self._store.write() as conn:
            return int(repo.renew_lease(
                conn, identifier, worker_id,
                self._clock() + dt.timedelta(seconds=self.lease_seconds)))

    def release(self, worker_id: str) -> int:
        """Give back every lease ``worker_id`` holds: another worker may take them now."""
        with self._store.write() as conn:
            released = repo.release_leases(conn, worker_id, self._clock())
        with self._mutex:
            for identifier in [k for k, v in self._owed.items() if v[0] == worker_id]:
                del self._owed[identifier]
        return released

    def _retry_later(self, row: CertificateRow, worker_id: str, e: Unavailable) -> None:
        delay = retry_delay(row.attempts)
        _log.warning("job %s: %s; retrying in %.1fs", row.identifier, e.message, delay)
        until = self._clock() + dt.timedelta(seconds=delay)
        try:
            with self._store.write() as conn:
                repo.defer_job(conn, row.identifier, worker_id, until)
        except Exception as again:
            # The database is away too. The job keeps this worker's lease, which is no
            # longer renewed (it is out of the worker's hands): the worker's next claim
            # makes the deferral once the database is back; if the worker dies first, the
            # lease runs out and any worker claims the job.
            _log.warning("job %s: could not defer (%s); deferred at the next claim",
                         row.identifier, type(again).__name__)
            with self._mutex:
                self._owed[row.identifier] = (worker_id, until)

    def _by_custom_identifier(self, owner: str, custom: str) -> CertificateRow | None:
        with self._store.read() as conn:
            return repo.get_certificate_by_custom_identifier(conn, owner, custom)

    def _replay(self, owner: str, row: CertificateRow, digest: str, plan: LeafPlan,
                state: CaState) -> IssuedCertificate | None:
        """The result recorded under a custom_identifier, if the request is the same; None
        if the row went while this waited for it (its request failed before reserving)."""
        if row.request_fingerprint != digest or row.issuer_identifier != state.ca.identifier:
            raise AlreadyExists(
                f"custom_identifier {plan.custom_identifier!r} was used for a different "
                "request", reason="AlreadyExists.CustomIdentifier")
        if row.deleted_at is not None:
            # Its certificate was deleted (DeleteClientCertificate): every lookup of that
            # identifier says NOT_FOUND, so handing it back would name a certificate that is
            # gone; issuing another under the same key would break the key's meaning.
            raise FailedPrecondition(
                f"the certificate issued under custom_identifier {plan.custom_identifier!r} "
                f"({row.identifier}) was deleted; use a new custom_identifier",
                reason="IncorrectStatus.Certificate")
        if plan.asynchronous:
            return IssuedCertificate(row.identifier, "", row.serial or "", "")
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        while row.status in (CertificateStatus.PENDING, CertificateStatus.RESERVED):
            if time.monotonic() > deadline:
                raise Unavailable(f"certificate {row.identifier} is still being issued; "
                                  "retry the same request", reason="ServiceUnavailable.Issuing")
            time.sleep(0.05)
            with self._store.read() as conn:
                fresh = repo.get_certificate(conn, owner, row.identifier)
            if fresh is None:
                return None
            row = fresh
        if row.status == CertificateStatus.FAILED or row.certificate is None:
            raise FailedPrecondition(
                f"certificate {row.identifier} is {row.status}: {row.failure_reason or ''}",
                reason="IncorrectStatus.Certificate")
        chain = state.chain_pem if plan.common.immediately == 2 else ""
        return IssuedCertificate(row.identifier, pem_encode(row.certificate), row.serial or "",
                                 chain)


def retry_delay(attempts: int) -> float:
    """Seconds before a job that met an outage on its ``attempts``-th try is tried again."""
    return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2.0 ** max(0, attempts - 1))


def _reason(e: BaseException) -> str:
    if isinstance(e, HsmcaError):
        return f"{e.reason}: {e.message}"
    return f"InternalError: {type(e).__name__}"


# --- the background thread -----------------------------------------------------------------


class JobRunner(Protocol):
    """What the job thread drives: claim one job and issue it (PrivateCaService)."""

    def run_next_job(self, worker_id: str) -> bool:
        """Claim and run one job; False if there was none."""
        ...

    def renew_job_leases(self, worker_id: str) -> object:
        """Extend the leases the worker holds (called while a job runs)."""
        ...

    def release_job_leases(self, worker_id: str) -> object:
        """Give back every lease the worker holds (it stops)."""
        ...


class JobWorker:
    """The background thread of one worker process: async jobs and due CRLs."""

    def __init__(self, runner: JobRunner, *, poll_seconds: float = 0.5,
                 crl_check: Callable[[], object] | None = None,
                 crl_check_seconds: float = 5.0,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._runner = runner
        self._poll = poll_seconds
        self._crl_check = crl_check
        self._crl_every = crl_check_seconds
        self._lease = lease_seconds
        self.worker_id = f"worker-{new_identifier()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hsmca-jobs", daemon=True)
        # The job in hand keeps its lease while it runs, however long it takes (an RSA-4096
        # key generation, a token or database outage): renewed every third of a lease.
        self._renewer = threading.Thread(target=self._renew_loop, name="hsmca-jobs-lease",
                                         daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()
        self._renewer.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the job in hand, give back the leases this worker holds, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._renewer.is_alive():
            self._renewer.join(timeout)
        if not self._thread.is_alive():
            # Leases of a worker that stops cleanly are released, not left to run out: the
            # jobs are taken over at once by the other workers (or after a restart).
            try:
                self._runner.release_job_leases(self.worker_id)
            except Exception as e:
                _log.warning("could not release the job leases of %s: %s", self.worker_id, e)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._lease / 3):
            try:
                self._runner.renew_job_leases(self.worker_id)
            except Exception as e:
                _log.warning("could not renew the job leases of %s: %s", self.worker_id, e)

    def run_once(self) -> bool:
        """Claim and run one job; False if there was none."""
        return self._runner.run_next_job(self.worker_id)

    def _loop(self) -> None:
        next_crl = 0.0
        failures = 0
        while not self._stop.is_set():
            try:
                if self._crl_check is not None and time.monotonic() >= next_crl:
                    next_crl = time.monotonic() + self._crl_every
                    self._crl_check()
                busy = self.run_once()
                failures = 0
                if busy:
                    continue
            except Exception as e:
                # An outage must not kill the thread: the next round retries, backing off.
                failures += 1
                unavailable = outage(e)
                if unavailable is None:
                    _log.exception("background round failed")
                else:
                    _log.warning("background round: %s", unavailable.message)
            self._stop.wait(min(RETRY_MAX_SECONDS, self._poll * 2 ** min(failures, 6)))
