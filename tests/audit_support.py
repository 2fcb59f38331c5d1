"""An audit log installed as the process's for the length of a test (then a clean close)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, text

from service import audit
from service.audit.key import AuditKey


@contextlib.contextmanager
def installed_audit_log(engine: Engine, hsm_token: Any,
                        default_tenant: str = "default") -> Iterator[audit.AuditLog]:
    """A started AuditLog on ``engine``, signed by the token's audit key, installed."""
    log = audit.AuditLog(engine, default_tenant=default_tenant,
                         key=AuditKey.ensure(hsm_token), checkpoint_seconds=3600)
    audit.install(log)
    log.start()
    try:
        yield log
    finally:
        log.close()
        audit.install(None)


@contextlib.contextmanager
def audit_table_away(engine: Engine) -> Iterator[None]:
    """A real fault of the audit log's storage: its table renamed behind the service's back,
    so every audit record fails to be written until the block ends."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_record RENAME TO audit_record_away"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_record_away RENAME TO audit_record"))
