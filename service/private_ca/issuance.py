"""The issuance cycle, in one place (docs/architecture.md, "The issuance cycle").

:meth:`IssuanceCycle.issue` reads top to bottom as the cycle, inline steps over
collaborators:

  1. load the issuing CA and check it may issue (status ISSUE, kind SUB);
  2. validate the request against it (service/private_ca/plans.py): nothing is stored and
     no key exists yet; then issue now, or store a job (service/private_ca/jobs.py);
 2b. a system-generated key is made in the token the request chose;
  3. choose the serial (16 CSPRNG bytes, RFC 5280 4.1.2.2, or the caller's custom one);
  4. build the TBSCertificate with the CA's cached Issuer (pre-encoded parts);
  5. lint it with our own RFC 5280 checks (invariant 4);
  6. reserve (issuer, serial) with the exact TBS, status RESERVED (invariant 2);
  7. sign the TBS in the token;
  8. assemble the certificate and verify it against the CA public key (invariant 3);
  9. record it (ISSUED, with the certificate DER);
 10. answer: the certificate (and the chain up to the root when immediately = 2).

Steps 6-9 are one primitive, :class:`Reservation`, used by every signature the Private CA
makes over a certificate: CA creation, end-entity issuance and the replay of a job that
died after its reservation. The collaborators are passed in: the CA registry (per-CA cached
state), the store (service/storage/store.py: group commit and the cross-process write gate
live there) and the signing pipeline (service/private_ca/batch.py: it runs steps 6-9 of
concurrent requests in rounds, one commit per round and one thread in the token).

Per-call hooks go in one place: an :class:`IssuanceObserver` (authorization before
anything is stored, metrics). The default does nothing. The audit record of the CA key's
use is not a hook: step 9's transaction writes it (:func:`_audited`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Connection

from hsm.errors import HsmError, TokenUnavailable
from hsm.keys import KeySpec
from service import audit
from service.audit import KeyRef
from service.entropy import new_identifier, new_key_id
from service.errors import (
    FailedPrecondition,
    HsmcaError,
    Internal,
    InvalidArgument,
    TokenOutage,
    outage,
)
from service.pki.algorithms import CaAlgorithm
from service.pki.builder import IssuanceRequest, assemble_certificate, build_tbs, read_tlv
from service.pki.lint import lint_tbs
from service.pki.pem import encode as pem_encode
from service.pki.serial import new_serial
from service.pki.verify import verify_certificate
from service.private_ca.batch import Batcher
from service.private_ca.jobs import JobLease, JobQueue
from service.private_ca.plans import LeafPlan, LeafRequest, Planner
from service.private_ca.registry import KEY_TOKEN_HSM, CaRegistry, CaState, KeyPlacement
from service.private_ca.requests import IssueCommon, IssuedCertificate
from service.storage import repo
from service.storage.repo import CaRow, CertificateRow, serial_hex
from service.storage.schema import (
    CA_CERTIFICATE_KINDS,
    CaKind,
    CaStatus,
    CertificateKind,
    CertificateStatus,
)
from service.storage.store import Operation, Store
from service.token_keys import destroy_after_failure, destroy_leftovers, generate_key
from service.token_signer import TokenSigner

__all__ = ["IssuanceCycle", "IssuanceEvent", "IssuanceObserver", "NoObserver", "ObserverChain",
           "Reservation", "token_error"]

_log = logging.getLogger("hsmca.private_ca.issuance")


# --- hooks ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IssuanceEvent:
    """One signature over a certificate, as the observer sees it."""

    owner: str
    ca_identifier: str  # the signing CA (a root signs its own certificate)
    kind: CertificateKind
    started: float  # time.monotonic() when the call began (for latency metrics)
    identifier: str = ""  # the certificate's identifier, once chosen
    serial: str = ""  # hex, once chosen
    key_id: str = ""  # hex CKA_ID of the CA key that signs
    # End-entity requests: what the certificate will name and for how long (authorization
    # bounds them, service/auth/policy.py).
    names: tuple[tuple[str, str], ...] = ()  # (API SAN type, value)
    common_name: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None


class IssuanceObserver(Protocol):
    """Per-call hooks of the issuance cycle; each runs in the caller's thread."""

    def authorize(self, event: IssuanceEvent) -> None:
        """Before anything is stored or generated; raise a service.errors class to refuse."""

    def issued(self, event: IssuanceEvent, certificate: bytes) -> None:
        """The CA key signed ``certificate``, now recorded; before it is returned.

        An exception here reaches the caller and ``failed`` (the certificate stays recorded
        and revocable; a new CA keeps its key).
        """

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        """The call failed after ``authorize`` (key generation included); ``error`` is what
        the caller gets."""


