"""The database schema as SQLAlchemy Core tables (portable: SQLite and PostgreSQL).

This MetaData is the source of truth that Alembic migrations must reproduce;
tests/storage/test_storage_migrations.py fails if the migrated schema drifts from it.
Every resource table carries ``owner`` (the tenant). Timestamps are :class:`UtcDateTime`:
timezone-aware UTC in and out, whatever the backend stores.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

# Explicit constraint names: Alembic needs them to alter constraints later, and the
# repository layer recognises unique violations by name (PostgreSQL reports the name).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime; SQLite (which stores naive values) stores it as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Refuse naive datetimes (their zone is a guess); store UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            # SQLite's DATETIME text drops the offset silently; store naive UTC explicitly
            # so that string comparison (lease expiry, CRL due dates) orders correctly.
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        """SQLAlchemy's processor; on SQLite one function doing the same (~3x faster).

        Five of these run per issued certificate. The fast one is used only if it gives
        exactly SQLAlchemy's text for probe values (else SQLAlchemy's own is kept).
        """
        standard = super().bind_processor(dialect)
        if dialect.name != "sqlite" or standard is None:
            return standard
        try:
            same = all(_sqlite_utc_text(v) == standard(v) for v in _PROBES)
        except Exception:  # noqa: BLE001 - any doubt: keep SQLAlchemy's processor
            same = False
        return _sqlite_utc_text if same else standard

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Return aware UTC; naive values read back are UTC by construction."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


_UTC = dt.UTC
_PROBES = (
    None,
    dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=_UTC),
    dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=_UTC),
    dt.datetime(999, 1, 1, tzinfo=_UTC),
    dt.datetime(2026, 6, 1, 1, 30, 0, 123456,
                tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
)


def _sqlite_utc_text(value: dt.datetime | None) -> str | None:
    """UtcDateTime's process_bind_param + SQLite DATETIME's default storage format."""
    if value is None:
        return None
    if value.tzinfo is not _UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(_UTC)
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 - fastest here
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond)


# Sizes: identifiers are UUID strings (36); owners follow policy.default_owner's rule (64);
# hex serials are at most 20 octets (RFC 5280 4.1.2.2), 40 hex digits.
ID = 36
OWNER = 64
SERIAL = 40
CODE = 16



# Stored codes. str-valued enums: a member is equal to (and stored as) its value, so the
# values in the database are the strings they always were.


class CaKind(enum.StrEnum):
    """A Private CA: a self-signed root or a subordinate of one."""

    ROOT = "ROOT"
    SUB = "SUB"


class CaStatus(enum.StrEnum):
    """A Private CA's status (ISSUE and REVOKE are the API's own words)."""

    # Key generated and TBS stored, not yet signed (a root's own serial is reserved in
    # `certificate` under its own identifier, so the `ca` row must exist first).
    RESERVED = "RESERVED"
    ISSUE = "ISSUE"
    REVOKE = "REVOKE"
    FAILED = "FAILED"


class CertificateStatus(enum.StrEnum):
    """A ``certificate`` row: a job, a reservation, or an outcome (invariant 2)."""

    PENDING = "PENDING"  # an asynchronous job, not yet reserved
    RESERVED = "RESERVED"  # serial and exact TBS stored; the token may have signed
    ISSUED = "ISSUED"
    FAILED = "FAILED"  # kept with its serial and TBS: revocable, never silent
    REVOKED = "REVOKED"


class CertificateKind(enum.StrEnum):
    """What a ``certificate`` row certifies."""

    SERVER = "SERVER"
    CLIENT = "CLIENT"
    CUSTOM = "CUSTOM"
    SUBCA = "SUBCA"
    ROOTCA = "ROOTCA"


#: The end-entity kinds: everything a CA issues except sub CAs.
END_ENTITY_KINDS = (CertificateKind.SERVER, CertificateKind.CLIENT, CertificateKind.CUSTOM)
#: The kinds of a CA's own certificate (its row has the CA's identifier).
CA_CERTIFICATE_KINDS = (CertificateKind.ROOTCA, CertificateKind.SUBCA)


class KmsStatus(enum.StrEnum):
    """A KMS certificate's status (DescribeCertificate ``Status``)."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    REVOKED = "REVOKED"


