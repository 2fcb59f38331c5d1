"""Migrations build exactly the schema in service.storage.schema, with the SQLite settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from service.storage import db
from service.storage.schema import metadata


def test_migration_creates_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables


def test_head_schema_matches_metadata(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == [], f"migrations drift from schema.metadata: {diff}"


def test_database_is_at_head(engine: Engine) -> None:
    assert db.head_revision() is not None
    assert db.current_revision(engine) == db.head_revision()


def test_migrate_is_idempotent(db_url: str, engine: Engine) -> None:
    db.migrate(db_url)
    assert db.current_revision(engine) == db.head_revision()


def test_every_resource_table_has_owner() -> None:
    for name, table in metadata.tables.items():
        if name == "certificate_tag":  # rows of a certificate, which has the owner
            continue
        if name.startswith("audit_"):  # records of calls: they name the caller's tenant
            assert "tenant" in table.c or name == "audit_checkpoint", name
            continue
        assert "owner" in table.c, name


@pytest.mark.sqlite_only(reason="SQLite's per-connection PRAGMAs")
def test_sqlite_connection_settings(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
        assert (conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()
                == db.SQLITE_WAL_AUTOCHECKPOINT_PAGES == 10_000)
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL (invariant 2)


def test_migrate_creates_the_state_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "hsmca.db"
    db.migrate(f"sqlite:///{target}")
    assert target.is_file()


def test_migrations_are_located_without_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    db.migrate(f"sqlite:///{tmp_path / 'x.db'}")
    assert db.current_revision(db.create_engine_for(f"sqlite:///{tmp_path / 'x.db'}"))


def _downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        cfg = db.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_crl_history_migration_keeps_the_current_crl_and_hashes_the_rest(db_url: str) -> None:
    import datetime as dt
    import hashlib

    from sqlalchemy import insert, select, update
    from storage_factories import ca_row, reserved_cert

    from service.storage import repo
    from service.storage.schema import ca as ca_t
    from service.storage.schema import certificate as cert_t
    from service.storage.schema import crl as crl_t

    engine = db.create_engine_for(db_url)
    try:
        # A database as the previous revision left it: every CRL ever issued, in full.
        _downgrade(engine, "d4b6e8f0a2c1")
        ca, t0 = ca_row(), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        with engine.begin() as conn:
            conn.execute(insert(ca_t).values(
                {k: v for k, v in repo._values(ca).items() if k != "revocation_count"}))
            leaf = reserved_cert(ca, "a1")
            conn.execute(insert(cert_t).values(
                {k: v for k, v in repo._cert_values(leaf).items() if k != "revocation_seq"}))
            conn.execute(update(cert_t).where(cert_t.c.identifier == leaf.identifier)
                         .values(status="REVOKED", revoked_at=t0))
            for n in (1, 2, 3):
                conn.execute(insert(crl_t).values(
                    ca_identifier=ca.identifier, crl_number=n, owner=ca.owner,
                    this_update=t0 + dt.timedelta(hours=n),
                    next_update=t0 + dt.timedelta(days=n), der=b"crl%d" % n, created_at=t0))
        db.migrate(engine)
        with engine.connect() as conn:
            kept = conn.execute(select(crl_t.c.crl_number).where(
                crl_t.c.ca_identifier == ca.identifier)).scalars().all()
            history = repo.list_crl_history(conn, ca.identifier)
            current = repo.get_ca(conn, ca.owner, ca.identifier)
            due = repo.list_crl_due(conn, t0)
        assert kept == [3]
        assert [(h.crl_number, h.this_update, h.sha256) for h in history] == [
            (n, t0 + dt.timedelta(hours=n), hashlib.sha256(b"crl%d" % n).digest())
            for n in (1, 2, 3)]
        # Revocations are counted from the start; the kept CRL counted none, so it is due.
        assert current is not None and current.revocation_count == 1
        assert due == (ca.identifier,)
    finally:
        engine.dispose()


def test_revocation_seq_migration_numbers_each_cas_revocations_in_order(db_url: str) -> None:
    import datetime as dt

    from sqlalchemy import insert, select
    from storage_factories import ca_row, reserved_cert

    from service.storage import repo
    from service.storage.schema import ca as ca_t
    from service.storage.schema import certificate as cert_t

    engine = db.create_engine_for(db_url)
    try:
        _downgrade(engine, "a8e2f4c6b0d3")
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        cas = [ca_row(), ca_row()]
        # Per CA: (serial, revoked hours after t0 or None when still issued).
        leaves = {cas[0].identifier: [("a1", 3), ("a2", 1), ("a3", None), ("a4", 2)],
                  cas[1].identifier: [("b1", 5)]}
        with engine.begin() as conn:
            for ca in cas:
                conn.execute(insert(ca_t).values(repo._values(ca)))
                for serial, hours in leaves[ca.identifier]:
                    values = repo._cert_values(reserved_cert(ca, serial))
                    del values["revocation_seq"]
                    if hours is not None:
                        values.update(status="REVOKED", revoked_at=t0 + dt.timedelta(hours=hours),
                                      revocation_reason=1)
                    conn.execute(insert(cert_t).values(values))
        db.migrate(engine)
        with engine.connect() as conn:
            numbered = conn.execute(select(cert_t.c.serial, cert_t.c.revocation_seq)
                                    .order_by(cert_t.c.serial)).all()
            counts = [repo.get_ca_any_owner(conn, ca.identifier) for ca in cas]
            since = repo.list_revoked_since(conn, cas[0].identifier, 1)
        # Numbered in the order of revoked_at, per CA; the issued one is not numbered.
        assert numbered == [("a1", 3), ("a2", 1), ("a3", None), ("a4", 2), ("b1", 1)]
        assert [c.revocation_count if c else None for c in counts] == [3, 1]
        assert [(e.serial, e.revocation_seq) for e in since] == [("a4", 2), ("a1", 3)]
    finally:
        engine.dispose()


def test_drift_check_would_notice_a_change(engine: Engine) -> None:
    from sqlalchemy import Column, Integer, MetaData

    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["crl"].append_column(Column("extra", Integer, nullable=True))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), changed)
    assert any(d[0] == "add_column" and d[3].name == "extra" for d in diff)
