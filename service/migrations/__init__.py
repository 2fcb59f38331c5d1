"""Alembic migrations of the hsmca schema; applied by service.storage.db.migrate."""