class ProtectionLevel(enum.StrEnum):
    """Where a private key lives (KMS CreateCertificate and the Private CA's SystemKey
    ``ProtectionLevel``; absent means SOFTWARE): the hsm token, never exportable, or the
    software token."""

    SOFTWARE = "SOFTWARE"
    HSM = "HSM"


CA_KINDS = tuple(CaKind)
CA_STATUSES = tuple(CaStatus)
CERTIFICATE_STATUSES = tuple(CertificateStatus)
CERTIFICATE_KINDS = tuple(CertificateKind)
KMS_STATUSES = tuple(KmsStatus)
KMS_PROTECTION_LEVELS = tuple(ProtectionLevel)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    ]


ca = Table(
    "ca",
    metadata,
    Column("identifier", String(ID), primary_key=True),
    Column("owner", String(OWNER), nullable=False),
    Column("parent_identifier", String(ID), ForeignKey("ca.identifier"), nullable=True),
    Column("kind", String(CODE), nullable=False),
    Column("common_name", Text, nullable=False),
    Column("organization", Text, nullable=True),
    Column("organization_unit", Text, nullable=True),
    Column("country_code", String(2), nullable=True),
    Column("state", Text, nullable=True),
    Column("locality", Text, nullable=True),
    Column("subject_der", LargeBinary, nullable=False),
    Column("algorithm", String(CODE), nullable=False),
    Column("key_token", String(CODE), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("public_key_info", LargeBinary, nullable=False),
    Column("certificate", LargeBinary, nullable=True),
    Column("serial", String(SERIAL), nullable=False),
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("path_len_constraint", Integer, nullable=True),
    Column("extended_key_usages", JSON, nullable=True),
    Column("enable_crl", Boolean, nullable=False),
    Column("crl_day", Integer, nullable=True),
    # Last cRLNumber handed out (RFC 5280 5.2.3): advanced by next_crl_number, or by
    # advance_crl_number when the CRL of that number is stored.
    Column("last_crl_number", BigInteger, nullable=False),
    # Revocations of certificates this CA issued, counted in the revoking transaction; a CRL
    # records the count it saw, so one that misses a revocation is known without clocks.
    Column("revocation_count", BigInteger, nullable=False, server_default="0"),
    Column("status", String(CODE), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revocation_reason", Integer, nullable=True),
    Column("tags", JSON, nullable=False),
    *_timestamps(),
    CheckConstraint(_in("kind", CA_KINDS), name="kind"),
    CheckConstraint(_in("status", CA_STATUSES), name="status"),
    Index(None, "owner", "created_at"),
    Index(None, "parent_identifier"),
)

certificate = Table(
    "certificate",
    metadata,
    Column("identifier", String(ID), primary_key=True),
    Column("owner", String(OWNER), nullable=False),
    Column("issuer_identifier", String(ID), ForeignKey("ca.identifier"), nullable=False),
    # Lower-case hex without leading zeros; NULL while an async job waits (PENDING), unless
    # it asked for a custom serial (held from submission, so the constraint refuses a reuse).
    Column("serial", String(SERIAL), nullable=True),
    Column("status", String(CODE), nullable=False),
    Column("kind", String(CODE), nullable=False),
    # The exact TBSCertificate, stored before the token is asked to sign (invariant 2).
    Column("tbs", LargeBinary, nullable=True),
    Column("certificate", LargeBinary, nullable=True),
    Column("common_name", Text, nullable=True),
    Column("subject_der", LargeBinary, nullable=True),
    Column("sans", JSON, nullable=False),
    Column("not_before", UtcDateTime(), nullable=True),
    Column("not_after", UtcDateTime(), nullable=True),
    # Only for system-generated keys.
    Column("key_token", String(CODE), nullable=True),
    Column("key_id", String(128), nullable=True),
    Column("exportable", Boolean, nullable=True),
    # The normalized request: the job input (immediately = 0) and the idempotency record.
    Column("request", JSON, nullable=True),
    Column("request_fingerprint", String(128), nullable=True),
    Column("custom_identifier", String(128), nullable=True),
    Column("asynchronous", Boolean, nullable=False),
    Column("failure_reason", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revocation_reason", Integer, nullable=True),
    # The issuer's revocation_count this revocation made (1, 2, ...): committed revocations
    # in order, so a CRL publisher reads only those after the last it listed.
    Column("revocation_seq", BigInteger, nullable=True),
    Column("tags", JSON, nullable=False),
    Column("resource_group_id", String(128), nullable=True),
    Column("enable_crl", Boolean, nullable=False),
    # Deleted rows stay (hidden from lookups): a revoked serial must stay on the CRL.
    Column("deleted_at", UtcDateTime(), nullable=True),
    *_timestamps(),
    # NULLs are distinct in both SQLite and PostgreSQL, so PENDING rows without a serial and
    # rows without a custom_identifier do not collide.
    UniqueConstraint("issuer_identifier", "serial"),
    UniqueConstraint("owner", "custom_identifier"),
    CheckConstraint(_in("status", CERTIFICATE_STATUSES), name="status"),
    CheckConstraint(_in("kind", CERTIFICATE_KINDS), name="kind"),
    # List pages: every filter and the order of a page, so that counting and finding where a
    # page starts read this index alone (migration d4b6e8f0a2c1).
    Index("ix_certificate_listing", "owner", "created_at", "identifier", "kind", "deleted_at",
          "issuer_identifier"),
    Index(None, "status", "lease_expires_at"),
    Index(None, "owner", "serial"),
    # A CA's issued-certificate count (DescribeCACertificate's cert_issued_count): every
    # column of repo.count_issued's filter, so the count reads this CA's index entries only,
    # never the rows with their TBS and certificate (migration a8e2f4c6b0d3).
    Index("ix_certificate_issued_count", "issuer_identifier", "owner", "deleted_at", "kind",
          "status"),
    # Partial: issuance writes rows without a revocation_seq, which stay out of it.
    Index("ix_certificate_revocation", "issuer_identifier", "revocation_seq",
          sqlite_where=text("revocation_seq IS NOT NULL"),
          postgresql_where=text("revocation_seq IS NOT NULL")),
)

# Tags as rows too, so "tags match" filters are portable SQL (EXISTS), not JSON operators.
certificate_tag = Table(
    "certificate_tag",
    metadata,
    Column(
        "certificate_identifier",
        String(ID),
        ForeignKey("certificate.identifier", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tag_key", String(128), nullable=False),
    Column("tag_value", String(256), nullable=False),
    PrimaryKeyConstraint("certificate_identifier", "tag_key"),
    Index(None, "tag_key", "tag_value"),
)

crl = Table(
    "crl",
    metadata,
    Column("ca_identifier", String(ID), ForeignKey("ca.identifier"), nullable=False),
    Column("crl_number", BigInteger, nullable=False),
    Column("owner", String(OWNER), nullable=False),
    Column("this_update", UtcDateTime(), nullable=False),
    Column("next_update", UtcDateTime(), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # The CA's revocation_count read before the entries: the CRL lists at least those.
    Column("revocation_count", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("ca_identifier", "crl_number"),
)

# Numbers, times and SHA-256 of every CRL a CA issued. The CRL itself is kept only while it is
# its CA's current one (table crl): each holds every revoked serial of its CA, so keeping
# them all grew quadratically with revocations (migration e7c9a1b3d5f2).
crl_history = Table(
    "crl_history",
    metadata,
    Column("ca_identifier", String(ID), ForeignKey("ca.identifier"), nullable=False),
    Column("crl_number", BigInteger, nullable=False),
    Column("owner", String(OWNER), nullable=False),
    Column("this_update", UtcDateTime(), nullable=False),
    Column("next_update", UtcDateTime(), nullable=False),
    Column("sha256", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("ca_identifier", "crl_number"),
)

kms_certificate = Table(
    "kms_certificate",
    metadata,
    Column("certificate_id", String(ID), primary_key=True),
    Column("owner", String(OWNER), nullable=False),
    Column("arn", Text, nullable=False),
    Column("key_spec", String(CODE), nullable=False),
    Column("protection_level", String(CODE), nullable=False),
    Column("exportable_private_key", Boolean, nullable=False),
    Column("key_token", String(CODE), nullable=False),
    Column("key_id", String(128), nullable=False),
    # SM2 SOFTWARE keys (no SM2 in SoftHSM): the private key only wrapped under a token key.
    Column("wrapped_private_key", LargeBinary, nullable=True),
    Column("subject", Text, nullable=False),
    Column("subject_alternative_names", JSON, nullable=False),
    Column("csr", Text, nullable=False),
    Column("certificate", Text, nullable=True),
    Column("certificate_chain", Text, nullable=True),
    Column("issuer", Text, nullable=True),
    Column("serial", String(128), nullable=True),
    Column("not_before", UtcDateTime(), nullable=True),
    Column("not_after", UtcDateTime(), nullable=True),
    Column("signature_algorithm", String(64), nullable=True),
    Column("subject_key_identifier", String(128), nullable=True),
    Column("subject_public_key", LargeBinary, nullable=False),
    Column("status", String(CODE), nullable=False),
    Column("tags", JSON, nullable=False),
    *_timestamps(),
    CheckConstraint(_in("status", KMS_STATUSES), name="status"),
    CheckConstraint(_in("protection_level", KMS_PROTECTION_LEVELS), name="protection_level"),
    Index(None, "owner", "created_at"),
)

# --- audit log (service/audit): one hash chain per writer, signed checkpoints ---
# Not tenant resources: a record names the tenant of the call it records, and nothing in the
# API reads these tables (the `hsmca audit` command does).

AUDIT_OUTCOMES = ("SUCCESS", "FAILURE", "REFUSED")

audit_record = Table(
    "audit_record",
    metadata,
    # The chain: one writer (a worker process of one replica) appends seq 1, 2, 3, ...
    Column("writer", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("time", UtcDateTime(), nullable=False),
    Column("principal", String(256), nullable=False),
    Column("tenant", String(OWNER), nullable=False),
    Column("action", String(64), nullable=False),
    # Canonical JSON texts, hashed as stored: resource identifiers (array), details (object).
    Column("resources", Text, nullable=False),
    Column("key_token", String(CODE), nullable=True),
    Column("key_id", String(128), nullable=True),
    Column("outcome", String(CODE), nullable=False),
    Column("reason", Text, nullable=False),
    Column("request_id", String(ID), nullable=False),
    Column("details", Text, nullable=False),
    # Hex SHA-256: of the previous record of this chain, and of this record (service/audit).
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    PrimaryKeyConstraint("writer", "seq"),
    CheckConstraint(_in("outcome", AUDIT_OUTCOMES), name="outcome"),
    Index(None, "time"),
)

# The token's signature over a checkpoint record (action audit.checkpoint) of a chain.
audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("writer", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("key_label", String(64), nullable=False),
    Column("algorithm", String(CODE), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    PrimaryKeyConstraint("writer", "seq"),
)

# --- OCSP (service/ocsp): pre-signed responses, one per certificate and CertID hash ---

ocsp_response = Table(
    "ocsp_response",
    metadata,
    Column("ca_identifier", String(ID), ForeignKey("ca.identifier"), nullable=False),
    Column("serial", String(SERIAL), nullable=False),
    Column("hash_algorithm", String(CODE), nullable=False),
    Column("owner", String(OWNER), nullable=False),
    # good | revoked: the certificate status the response states (refreshed when it moves).
    Column("cert_status", String(CODE), nullable=False),
    Column("this_update", UtcDateTime(), nullable=False),
    Column("next_update", UtcDateTime(), nullable=False),
    Column("der", LargeBinary, nullable=False),
    PrimaryKeyConstraint("ca_identifier", "serial", "hash_algorithm"),
    Index(None, "next_update"),
)
