"""The hash chain of audit records: canonical encoding and SHA-256 links.

Each writer (one worker process of one replica) appends records with sequence numbers
1, 2, 3, ...; record n carries the SHA-256 of record n-1 (``prev_hash``; the first record of
a chain carries :data:`GENESIS`) and its own ``record_hash`` over every field, sequence
number and ``prev_hash`` included. So a record edited in place no longer matches its hash,
a record removed leaves a gap and a broken link, and a record moved to another position
carries a sequence number and a link that do not fit there (service/audit/verify.py).
A chain alone does not stop someone who rewrites a whole tail consistently: the signed
checkpoints (service/audit/log.py) pin each chain's head with a key that stays in the token.

The hash input is the fields as stored, each length-prefixed (resources and details are
stored as canonical JSON text already), so verification re-hashes stored values, never
values re-encoded by another library version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CHAIN_FORMAT", "GENESIS", "AuditRecord", "canonical_json", "record_hash"]

#: Version of the hash input layout; part of every hash.
CHAIN_FORMAT = 1
#: ``prev_hash`` of the first record of every chain.
GENESIS = "0" * 64


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: one text per value."""
    return _ENCODER.encode(value)


def _time_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One stored audit record, exactly as in the ``audit_record`` table."""

    writer: str
    seq: int
    time: dt.datetime
    principal: str
    tenant: str
    action: str
    resources: str  # canonical JSON array of identifiers
    key_token: str | None
    key_id: str | None
    outcome: str
    reason: str
    request_id: str
    details: str  # canonical JSON object
    prev_hash: str
    record_hash: str

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditRecord:
        """From a row of the ``audit_record`` table."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def computed_hash(self, seq: int | None = None) -> str:
        """The hash this record's fields give (at ``seq`` instead of its own, if given)."""
        return record_hash(self.writer, self.seq if seq is None else seq, self.time,
                           self.principal, self.tenant, self.action, self.resources,
                           self.key_token, self.key_id, self.outcome, self.reason,
                           self.request_id, self.details, self.prev_hash)

    def as_json(self) -> dict[str, Any]:
        """The record as one JSON object (``hsmca audit list``)."""
        return {
            "time": _time_text(self.time), "writer": self.writer, "seq": self.seq,
            "principal": self.principal, "tenant": self.tenant, "action": self.action,
            "resources": json.loads(self.resources), "key_token": self.key_token,
            "key_id": self.key_id, "outcome": self.outcome, "reason": self.reason,
            "request_id": self.request_id, "details": json.loads(self.details),
            "prev_hash": self.prev_hash, "record_hash": self.record_hash,
        }


def record_hash(writer: str, seq: int, time: dt.datetime, principal: str, tenant: str,
                action: str, resources: str, key_token: str | None, key_id: str | None,
                outcome: str, reason: str, request_id: str, details: str,
                prev_hash: str) -> str:
    """Hex SHA-256 of a record's fields (the layout is :data:`CHAIN_FORMAT`).

    Each field is its UTF-8 text preceded by its length (4 octets, big-endian); an absent
    one is the length 0xFFFFFFFF alone. Unambiguous, and cheaper than a JSON encoding on
    the issuance path, where one record is hashed per certificate.
    """
    parts = [_FORMAT_PREFIX]
    for field in (writer, str(seq), _time_text(time), principal, tenant, action, resources,
                  key_token, key_id, outcome, reason, request_id, details, prev_hash):
        if field is None:
            parts.append(_ABSENT)
        else:
            data = field.encode("utf-8")
            parts.append(len(data).to_bytes(4, "big"))
            parts.append(data)
    return hashlib.sha256(b"".join(parts)).hexdigest()


_FORMAT_PREFIX = CHAIN_FORMAT.to_bytes(4, "big")
_ABSENT = b"\xff\xff\xff\xff"
