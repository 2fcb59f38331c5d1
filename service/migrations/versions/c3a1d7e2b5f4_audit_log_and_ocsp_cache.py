"""audit log chains and checkpoints; pre-signed OCSP responses

Revision ID: c3a1d7e2b5f4
Revises: 0001
Create Date: 2026-12-07

Written out explicitly; it must stay equal to service.storage.schema.metadata
(tests/storage/test_storage_migrations.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3a1d7e2b5f4"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    op.create_table(
        "audit_record",
        sa.Column("writer", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resources", sa.Text(), nullable=False),
        sa.Column("key_token", sa.String(length=16), nullable=True),
        sa.Column("key_id", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("outcome IN ('SUCCESS', 'FAILURE', 'REFUSED')",
                           name=op.f("ck_audit_record_outcome")),
        sa.PrimaryKeyConstraint("writer", "seq", name=op.f("pk_audit_record")),
    )
    op.create_index(op.f("ix_audit_record_time"), "audit_record", ["time"], unique=False)
    op.create_table(
        "audit_checkpoint",
        sa.Column("writer", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("key_label", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("writer", "seq", name=op.f("pk_audit_checkpoint")),
    )
    op.create_table(
        "ocsp_response",
        sa.Column("ca_identifier", sa.String(length=36), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("hash_algorithm", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("cert_status", sa.String(length=16), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["ca_identifier"], ["ca.identifier"],
                                name=op.f("fk_ocsp_response_ca_identifier_ca")),
        sa.PrimaryKeyConstraint("ca_identifier", "serial", "hash_algorithm",
                                name=op.f("pk_ocsp_response")),
    )
    op.create_index(op.f("ix_ocsp_response_next_update"), "ocsp_response", ["next_update"],
                    unique=False)


def downgrade() -> None:
    """Downgrade the schema."""
    op.drop_index(op.f("ix_ocsp_response_next_update"), table_name="ocsp_response")
    op.drop_table("ocsp_response")
    op.drop_table("audit_checkpoint")
    op.drop_index(op.f("ix_audit_record_time"), table_name="audit_record")
    op.drop_table("audit_record")
