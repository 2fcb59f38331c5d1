"""Repository functions over the schema: frozen dataclass rows in, frozen dataclass rows out.

Every function takes a :class:`~sqlalchemy.Connection`; the caller owns the transaction,
taken through the store conventions (service/storage/store.py: ``with store.write() as
conn``, or an operation of ``store.run_many``). Lookups are scoped by ``owner``: another tenant's
row is simply not found (None). State changes are compare-and-set (``UPDATE ... WHERE
status = <expected>``) and report whether the row moved, so concurrent workers and
processes never both win (see service/storage/db.py for the SQLite transaction notes).

Unique violations are told apart by constraint, portably: PostgreSQL reports the
constraint name, SQLite the column list. After one, the transaction is unusable on
PostgreSQL: let the exception end it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from service.errors import AlreadyExists, FailedPrecondition, NotFound
from service.storage.prepared import Prepared
from service.storage.schema import (
    CaKind,
    CaStatus,
    CertificateKind,
    CertificateStatus,
    KmsStatus,
)
from service.storage.schema import ca as ca_t
from service.storage.schema import certificate as cert_t
from service.storage.schema import certificate_tag as tag_t
from service.storage.schema import crl as crl_t
from service.storage.schema import crl_history as crl_history_t
from service.storage.schema import kms_certificate as kms_t

JsonObject = dict[str, Any]
RowT = TypeVar("RowT")

MAX_PAGE_SIZE = 1000
_SERIAL = re.compile(r"[1-9a-f][0-9a-f]{0,39}")


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def serial_hex(serial: int) -> str:
    """Encode a positive serial number as stored: lower-case hex, no leading zeros."""
    if serial <= 0 or serial.bit_length() > 160:
        raise ValueError(f"serial {serial} must be positive and at most 20 octets")
    return format(serial, "x")


# --- rows ---


@dataclasses.dataclass(frozen=True)
class Page(Generic[RowT]):
    """One page of a listing plus the total number of matching rows."""

    items: tuple[RowT, ...]
    total: int
    offset: int
    limit: int


@dataclasses.dataclass(frozen=True)
class CaRow:
    """A Private CA (root or subordinate); its key lives in the ``hsm`` token."""

    identifier: str
    owner: str
    kind: CaKind
    common_name: str
    subject_der: bytes
    algorithm: str  # RSA_2048, ECC_256, SM2_256, ...
    key_token: str
    key_id: str  # hex CKA_ID
    public_key_info: bytes  # DER SubjectPublicKeyInfo
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: CaStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    parent_identifier: str | None = None
    organization: str | None = None
    organization_unit: str | None = None
    country_code: str | None = None
    state: str | None = None
    locality: str | None = None
    certificate: bytes | None = None  # DER, set when issued
    path_len_constraint: int | None = None
    extended_key_usages: tuple[str, ...] | None = None  # dotted OIDs
    enable_crl: bool = False
    crl_day: int | None = None
    last_crl_number: int = 0
    revocation_count: int = 0
    revoked_at: dt.datetime | None = None
    revocation_reason: int | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CertificateRow:
    """An issued (or reserved, pending, failed) certificate: end-entity or CA."""

    identifier: str
    owner: str
    issuer_identifier: str
    status: CertificateStatus
    kind: CertificateKind
    created_at: dt.datetime
    updated_at: dt.datetime
    serial: str | None = None  # lower-case hex, no leading zeros; None while PENDING
    tbs: bytes | None = None  # DER TBSCertificate, stored before signing
    certificate: bytes | None = None  # DER
    common_name: str | None = None
    subject_der: bytes | None = None
    sans: tuple[tuple[str, str], ...] = ()  # (type, value), e.g. ("dNSName", "a.example")
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    key_token: str | None = None  # system-generated keys only
    key_id: str | None = None
    exportable: bool | None = None
    request: JsonObject | None = None  # normalized request: async job input, idempotency
    request_fingerprint: str | None = None
    custom_identifier: str | None = None
    asynchronous: bool = False  # immediately = 0: a background worker issues it
    failure_reason: str | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    revocation_reason: int | None = None  # RFC 5280 5.3.1 CRLReason
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resource_group_id: str | None = None
    enable_crl: bool = False
    deleted_at: dt.datetime | None = None
    revocation_seq: int | None = None  # the issuer's revocation_count this revocation made


@dataclasses.dataclass(frozen=True)
class RevokedEntry:
    """One revokedCertificates entry of a CA's CRL (RFC 5280 5.1.2.6)."""

    serial: str
    revoked_at: dt.datetime
    revocation_reason: int | None
    revocation_seq: int | None = None  # see schema: certificate.revocation_seq


@dataclasses.dataclass(frozen=True)
class CrlHistoryRow:
    """What is kept of every CRL a CA issued: its number, times and SHA-256."""

    ca_identifier: str
    crl_number: int
    owner: str
    this_update: dt.datetime
    next_update: dt.datetime
    sha256: bytes
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class CrlRow:
    """One CRL a CA issued; crl_number strictly increases per CA."""

    ca_identifier: str
    crl_number: int
    owner: str
    this_update: dt.datetime
    next_update: dt.datetime
    der: bytes
    created_at: dt.datetime
    revocation_count: int = 0  # the CA's revocations this CRL lists at least


@dataclasses.dataclass(frozen=True)
class CrlHead:
    """A stored CRL without its DER: what a publisher or a cache needs to know of it."""

    ca_identifier: str
    crl_number: int
    this_update: dt.datetime
    next_update: dt.datetime
    created_at: dt.datetime
    revocation_count: int


