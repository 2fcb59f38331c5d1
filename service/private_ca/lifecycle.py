"""End-entity lookup and lifecycle: describe, list, private key, revoke, delete.

Also UpdateCACertificateStatus (ISSUE -> REVOKE). Revocations re-issue the CA's CRL at once
(service/private_ca/crls.py); if that fails, the revocation still stands and the background
CRL check re-issues the CRL on its next pass. API statuses map from storage statuses as
the proto says: PENDING (PENDING, RESERVED), ISSUE (ISSUED), REVOKE (REVOKED), FAILED (FAILED).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hsm.errors import HsmError, KeyNotExportable, TokenUnavailable
from hsm.export import export_private_key, unwrap_export
from hsm.keys import destroy_key
from hsm.token import Token
from service import audit
from service.audit import KeyRef
from service.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TokenOutage,
    quote,
)
from service.hints import spelling_hint
from service.pki.algorithms import CaAlgorithm
from service.pki.crl import parse_reason_code
from service.pki.pem import encode as pem_encode
from service.private_ca.crls import CrlPublisher
from service.private_ca.requests import page_args
from service.private_ca.service import SIGN_ALGORITHM_NAMES, PrivateCaService
from service.storage import repo
from service.storage.repo import CertificateRow
from service.storage.schema import END_ENTITY_KINDS, CaStatus, CertificateStatus

__all__ = [
    "CertificatePage",
    "CertificateStatusInfo",
    "ClientCertificateInfo",
    "Lifecycle",
    "RevokedInfo",
    "RevokedPage",
]

_log = logging.getLogger("hsmca.private_ca.lifecycle")

MAX_ENCRYPTED_CODE_BYTES = 32
_API_STATUS = {CertificateStatus.PENDING: "PENDING", CertificateStatus.RESERVED: "PENDING",
               CertificateStatus.ISSUED: "ISSUE", CertificateStatus.REVOKED: "REVOKE",
               CertificateStatus.FAILED: "FAILED"}
_STORAGE_STATUSES = {
    "PENDING": (CertificateStatus.PENDING, CertificateStatus.RESERVED),
    "ISSUE": (CertificateStatus.ISSUED,), "REVOKE": (CertificateStatus.REVOKED,),
    "FAILED": (CertificateStatus.FAILED,)}


def _serial_is_final(row: CertificateRow) -> bool:
    """Whether the row's serial is shown: once there is a certificate, and for FAILED or
    REVOKED rows that failed after their reservation (their TBS may have been signed, so the
    serial is what a revocation puts on the CRL). A RESERVED row may still be retried."""
    if not row.serial:
        return False
    if row.certificate is not None:
        return True
    return row.tbs is not None and row.status in (CertificateStatus.FAILED,
                                                   CertificateStatus.REVOKED)


@dataclasses.dataclass(frozen=True)
class ClientCertificateInfo:
    """An end-entity certificate as DescribeClientCertificate reports it."""

    identifier: str
    parent_identifier: str
    certificate_type: str
    status: str
    serial_number: str
    algorithm: str
    key_size: int
    sign_algorithm: str
    subject_dn: str
    subject: Mapping[str, str]  # common_name, organization, ... -> value
    san: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    certificate_pem: str
    chain_pem: str
    sha2: str
    revoked_at: dt.datetime | None
    failure_reason: str
    system_generated_key: bool
    tags: Mapping[str, str]
    resource_group_id: str
    custom_identifier: str


@dataclasses.dataclass(frozen=True)
class CertificateStatusInfo:
    """DescribeClientCertificateStatus.CertificateStatus.N."""

    identifier: str
    status: str
    serial_number: str
    revoked_at: dt.datetime | None
    failure_reason: str


@dataclasses.dataclass(frozen=True)
class CertificatePage:
    """One page of ListClientCertificate."""

    items: tuple[ClientCertificateInfo, ...]
    total_count: int
    page_count: int
    current_page: int
    show_size: int


@dataclasses.dataclass(frozen=True)
class RevokedInfo:
    """ListRevokeCertificate.CertificateList.N."""

    identifier: str
    parent_identifier: str
    serial_number: str
    revoked_at: dt.datetime
    reason_code: int
    common_name: str


@dataclasses.dataclass(frozen=True)
class RevokedPage:
    """One page of ListRevokeCertificate."""

    items: tuple[RevokedInfo, ...]
    total_count: int
    page_count: int
    current_page: int
    show_size: int


_SUBJECT_OIDS = {"common_name": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME,
                 "organization_unit": NameOID.ORGANIZATIONAL_UNIT_NAME,
                 "country_code": NameOID.COUNTRY_NAME,
                 "state": NameOID.STATE_OR_PROVINCE_NAME, "locality": NameOID.LOCALITY_NAME}


def _key_algorithm(cert: cx509.Certificate) -> tuple[str, int]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA_{key.key_size}", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        # The API names P-521 ECC_512.
        bits = key.curve.key_size
        return f"ECC_{512 if bits == 521 else bits}", bits
    return "SM2_256", 256


class Lifecycle:
    """Lookups, private key retrieval, revocation and deletion over PrivateCaService."""

    def __init__(self, svc: PrivateCaService, crls: CrlPublisher) -> None:
        self._svc = svc
        self._crls = crls

    # --- lookups -------------------------------------------------------------------------

    def _get(self, owner: str, identifier: str) -> CertificateRow:
        if not identifier:
            raise InvalidArgument("identifier is required", reason="InvalidParameter.Identifier")
        with self._svc.store.read() as conn:
            row = repo.get_certificate(conn, owner, identifier)
        if row is None or row.kind not in END_ENTITY_KINDS:
            raise NotFound(f"no certificate with identifier {quote(identifier)}",
                           reason="NotFound.Identifier")
        return row

    def describe(self, owner: str, identifier: str) -> ClientCertificateInfo:
        """DescribeClientCertificate."""
        return self._info(owner, self._get(owner, identifier))

    def describe_by_serial(self, owner: str, serial_number: str) -> tuple[ClientCertificateInfo,
                                                                          ...]:
        """DescribeClientCertificateForSerialNumber (hex, case-insensitive)."""
        text = serial_number.strip().lower().removeprefix("0x").replace(":", "")
        try:
            serial = int(text, 16)
        except ValueError:
            raise InvalidArgument("serial_number must be hexadecimal",
                                  reason="InvalidParameter.SerialNumber") from None
        if serial <= 0:
            raise InvalidArgument("serial_number must be positive",
                                  reason="InvalidParameter.SerialNumber")
        with self._svc.store.read() as conn:
            # One per issuing CA at most: serials are unique per issuer, not per owner.
            rows = repo.list_certificates_by_serial(conn, owner, format(serial, "x"),
                                                    kinds=END_ENTITY_KINDS)
        return tuple(self._info(owner, r) for r in rows)

    def statuses(self, owner: str, identifiers: str) -> tuple[CertificateStatusInfo, ...]:
        """DescribeClientCertificateStatus: comma-separated identifiers."""
        ids = [i.strip() for i in identifiers.split(",") if i.strip()]
        if not ids:
            raise InvalidArgument("identifier is required", reason="InvalidParameter.Identifier")
        out = []
        for identifier in ids:
            row = self._get(owner, identifier)
            serial = row.serial or "" if _serial_is_final(row) else ""
            out.append(CertificateStatusInfo(identifier, _API_STATUS[row.status], serial,
                                             row.revoked_at, row.failure_reason or ""))
        return tuple(out)

    def list(self, owner: str, *, current_page: int, show_size: int,
             parent_identifier: str = "", status: str = "",
             tags: Mapping[str, str] | None = None,
             resource_group_id: str = "") -> CertificatePage:
        """ListClientCertificate: one page, oldest first; every filter must match."""
        page, size = page_args(current_page, show_size)
        if status and status not in _STORAGE_STATUSES:
            raise InvalidArgument("status must be PENDING, ISSUE, REVOKE or FAILED"
                                  + spelling_hint(status, ("PENDING", "ISSUE", "REVOKE",
                                                           "FAILED")),
                                  reason="InvalidParameter.Status")
        with self._svc.store.read() as conn:
            result = repo.list_certificates(
                conn, owner, offset=(page - 1) * size, limit=size,
                issuer_identifier=parent_identifier or None,
                status=_STORAGE_STATUSES[status] if status else None, kinds=END_ENTITY_KINDS,
                tags=tags or None, resource_group_id=resource_group_id or None)
        return CertificatePage(tuple(self._info(owner, r) for r in result.items), result.total,
                               (result.total + size - 1) // size, page, size)

    def list_revoked(self, owner: str, *, current_page: int, show_size: int,
                     parent_identifier: str = "") -> RevokedPage:
        """ListRevokeCertificate: revoked end-entity certificates, one page."""
        page, size = page_args(current_page, show_size)
        with self._svc.store.read() as conn:
            result = repo.list_certificates(
                conn, owner, offset=(page - 1) * size, limit=size,
                issuer_identifier=parent_identifier or None, status=CertificateStatus.REVOKED,
                kinds=END_ENTITY_KINDS)
        items = tuple(RevokedInfo(r.identifier, r.issuer_identifier, r.serial or "",
                                  r.revoked_at or r.updated_at, r.revocation_reason or 0,
                                  r.common_name or "") for r in result.items)
        return RevokedPage(items, result.total, (result.total + size - 1) // size, page, size)

    def _info(self, owner: str, row: CertificateRow) -> ClientCertificateInfo:
        algorithm, key_size, sign_algorithm, subject_dn, chain = "", 0, "", "", ""
        subject: dict[str, str] = {}
        cert_pem = sha2 = ""
        with self._svc.store.read() as conn:
            ca = repo.get_ca(conn, owner, row.issuer_identifier)
        if ca is not None:
            sign_algorithm = SIGN_ALGORITHM_NAMES[CaAlgorithm(ca.algorithm).signature_algorithm]
            if ca.certificate is not None:
                chain = self._svc.registry.state(owner, ca).chain_pem
        if row.certificate is not None:
            cert = cx509.load_der_x509_certificate(row.certificate)
            algorithm, key_size = _key_algorithm(cert)
            subject_dn = cert.subject.rfc4514_string()
            for name, oid in _SUBJECT_OIDS.items():
                attrs = cert.subject.get_attributes_for_oid(oid)
                if attrs:
                    subject[name] = str(attrs[0].value)
            cert_pem = pem_encode(row.certificate)
            sha2 = hashlib.sha256(row.certificate).hexdigest()
        issued = row.status in (CertificateStatus.ISSUED, CertificateStatus.REVOKED)
        return ClientCertificateInfo(
            identifier=row.identifier, parent_identifier=row.issuer_identifier,
            certificate_type=row.kind, status=_API_STATUS[row.status],
            serial_number=row.serial or "" if _serial_is_final(row) else "",
            algorithm=algorithm, key_size=key_size, sign_algorithm=sign_algorithm,
            subject_dn=subject_dn, subject=subject,
            san=",".join(v for _, v in row.sans), not_before=row.not_before,
            not_after=row.not_after, certificate_pem=cert_pem, chain_pem=chain if issued else "",
            sha2=sha2, revoked_at=row.revoked_at, failure_reason=row.failure_reason or "",
            system_generated_key=row.key_id is not None, tags=dict(row.tags),
            resource_group_id=row.resource_group_id or "",
            custom_identifier=row.custom_identifier or "")

    # --- private key ---------------------------------------------------------------------

    def _token(self, key_token: str | None) -> Token:
        return self._svc.tokens.for_role(key_token)

    def private_key(self, owner: str, identifier: str, encrypted_code: str) -> str:
        """DescribeCertificatePrivateKey: the system key as encrypted PKCS#8 PEM."""
        passphrase = encrypted_code.encode("utf-8")
        if not 1 <= len(passphrase) <= MAX_ENCRYPTED_CODE_BYTES:
            raise InvalidArgument(
                f"encrypted_code must be 1..{MAX_ENCRYPTED_CODE_BYTES} bytes",
                reason="InvalidParameter.EncryptedCode")
        row = self._get(owner, identifier)
        if row.key_id is None:
            raise FailedPrecondition(
                "the certificate was issued for a caller's CSR: the service never had its "
                "private key", reason="UnsupportedOperation.NoSystemGeneratedKey")
        if row.status not in (CertificateStatus.ISSUED, CertificateStatus.REVOKED):
            raise FailedPrecondition(f"the certificate is {_API_STATUS[row.status]}",
                                     reason="IncorrectStatus.Certificate")
        # Recorded (refusals too) before the key leaves; the passphrase is never recorded.
        with audit.key_use("key.export", key=KeyRef(row.key_token or "", row.key_id),
                           resources=[identifier, row.issuer_identifier], tenant=owner):
            return self._export(row, passphrase)

    def _export(self, row: CertificateRow, passphrase: bytes) -> str:
        if not row.exportable:
            # docs/architecture.md inv. 1: the token refuses as well (CKA_EXTRACTABLE false).
            raise PermissionDenied("the private key was generated non-exportable",
                                   reason="Forbidden.KeyNotExportable")
        assert row.key_id is not None
        # An ephemeral in-process RSA key receives the wrapped key; it never leaves here.
        recipient = rsa.generate_private_key(65537, 2048)
        spki = recipient.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        try:
            wrapped = export_private_key(self._token(row.key_token), bytes.fromhex(row.key_id),
                                         spki)
        except KeyNotExportable as e:
            raise PermissionDenied(f"the token refused to export the key: {e}",
                                   reason="Forbidden.KeyNotExportable") from e
        except TokenUnavailable as e:
            raise TokenOutage(f"the token is unavailable: {e}") from e
        pkcs8 = unwrap_export(wrapped, recipient)
        key = serialization.load_der_private_key(pkcs8, password=None)
        pem: bytes = key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(passphrase))
        return pem.decode("ascii")

    # --- revocation and deletion ---------------------------------------------------------

    def revoke(self, owner: str, identifier: str, reason_code: int) -> dt.datetime:
        """CreateRevokeClientCertificate; the CA's CRL is re-issued at once."""
        reason = parse_reason_code(reason_code)
        row = self._get(owner, identifier)
        with self._svc.store.write() as conn:
            # Read under the write lock: a CRL that misses this revocation was then issued
            # before it, with an earlier thisUpdate, which is how repo.list_crl_due finds it.
            now = self._svc.now()
            moved = repo.revoke_certificate(conn, owner, identifier, int(reason), now=now)
            if moved:  # the record commits with the revocation
                audit.record_op("certificate.revoke", resources=[identifier,
                                                                 row.issuer_identifier],
                                tenant=owner, details={"serial": row.serial,
                                                       "reason": int(reason)})(conn)
        if not moved:
            raise FailedPrecondition(
                f"the certificate is {_API_STATUS[row.status]}; only ISSUE (or FAILED after "
                "its serial was reserved) can be revoked",
                reason="IncorrectStatus.Certificate")
        self._reissue_crl(row.issuer_identifier, f"certificate {identifier}")
        return now

    def _reissue_crl(self, ca_identifier: str, revoked: str) -> None:
        """Re-issue a CA's CRL after a committed revocation; a failure is logged, not raised.

        The revocation stands whatever happens here. An error would tell the client it did
        not, and its retry would be refused (IncorrectStatus: already REVOKE). The CRL is
        caught up instead by the background thread (CrlPublisher.publish_due), which
        re-issues every CRL older than a revocation of its CA on its next pass.
        """
        try:
            self._crls.after_revocation(ca_identifier)
        except Exception:
            _log.exception("%s is revoked, but the CRL of CA %s could not be re-issued now; "
                           "the background CRL check will re-issue it", revoked,
                           ca_identifier)

    def delete(self, owner: str, identifier: str) -> None:
        """DeleteClientCertificate: only REVOKE; destroys a system-generated key."""
        row = self._get(owner, identifier)
        with self._svc.store.write() as conn:
            deleted = repo.delete_certificate(conn, owner, identifier, now=self._svc.now())
            if deleted:
                audit.record_op("certificate.delete", resources=[identifier],
                                tenant=owner, details={"serial": row.serial})(conn)
        if not deleted:
            raise FailedPrecondition(
                f"the certificate is {_API_STATUS[row.status]}; revoke it before deleting",
                reason="IncorrectStatus.Certificate")
        if row.key_id is not None:
            try:
                with audit.key_use("key.destroy", key=KeyRef(row.key_token or "", row.key_id),
                                   resources=[identifier], tenant=owner):
                    destroy_key(self._token(row.key_token), bytes.fromhex(row.key_id))
            except HsmError:
                # The row is already hidden; a key left behind is logged for the operator.
                _log.exception("could not destroy the key of certificate %s", identifier)

    def update_ca_status(self, owner: str, identifier: str, status: str) -> None:
        """UpdateCACertificateStatus: REVOKE, only from ISSUE; the parent's CRL lists it."""
        if status != CaStatus.REVOKE:
            raise InvalidArgument("status must be REVOKE", reason="InvalidParameter.Status")
        if not identifier:
            raise InvalidArgument("identifier is required", reason="InvalidParameter.Identifier")
        with self._svc.store.write() as conn:
            now = self._svc.now()  # under the write lock, as in revoke
            ca = repo.get_ca(conn, owner, identifier)
            if ca is None or ca.status in (CaStatus.RESERVED, CaStatus.FAILED):
                raise NotFound(f"no CA with identifier {quote(identifier)}",
                               reason="NotFound.Identifier")
            if not repo.update_ca_status(conn, owner, identifier, CaStatus.REVOKE,
                                         expected=(CaStatus.ISSUE,), now=now,
                                         revocation_reason=0):
                raise FailedPrecondition(f"the CA is {ca.status}; only ISSUE can be revoked",
                                         reason="IncorrectStatus.CA")
            if ca.parent_identifier is not None:
                # RFC 5280 5.1.2.6: the parent lists the subordinate CA's serial on its CRL.
                repo.revoke_certificate(conn, owner, identifier, 0, now=now)
            audit.record_op("ca.revoke", resources=[identifier], tenant=owner,
                            key=KeyRef(ca.key_token, ca.key_id),
                            details={"from": str(ca.status), "to": str(CaStatus.REVOKE)})(conn)
        if ca.parent_identifier is not None:
            self._reissue_crl(ca.parent_identifier, f"CA {identifier}")
