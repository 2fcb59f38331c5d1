"""service.errors.outage on real database failures: which are outages, which are bugs."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import Engine, exc, text

from service.errors import DatabaseOutage, outage
from service.storage.db import create_engine_for


def _error_of(engine: Engine, sql: str) -> Exception:
    with pytest.raises(exc.DBAPIError) as info, engine.begin() as conn:
        conn.execute(text(sql))
    return info.value


def test_a_bug_in_sql_is_no_outage(engine: Engine) -> None:
    assert outage(_error_of(engine, "SELECT no_such_column FROM ca")) is None


def test_sqlite_locked_past_its_budget_is_an_outage(db_url: str, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's write lock")
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    engine = create_engine_for(db_url, busy_timeout_ms=50)
    try:
        error = _error_of(engine, "DELETE FROM ca")
        assert "locked" in str(error)
        found = outage(error)
        assert isinstance(found, DatabaseOutage)
        assert found.reason == "ServiceUnavailable.Database"
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


def test_postgresql_dropped_connection_is_an_outage_and_recovered(
    db_url: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("a PostgreSQL server connection")
    engine = create_engine_for(db_url)
    other = create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            # The server ends our session, as a restart or a failover would.
            with other.begin() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(exc.DBAPIError) as info:
                conn.execute(text("SELECT 1"))
        assert isinstance(outage(info.value), DatabaseOutage)
        # The pool gives a working connection again (pre-ping), without a restart.
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
        other.dispose()


def test_postgresql_server_unreachable_is_an_outage(db_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("a PostgreSQL server connection")
    from pg_support import free_port

    engine = create_engine_for(
        f"postgresql+psycopg://nobody:x@127.0.0.1:{free_port()}/none?connect_timeout=2")
    try:
        with pytest.raises(exc.DBAPIError) as info, engine.connect():
            pass
        assert isinstance(outage(info.value), DatabaseOutage)
    finally:
        engine.dispose()
