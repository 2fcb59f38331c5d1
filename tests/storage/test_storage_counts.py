"""A CA's issued-certificate count: what it counts, and that it reads an index alone.

The count answers DescribeCACertificate(List)'s cert_issued_count on every call. When it read
the CA's rows (TBS and certificate included), a describe cost more with every certificate
issued (14 ms of CPU at 5k certificates, 109 ms at 42k: bench/bench_drift.py). The query plan
is asserted instead of a time: on SQLite a covering-index search, on PostgreSQL an index-only
scan, both on ix_certificate_issued_count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event
from storage_factories import ca_row, new_id, reserved_cert

from service.storage import repo
from service.storage.schema import CertificateKind, CertificateStatus

INDEX = "ix_certificate_issued_count"
KINDS = (CertificateKind.SERVER, CertificateKind.CLIENT, CertificateKind.CUSTOM,
         CertificateKind.SUBCA)
COUNTED = (CertificateStatus.ISSUED, CertificateStatus.REVOKED)


def _count(conn: Connection, owner: str, issuer: str) -> int:
    return repo.count_issued(conn, owner, issuer, kinds=KINDS, status=COUNTED)


@pytest.fixture
def ca(engine: Engine) -> Iterator[repo.CaRow]:
    """A CA with one certificate of every kind that counts, and rows that do not."""
    row, other_ca = ca_row(), ca_row()
    with engine.begin() as conn:
        repo.insert_ca(conn, row)
        repo.insert_ca(conn, other_ca)
        serial = iter(range(1, 100))

        def add(issuer: repo.CaRow, *, issue: bool = True, **kw: Any) -> repo.CertificateRow:
            cert = reserved_cert(issuer, format(next(serial), "x"), **kw)
            repo.reserve_certificate(conn, cert)
            if issue:
                repo.mark_issued(conn, cert.identifier, b"\x30\x00")
            return cert

        for kind in KINDS:
            add(row, kind=kind)
        revoked = add(row)
        assert repo.revoke_certificate(conn, row.owner, revoked.identifier, 1)
        # Not counted: a root's own certificate row, a reservation, a deleted (revoked)
        # certificate, another CA's certificate.
        add(row, kind=CertificateKind.ROOTCA)
        add(row, issue=False)
        gone = add(row)
        assert repo.revoke_certificate(conn, row.owner, gone.identifier, 1)
        assert repo.delete_certificate(conn, row.owner, gone.identifier)
        add(other_ca)
    yield row


def test_count_issued_counts_visible_issued_and_revoked_of_the_kinds(
        engine: Engine, ca: repo.CaRow) -> None:
    with engine.connect() as conn:
        assert _count(conn, ca.owner, ca.identifier) == len(KINDS) + 1
        assert _count(conn, "someone-else", ca.identifier) == 0
        assert _count(conn, ca.owner, new_id()) == 0
        only_revoked = repo.count_issued(conn, ca.owner, ca.identifier, kinds=KINDS,
                                         status=(CertificateStatus.REVOKED,))
        assert only_revoked == 1


def _plan(conn: Connection, backend: str, statement: str, parameters: Any) -> str:
    """The plan the database would run ``statement`` with, as one text."""
    if backend == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return "\n".join(str(r[-1]) for r in rows)
    # With sequential and bitmap scans priced out, PostgreSQL answers from an index alone
    # when one holds every column the query reads, whatever a tiny test table's statistics.
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
    return "\n".join(str(r[0]) for r in rows)


def test_count_issued_reads_its_index_alone(
        engine: Engine, backend: str, ca: repo.CaRow) -> None:
    # The statement count_issued runs, captured with its parameters, then explained.
    executed: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        executed.append((statement, parameters))

    if backend == "postgresql":
        # Statistics and the visibility map, as autovacuum keeps them on a settled table
        # (FREEZE: a first plain VACUUM of fresh rows here left the map empty): without
        # them the planner prices an index-only scan as if it had to visit every row.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (FREEZE, ANALYZE) certificate")
    with engine.begin() as conn:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            _count(conn, ca.owner, ca.identifier)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        [(statement, parameters)] = executed
        plan = _plan(conn, backend, statement, parameters)
    if backend == "sqlite":
        assert f"USING COVERING INDEX {INDEX}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # grouped in the index's order
    else:
        assert f"Index Only Scan using {INDEX}" in plan, plan
