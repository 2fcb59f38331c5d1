"""The tamper-evident audit log (see service/audit/log.py); ``record`` is the entry point."""

from service.audit.log import (
    FAILURE,
    REFUSED,
    SUCCESS,
    AuditLog,
    KeyRef,
    install,
    installed,
    key_use,
    record,
    record_failure,
    record_op,
    refused,
)

__all__ = ["FAILURE", "REFUSED", "SUCCESS", "AuditLog", "KeyRef", "install", "installed", "key_use",
           "record", "record_failure", "record_op", "refused"]