class NoObserver:
    """The default observer: does nothing."""

    def authorize(self, event: IssuanceEvent) -> None:
        """Allow everything."""

    def issued(self, event: IssuanceEvent, certificate: bytes) -> None:
        """Record nothing."""

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        """Record nothing."""


class ObserverChain:
    """Several observers as one, called in order (the first to refuse stops the call)."""

    def __init__(self, *observers: IssuanceObserver) -> None:
        self.observers = observers

    def authorize(self, event: IssuanceEvent) -> None:
        """Every observer's authorize, in order."""
        for observer in self.observers:
            observer.authorize(event)

    def issued(self, event: IssuanceEvent, certificate: bytes) -> None:
        """Every observer's issued, in order."""
        for observer in self.observers:
            observer.issued(event, certificate)

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        """Every observer's failed, in order."""
        for observer in self.observers:
            observer.failed(event, error)


# --- steps 6-9: the one reserve/sign/verify/record primitive -------------------------------


@dataclasses.dataclass(frozen=True)
class Reservation:
    """Steps 6-9 for one certificate, as the signing pipeline (batch.py) runs them.

    ``reserve`` is the step 6 write (for a job that died after step 6, whose row is reserved
    already, a re-check of the CA's status); ``record`` and ``mark_failed`` are the step 9
    writes after a signature or a failure to sign or verify; ``undo`` undoes what preparing
    made (a generated key) after a failure, unless ``retried`` says the row stays RESERVED
    after it, to be signed again later with what it names.
    """

    row: CertificateRow  # RESERVED, with the exact TBS the token signs
    signer: TokenSigner
    issuer_public_key_info: bytes
    signature_algorithm_der: bytes
    reserve: Operation
    record: Callable[[bytes], Operation]
    mark_failed: Callable[[BaseException], Operation]
    undo: Callable[[], None] = lambda: None
    retried: Callable[[BaseException], bool] = lambda error: False

    @property
    def tbs(self) -> bytes:
        """The TBSCertificate stored by the reservation."""
        assert self.row.tbs is not None
        return self.row.tbs

    # The protocol of batch.Job:

    def reserve_op(self) -> Operation:
        """Step 6: reserve (issuer, serial) and store the exact TBS (invariant 2)."""
        return self.reserve

    def sign(self) -> bytes:
        """Step 7: the token signs the exact TBS that the reservation stored."""
        return self.signer.sign(self.tbs)

    def finish(self, signature: bytes) -> bytes:
        """Step 8: assemble the certificate and verify it against the CA key (invariant 3)."""
        cert = assemble_certificate(self.tbs, self.signature_algorithm_der, signature)
        verify_certificate(cert, self.issuer_public_key_info)
        return cert

    def record_op(self, certificate: bytes) -> Operation:
        """Step 9: record the certificate (committed before it is returned)."""
        return self.record(certificate)

    def release(self, error: BaseException) -> None:
        """Undo what preparing made, unless the row stays to be signed again after ``error``."""
        if not self.retried(error):
            self.undo()

    def failed_op(self, error: BaseException) -> Operation:
        """The step 9 write after a failure: the row stays with its serial and TBS, FAILED
        with the reason (a replay: REVOKED; a job's outage: RESERVED, retried)."""
        return self.mark_failed(error)

    @classmethod
    def of_leaf(cls, row: CertificateRow, state: CaState, *, claimed_by: str | None,
                release: Callable[[], None], clock: Callable[[], dt.datetime]
                ) -> Reservation:
        """An end-entity reservation (``claimed_by``: the worker holding its job's lease)."""
        ca_identifier = row.issuer_identifier

        def reserve(conn: Connection) -> None:
            if claimed_by is not None:
                repo.reserve_claimed(conn, row, claimed_by)
            else:
                repo.reserve_certificate(conn, row)
            # After the INSERT, so this transaction holds the write lock: a CA revoked
            # meanwhile (UpdateCACertificateStatus, maybe in another process) is seen here
            # and the reservation rolls back.
            _check_issuing(Store.ca_status_in_batch(conn, ca_identifier))

        def retried(e: BaseException) -> bool:
            # A job that met an outage of the token or the database after its reservation
            # stays RESERVED, with its key: the job worker retries it, signing the stored
            # TBS again.
            return claimed_by is not None and outage(e) is not None

        identifier = row.identifier
        return cls(
            row=row, signer=state.signer,
            issuer_public_key_info=state.issuer.public_key_info,
            signature_algorithm_der=state.issuer.signature_algorithm_der, reserve=reserve,
            record=lambda cert: lambda conn: repo.mark_issued(conn, identifier, cert),
            mark_failed=lambda e: _no_write if retried(e)
            else lambda conn: repo.mark_failed(conn, identifier, f"{type(e).__name__}: {e}",
                                               now=clock()),
            undo=release, retried=retried)

    @classmethod
    def resumed(cls, row: CertificateRow, state: CaState) -> Reservation:
        """A job that died after step 6: its stored TBS (same serial) signed and recorded."""
        identifier, ca_identifier = row.identifier, row.issuer_identifier

        def check(conn: Connection) -> None:
            _check_issuing(Store.ca_status_in_batch(conn, ca_identifier))

        def record(cert: bytes) -> Operation:
            def op(conn: Connection) -> None:
                try:
                    repo.mark_issued(conn, identifier, cert)
                except FailedPrecondition:
                    # The first holder woke up and recorded it: still exactly one.
                    _log.info("job %s was recorded by its first worker", identifier)
            return op

        def mark_failed(e: BaseException) -> Operation:
            if outage(e) is not None:
                return _no_write  # stays RESERVED: the job is retried after a backoff
            # It may have been signed before: its serial goes on the CA's CRL.
            return lambda conn: repo.revoke_reserved(conn, identifier,
                                                     f"{type(e).__name__}: {e}",
                                                     now=repo.utc_now())

        return cls(row=row, signer=state.signer,
                   issuer_public_key_info=state.issuer.public_key_info,
                   signature_algorithm_der=state.issuer.signature_algorithm_der,
                   reserve=check, record=record, mark_failed=mark_failed)

    @classmethod
    def of_ca(cls, ca_row: CaRow, cert_row: CertificateRow, signer: TokenSigner,
              issuer_public_key_info: bytes) -> Reservation:
        """A CA's own certificate: the CA row and its certificate row, reserved together."""
        identifier, owner, parent = ca_row.identifier, ca_row.owner, ca_row.parent_identifier

        def reserve(conn: Connection) -> None:
            # The ca row first: a root's own certificate row names it as its issuer.
            repo.insert_ca(conn, ca_row)
            repo.reserve_certificate(conn, cert_row)
            if parent is not None:
                _check_issuing(repo.ca_status(conn, parent))

        def record(cert: bytes) -> Operation:
            def op(conn: Connection) -> None:
                repo.mark_issued(conn, identifier, cert)
                repo.mark_ca_issued(conn, identifier, cert)
            return op

        def mark_failed(e: BaseException) -> Operation:
            def op(conn: Connection) -> None:
                repo.mark_failed(conn, identifier, f"signing failed: {type(e).__name__}: {e}")
                repo.update_ca_status(conn, owner, identifier, CaStatus.FAILED,
                                      expected=(CaStatus.RESERVED,))
            return op

        assert cert_row.tbs is not None
        return cls(row=cert_row, signer=signer, issuer_public_key_info=issuer_public_key_info,
                   signature_algorithm_der=_signature_algorithm_der(cert_row.tbs),
                   reserve=reserve, record=record, mark_failed=mark_failed)


