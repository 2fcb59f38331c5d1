"""Persistence: SQLAlchemy Core schema, engines and migrations, repository functions."""