@dataclasses.dataclass(frozen=True)
class KmsCertificateRow:
    """A KMS certificate: a key pair in a token, its CSR and (once uploaded) certificate."""

    certificate_id: str
    owner: str
    arn: str
    key_spec: str  # RSA_2048 | EC_P256 | EC_SM2
    protection_level: str  # SOFTWARE | HSM
    exportable_private_key: bool
    key_token: str
    key_id: str
    subject: str
    csr: str  # PEM
    subject_public_key: bytes  # DER SubjectPublicKeyInfo
    status: KmsStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    subject_alternative_names: tuple[str, ...] = ()
    wrapped_private_key: bytes | None = None
    certificate: str | None = None  # PEM
    certificate_chain: str | None = None  # PEM
    issuer: str | None = None
    serial: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    signature_algorithm: str | None = None
    subject_key_identifier: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)


# --- conversions ---


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() rebuilds its tuple on every call; rows are converted per request.
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _values(row: Any) -> dict[str, Any]:
    out = {name: getattr(row, name) for name in _field_names(type(row))}
    for name, value in out.items():
        if isinstance(value, Mapping):
            out[name] = dict(value)
    return out


def _ca_from(m: RowMapping) -> CaRow:
    d = dict(m)
    eku = d["extended_key_usages"]
    d["extended_key_usages"] = tuple(eku) if eku is not None else None
    d["kind"], d["status"] = CaKind(d["kind"]), CaStatus(d["status"])
    return CaRow(**d)


def _cert_values(row: CertificateRow) -> dict[str, Any]:
    d = {name: getattr(row, name) for name in _field_names(CertificateRow)}
    d["sans"] = [{"type": t, "value": v} for t, v in row.sans]
    d["tags"] = dict(row.tags)
    if isinstance(d["request"], Mapping):
        d["request"] = dict(d["request"])
    return d


def _cert_from(m: RowMapping) -> CertificateRow:
    d = dict(m)
    d["sans"] = tuple((s["type"], s["value"]) for s in d["sans"])
    d["kind"], d["status"] = CertificateKind(d["kind"]), CertificateStatus(d["status"])
    return CertificateRow(**d)


def _kms_values(row: KmsCertificateRow) -> dict[str, Any]:
    d = _values(row)
    d["subject_alternative_names"] = list(row.subject_alternative_names)
    return d


def _kms_from(m: RowMapping) -> KmsCertificateRow:
    d = dict(m)
    d["subject_alternative_names"] = tuple(d["subject_alternative_names"])
    d["status"] = KmsStatus(d["status"])
    return KmsCertificateRow(**d)


# Unique constraint -> (how SQLite names it, the reason clients see).
_UNIQUE_REASONS: dict[str, tuple[str, str]] = {
    "uq_certificate_issuer_identifier_serial": (
        "certificate.issuer_identifier, certificate.serial",
        "AlreadyExists.SerialNumber",
    ),
    "uq_certificate_owner_custom_identifier": (
        "certificate.owner, certificate.custom_identifier",
        "AlreadyExists.CustomIdentifier",
    ),
    "pk_crl": ("crl.ca_identifier, crl.crl_number", "AlreadyExists.CrlNumber"),
    "pk_certificate": ("certificate.identifier", "AlreadyExists.Identifier"),
    "pk_ca": ("ca.identifier", "AlreadyExists.Identifier"),
    "pk_kms_certificate": ("kms_certificate.certificate_id", "AlreadyExists.CertificateId"),
}


def violated_constraint(error: IntegrityError) -> str | None:
    """Name of the unique constraint an IntegrityError violated, if recognisable."""
    orig = error.orig
    diag = getattr(orig, "diag", None)  # psycopg / psycopg2 expose the name directly
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str) and name:
        # PostgreSQL names every violated constraint, foreign keys and checks too: only the
        # unique ones mean "already exists".
        return name if name in _UNIQUE_REASONS else None
    text = str(orig)
    for constraint, (sqlite_columns, _reason) in _UNIQUE_REASONS.items():
        if constraint in text:
            return constraint
        # SQLite names the columns: "UNIQUE constraint failed: t.a, t.b" (compared whole,
        # so that "t.a" alone is not mistaken for "t.a, t.b").
        if text == f"UNIQUE constraint failed: {sqlite_columns}":
            return constraint
    return None


def _raise_already_exists(error: IntegrityError, what: str) -> None:
    constraint = violated_constraint(error)
    if constraint is None:
        return
    reason = _UNIQUE_REASONS.get(constraint, ("", "AlreadyExists"))[1]
    messages = {
        "AlreadyExists.SerialNumber": "the serial number is already used by this issuer",
        "AlreadyExists.CustomIdentifier": "the custom_identifier is already used",
        "AlreadyExists.CrlNumber": "that CRL number already exists for this CA",
    }
    raise AlreadyExists(messages.get(reason, f"{what} already exists"), reason=reason) from error


def _check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be in 1..{MAX_PAGE_SIZE}, got {limit}")


def _page(
    conn: Connection,
    table: Table,
    conditions: Sequence[ColumnElement[bool]],
    order_by: Sequence[ColumnElement[Any]],
    offset: int,
    limit: int,
) -> tuple[int, list[RowMapping]]:
    """(rows matching, one page of them): keyset pagination on the ``order_by`` columns.

    Why not ``OFFSET``: skipping rows with OFFSET reads every skipped row in full, and a
    certificate row carries its TBS and certificate (a deep page at 20k certificates cost 4x
    page 1). The API addresses pages by number, so the key the page starts at is found
    first, selecting the (small) ordering columns only; the page's full rows are then read
    from that key on (``(created_at, identifier) >= key``), ``limit`` of them.
    """
    _check_page(offset, limit)
    total = conn.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()
    where = list(conditions)
    if offset:
        start = conn.execute(
            select(*order_by).where(*conditions).order_by(*order_by).offset(offset).limit(1)
        ).first()
        if start is None:
            return total, []
        where.append(tuple_(*order_by) >= tuple_(*(literal(v, c.type)
                                                   for v, c in zip(start, order_by,
                                                                   strict=True))))
    query: Select[Any] = select(table).where(*where).order_by(*order_by).limit(limit)
    return total, [r._mapping for r in conn.execute(query)]


