"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23

Written out explicitly (reviewed autogenerate output, not generated at runtime). It must
stay equal to service.storage.schema.metadata: tests/storage/test_migrations.py checks it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    op.create_table(
        "ca",
        sa.Column("identifier", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("parent_identifier", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("common_name", sa.Text(), nullable=False),
        sa.Column("organization", sa.Text(), nullable=True),
        sa.Column("organization_unit", sa.Text(), nullable=True),
        sa.Column("country_code", sa.String(length=2), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("locality", sa.Text(), nullable=True),
        sa.Column("subject_der", sa.LargeBinary(), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("key_token", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("public_key_info", sa.LargeBinary(), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=True),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path_len_constraint", sa.Integer(), nullable=True),
        sa.Column("extended_key_usages", sa.JSON(), nullable=True),
        sa.Column("enable_crl", sa.Boolean(), nullable=False),
        sa.Column("crl_day", sa.Integer(), nullable=True),
        sa.Column("last_crl_number", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('ROOT', 'SUB')", name=op.f("ck_ca_kind")),
        sa.CheckConstraint(
            "status IN ('RESERVED', 'ISSUE', 'REVOKE', 'FAILED')", name=op.f("ck_ca_status")
        ),
        sa.ForeignKeyConstraint(
            ["parent_identifier"], ["ca.identifier"], name=op.f("fk_ca_parent_identifier_ca")
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_ca")),
    )
    op.create_index(op.f("ix_ca_owner_created_at"), "ca", ["owner", "created_at"], unique=False)
    op.create_index(op.f("ix_ca_parent_identifier"), "ca", ["parent_identifier"], unique=False)

    op.create_table(
        "kms_certificate",
        sa.Column("certificate_id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("arn", sa.Text(), nullable=False),
        sa.Column("key_spec", sa.String(length=16), nullable=False),
        sa.Column("protection_level", sa.String(length=16), nullable=False),
        sa.Column("exportable_private_key", sa.Boolean(), nullable=False),
        sa.Column("key_token", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("wrapped_private_key", sa.LargeBinary(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_alternative_names", sa.JSON(), nullable=False),
        sa.Column("csr", sa.Text(), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=True),
        sa.Column("certificate_chain", sa.Text(), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("serial", sa.String(length=128), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signature_algorithm", sa.String(length=64), nullable=True),
        sa.Column("subject_key_identifier", sa.String(length=128), nullable=True),
        sa.Column("subject_public_key", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "protection_level IN ('SOFTWARE', 'HSM')",
            name=op.f("ck_kms_certificate_protection_level"),
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'ACTIVE', 'INACTIVE', 'REVOKED')",
            name=op.f("ck_kms_certificate_status"),
        ),
        sa.PrimaryKeyConstraint("certificate_id", name=op.f("pk_kms_certificate")),
    )
    op.create_index(
        op.f("ix_kms_certificate_owner_created_at"),
        "kms_certificate",
        ["owner", "created_at"],
        unique=False,
    )

    op.create_table(
        "certificate",
        sa.Column("identifier", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("issuer_identifier", sa.String(length=36), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tbs", sa.LargeBinary(), nullable=True),
        sa.Column("certificate", sa.LargeBinary(), nullable=True),
        sa.Column("common_name", sa.Text(), nullable=True),
        sa.Column("subject_der", sa.LargeBinary(), nullable=True),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key_token", sa.String(length=16), nullable=True),
        sa.Column("key_id", sa.String(length=128), nullable=True),
        sa.Column("exportable", sa.Boolean(), nullable=True),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("custom_identifier", sa.String(length=128), nullable=True),
        sa.Column("asynchronous", sa.Boolean(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("resource_group_id", sa.String(length=128), nullable=True),
        sa.Column("enable_crl", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('SERVER', 'CLIENT', 'CUSTOM', 'SUBCA', 'ROOTCA')",
            name=op.f("ck_certificate_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'RESERVED', 'ISSUED', 'FAILED', 'REVOKED')",
            name=op.f("ck_certificate_status"),
        ),
        sa.ForeignKeyConstraint(
            ["issuer_identifier"],
            ["ca.identifier"],
            name=op.f("fk_certificate_issuer_identifier_ca"),
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_certificate")),
        sa.UniqueConstraint(
            "issuer_identifier", "serial", name=op.f("uq_certificate_issuer_identifier_serial")
        ),
        sa.UniqueConstraint(
            "owner", "custom_identifier", name=op.f("uq_certificate_owner_custom_identifier")
        ),
    )
    op.create_index(
        op.f("ix_certificate_owner_created_at"),
        "certificate",
        ["owner", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_certificate_owner_serial"), "certificate", ["owner", "serial"], unique=False
    )
    op.create_index(
        op.f("ix_certificate_status_lease_expires_at"),
        "certificate",
        ["status", "lease_expires_at"],
        unique=False,
    )

    op.create_table(
        "crl",
        sa.Column("ca_identifier", sa.String(length=36), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_identifier"], ["ca.identifier"], name=op.f("fk_crl_ca_identifier_ca")
        ),
        sa.PrimaryKeyConstraint("ca_identifier", "crl_number", name=op.f("pk_crl")),
    )
    op.create_table(
        "certificate_tag",
        sa.Column("certificate_identifier", sa.String(length=36), nullable=False),
        sa.Column("tag_key", sa.String(length=128), nullable=False),
        sa.Column("tag_value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_identifier"],
            ["certificate.identifier"],
            name=op.f("fk_certificate_tag_certificate_identifier_certificate"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "certificate_identifier", "tag_key", name=op.f("pk_certificate_tag")
        ),
    )
    op.create_index(
        op.f("ix_certificate_tag_tag_key_tag_value"),
        "certificate_tag",
        ["tag_key", "tag_value"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade the schema."""
    op.drop_index(op.f("ix_certificate_tag_tag_key_tag_value"), table_name="certificate_tag")

    op.drop_table("certificate_tag")
    op.drop_table("crl")
    op.drop_index(op.f("ix_certificate_status_lease_expires_at"), table_name="certificate")
    op.drop_index(op.f("ix_certificate_owner_serial"), table_name="certificate")
    op.drop_index(op.f("ix_certificate_owner_created_at"), table_name="certificate")

    op.drop_table("certificate")
    op.drop_index(op.f("ix_kms_certificate_owner_created_at"), table_name="kms_certificate")

    op.drop_table("kms_certificate")
    op.drop_index(op.f("ix_ca_parent_identifier"), table_name="ca")
    op.drop_index(op.f("ix_ca_owner_created_at"), table_name="ca")

    op.drop_table("ca")