def _no_write(conn: Connection) -> None:
    """A step that writes nothing."""


def _audited(reservation: Reservation, event: IssuanceEvent) -> Reservation:
    """``reservation`` whose step 9 writes also append the audit record of the CA key's use.

    The record goes into the transaction that records the certificate (or its failure), so
    it is durable before the certificate is returned and costs no commit of its own. Its
    entry is made here, in the caller's thread, where the call's principal and request id
    are; the pipeline may run step 9 in another caller's thread.
    """
    log = audit.installed()
    if log is None:
        return reservation
    row = reservation.row
    entry = log.entry(
        "ca.certificate.sign" if event.kind in CA_CERTIFICATE_KINDS else "certificate.sign",
        key=KeyRef(KEY_TOKEN_HSM, event.key_id),
        resources=[row.identifier, row.issuer_identifier], tenant=event.owner,
        details={"serial": row.serial, "kind": str(row.kind)})
    record, mark_failed = reservation.record, reservation.mark_failed

    def recorded(certificate: bytes) -> Operation:
        return _both(record(certificate), log.op(entry))

    def failed(error: BaseException) -> Operation:
        reason = getattr(error, "reason", "") or type(error).__name__
        return _both(mark_failed(error), log.op(log.failure(entry, f"{reason}: {error}")))

    return dataclasses.replace(reservation, record=recorded, mark_failed=failed)