def _status_condition(column: Any, status: str | Collection[str] | None) -> list[Any]:
    if status is None:
        return []
    if isinstance(status, str):
        return [column == status]
    return [column.in_(list(status))]


# --- CA ---


def insert_ca(conn: Connection, row: CaRow) -> None:
    """Insert a CA row (identifier collisions raise AlreadyExists)."""
    try:
        conn.execute(insert(ca_t).values(_values(row)))
    except IntegrityError as e:
        _raise_already_exists(e, "CA")
        raise


def get_ca(conn: Connection, owner: str, identifier: str) -> CaRow | None:
    """The CA with this identifier for this owner, or None."""
    row = conn.execute(
        select(ca_t).where(ca_t.c.owner == owner, ca_t.c.identifier == identifier)
    ).first()
    return _ca_from(row._mapping) if row else None


def get_ca_any_owner(conn: Connection, identifier: str) -> CaRow | None:
    """The CA with this identifier whatever its owner (CRL publishing; CRLs are public)."""
    row = conn.execute(select(ca_t).where(ca_t.c.identifier == identifier)).first()
    return _ca_from(row._mapping) if row else None


# FOR SHARE on PostgreSQL (SQLite renders nothing: its single writer orders transactions):
# a revocation of the CA cannot commit between this read and the reservation's commit.
_CA_STATUS = Prepared(select(ca_t.c.status).where(ca_t.c.identifier == bindparam("identifier"))
                      .with_for_update(read=True))


def ca_status(conn: Connection, identifier: str) -> CaStatus | None:
    """The CA's status (RESERVED, ISSUE, REVOKE, FAILED), or None if there is no such CA.

    Not owner-scoped: for the issuance path, which has already found the CA for its owner
    and re-reads its status inside the reservation's write transaction (prepared: it runs
    once per group-commit batch). The read holds off the CA's revocation until that
    transaction ends.
    """
    status: str | None = _CA_STATUS.scalar(conn, {"identifier": identifier})
    return None if status is None else CaStatus(status)


def list_cas(
    conn: Connection,
    owner: str,
    *,
    offset: int = 0,
    limit: int = 20,
    status: str | Collection[str] | None = None,
    parent_identifier: str | None = None,
    kind: str | None = None,
) -> Page[CaRow]:
    """A page of this owner's CAs, oldest first, with optional filters."""
    conds: list[Any] = [ca_t.c.owner == owner, *_status_condition(ca_t.c.status, status)]
    if parent_identifier is not None:
        conds.append(ca_t.c.parent_identifier == parent_identifier)
    if kind is not None:
        conds.append(ca_t.c.kind == kind)
    total, rows = _page(conn, ca_t, conds, [ca_t.c.created_at, ca_t.c.identifier], offset, limit)
    return Page(tuple(_ca_from(r) for r in rows), total, offset, limit)


def mark_ca_issued(
    conn: Connection, identifier: str, certificate_der: bytes, *, now: dt.datetime | None = None
) -> None:
    """Record a CA's signed certificate; only from RESERVED (FailedPrecondition otherwise)."""
    result = conn.execute(
        update(ca_t)
        .where(ca_t.c.identifier == identifier, ca_t.c.status == CaStatus.RESERVED)
        .values(certificate=certificate_der, status=CaStatus.ISSUE, updated_at=now or utc_now())
    )
    if result.rowcount != 1:
        raise FailedPrecondition(
            f"CA {identifier} is not RESERVED", reason="IncorrectStatus.CACertificate"
        )


def update_ca_status(
    conn: Connection,
    owner: str,
    identifier: str,
    status: str,
    *,
    expected: Collection[str],
    now: dt.datetime | None = None,
    revocation_reason: int | None = None,
) -> bool:
    """Move a CA to ``status`` if its status is in ``expected``; True if it moved.

    Moving to REVOKE records ``revoked_at`` (= now) and ``revocation_reason``.
    """
    now = now or utc_now()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == CaStatus.REVOKE:
        values.update(revoked_at=now, revocation_reason=revocation_reason)
    result = conn.execute(
        update(ca_t)
        .where(
            ca_t.c.owner == owner,
            ca_t.c.identifier == identifier,
            ca_t.c.status.in_(list(expected)),
        )
        .values(values)
    )
    return result.rowcount == 1


def next_crl_number(conn: Connection, ca_identifier: str) -> int:
    """Hand out the CA's next cRLNumber (atomic increment; strictly increasing)."""
    # The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) first, so two
    # processes never read the same value; the number is burnt if the caller rolls back,
    # which RFC 5280 5.2.3 allows (monotonic, not contiguous).
    result = conn.execute(
        update(ca_t)
        .where(ca_t.c.identifier == ca_identifier)
        .values(last_crl_number=ca_t.c.last_crl_number + 1)
    )
    if result.rowcount != 1:
        raise NotFound(f"CA {ca_identifier} does not exist", reason="NotFound.Identifier")
    number: int = conn.execute(
        select(ca_t.c.last_crl_number).where(ca_t.c.identifier == ca_identifier)
    ).scalar_one()
    return number


# --- certificates ---


