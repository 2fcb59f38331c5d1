"""Audit fixtures: a migrated SQLite database and the real token's audit key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from service.audit.key import AuditKey
from service.storage.db import create_engine_for, migrate


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """URL of a fresh, migrated SQLite database file."""
    url = f"sqlite:///{tmp_path / 'state' / 'hsmca.db'}"
    migrate(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the migrated test database."""
    eng = create_engine_for(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def audit_key(hsm_token) -> AuditKey:
    """The audit key in the session's hsm token (generated once, non-exportable)."""
    return AuditKey.ensure(hsm_token)
