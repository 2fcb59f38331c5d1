"""``hsmca audit verify`` and ``hsmca audit list``: check every chain and checkpoint, filter.

Verification, per chain (records in sequence order):
  - a record whose fields do not give its stored hash was ALTERED, unless they give it at
    another sequence number: then it was moved there (REORDERED);
  - a gap in the sequence numbers is a DELETED record (or several);
  - a record that hashes correctly but does not link to its predecessor breaks the chain
    (BROKEN_LINK: the predecessor was altered and re-hashed, or this one was put there);
and over all chains, with the audit key's public half read from the token:
  - every checkpoint record has a signature (else CHECKPOINT) that verifies (else
    CHECKPOINT); every signature row has its checkpoint record (else DELETED);
  - every chain head a valid checkpoint names exists with the signed hash (else DELETED or
    ALTERED): a tail or a whole chain removed, or a chain rewritten consistently;
  - a chain no valid checkpoint covers was not written by hsmca (INSERTED: every writer
    signs a checkpoint as its first record), and records after a chain's closing checkpoint
    were added later (INSERTED).
Records after the last checkpoint of a running writer are not covered yet; they are
reported as ``unanchored`` (not an error): the next checkpoint covers them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select

from service.audit.chain import GENESIS, AuditRecord
from service.audit.key import verify_checkpoint_signature
from service.audit.log import CHECKPOINT_ACTION
from service.storage.schema import audit_checkpoint as checkpoint_t
from service.storage.schema import audit_record as record_t

__all__ = ["Finding", "VerifyReport", "list_records", "verify_log"]

#: How far from its stored position a moved record is looked for.
REORDER_WINDOW = 64


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: its kind, the record (writer, seq) it concerns, and what was seen."""

    kind: str  # ALTERED | DELETED | REORDERED | BROKEN_LINK | INSERTED | CHECKPOINT
    writer: str
    seq: int | None
    message: str

    def as_json(self) -> dict[str, Any]:
        """The finding as one JSON object."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class VerifyReport:
    """What verification saw: counts, findings and records not yet covered by a checkpoint."""

    chains: int = 0
    records: int = 0
    checkpoints: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    unanchored: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings


@dataclasses.dataclass
class _Chain:
    records: dict[int, AuditRecord] = dataclasses.field(default_factory=dict)
    anchored: int = 0  # highest seq a valid checkpoint pins
    closed_at: int | None = None  # seq of a valid closing checkpoint


def _chains(conn: Connection) -> Iterator[list[AuditRecord]]:
    current: list[AuditRecord] = []
    rows = conn.execute(select(record_t).order_by(record_t.c.writer, record_t.c.seq))
    for row in rows.mappings():
        rec = AuditRecord.from_row(row)
        if current and current[-1].writer != rec.writer:
            yield current
            current = []
        current.append(rec)
    if current:
        yield current


def _moved_to(rec: AuditRecord, by_hash: dict[str, AuditRecord], last_seq: int) -> int | None:
    """The sequence number at which ``rec``'s fields give its stored hash, if another."""
    candidates: list[int] = []
    if rec.prev_hash == GENESIS:
        candidates.append(1)
    pred = by_hash.get(rec.prev_hash)
    if pred is not None:
        candidates.append(pred.seq + 1)
    lo = max(1, rec.seq - REORDER_WINDOW)
    hi = max(rec.seq, last_seq) + REORDER_WINDOW
    candidates.extend(range(lo, hi + 1))
    for seq in dict.fromkeys(candidates):
        if seq != rec.seq and rec.computed_hash(seq) == rec.record_hash:
            return seq
    return None


def _check_chain(records: list[AuditRecord], report: VerifyReport) -> None:
    by_hash = {r.record_hash: r for r in records}
    last_seq = records[-1].seq
    expected = 1
    prev: str | None = GENESIS  # None after a moved record: its successor's link proves nothing
    for rec in records:
        w = rec.writer
        moved: int | None = None
        if rec.computed_hash() != rec.record_hash:
            moved = _moved_to(rec, by_hash, last_seq)
            if moved is not None:
                report.findings.append(Finding(
                    "REORDERED", w, rec.seq,
                    f"record stored at seq {rec.seq} was written as seq {moved}"))
            else:
                report.findings.append(Finding(
                    "ALTERED", w, rec.seq, "the record's fields do not match its hash"))
        elif rec.seq != expected:
            report.findings.append(Finding(
                "DELETED", w, expected,
                f"records {expected}..{rec.seq - 1} are missing" if rec.seq - 1 > expected
                else f"record {expected} is missing"))
        elif prev is not None and rec.prev_hash != prev:
            report.findings.append(Finding(
                "BROKEN_LINK", w, rec.seq,
                f"record does not link to record {rec.seq - 1}: one of them was altered and "
                "re-hashed, or this one was put in its place"))
        expected = rec.seq + 1
        prev = None if moved is not None else rec.record_hash


