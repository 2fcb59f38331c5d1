"""Storage fixtures: a migrated database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pg_support import BACKENDS
from sqlalchemy import Engine

from service.storage.db import create_engine_for, migrate


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this run of the test: sqlite or postgresql."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, new_database_url: Callable[[str, str], str]) -> str:
    """URL of a fresh, migrated database (a SQLite file, or a PostgreSQL database)."""
    url = new_database_url(backend, "storage")
    migrate(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the migrated test database."""
    eng = create_engine_for(db_url)
    yield eng
    eng.dispose()