def _both(first: Operation, second: Operation) -> Operation:
    def op(conn: Connection) -> Any:
        result = first(conn)
        second(conn)
        return result
    return op


def _check_issuing(status: CaStatus | None) -> None:
    if status != CaStatus.ISSUE:
        raise FailedPrecondition(f"the issuing CA is {status or 'gone'}, not ISSUE",
                                 reason="IncorrectStatus.CA")


def _signature_algorithm_der(tbs: bytes) -> bytes:
    """The TBS signature AlgorithmIdentifier, which the outer one must equal (4.1.1.2)."""
    _, pos, _ = read_tlv(tbs)
    tag, _, nxt = read_tlv(tbs, pos)
    if tag == 0xA0:
        pos = nxt
    _, _, pos2 = read_tlv(tbs, pos)  # serialNumber
    _, _, end = read_tlv(tbs, pos2)
    return tbs[pos2:end]


# --- the cycle -----------------------------------------------------------------------------


class IssuanceCycle:
    """End-entity issuance over its collaborators; see the module docstring."""

    def __init__(self, *, registry: CaRegistry, store: Store, pipeline: Batcher,
                 planner: Planner, jobs: JobQueue, clock: Callable[[], dt.datetime],
                 observer: IssuanceObserver | None = None) -> None:
        self.registry = registry
        self.store = store
        self.pipeline = pipeline
        self.planner = planner
        self.jobs = jobs
        self.observer: IssuanceObserver = observer or NoObserver()
        self._clock = clock

    def now(self) -> dt.datetime:
        """The current time in whole seconds (RFC 5280 4.1.2.5 encodes validity so)."""
        return self._clock().astimezone(dt.UTC).replace(microsecond=0)

    def issue(self, owner: str, req: LeafRequest, *,
              lease: JobLease | None = None) -> IssuedCertificate:
        """The issuance cycle for one end-entity request (``lease``: a claimed job's)."""
        # 1. Load the issuing CA and check it may issue.
        state = self.issuing_ca(owner, req.common)
        # 2. Validate the request against it: nothing stored, no key made yet.
        now = self.now()
        plan = self.planner.plan(req, state, now)
        event = IssuanceEvent(owner, state.ca.identifier, plan.kind, time.monotonic(),
                              key_id=state.ca.key_id,
                              names=tuple((s.type.value, s.value) for s in plan.sans),
                              common_name=plan.common_name,
                              not_before=plan.validity.not_before,
                              not_after=plan.validity.not_after)
        self.observer.authorize(event)
        # Issue now, or store a job: asynchronous requests, and every request with a
        # custom_identifier (its UNIQUE constraint decides between racing requests).
        own_job = False
        try:
            if lease is None and (plan.asynchronous or plan.custom_identifier is not None):
                self.dry_run(state, plan)  # refused now, not in the background (inv. 5)
                stored = self.jobs.submit(owner, state, plan, req, self.now())
                if stored.lease is None:
                    return stored.answer  # queued for the job thread, or a replayed result
                lease, own_job = stored.lease, True  # synchronous and idempotent: run it now
            identifier = lease.identifier if lease is not None else new_identifier()
            issuer = state.issuer_for(plan.common.enable_crl)
            # 2b. A system-generated key, in the token the request chose.
            key_id: bytes | None = None
            placement = plan.key_placement
            spki = plan.public_key_info
            if spki is None:
                assert placement is not None and plan.key_algorithm is not None
                if lease is not None and not own_job:
                    # A job claimed again: a key labelled with its identifier was left by
                    # an attempt that died before reserving (no row names it); it would
                    # refuse this attempt's key (the label is unique).
                    destroy_leftovers(placement.token, identifier, action="key.destroy",
                                      tenant=owner)
                key_id = new_key_id()
                spki = _generate_key(placement, plan.key_algorithm, key_id, identifier)
            release = _key_release(placement, key_id)
            try:
                # 3. The serial.
                serial = plan.custom_serial if plan.custom_serial is not None else new_serial()
                # 4. The TBSCertificate from the CA's pre-encoded parts.
                tbs = build_tbs(issuer, _tbs_request(plan, spki, serial))
                # 5. Our own RFC 5280 checks, before the token is asked (invariant 4).
                lint_tbs(tbs, issuer)
                row = _leaf_row(identifier, owner, state.ca.identifier, plan, serial, tbs,
                                placement if key_id is not None else None, key_id,
                                now if lease is None else self.now())
            except BaseException:
                release()
                raise
            event = IssuanceEvent(owner, event.ca_identifier, plan.kind, event.started,
                                  identifier, row.serial or "", event.key_id)
            # 6-9. Reserve with the exact TBS, sign in the token, assemble and verify, record.
            certificate = self.pipeline.issue(_audited(Reservation.of_leaf(
                row, state, claimed_by=lease.worker_id if lease is not None else None,
                release=release, clock=self.now), event))
            self.observer.issued(event, certificate)
        except BaseException as e:
            if own_job and lease is not None and isinstance(e, HsmcaError):
                try:
                    self.jobs.abandon(lease, e)
                except Exception as again:
                    # The database is away too. The caller still gets the error above; the
                    # job keeps its lease until it runs out, then the job thread issues it
                    # (or fails it), and a retry of the same request returns that outcome.
                    _log.warning("could not settle job %s after %s: %s", lease.identifier,
                                 type(e).__name__, type(again).__name__)
            self.observer.failed(event, e)
            raise
        # 10. The answer: the certificate, and the chain up to the root for immediately = 2.
        chain = state.chain_pem if plan.common.immediately == 2 else ""
        return IssuedCertificate(identifier, pem_encode(certificate), row.serial or "", chain)

    def issuing_ca(self, owner: str, common: IssueCommon) -> CaState:
        """Step 1: the parent exists for this owner, is a SUB CA and may issue."""
        # None is the API default, 0: asynchronous (service/private_ca/jobs.py).
        if common.immediately not in (None, 0, 1, 2):
            raise InvalidArgument(f"immediately must be 0, 1 or 2, got {common.immediately}",
                                  reason="InvalidParameter.Immediately")
        cached = self.registry.cached(owner, common.parent_identifier)
        # A cached CA skips the read: kind, key and certificate never change, and its status
        # is re-checked in the reservation transaction (step 6), which is authoritative.
        ca = cached.ca if cached else self.registry.load(owner, common.parent_identifier,
                                                         "NotFound.ParentIdentifier")
        if ca.kind != CaKind.SUB:
            raise InvalidArgument(
                "only subordinate CAs issue end-entity certificates; parent_identifier names "
                "a root CA (create a subordinate CA with CreateSubCACertificate)",
                reason="InvalidParameter.ParentIdentifier")
        _check_issuing(ca.status)
        state = cached or self.registry.state(owner, ca)
        state.issuer_for(common.enable_crl)  # refuses enable_crl under a CA without CRLs
        return state

    def dry_run(self, state: CaState, plan: LeafPlan) -> None:
        """Steps 3-5 without reserving or signing, for a request stored now and issued later.

        Building and linting the TBS is where the rules that depend on the whole request are
        checked (criticals naming present extensions, key usage against key type and EKU,
        EKU within the issuing CA's, names). A system-generated key does not exist yet: a
        throwaway key of the requested algorithm stands in for it.
        """
        issuer = state.issuer_for(plan.common.enable_crl)
        spki = plan.public_key_info
        if spki is None:
            assert plan.key_algorithm is not None
            spki = _stand_in_public_key(plan.key_algorithm)
        serial = plan.custom_serial if plan.custom_serial is not None else new_serial()
        lint_tbs(build_tbs(issuer, _tbs_request(plan, spki, serial)), issuer)

    def resume(self, row: CertificateRow) -> None:
        """Steps 6-9 for a job that died after step 6 (its row reserved already; step 6
        re-checks the CA's status): same serial, same TBS, one record."""
        with self.store.read() as conn:
            ca = repo.get_ca(conn, row.owner, row.issuer_identifier)
        if ca is None:
            raise FailedPrecondition("the issuing CA is gone", reason="IncorrectStatus.CA")
        _check_issuing(ca.status)
        state = self.registry.state(row.owner, ca)
        event = IssuanceEvent(row.owner, ca.identifier, row.kind, time.monotonic(),
                              identifier=row.identifier, serial=row.serial or "",
                              key_id=ca.key_id)
        try:
            certificate = self.pipeline.issue(_audited(Reservation.resumed(row, state), event))
            self.observer.issued(event, certificate)
        except BaseException as e:
            self.observer.failed(event, e)
            raise

    def sign_ca(self, reservation: Reservation, event: IssuanceEvent) -> bytes:
        """Steps 6-9 for a CA's own certificate (CA creation), through the same pipeline.

        The caller tells the observer: CA creation can also fail before this step (key
        generation, TBS, lint), and an exception from ``issued`` must not destroy the key of
        a CA that is already recorded.
        """
        return self.pipeline.issue(_audited(reservation, event))


