"""keep only the current CRL per CA, with a history of numbers and hashes

Revision ID: e7c9a1b3d5f2
Revises: d4b6e8f0a2c1
Create Date: 2026-12-07

Every revocation used to store a complete new CRL and none was ever dropped: 5,000
revocations left 5,177 CRLs and 642 MB in the crl table. From now on the crl table holds
each CA's current CRL only (repo.store_crl drops the older ones) and crl_history keeps, for
every CRL issued, its number, times and SHA-256. This migration records the CRLs already
stored in the history and keeps the newest of each CA. It also adds the revocation counts
that tell a CRL missing a revocation without comparing clocks (ca.revocation_count, counted
by every revocation; crl.revocation_count, what the CRL saw).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7c9a1b3d5f2"
down_revision: str | Sequence[str] | None = "d4b6e8f0a2c1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    # Revocations counted per CA, and the count each CRL saw (see repo.list_crl_due).
    # Existing CRLs record 0, so each CA with a revocation gets one fresh CRL on the next
    # background check.
    with op.batch_alter_table("ca") as batch:
        batch.add_column(sa.Column("revocation_count", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("crl") as batch:
        batch.add_column(sa.Column("revocation_count", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    op.get_bind().execute(sa.text(
        "UPDATE ca SET revocation_count = (SELECT count(*) FROM certificate "
        "WHERE certificate.issuer_identifier = ca.identifier AND certificate.status = 'REVOKED')"))
    op.create_table(
        "crl_history",
        sa.Column("ca_identifier", sa.String(length=36), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_identifier"], ["ca.identifier"], name=op.f("fk_crl_history_ca_identifier_ca")
        ),
        sa.PrimaryKeyConstraint("ca_identifier", "crl_number", name=op.f("pk_crl_history")),
    )
    conn = op.get_bind()
    crl = sa.table("crl", sa.column("ca_identifier"), sa.column("crl_number"),
                   sa.column("owner"), sa.column("this_update"), sa.column("next_update"),
                   sa.column("der"), sa.column("created_at"))
    history = sa.table("crl_history", sa.column("ca_identifier"), sa.column("crl_number"),
                       sa.column("owner"), sa.column("this_update"), sa.column("next_update"),
                       sa.column("sha256"), sa.column("created_at"))
    # Times are copied as stored (SQL to SQL), so their encoding is the column's own.
    conn.execute(history.insert().from_select(
        ["ca_identifier", "crl_number", "owner", "this_update", "next_update", "sha256",
         "created_at"],
        sa.select(crl.c.ca_identifier, crl.c.crl_number, crl.c.owner, crl.c.this_update,
                  crl.c.next_update, sa.literal(b"", sa.LargeBinary()), crl.c.created_at)))
    keys = conn.execute(sa.select(crl.c.ca_identifier, crl.c.crl_number)).all()
    for ca_identifier, crl_number in keys:  # one DER at a time: the table may be large
        der = conn.execute(sa.select(crl.c.der).where(
            crl.c.ca_identifier == ca_identifier, crl.c.crl_number == crl_number)).scalar_one()
        conn.execute(history.update().where(
            history.c.ca_identifier == ca_identifier, history.c.crl_number == crl_number
        ).values(sha256=hashlib.sha256(der).digest()))
    newer = crl.alias("newer")
    conn.execute(crl.delete().where(sa.exists().where(
        newer.c.ca_identifier == crl.c.ca_identifier, newer.c.crl_number > crl.c.crl_number)))


def downgrade() -> None:
    """Downgrade the schema (the CRLs dropped since are not brought back)."""
    op.drop_table("crl_history")
    with op.batch_alter_table("crl") as batch:
        batch.drop_column("revocation_count")
    with op.batch_alter_table("ca") as batch:
        batch.drop_column("revocation_count")
