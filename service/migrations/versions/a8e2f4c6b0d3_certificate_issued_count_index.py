"""an index for counting a CA's issued certificates

Revision ID: a8e2f4c6b0d3
Revises: e7c9a1b3d5f2
Create Date: 2026-12-07

DescribeCACertificate and DescribeCACertificateList answer each CA's cert_issued_count: the
CA's visible certificates of the end-entity and sub-CA kinds that are ISSUED or REVOKED. No
index held the status, so each count read every row the CA had issued, TBS and certificate
included: at 22k certificates one DescribeCACertificateList of two CAs cost 64 ms of CPU, and
the cost grew with every certificate issued (measured with bench/bench_drift.py). This index
holds every column of the count's filter (repo.count_issued), so the count reads the CA's
index entries alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "a8e2f4c6b0d3"
down_revision: str | Sequence[str] | None = "e7c9a1b3d5f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ["issuer_identifier", "owner", "deleted_at", "kind", "status"]


def upgrade() -> None:
    """Upgrade the schema."""
    op.create_index("ix_certificate_issued_count", "certificate", _COLUMNS, unique=False)


def downgrade() -> None:
    """Downgrade the schema."""
    op.drop_index("ix_certificate_issued_count", table_name="certificate")
