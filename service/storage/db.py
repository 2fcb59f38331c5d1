"""Engines and migrations: SQLite (default, shared by several worker processes) or PostgreSQL.

SQLite notes, because several worker *processes* share one database file:
- WAL journal mode lets readers proceed while one writer writes;
- ``busy_timeout`` makes a writer wait for the lock instead of failing at once;
- foreign keys are off by default in SQLite and must be enabled per connection;
- ``check_same_thread=False``: a pooled connection may be used by another gRPC thread
  (never by two at once; the pool hands it to one thread at a time).
- The pysqlite driver begins a transaction only at the first INSERT/UPDATE/DELETE, so a
  transaction's first SQLite statement is always a write; SQLite then applies the busy
  timeout to lock acquisition (a deferred read-then-write could fail with SQLITE_BUSY at
  once). Reads before that write are not isolated: repository writes are therefore
  compare-and-set (``UPDATE ... WHERE status = ...``) and check the row count.
- We keep ``synchronous=FULL`` (the default): a reserved serial and its TBS must survive
  a power loss before the token signs (docs/architecture.md, invariant 2). Its cost (one fsync per
  commit) is shared by concurrent requests instead: service/storage/group_commit.py commits
  their writes together, and serialises writers of all worker processes on a lock file
  (``<database>.write-lock``) so that SQLite's busy handler does not sleep.
- The WAL is checkpointed into the database file every 10000 pages (~40 MB) instead of
  SQLite's 1000: see ``SQLITE_WAL_AUTOCHECKPOINT_PAGES``.

Create engines after forking worker processes (or call ``engine.dispose(close=False)`` in
the child): a pooled connection must not cross a fork.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: WAL pages after which a commit copies them back into the database file (SQLite's
#: default is 1000). Why: that checkpoint runs inside the commit that crosses the mark, and
#: so inside the write gate every worker waits on (group_commit.py). An issued certificate
#: dirties ~8 pages, most of them index leaves written again by later certificates; a
#: checkpoint every 10000 pages copies each such page once for many commits. Measured with
#: make bench's load (P-256): commit CPU per certificate 68 -> 62 us, issuance +1-5%. The
#: WAL then grows to ~40 MB between checkpoints; durability is unchanged (every commit
#: still syncs the WAL).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000


def create_engine_for(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """Create an Engine for ``url``; SQLite gets WAL, busy_timeout and foreign keys ON."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a replica's connections outlive PostgreSQL restarts and failovers.
        return sa_create_engine(parsed, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if not in_memory and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Create the file 0600 before SQLite does (it would use 0644 less the umask): it
        # holds every issued certificate and job, and SQLite gives the -wal and -shm files
        # the database file's mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    engine = sa_create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        finally:
            cursor.close()

    return engine


def alembic_config() -> AlembicConfig:
    """An Alembic config pointing at the migrations packaged inside ``service``."""
    cfg = AlembicConfig(str(MIGRATIONS_DIR / "alembic.ini"))
    # Located from this file, so it works from an installed package and any cwd.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(url: str | Engine, revision: str = "head") -> None:
    """Apply Alembic migrations (``alembic upgrade head``) to the database at ``url``."""
    engine = url if isinstance(url, Engine) else create_engine_for(url)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            # env.py uses this connection, so SQLite pragmas apply and no URL needs
            # escaping for configparser.
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        if engine is not url:
            engine.dispose()


def head_revision() -> str | None:
    """The newest migration revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None if never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
