"""revocations numbered per CA, for CRLs re-issued from what changed

Revision ID: f3b8d2a6c4e1
Revises: a8e2f4c6b0d3
Create Date: 2026-12-07

certificate.revocation_seq is the issuer's revocation_count that the revocation made (1, 2,
...), set in the revoking transaction: the counter's row lock orders the numbers as the
revocations commit, so a CRL publisher that listed revocations up to n reads only the rows
after n (repo.list_revoked_since) instead of every revoked row of the CA. The partial index
holds the revoked rows only, so issuance, which writes rows without a number, does not
update it. Existing revocations are numbered per CA in the order of revoked_at and serial,
and each CA's revocation_count is set to what it numbered.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f3b8d2a6c4e1"
down_revision: str | Sequence[str] | None = "a8e2f4c6b0d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 1000


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("certificate") as batch:
        batch.add_column(sa.Column("revocation_seq", sa.BigInteger(), nullable=True))
    conn = op.get_bind()
    cert = sa.table("certificate", sa.column("identifier"), sa.column("issuer_identifier"),
                    sa.column("serial"), sa.column("status"), sa.column("revoked_at"),
                    sa.column("revocation_seq"))
    ca = sa.table("ca", sa.column("identifier"), sa.column("revocation_count"))
    rows = conn.execute(
        sa.select(cert.c.identifier, cert.c.issuer_identifier)
        .where(cert.c.status == "REVOKED")
        .order_by(cert.c.issuer_identifier, cert.c.revoked_at, cert.c.serial)).all()
    counts: dict[str, int] = {}
    numbered = []
    for identifier, issuer in rows:
        counts[issuer] = counts.get(issuer, 0) + 1
        numbered.append({"id": identifier, "seq": counts[issuer]})
    number = cert.update().where(cert.c.identifier == sa.bindparam("id")).values(
        revocation_seq=sa.bindparam("seq"))
    for start in range(0, len(numbered), _CHUNK):
        conn.execute(number, numbered[start:start + _CHUNK])
    recount = ca.update().where(ca.c.identifier == sa.bindparam("id")).values(
        revocation_count=sa.bindparam("count"))
    conn.execute(ca.update().values(revocation_count=0))
    if counts:
        conn.execute(recount, [{"id": k, "count": v} for k, v in counts.items()])
    op.create_index("ix_certificate_revocation", "certificate",
                    ["issuer_identifier", "revocation_seq"], unique=False,
                    sqlite_where=sa.text("revocation_seq IS NOT NULL"),
                    postgresql_where=sa.text("revocation_seq IS NOT NULL"))


def downgrade() -> None:
    """Downgrade the schema."""
    op.drop_index("ix_certificate_revocation", table_name="certificate")
    with op.batch_alter_table("certificate") as batch:
        batch.drop_column("revocation_seq")