# --- helpers -------------------------------------------------------------------------------


def _tbs_request(plan: LeafPlan, spki: bytes, serial: int) -> IssuanceRequest:
    return IssuanceRequest(
        profile=plan.profile, subject=plan.subject_der, public_key_info=spki, serial=serial,
        not_before=plan.validity.not_before, not_after=plan.validity.not_after,
        key_usage=plan.key_usage, extended_key_usages=plan.extended_key_usages,
        subject_alt_names=plan.sans_der, criticals=plan.criticals,
        enable_crl=plan.common.enable_crl)


def _leaf_row(identifier: str, owner: str, ca_identifier: str, plan: LeafPlan, serial: int,
              tbs: bytes, placement: KeyPlacement | None, key_id: bytes | None,
              now: dt.datetime) -> CertificateRow:
    return CertificateRow(
        identifier=identifier, owner=owner, issuer_identifier=ca_identifier,
        status=CertificateStatus.RESERVED, kind=plan.kind, created_at=now, updated_at=now,
        serial=serial_hex(serial), tbs=tbs, common_name=plan.common_name,
        subject_der=plan.subject_der, sans=tuple((s.type.value, s.value) for s in plan.sans),
        not_before=plan.validity.not_before, not_after=plan.validity.not_after,
        key_token=placement.token_role if placement else None,
        key_id=key_id.hex() if key_id is not None else None,
        exportable=placement.exportable if placement else None,
        custom_identifier=plan.custom_identifier, tags=dict(plan.common.tags),
        resource_group_id=plan.common.resource_group_id or None,
        enable_crl=plan.common.enable_crl)