def _check_serial(serial: str | None) -> str:
    if serial is None or not _SERIAL.fullmatch(serial):
        raise ValueError(f"serial {serial!r}: lower-case hex without leading zeros expected")
    return serial


# Every column (CertificateRow has one field per column). Prepared: this runs once per
# issued certificate, and conn.execute's machinery costs several times SQLite's own work
# (see service/storage/prepared.py).
_INSERT_CERTIFICATE = Prepared(insert(cert_t))
_INSERT_TAG = Prepared(insert(tag_t))


def _insert_certificate(conn: Connection, row: CertificateRow) -> None:
    try:
        _INSERT_CERTIFICATE.execute(conn, _cert_values(row))
    except IntegrityError as e:
        _raise_already_exists(e, "certificate")
        raise
    if row.tags:
        # A new row has no tags yet, so nothing to delete first.
        _INSERT_TAG.executemany(
            conn,
            [
                {"certificate_identifier": row.identifier, "tag_key": k, "tag_value": v}
                for k, v in row.tags.items()
            ],
        )


def insert_pending(conn: Connection, row: CertificateRow) -> None:
    """Store an asynchronous issuance job (status PENDING, no TBS yet).

    A duplicate (owner, custom_identifier) raises AlreadyExists.CustomIdentifier; a job with a
    custom serial holds it from now, and one the issuer used raises AlreadyExists.SerialNumber.
    """
    if row.status != CertificateStatus.PENDING or not row.asynchronous or row.request is None:
        raise ValueError("a pending job needs status PENDING, asynchronous and a request")
    _insert_certificate(conn, row)


def reserve_certificate(conn: Connection, row: CertificateRow) -> None:
    """Reserve (issuer, serial) and store the TBS before signing (docs/architecture.md inv. 2).

    Raises AlreadyExists with reason AlreadyExists.SerialNumber for a serial the issuer
    already used, AlreadyExists.CustomIdentifier for a custom_identifier the owner used.
    """
    if row.status != CertificateStatus.RESERVED or row.tbs is None:
        raise ValueError("a reservation needs status RESERVED and the TBSCertificate")
    _check_serial(row.serial)
    _insert_certificate(conn, row)


def reserve_claimed(conn: Connection, row: CertificateRow, worker_id: str) -> None:
    """Turn a claimed PENDING job into a RESERVED certificate (serial + TBS from ``row``).

    The job must still be leased by ``worker_id`` (else FailedPrecondition); a used serial
    raises AlreadyExists.SerialNumber.
    """
    if row.tbs is None:
        raise ValueError("a reservation needs the TBSCertificate")
    values = {
        "serial": _check_serial(row.serial),
        "tbs": row.tbs,
        "status": CertificateStatus.RESERVED,
        "common_name": row.common_name,
        "subject_der": row.subject_der,
        "sans": [{"type": t, "value": v} for t, v in row.sans],
        "not_before": row.not_before,
        "not_after": row.not_after,
        "key_token": row.key_token,
        "key_id": row.key_id,
        "exportable": row.exportable,
        "updated_at": row.updated_at,
    }
    try:
        result = conn.execute(
            update(cert_t)
            .where(
                cert_t.c.identifier == row.identifier,
                cert_t.c.status == CertificateStatus.PENDING,
                cert_t.c.lease_owner == worker_id,
            )
            .values(values)
        )
    except IntegrityError as e:
        _raise_already_exists(e, "certificate")
        raise
    if result.rowcount != 1:
        raise FailedPrecondition(
            f"job {row.identifier} is not PENDING under a lease of {worker_id}",
            reason="IncorrectStatus.Certificate",
        )


# Prepared with bind parameters (runs once per certificate; see _insert_certificate).
_MARK_ISSUED = Prepared(
    update(cert_t)
    .where(cert_t.c.identifier == bindparam("b_identifier"),
           cert_t.c.status == CertificateStatus.RESERVED)
    .values(
        certificate=bindparam("b_certificate"),
        status=CertificateStatus.ISSUED,
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("b_updated_at"),
    )
)