def verify_log(conn: Connection, public_key_info: bytes) -> VerifyReport:
    """Check every chain and checkpoint (see the module docstring)."""
    report = VerifyReport()
    chains: dict[str, _Chain] = {}
    checkpoints: list[AuditRecord] = []
    for records in _chains(conn):
        report.chains += 1
        report.records += len(records)
        _check_chain(records, report)
        chain = chains[records[0].writer] = _Chain()
        for rec in records:
            chain.records[rec.seq] = rec
            if rec.action == CHECKPOINT_ACTION:
                checkpoints.append(rec)
    signatures = {(r.writer, int(r.seq)): bytes(r.signature)
                  for r in conn.execute(select(checkpoint_t)).all()}
    for rec in checkpoints:
        signature = signatures.pop((rec.writer, rec.seq), None)
        if signature is None:
            report.findings.append(Finding("CHECKPOINT", rec.writer, rec.seq,
                                           "the checkpoint's signature is missing"))
            continue
        if rec.computed_hash() != rec.record_hash or not verify_checkpoint_signature(
                public_key_info, bytes.fromhex(rec.record_hash), signature):
            report.findings.append(Finding(
                "CHECKPOINT", rec.writer, rec.seq,
                "the checkpoint's signature does not verify with the token's audit key"))
            continue
        report.checkpoints += 1
        _apply_checkpoint(rec, chains, report)
    for writer, seq in sorted(signatures):
        report.findings.append(Finding(
            "DELETED", writer, seq, "a checkpoint signature exists but its record is missing"))
    for writer, chain in sorted(chains.items()):
        last = max(chain.records)
        if chain.anchored == 0:
            report.findings.append(Finding(
                "INSERTED", writer, min(chain.records),
                "no valid checkpoint covers this chain: it was not written by hsmca, or "
                "its checkpoints were removed"))
        elif chain.closed_at is not None and last > chain.closed_at:
            report.findings.append(Finding(
                "INSERTED", writer, chain.closed_at + 1,
                f"records {chain.closed_at + 1}..{last} follow the chain's closing "
                "checkpoint"))
        elif last > chain.anchored:
            report.unanchored[writer] = last - chain.anchored
    return report


def _apply_checkpoint(rec: AuditRecord, chains: dict[str, _Chain],
                      report: VerifyReport) -> None:
    details = json.loads(rec.details)
    own = chains[rec.writer]
    own.anchored = max(own.anchored, rec.seq)
    if details.get("close"):
        own.closed_at = rec.seq
    for writer, (seq, digest) in sorted(details.get("heads", {}).items()):
        chain = chains.get(writer)
        head = chain.records.get(int(seq)) if chain is not None else None
        if head is None:
            report.findings.append(Finding(
                "DELETED", writer, int(seq),
                f"record {seq} of this chain, signed by checkpoint {rec.writer}/{rec.seq}, "
                "is missing" if chain is not None else
                f"the whole chain is missing (checkpoint {rec.writer}/{rec.seq} names its "
                f"record {seq})"))
            continue
        if head.record_hash != digest:
            report.findings.append(Finding(
                "ALTERED", writer, int(seq),
                f"the record differs from the one checkpoint {rec.writer}/{rec.seq} signed"))
            continue
        assert chain is not None
        chain.anchored = max(chain.anchored, int(seq))


def list_records(conn: Connection, *, principal: str | None = None,
                 action: str | None = None, resource: str | None = None,
                 tenant: str | None = None, since: dt.datetime | None = None,
                 until: dt.datetime | None = None, limit: int | None = None
                 ) -> Iterator[AuditRecord]:
    """Records matching every given filter, oldest first."""
    query = select(record_t)
    if principal is not None:
        query = query.where(record_t.c.principal == principal)
    if action is not None:
        # "certificate.*" matches every certificate action.
        query = (query.where(record_t.c.action.startswith(action[:-1], autoescape=True))
                 if action.endswith("*") else query.where(record_t.c.action == action))
    if resource is not None:
        query = query.where(record_t.c.resources.contains(json.dumps(resource),
                                                          autoescape=True))
    if tenant is not None:
        query = query.where(record_t.c.tenant == tenant)
    if since is not None:
        query = query.where(record_t.c.time >= since)
    if until is not None:
        query = query.where(record_t.c.time < until)
    query = query.order_by(record_t.c.time, record_t.c.writer, record_t.c.seq)
    if limit is not None:
        query = query.limit(limit)
    for row in conn.execute(query).mappings():
        yield AuditRecord.from_row(row)
