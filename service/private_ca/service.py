"""The Private CA domain: the CA hierarchy, and the entry points of end-entity issuance.

:class:`PrivateCaService` wires the collaborators and owns the decisions at the edges:
- the CA registry (service/private_ca/registry.py): CA rows and per-CA cached state;
- the store (service/storage/store.py): every write, group-committed on the hot path;
- the signing pipeline (service/private_ca/batch.py): steps 6-9 of concurrent requests;
- the issuance cycle (service/private_ca/issuance.py): end-entity issuance, steps 1-10;
- the job queue (service/private_ca/jobs.py): asynchronous and idempotent requests.
CA creation signs through the same reserve/sign/verify/record primitive as end entities
(issuance.Reservation). Token access: every PKCS#11 call goes through hsm.token.Token.run,
which holds the token lock (one thread per process in the token, docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping

from asn1crypto import x509 as asn1_x509
from cryptography import x509 as cx509
from sqlalchemy import Engine

from hsm.errors import MechanismUnavailable, TokenUnavailable
from hsm.keys import KeySpec
from hsm.token import Token
from service import audit
from service.entropy import new_identifier, new_key_id
from service.errors import FailedPrecondition, InvalidArgument, TokenOutage, outage
from service.hints import spelling_hint
from service.pki.algorithms import CaAlgorithm
from service.pki.builder import IssuanceRequest, build_self_signed_tbs, build_tbs
from service.pki.lint import lint_self_signed_tbs, lint_tbs
from service.pki.names import REASON_EKU, build_name, parse_extended_key_usages
from service.pki.pem import encode as pem_encode
from service.pki.profiles import EKU_ANY, ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from service.pki.validity import Validity, add_calendar, check_within_issuer
from service.private_ca.batch import Batcher
from service.private_ca.issuance import (
    IssuanceCycle,
    IssuanceEvent,
    IssuanceObserver,
    Reservation,
    token_error,
)
from service.private_ca.jobs import LEASE_SECONDS, JobLease, JobQueue, decode_request
from service.private_ca.plans import Planner
from service.private_ca.registry import KEY_TOKEN_HSM, CaRegistry, Tokens
from service.private_ca.requests import (
    CaCreated,
    CaInfo,
    CaPage,
    CreateClientCertificate,
    CreateCustomCertificate,
    CreateRootCa,
    CreateServerCertificate,
    CreateSubCa,
    IssuedCertificate,
    SubjectFields,
    page_args,
)
from service.storage import repo
from service.storage.repo import CaRow, CertificateRow, serial_hex
from service.storage.schema import (
    CA_CERTIFICATE_KINDS,
    END_ENTITY_KINDS,
    CaKind,
    CaStatus,
    CertificateKind,
    CertificateStatus,
)
from service.storage.store import Store
from service.token_keys import destroy_after_failure, generate_key
from service.token_signer import TokenSigner

__all__ = ["SIGN_ALGORITHM_NAMES", "PrivateCaService", "utc_now"]

_log = logging.getLogger("hsmca.private_ca")

DEFAULT_CRL_DAY = 7
MAX_CRL_DAY = 365
MAX_CA_YEARS = 100

#: The API's names of the signature algorithms (SignAlgorithm in Describe* answers).
SIGN_ALGORITHM_NAMES: dict[SignatureAlgorithm, str] = {
    SignatureAlgorithm.SHA256_RSA: "SHA256WithRSA",
    SignatureAlgorithm.SHA384_RSA: "SHA384WithRSA",
    SignatureAlgorithm.SHA512_RSA: "SHA512WithRSA",
    SignatureAlgorithm.RSASSA_PSS_SHA256: "SHA256WithRSA-PSS",
    SignatureAlgorithm.SHA256_ECDSA: "SHA256WithECDSA",
    SignatureAlgorithm.SHA384_ECDSA: "SHA384WithECDSA",
    SignatureAlgorithm.SHA512_ECDSA: "SHA512WithECDSA",
    SignatureAlgorithm.SM3_SM2: "SM3WithSM2",
}


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class PrivateCaService:
    """CreateRootCACertificate ... CreateClientCertificate over a database and two tokens."""

    def __init__(
        self,
        engine: Engine,
        hsm_token: Token,
        software_token: Token,
        *,
        public_base_url: str,
        min_rsa_bits: int,
        clock: Callable[[], dt.datetime] = utc_now,
        observer: IssuanceObserver | None = None,
        job_lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._clock = clock
        self.store = Store(engine)
        self.tokens = Tokens(hsm_token, software_token)
        self.registry = CaRegistry(self.store, hsm_token, public_base_url=public_base_url)
        self.pipeline = Batcher(self.store.run_many, token_error=token_error)
        self.jobs = JobQueue(self.store, self.now, job_lease_seconds)
        self.planner = Planner(self.tokens, min_rsa_bits=min_rsa_bits)
        self.cycle = IssuanceCycle(
            registry=self.registry, store=self.store, pipeline=self.pipeline,
            planner=self.planner, jobs=self.jobs, clock=clock, observer=observer)

    def now(self) -> dt.datetime:
        """The current time in whole seconds (RFC 5280 4.1.2.5 encodes validity so)."""
        return self._clock().astimezone(dt.UTC).replace(microsecond=0)

    def crl_url(self, ca_identifier: str) -> str:
        """The CRL distribution point URL of a CA (served by service/http.py)."""
        return self.registry.crl_url(ca_identifier)

    # --- end-entity issuance: the cycle, or a job ----------------------------------------

    def create_server_certificate(self, owner: str,
                                  req: CreateServerCertificate) -> IssuedCertificate:
        """CreateServerCertificateWithCsr / CreateServerCertificate."""
        return self.cycle.issue(owner, req)

    def create_client_certificate(self, owner: str,
                                  req: CreateClientCertificate) -> IssuedCertificate:
        """CreateClientCertificateWithCsr / CreateClientCertificate."""
        return self.cycle.issue(owner, req)

    def create_custom_certificate(self, owner: str,
                                  req: CreateCustomCertificate) -> IssuedCertificate:
        """CreateCustomCertificate: subject, extensions, criticals and serial as passed."""
        return self.cycle.issue(owner, req)

    def renew_job_leases(self, worker_id: str) -> int:
        """Extend the leases the job worker holds (while its job runs)."""
        return self.jobs.renew(worker_id)

    def release_job_leases(self, worker_id: str) -> int:
        """Give back the leases of a job worker that stops."""
        return self.jobs.release(worker_id)

    def run_next_job(self, worker_id: str) -> bool:
        """Claim one job and issue it (the job thread's round); False if there was none.

        The leftover of a CA's creation is claimed too (CA creation is never a job, but its
        rows can be left RESERVED): it is failed, never finished (:meth:`_fail_unfinished_ca`).
        """
        row = self.jobs.claim(worker_id)
        if row is None:
            return False
        try:
            if row.kind in CA_CERTIFICATE_KINDS:
                # A CA's creation left RESERVED: fail it (its caller never got the CA).
                self._fail_unfinished_ca(row, worker_id)
            elif row.status == CertificateStatus.RESERVED:
                # Died after step 6: sign the stored TBS (same serial), verify, record.
                self.cycle.resume(row)
            else:
                assert row.request is not None
                self.cycle.issue(row.owner, decode_request(row.request),
                                 lease=JobLease(row.identifier, worker_id))
        except Exception as e:
            self.jobs.finish_failed(row, e, worker_id)
        finally:
            self.jobs.put_down(worker_id)
        return True

    # --- CA hierarchy --------------------------------------------------------------------

    def create_root_ca(self, owner: str, req: CreateRootCa) -> CaCreated:
        """CreateRootCACertificate: a self-signed root whose key never leaves the hsm token."""
        # Validate everything before a key exists.
        algorithm = self.planner.key_algorithm(req.algorithm)
        years = _check_years(req.years)
        crl_day = _crl_settings(req.enable_crl, req.crl_day)
        subject = _ca_subject(req.subject)
        now = self.now()
        not_after = add_calendar(now, years=years)
        identifier = new_identifier()
        event = IssuanceEvent(owner, identifier, CertificateKind.ROOTCA, time.monotonic(),
                              identifier=identifier)
        self.cycle.observer.authorize(event)

        def reserve(key_id: bytes, spki: bytes) -> tuple[Reservation, IssuanceEvent]:
            serial = new_serial()
            # TBS and lint; RFC 5280 4.2.1.9: no pathLenConstraint on the root.
            tbs = build_self_signed_tbs(subject, spki, algorithm.signature_algorithm, serial,
                                        now, not_after)
            lint_self_signed_tbs(tbs)
            row = _ca_row(identifier, owner, CaKind.ROOT, req.subject, subject.dump(),
                          algorithm, key_id, spki, serial, now, not_after, None, None,
                          req.enable_crl, crl_day, req.tags, None)
            signer = TokenSigner(self.tokens.hsm, key_id, algorithm.signature_algorithm, spki)
            return (Reservation.of_ca(row, _ca_certificate_row(row, tbs, CertificateKind.ROOTCA,
                                                               identifier), signer, spki),
                    dataclasses.replace(event, serial=row.serial, key_id=key_id.hex()))

        cert = self._new_ca(event, algorithm, reserve)
        return CaCreated(identifier, pem_encode(cert), "")

    def create_sub_ca(self, owner: str, req: CreateSubCa) -> CaCreated:
        """CreateSubCACertificate: a subordinate CA signed by a root of the same owner."""
        # The parent.
        parent = self.registry.load(owner, req.parent_identifier, "NotFound.ParentIdentifier")
        if parent.kind != CaKind.ROOT:
            raise InvalidArgument("the parent of a subordinate CA must be a root CA",
                                  reason="InvalidParameter.ParentIdentifier")
        if parent.status != CaStatus.ISSUE:
            raise FailedPrecondition(f"the parent CA is {parent.status}, not ISSUE",
                                     reason="IncorrectStatus.CA")
        pstate = self.registry.state(owner, parent)
        # The inputs.
        algorithm = self.planner.key_algorithm(req.algorithm)
        if algorithm.family != pstate.algorithm.family:
            raise InvalidArgument(
                f"algorithm {algorithm.value} is not in the parent CA's family "
                f"({pstate.algorithm.family}, parent {pstate.algorithm.value}); key lengths "
                "may differ, families may not", reason="InvalidParameter.Algorithm")
        years = _check_years(req.years)
        if req.path_len_constraint < 0:
            raise InvalidArgument("path_len_constraint must not be negative",
                                  reason="InvalidParameter.PathLenConstraint")
        ekus = tuple(parse_extended_key_usages(req.extended_key_usages))
        if EKU_ANY in ekus:
            # CA/B BR 7.1.2.10.6: a CA certificate MUST NOT carry anyExtendedKeyUsage, and
            # OpenSSL then refuses every TLS leaf under it ("unsuitable certificate purpose").
            # Leaving the list empty already means "not constrained".
            raise InvalidArgument(
                "extended_key_usages of a subordinate CA must not include any "
                "(anyExtendedKeyUsage, 2.5.29.37.0); leave the list empty for a CA that may "
                "issue every usage", reason=REASON_EKU)
        crl_day = _crl_settings(req.enable_crl, req.crl_day)
        subject = _ca_subject(req.subject)
        now = self.now()
        validity = Validity(now, add_calendar(now, years=years))
        # Never clamped: beyond the parent is the caller's mistake.
        check_within_issuer(validity, parent.not_before, parent.not_after)
        identifier = new_identifier()
        event = IssuanceEvent(owner, parent.identifier, CertificateKind.SUBCA,
                              time.monotonic(), identifier=identifier, key_id=parent.key_id)
        self.cycle.observer.authorize(event)

        def reserve(key_id: bytes, spki: bytes) -> tuple[Reservation, IssuanceEvent]:
            serial = new_serial()
            # When the parent publishes a CRL, the sub CA's certificate points at it, so
            # relying parties can find out that the sub CA was revoked (RFC 5280 4.2.1.13).
            issuer = pstate.issuer_with_crl or pstate.issuer
            tbs = build_tbs(issuer, IssuanceRequest(
                profile=ProfileKind.SUB_CA, subject=subject.dump(), public_key_info=spki,
                serial=serial, not_before=validity.not_before, not_after=validity.not_after,
                extended_key_usages=ekus, path_len=req.path_len_constraint,
                enable_crl=pstate.issuer_with_crl is not None))
            lint_tbs(tbs, issuer)
            row = _ca_row(identifier, owner, CaKind.SUB, req.subject, subject.dump(),
                          algorithm, key_id, spki, serial, validity.not_before,
                          validity.not_after, parent.identifier, req.path_len_constraint,
                          req.enable_crl, crl_day, req.tags, ekus)
            return (Reservation.of_ca(row, _ca_certificate_row(row, tbs, CertificateKind.SUBCA,
                                                               parent.identifier),
                                      pstate.signer, pstate.issuer.public_key_info),
                    dataclasses.replace(event, serial=row.serial))

        cert = self._new_ca(event, algorithm, reserve)
        return CaCreated(identifier, pem_encode(cert), pstate.certificate_pem)

    def _new_ca(self, event: IssuanceEvent, algorithm: CaAlgorithm,
                reserve: Callable[[bytes, bytes], tuple[Reservation, IssuanceEvent]]) -> bytes:
        """A new CA's key, then its certificate through steps 6-9: ``reserve(key_id, spki)``
        builds, lints and plans the reservation (and the event with its serial).

        The key is destroyed on any failure before the certificate is recorded; the
        observer hears of every outcome after ``authorize``.
        """
        try:
            # The key, in the hsm token, non-exportable (invariant 1).
            key_id, spki = self._generate_ca_key(algorithm, event.identifier)
            try:
                reservation, event = reserve(key_id, spki)
                certificate = self.cycle.sign_ca(reservation, event)
            except BaseException:
                destroy_after_failure(self.tokens.hsm, key_id, action="key.destroy",
                                      resources=[event.identifier],
                                      cause="the CA's creation failed")
                raise
            # Recorded: from here on the key belongs to the CA, whatever the observer says.
            self.cycle.observer.issued(event, certificate)
        except BaseException as e:
            self.cycle.observer.failed(event, e)
            raise
        return certificate

    def _fail_unfinished_ca(self, row: CertificateRow, worker_id: str) -> None:
        """The leftover of a CA's creation that died between its reservation and its record
        (its process exited, or the record's commit failed): FAILED, never finished.

        Its caller got an error, never this CA (a certificate is returned only after the
        commit that records it). Signing its stored TBS now would make a CA certificate that
        its owner never received and nobody can revoke (UpdateCACertificateStatus answers
        NotFound for a CA that never was ISSUE). Instead, in one transaction, its certificate
        row is REVOKED (the token may have signed the TBS: its serial goes on the issuer's
        CRL, which the background CRL check re-issues), the CA row FAILED, and the audit
        record written; then the CA's key is destroyed. Never raises: an outage defers the
        row as for any job; any other error leaves both rows as they were (logged), to be
        tried again once the lease runs out.
        """
        identifier, owner = row.identifier, row.owner
        cause = ("the CA's creation did not finish after its reservation (its process died "
                 "or its record failed)")
        try:
            with self.store.write() as conn:
                now = self.now()
                if not repo.revoke_reserved(conn, identifier, cause, now=now):
                    return  # recorded or settled meanwhile
                ca = repo.get_ca(conn, owner, identifier)
                failed = ca is not None and repo.update_ca_status(
                    conn, owner, identifier, CaStatus.FAILED, expected=(CaStatus.RESERVED,),
                    now=now)
                ca_status = CaStatus.FAILED if failed else ca.status if ca is not None else None
                if not failed:
                    # Never so: both rows move together. Only the serial is settled; a key
                    # that may belong to a CA is left alone.
                    _log.error("certificate %s (%s) was RESERVED, but its CA is %s: revoked "
                               "the certificate only", identifier, row.kind,
                               ca_status or "missing")
                audit.record_op("certificate.revoke",
                                resources=[identifier, row.issuer_identifier], tenant=owner,
                                details={"serial": row.serial, "reason": 0,
                                         "kind": str(row.kind), "cause": cause,
                                         "ca_status": str(ca_status)})(conn)
        except Exception as e:
            if outage(e) is not None:
                self.jobs.finish_failed(row, e, worker_id)  # retried after a backoff
            else:
                _log.exception("could not fail the unfinished creation of CA %s; retried "
                               "once its lease runs out", identifier)
            return
        if not failed or ca is None:
            return
        _log.warning("the creation of CA %s did not finish after its reservation: its "
                     "certificate (serial %s) is revoked, the CA is FAILED", identifier,
                     row.serial)
        # The key belongs to no usable CA.
        destroy_after_failure(self.tokens.hsm, bytes.fromhex(ca.key_id), action="key.destroy",
                              resources=[identifier], tenant=owner, cause=cause)

    def _generate_ca_key(self, algorithm: CaAlgorithm, identifier: str) -> tuple[bytes, bytes]:
        """Generate a CA key pair, non-exportable, in the hsm token: (CKA_ID, SPKI DER)."""
        key_id = new_key_id()
        try:
            key = generate_key(self.tokens.hsm, KeySpec(algorithm.hsm_key_spec),
                               key_id=key_id, label=identifier, exportable=False,
                               action="ca.key.generate", destroy_action="key.destroy",
                               resources=[identifier],
                               details={"algorithm": algorithm.value, "exportable": False})
        except MechanismUnavailable as e:
            raise FailedPrecondition(
                f"the hsm token cannot generate {algorithm.value} CA keys: {e}. CA keys are "
                "always generated non-exportable in the hsm token; SM2 CAs need a token with "
                "an SM2 mechanism", reason="UnsupportedOperation.Algorithm") from e
        except TokenUnavailable as e:
            raise TokenOutage(f"the hsm token is unavailable: {e}") from e
        return key_id, key.public_key_info

    def describe_ca(self, owner: str, identifier: str) -> CaInfo:
        """DescribeCACertificate."""
        ca = self.registry.load(owner, identifier, "NotFound.Identifier")
        return self._ca_info(owner, ca)

    def list_cas(self, owner: str, *, current_page: int, show_size: int, identifier: str = "",
                 ca_status: str = "") -> CaPage:
        """DescribeCACertificateList: one page, oldest first."""
        page, size = page_args(current_page, show_size)
        if ca_status not in ("", CaStatus.ISSUE, CaStatus.REVOKE):
            raise InvalidArgument("ca_status must be ISSUE or REVOKE"
                                  + spelling_hint(ca_status, CaStatus),
                                  reason="InvalidParameter.CaStatus")
        statuses = (CaStatus(ca_status),) if ca_status else (CaStatus.ISSUE, CaStatus.REVOKE)
        if identifier:
            with self.store.read() as conn:
                one = repo.get_ca(conn, owner, identifier)
            rows: tuple[CaRow, ...] = (one,) if one and one.status in statuses else ()
            total = len(rows)
            rows = rows if page == 1 else ()
        else:
            with self.store.read() as conn:
                result = repo.list_cas(conn, owner, offset=(page - 1) * size, limit=size,
                                       status=statuses)
            rows, total = result.items, result.total
        return CaPage(tuple(self._ca_info(owner, r) for r in rows), total,
                      (total + size - 1) // size, page, size)

    def _ca_info(self, owner: str, ca: CaRow) -> CaInfo:
        algorithm = CaAlgorithm(ca.algorithm)
        cert = ca.certificate or b""
        chain = ""
        with self.store.read() as conn:
            if ca.parent_identifier is not None:
                parent = repo.get_ca(conn, owner, ca.parent_identifier)
                chain = pem_encode(parent.certificate) if parent and parent.certificate else ""
            issued = repo.count_issued(
                conn, owner, ca.identifier,
                kinds=(*END_ENTITY_KINDS, CertificateKind.SUBCA),
                status=(CertificateStatus.ISSUED, CertificateStatus.REVOKED))
        subject_dn = cx509.load_der_x509_certificate(cert).subject.rfc4514_string()
        return CaInfo(
            identifier=ca.identifier, parent_identifier=ca.parent_identifier or "",
            certificate_type="ROOT" if ca.kind == CaKind.ROOT else "SUB_ROOT",
            status=ca.status, serial_number=ca.serial, algorithm=ca.algorithm,
            key_size=algorithm.key_bits,
            sign_algorithm=SIGN_ALGORITHM_NAMES[algorithm.signature_algorithm],
            subject_dn=subject_dn, common_name=ca.common_name,
            organization=ca.organization or "", organization_unit=ca.organization_unit or "",
            country_code=ca.country_code or "", state=ca.state or "",
            locality=ca.locality or "", years=ca.not_after.year - ca.not_before.year,
            not_before=ca.not_before, not_after=ca.not_after,
            certificate_pem=pem_encode(cert), chain_pem=chain,
            sha2=hashlib.sha256(cert).hexdigest(),
            path_len_constraint=(-1 if ca.path_len_constraint is None
                                 else ca.path_len_constraint),
            extended_key_usages=ca.extended_key_usages or (), enable_crl=ca.enable_crl,
            crl_day=ca.crl_day or 0,
            crl_url=self.crl_url(ca.identifier) if ca.enable_crl else "",
            cert_issued_count=issued, tags=dict(ca.tags))


# --- module helpers ----------------------------------------------------------------------


def _check_years(years: int) -> int:
    if not 1 <= years <= MAX_CA_YEARS:
        raise InvalidArgument(f"years must be 1..{MAX_CA_YEARS}, got {years}",
                              reason="InvalidParameter.Years")
    return years


def _check_crl_day(crl_day: int) -> int:
    if not 1 <= crl_day <= MAX_CRL_DAY:
        raise InvalidArgument(f"crl_day must be 1..{MAX_CRL_DAY}, got {crl_day}",
                              reason="InvalidParameter.CrlDay")
    return crl_day


def _crl_settings(enable_crl: bool, crl_day: int) -> int | None:
    if not enable_crl:
        if crl_day:
            _check_crl_day(crl_day)
        return crl_day or None
    return _check_crl_day(crl_day) if crl_day else DEFAULT_CRL_DAY


def _ca_subject(s: SubjectFields) -> asn1_x509.Name:
    if not s.common_name:
        # RFC 5280 4.1.2.6: a CA's subject MUST be non-empty; the CN names the CA.
        raise InvalidArgument("common_name is required for a CA",
                              reason="InvalidParameter.CommonName")
    return build_name(s.common_name, s.organization, s.organization_unit, s.country, s.state,
                      s.locality)


def _ca_row(identifier: str, owner: str, kind: CaKind, s: SubjectFields, subject_der: bytes,
            algorithm: CaAlgorithm, key_id: bytes, spki: bytes, serial: int,
            not_before: dt.datetime, not_after: dt.datetime, parent: str | None,
            path_len: int | None, enable_crl: bool, crl_day: int | None,
            tags: Mapping[str, str], ekus: tuple[str, ...] | None) -> CaRow:
    now = not_before
    return CaRow(
        identifier=identifier, owner=owner, kind=kind, common_name=s.common_name,
        subject_der=subject_der, algorithm=algorithm.value, key_token=KEY_TOKEN_HSM,
        key_id=key_id.hex(), public_key_info=spki, serial=serial_hex(serial),
        not_before=not_before, not_after=not_after, status=CaStatus.RESERVED, created_at=now,
        updated_at=now, parent_identifier=parent, organization=s.organization or None,
        organization_unit=s.organization_unit or None, country_code=s.country or None,
        state=s.state or None, locality=s.locality or None, path_len_constraint=path_len,
        extended_key_usages=ekus or None, enable_crl=enable_crl, crl_day=crl_day,
        tags=dict(tags))


def _ca_certificate_row(row: CaRow, tbs: bytes, kind: CertificateKind,
                        issuer_identifier: str) -> CertificateRow:
    """The ``certificate`` row of a CA's own certificate, reserved with its TBS."""
    return CertificateRow(
        identifier=row.identifier, owner=row.owner, issuer_identifier=issuer_identifier,
        status=CertificateStatus.RESERVED, kind=kind, created_at=row.created_at,
        updated_at=row.created_at, serial=row.serial, tbs=tbs, common_name=row.common_name,
        subject_der=row.subject_der, not_before=row.not_before, not_after=row.not_after,
        key_token=KEY_TOKEN_HSM, key_id=row.key_id, exportable=False, tags=row.tags,
        enable_crl=row.enable_crl)