def mark_issued(
    conn: Connection,
    identifier: str,
    certificate_der: bytes,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Record the signed certificate; only from RESERVED (FailedPrecondition otherwise)."""
    rowcount = _MARK_ISSUED.execute(
        conn,
        {"b_identifier": identifier, "b_certificate": certificate_der,
         "b_updated_at": now or utc_now()},
    )
    if rowcount != 1:
        raise FailedPrecondition(
            f"certificate {identifier} is not RESERVED", reason="IncorrectStatus.Certificate"
        )


def discard_pending(conn: Connection, identifier: str, worker_id: str) -> bool:
    """Delete a PENDING job leased by ``worker_id`` (never reserved); True if it went."""
    result = conn.execute(
        delete(cert_t).where(
            cert_t.c.identifier == identifier,
            cert_t.c.status == CertificateStatus.PENDING,
            cert_t.c.lease_owner == worker_id,
        )
    )
    return result.rowcount == 1


def defer_job(
    conn: Connection, identifier: str, worker_id: str, until: dt.datetime
) -> bool:
    """Give back the lease of a job ``worker_id`` holds; claimable again from ``until``.

    For a job that met an outage of the token or the database: it is retried later, not
    failed. True if the lease was still ours.
    """
    result = conn.execute(
        update(cert_t)
        .where(
            cert_t.c.identifier == identifier,
            cert_t.c.status.in_([CertificateStatus.PENDING, CertificateStatus.RESERVED]),
            cert_t.c.lease_owner == worker_id,
        )
        .values(lease_owner=None, lease_expires_at=until)
    )
    return result.rowcount == 1


def renew_lease(
    conn: Connection, identifier: str, worker_id: str, until: dt.datetime
) -> bool:
    """Extend the lease ``worker_id`` holds on one job (the job in hand) to ``until``.

    True if the job is still unfinished and leased by ``worker_id``.
    """
    result = conn.execute(
        update(cert_t)
        .where(
            cert_t.c.identifier == identifier,
            cert_t.c.lease_owner == worker_id,
            cert_t.c.status.in_([CertificateStatus.PENDING, CertificateStatus.RESERVED]),
        )
        .values(lease_expires_at=until)
    )
    return result.rowcount == 1


def release_leases(conn: Connection, worker_id: str, now: dt.datetime) -> int:
    """Give back every lease ``worker_id`` holds (it exits cleanly): claimable at once."""
    result = conn.execute(
        update(cert_t)
        .where(
            cert_t.c.lease_owner == worker_id,
            cert_t.c.status.in_([CertificateStatus.PENDING, CertificateStatus.RESERVED]),
        )
        .values(lease_owner=None, lease_expires_at=now)
    )
    return int(result.rowcount)


def revoke_reserved(
    conn: Connection, identifier: str, failure_reason: str, *, now: dt.datetime
) -> bool:
    """Revoke a RESERVED row that cannot be signed again (its CA may no longer issue).

    Its TBS may have been signed before the process died, so its serial must be on the
    CA's CRL: REVOKED (reason unspecified), with the reason it was not finished.
    """
    result = conn.execute(
        update(cert_t)
        .where(cert_t.c.identifier == identifier,
               cert_t.c.status == CertificateStatus.RESERVED)
        .values(status=CertificateStatus.REVOKED, revoked_at=now, revocation_reason=0,
                failure_reason=failure_reason, lease_owner=None, lease_expires_at=None,
                updated_at=now)
    )
    if result.rowcount != 1:
        return False
    _count_revocation(conn, identifier)
    return True


def mark_failed(
    conn: Connection,
    identifier: str,
    failure_reason: str,
    *,
    now: dt.datetime | None = None,
    leased_by: str | None = None,
) -> bool:
    """Mark a PENDING or RESERVED certificate FAILED with a reason; True if it moved.

    ``leased_by``: only while that worker holds the job's lease.
    """
    where = [cert_t.c.identifier == identifier,
             cert_t.c.status.in_([CertificateStatus.PENDING, CertificateStatus.RESERVED])]
    if leased_by is not None:
        where.append(cert_t.c.lease_owner == leased_by)
    result = conn.execute(
        update(cert_t)
        .where(*where)
        .values(
            status=CertificateStatus.FAILED,
            failure_reason=failure_reason,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now or utc_now(),
        )
    )
    return result.rowcount == 1


def revoke_certificate(
    conn: Connection,
    owner: str,
    identifier: str,
    reason_code: int,
    *,
    now: dt.datetime | None = None,
) -> bool:
    """Revoke an ISSUED certificate, or a FAILED one whose TBS may have been signed (it has
    a serial and a TBS: it failed after its reservation); False if neither / not found."""
    now = now or utc_now()
    result = conn.execute(
        update(cert_t)
        .where(
            cert_t.c.owner == owner,
            cert_t.c.identifier == identifier,
            or_(
                cert_t.c.status == CertificateStatus.ISSUED,
                and_(
                    cert_t.c.status == CertificateStatus.FAILED,
                    cert_t.c.serial.is_not(None),
                    cert_t.c.tbs.is_not(None),
                ),
            ),
            cert_t.c.deleted_at.is_(None),
        )
        .values(status=CertificateStatus.REVOKED, revoked_at=now, revocation_reason=reason_code,
                updated_at=now)
    )
    if result.rowcount != 1:
        return False
    _count_revocation(conn, identifier)
    return True


def _count_revocation(conn: Connection, identifier: str) -> None:
    # In the revoking transaction: a CRL that read a lower count may miss this revocation.
    # The revocation is numbered with the count it made; the count's row stays locked until
    # the commit, so the numbers of one CA follow the commit order (list_revoked_since).
    conn.execute(
        update(ca_t)
        .where(ca_t.c.identifier == select(cert_t.c.issuer_identifier)
               .where(cert_t.c.identifier == identifier).scalar_subquery())
        .values(revocation_count=ca_t.c.revocation_count + 1)
    )
    conn.execute(
        update(cert_t)
        .where(cert_t.c.identifier == identifier)
        .values(revocation_seq=select(ca_t.c.revocation_count)
                .where(ca_t.c.identifier == cert_t.c.issuer_identifier).scalar_subquery())
    )


def delete_certificate(
    conn: Connection, owner: str, identifier: str, *, now: dt.datetime | None = None
) -> bool:
    """Hide a REVOKED certificate from lookups; it stays on its CA's CRL. True if done."""
    now = now or utc_now()
    result = conn.execute(
        update(cert_t)
        .where(
            cert_t.c.owner == owner,
            cert_t.c.identifier == identifier,
            cert_t.c.status == CertificateStatus.REVOKED,
            cert_t.c.deleted_at.is_(None),
        )
        .values(deleted_at=now, updated_at=now)
    )
    return result.rowcount == 1


def _visible(owner: str) -> list[ColumnElement[bool]]:
    return [cert_t.c.owner == owner, cert_t.c.deleted_at.is_(None)]


def get_certificate(conn: Connection, owner: str, identifier: str) -> CertificateRow | None:
    """The certificate with this identifier for this owner (not deleted), or None."""
    row = conn.execute(
        select(cert_t).where(*_visible(owner), cert_t.c.identifier == identifier)
    ).first()
    return _cert_from(row._mapping) if row else None


def list_certificates_by_serial(
    conn: Connection, owner: str, serial: str, *, kinds: Collection[str] | None = None
) -> tuple[CertificateRow, ...]:
    """The owner's certificates with this hex serial, oldest first: one per issuer at most.

    Serials are unique per issuer only (UNIQUE(issuer_identifier, serial)), so several CAs
    may each have one; the (owner, serial) index finds them all. Sorted here, not in SQL:
    with ORDER BY created_at, SQLite walks the (owner, created_at) index instead, which
    reads every row of the owner.
    """
    conds = [*_visible(owner), cert_t.c.serial == serial]
    if kinds is not None:
        conds.append(cert_t.c.kind.in_(list(kinds)))
    rows = [_cert_from(r._mapping) for r in conn.execute(select(cert_t).where(*conds))]
    return tuple(sorted(rows, key=lambda r: (r.created_at, r.identifier)))


def get_certificate_by_custom_identifier(
    conn: Connection, owner: str, custom_identifier: str
) -> CertificateRow | None:
    """The owner's certificate recorded under this idempotency key, or None."""
    row = conn.execute(
        select(cert_t).where(
            cert_t.c.owner == owner, cert_t.c.custom_identifier == custom_identifier
        )
    ).first()
    return _cert_from(row._mapping) if row else None


def list_certificates(
    conn: Connection,
    owner: str,
    *,
    offset: int = 0,
    limit: int = 20,
    issuer_identifier: str | None = None,
    status: str | Collection[str] | None = None,
    kinds: Collection[str] | None = None,
    tags: Mapping[str, str] | None = None,
    resource_group_id: str | None = None,
) -> Page[CertificateRow]:
    """A page of the owner's certificates, oldest first; every given tag must match."""
    conds: list[Any] = [*_visible(owner), *_status_condition(cert_t.c.status, status)]
    if issuer_identifier is not None:
        conds.append(cert_t.c.issuer_identifier == issuer_identifier)
    if kinds is not None:
        conds.append(cert_t.c.kind.in_(list(kinds)))
    if resource_group_id is not None:
        conds.append(cert_t.c.resource_group_id == resource_group_id)
    for key, value in (tags or {}).items():
        conds.append(
            exists().where(
                tag_t.c.certificate_identifier == cert_t.c.identifier,
                tag_t.c.tag_key == key,
                tag_t.c.tag_value == value,
            )
        )
    total, rows = _page(
        conn, cert_t, conds, [cert_t.c.created_at, cert_t.c.identifier], offset, limit
    )
    return Page(tuple(_cert_from(r) for r in rows), total, offset, limit)


def count_issued(
    conn: Connection,
    owner: str,
    issuer_identifier: str,
    *,
    kinds: Collection[str],
    status: Collection[str],
) -> int:
    """How many of the owner's visible certificates this CA issued with these kinds/statuses.

    The count of DescribeCACertificate (cert_issued_count), asked on every describe and list
    of CAs. It reads the index ix_certificate_issued_count alone: one range of it (issuer,
    owner, not deleted), counted per (kind, status) in the index's order, the wanted pairs
    summed here. Filtering kinds and statuses with IN instead made PostgreSQL 15 check them
    on the rows. Without the index each count read every row of the CA, TBS and certificate
    included, and a describe cost more with every certificate issued.
    """
    counts = conn.execute(
        select(cert_t.c.kind, cert_t.c.status, func.count())
        .where(cert_t.c.issuer_identifier == issuer_identifier, *_visible(owner))
        .group_by(cert_t.c.kind, cert_t.c.status)
    )
    wanted_kinds, wanted_status = set(kinds), set(status)
    return sum(n for kind, state, n in counts if kind in wanted_kinds and state in wanted_status)


_REVOKED_COLUMNS = (cert_t.c.serial, cert_t.c.revoked_at, cert_t.c.revocation_reason,
                    cert_t.c.revocation_seq)


def list_revoked(conn: Connection, ca_identifier: str) -> tuple[RevokedEntry, ...]:
    """Every revoked serial of one CA (deleted ones included), for its CRL."""
    rows = conn.execute(
        select(*_REVOKED_COLUMNS)
        .where(cert_t.c.issuer_identifier == ca_identifier,
               cert_t.c.status == CertificateStatus.REVOKED)
        .order_by(cert_t.c.revoked_at, cert_t.c.serial)
    )
    return tuple(RevokedEntry(*r) for r in rows)


def list_revoked_since(conn: Connection, ca_identifier: str,
                       after_seq: int) -> tuple[RevokedEntry, ...]:
    """The CA's revocations numbered after ``after_seq``, in order (index
    ix_certificate_revocation; a revocation is final, so these are all that changed)."""
    rows = conn.execute(
        select(*_REVOKED_COLUMNS)
        .where(cert_t.c.issuer_identifier == ca_identifier,
               cert_t.c.revocation_seq.is_not(None),
               cert_t.c.revocation_seq > after_seq,
               cert_t.c.status == CertificateStatus.REVOKED)
        .order_by(cert_t.c.revocation_seq)
    )
    return tuple(RevokedEntry(*r) for r in rows)


def _claimable(now: dt.datetime, leftover_before: dt.datetime) -> ColumnElement[bool]:
    # PENDING jobs nobody holds (or whose holder's lease ran out), and RESERVED rows whose
    # process died between reserving and recording: jobs whose lease ran out, and the rows of
    # synchronous calls (never leased) reserved before ``leftover_before``, which no live
    # call holds that long. Their stored TBS is signed again, so each still yields exactly
    # one recorded certificate with its one serial; except a CA's own certificate (kind
    # ROOTCA or SUBCA), whose creation the claimer fails instead of finishing it
    # (PrivateCaService.run_next_job).
    return or_(
        and_(
            cert_t.c.asynchronous.is_(True),
            cert_t.c.status == CertificateStatus.PENDING,
            or_(cert_t.c.lease_expires_at.is_(None), cert_t.c.lease_expires_at < now),
        ),
        and_(cert_t.c.status == CertificateStatus.RESERVED, cert_t.c.lease_expires_at < now),
        and_(
            cert_t.c.status == CertificateStatus.RESERVED,
            cert_t.c.asynchronous.is_(False),
            cert_t.c.lease_expires_at.is_(None),
            cert_t.c.updated_at < leftover_before,
        ),
    )


def claim_pending(
    conn: Connection, worker_id: str, lease_seconds: float, now: dt.datetime
) -> CertificateRow | None:
    """Lease one claimable job to ``worker_id``; None if there is none.

    Safe with several processes: the UPDATE re-checks claimability, so only one claimer
    sees rowcount 1. Commit right after claiming so the lease is visible to others. A
    returned row with status RESERVED is a retry, or the leftover of a synchronous call
    whose process died after its reservation (RESERVED for longer than a lease): sign its
    stored TBS again (an end entity) or fail the CA's creation (kind ROOTCA or SUBCA).
    """
    lease_until = now + dt.timedelta(seconds=lease_seconds)
    leftover_before = now - dt.timedelta(seconds=lease_seconds)
    candidates = conn.execute(
        select(cert_t.c.identifier)
        .where(_claimable(now, leftover_before))
        .order_by(cert_t.c.created_at, cert_t.c.identifier)
        .limit(8)
        # PostgreSQL: concurrent claimers skip each other's candidates instead of queueing
        # on them. SQLite renders nothing here; its single writer lock serialises instead.
        .with_for_update(skip_locked=True)
    ).scalars()
    for identifier in list(candidates):
        result = conn.execute(
            update(cert_t)
            .where(cert_t.c.identifier == identifier, _claimable(now, leftover_before))
            .values(
                lease_owner=worker_id,
                lease_expires_at=lease_until,
                attempts=cert_t.c.attempts + 1,
                updated_at=now,
            )
        )
        if result.rowcount == 1:
            row = conn.execute(select(cert_t).where(cert_t.c.identifier == identifier)).one()
            return _cert_from(row._mapping)
    return None


# --- CRLs ---


def insert_crl(conn: Connection, row: CrlRow) -> None:
    """Store a signed CRL; a repeated (CA, crl_number) raises AlreadyExists.CrlNumber."""
    try:
        conn.execute(insert(crl_t).values(_values(row)))
    except IntegrityError as e:
        _raise_already_exists(e, "CRL")
        raise


def advance_crl_number(conn: Connection, ca_identifier: str, expected: int) -> bool:
    """Move the CA's last cRLNumber from ``expected`` to ``expected + 1``; False if another
    publisher moved it first (compare and set: numbers stay strictly increasing)."""
    result = conn.execute(
        update(ca_t)
        .where(ca_t.c.identifier == ca_identifier, ca_t.c.last_crl_number == expected)
        .values(last_crl_number=expected + 1)
    )
    return result.rowcount == 1


def store_crl(conn: Connection, row: CrlRow, sha256: bytes) -> None:
    """Store a CRL as its CA's current one: older ones go, their numbers and hashes stay."""
    insert_crl(conn, row)
    conn.execute(
        delete(crl_t).where(
            crl_t.c.ca_identifier == row.ca_identifier, crl_t.c.crl_number < row.crl_number
        )
    )
    conn.execute(
        insert(crl_history_t).values(
            ca_identifier=row.ca_identifier,
            crl_number=row.crl_number,
            owner=row.owner,
            this_update=row.this_update,
            next_update=row.next_update,
            sha256=sha256,
            created_at=row.created_at,
        )
    )


def list_crl_history(conn: Connection, ca_identifier: str) -> tuple[CrlHistoryRow, ...]:
    """Every CRL the CA issued (since history was kept), by number."""
    rows = conn.execute(
        select(crl_history_t)
        .where(crl_history_t.c.ca_identifier == ca_identifier)
        .order_by(crl_history_t.c.crl_number)
    )
    return tuple(CrlHistoryRow(**r._mapping) for r in rows)


def get_latest_crl_head(conn: Connection, ca_identifier: str) -> CrlHead | None:
    """The CA's current CRL without its DER (which may be a megabyte)."""
    row = conn.execute(
        select(crl_t.c.crl_number, crl_t.c.this_update, crl_t.c.next_update,
               crl_t.c.created_at, crl_t.c.revocation_count)
        .where(crl_t.c.ca_identifier == ca_identifier)
        .order_by(crl_t.c.crl_number.desc())
        .limit(1)
    ).first()
    return CrlHead(ca_identifier, *row) if row else None


def get_latest_crl(conn: Connection, ca_identifier: str) -> CrlRow | None:
    """The CA's CRL with the highest number (CRLs are public: not owner-scoped)."""
    row = conn.execute(
        select(crl_t)
        .where(crl_t.c.ca_identifier == ca_identifier)
        .order_by(crl_t.c.crl_number.desc())
        .limit(1)
    ).first()
    return CrlRow(**row._mapping) if row else None


def list_crl_due(conn: Connection, before: dt.datetime) -> tuple[str, ...]:
    """CAs with CRLs enabled whose latest CRL is missing, ends before ``before`` or may miss
    a revocation (one at or after its thisUpdate)."""
    latest = (
        select(crl_t.c.ca_identifier, func.max(crl_t.c.crl_number).label("crl_number"))
        .group_by(crl_t.c.ca_identifier)
        .subquery()
    )
    current = crl_t.alias("current_crl")
    # A revocation committed after the CRL read its entries, whose own re-issue failed or
    # never ran (crash, token or database error): counted, so no clock is compared.
    missed_revocation = ca_t.c.revocation_count > current.c.revocation_count
    query = (
        select(ca_t.c.identifier)
        .select_from(
            ca_t.outerjoin(latest, latest.c.ca_identifier == ca_t.c.identifier).outerjoin(
                current,
                and_(
                    current.c.ca_identifier == latest.c.ca_identifier,
                    current.c.crl_number == latest.c.crl_number,
                ),
            )
        )
        .where(
            ca_t.c.enable_crl.is_(True),
            ca_t.c.status.in_([CaStatus.ISSUE, CaStatus.REVOKE]),
            or_(
                current.c.next_update.is_(None),
                current.c.next_update < before,
                missed_revocation,
            ),
        )
        .order_by(ca_t.c.identifier)
    )
    return tuple(conn.execute(query).scalars())


# --- KMS certificates ---


def insert_kms_certificate(conn: Connection, row: KmsCertificateRow) -> None:
    """Insert a KMS certificate record."""
    try:
        conn.execute(insert(kms_t).values(_kms_values(row)))
    except IntegrityError as e:
        _raise_already_exists(e, "KMS certificate")
        raise


def get_kms_certificate(
    conn: Connection, owner: str, certificate_id: str
) -> KmsCertificateRow | None:
    """The KMS certificate with this id for this owner, or None."""
    row = conn.execute(
        select(kms_t).where(kms_t.c.owner == owner, kms_t.c.certificate_id == certificate_id)
    ).first()
    return _kms_from(row._mapping) if row else None


def list_kms_certificates(
    conn: Connection,
    owner: str,
    *,
    offset: int = 0,
    limit: int = 20,
    subject: str | None = None,
    issuer: str | None = None,
    status: str | Collection[str] | None = None,
) -> Page[KmsCertificateRow]:
    """A page of the owner's KMS certificates, oldest first; filters match exactly."""
    conds: list[Any] = [kms_t.c.owner == owner, *_status_condition(kms_t.c.status, status)]
    if subject is not None:
        conds.append(kms_t.c.subject == subject)
    if issuer is not None:
        conds.append(kms_t.c.issuer == issuer)
    total, rows = _page(
        conn, kms_t, conds, [kms_t.c.created_at, kms_t.c.certificate_id], offset, limit
    )
    return Page(tuple(_kms_from(r) for r in rows), total, offset, limit)


_KMS_IMMUTABLE = frozenset({"certificate_id", "owner", "arn", "created_at"})


def update_kms_certificate(
    conn: Connection, row: KmsCertificateRow, *, expected_status: Collection[str]
) -> bool:
    """Write every mutable column of ``row`` if the stored status is in ``expected_status``.

    Use with ``dataclasses.replace(row, certificate=..., status="ACTIVE", updated_at=now)``.
    """
    values = {k: v for k, v in _kms_values(row).items() if k not in _KMS_IMMUTABLE}
    result = conn.execute(
        update(kms_t)
        .where(
            kms_t.c.owner == row.owner,
            kms_t.c.certificate_id == row.certificate_id,
            kms_t.c.status.in_(list(expected_status)),
        )
        .values(values)
    )
    return result.rowcount == 1


def update_kms_certificate_status(
    conn: Connection,
    owner: str,
    certificate_id: str,
    status: str,
    *,
    expected: Collection[str],
    now: dt.datetime | None = None,
) -> bool:
    """Move a KMS certificate to ``status`` if its status is in ``expected``."""
    result = conn.execute(
        update(kms_t)
        .where(
            kms_t.c.owner == owner,
            kms_t.c.certificate_id == certificate_id,
            kms_t.c.status.in_(list(expected)),
        )
        .values(status=status, updated_at=now or utc_now())
    )
    return result.rowcount == 1


def delete_kms_certificate(conn: Connection, owner: str, certificate_id: str) -> bool:
    """Delete a KMS certificate record; True if it existed."""
    result = conn.execute(
        kms_t.delete().where(kms_t.c.owner == owner, kms_t.c.certificate_id == certificate_id)
    )
    return result.rowcount == 1


__all__ = [
    "CaRow",
    "CertificateRow",
    "CrlHead",
    "CrlHistoryRow",
    "CrlRow",
    "JsonObject",
    "KmsCertificateRow",
    "Page",
    "RevokedEntry",
    "advance_crl_number",
    "ca_status",
    "claim_pending",
    "count_issued",
    "defer_job",
    "delete_certificate",
    "delete_kms_certificate",
    "get_ca",
    "get_ca_any_owner",
    "get_certificate",
    "get_certificate_by_custom_identifier",
    "get_kms_certificate",
    "get_latest_crl",
    "get_latest_crl_head",
    "insert_ca",
    "insert_crl",
    "insert_kms_certificate",
    "insert_pending",
    "list_cas",
    "list_certificates",
    "list_certificates_by_serial",
    "list_crl_due",
    "list_crl_history",
    "list_kms_certificates",
    "list_revoked",
    "list_revoked_since",
    "mark_ca_issued",
    "mark_failed",
    "mark_issued",
    "next_crl_number",
    "release_leases",
    "renew_lease",
    "reserve_certificate",
    "reserve_claimed",
    "revoke_certificate",
    "revoke_reserved",
    "serial_hex",
    "store_crl",
    "update_ca_status",
    "update_kms_certificate",
    "update_kms_certificate_status",
    "utc_now",
    "violated_constraint",
]