def _generate_key(placement: KeyPlacement, algorithm: CaAlgorithm, key_id: bytes,
                  label: str) -> bytes:
    """A system key pair in the placement's token; its SubjectPublicKeyInfo DER."""
    try:
        return generate_key(placement.token, KeySpec(algorithm.hsm_key_spec), key_id=key_id,
                            label=label, exportable=placement.exportable,
                            action="key.generate", destroy_action="key.destroy",
                            resources=[label],
                            details={"algorithm": algorithm.value,
                                     "exportable": placement.exportable}).public_key_info
    except HsmError as e:
        raise token_error(e) from e


def _key_release(placement: KeyPlacement | None, key_id: bytes | None) -> Callable[[], None]:
    if placement is None or key_id is None:
        return lambda: None
    return functools.partial(destroy_after_failure, placement.token, key_id,
                             action="key.destroy", cause="issuance failed")


@functools.cache
def _stand_in_public_key(algorithm: CaAlgorithm) -> bytes:
    """A SubjectPublicKeyInfo of ``algorithm`` for the dry run (never certified)."""
    # Made in software and thrown away: only its type and size shape the TBS and the lint.
    # One per algorithm and process (an RSA-4096 key takes about a second to make).
    key: Any
    if algorithm.family == "RSA":
        key = rsa.generate_private_key(65537, algorithm.key_bits)
    else:
        key = ec.generate_private_key(_STAND_IN_CURVES[algorithm.key_bits])
    return bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


_STAND_IN_CURVES = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}


def token_error(e: BaseException) -> HsmcaError:
    """The service error for a failure in or around the token."""
    if isinstance(e, HsmcaError):
        return e
    if isinstance(e, TokenUnavailable):
        return TokenOutage(f"the token is unavailable: {e}")
    return Internal(f"{type(e).__name__}: {e}")
