"""Storage fixtures: a migrated SQLite database file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

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
