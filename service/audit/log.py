"""The audit log: who used which key, changed what, or was refused; tamper-evident.

What is recorded (one record each): every key use (certificate and CRL signing, OCSP
signing, CertificatePrivateKeySign, decrypt, export, key generation and destruction),
every state change and every refused call. A record holds the time, the principal and
tenant of the call (service/auth/principal.py; outside a call: ``system`` and the
configured default tenant), the action, the resource identifiers, the key (token role and
CKA_ID), the outcome with its reason and the request id (service/request_id.py).

Durability: a key use's record is committed before the signature or plaintext is returned.
Two ways to write one:

- :func:`record` commits a record on its own (through the process's group committer, so
  concurrent records share one commit) and returns once it is durable;
- :meth:`AuditLog.op` gives a write operation to put into a transaction the caller commits
  anyway: the issuance pipeline records "certificate signed" in the same commit as the
  certificate itself, so the audit costs no extra fsync there.

Secrets never enter a record: no PINs, passphrases, plaintexts, private keys or message
contents. A signed message is recorded, if at all, as its SHA-256 (``details``).

Tamper evidence (service/audit/chain.py): every record of a writer's chain links to the one
before; every ``checkpoint_seconds``, at start and at shutdown, the writer appends an
``audit.checkpoint`` record naming the head (writer, seq, hash) of every chain active in the
last week and signs its hash with the token's audit key (service/audit/key.py). The
signature is written in the same transaction as the checkpoint record.

Concurrency: appends read the chain head inside the write transaction, so they must run
where the process's writers are serialised: inside the group committer (``record`` does) or
while holding the database's write gate (service/storage/group_commit.py), as every write
transaction of the service does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select

from service.audit.chain import GENESIS, AuditRecord, canonical_json, record_hash
from service.audit.key import AUDIT_KEY_ALGORITHM, AUDIT_KEY_LABEL, AuditKey
from service.auth.principal import current_principal
from service.entropy import random_bytes
from service.request_id import current_request_id
from service.storage.group_commit import BATCH_SCRATCH, group_committer
from service.storage.prepared import Prepared
from service.storage.schema import audit_checkpoint as checkpoint_t
from service.storage.schema import audit_record as record_t

__all__ = [
    "CHECKPOINT_ACTION",
    "FAILURE",
    "REFUSED",
    "SUCCESS",
    "SYSTEM_PRINCIPAL",
    "AuditEntry",
    "AuditLog",
    "KeyRef",
    "installed",
    "install",
    "key_use",
    "record",
    "record_failure",
    "record_op",
    "refused",
]

_log = logging.getLogger("hsmca.audit")

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REFUSED = "REFUSED"
OUTCOMES = (SUCCESS, FAILURE, REFUSED)
#: The principal of records made outside a call (background jobs, CRL renewal, start-up).
SYSTEM_PRINCIPAL = "system"
CHECKPOINT_ACTION = "audit.checkpoint"
#: Chains whose head is older than this are not named by new checkpoints (their own
#: closing checkpoint pins them); keeps a checkpoint small after many restarts.
CHECKPOINT_HEADS_WINDOW = dt.timedelta(days=7)
MAX_REASON = 2000

_INSERT_RECORD = Prepared(insert(record_t))
# The highest seq of a chain: a backwards walk of the primary key (writer, seq).
_CHAIN_HEAD = Prepared(select(record_t.c.seq, record_t.c.record_hash)
                       .where(record_t.c.writer == bindparam("writer"))
                       .order_by(record_t.c.seq.desc()).limit(1))


@dataclasses.dataclass(frozen=True)
class KeyRef:
    """A key as the audit log names it: token role (``hsm``/``software``) and hex CKA_ID."""

    token: str
    key_id: str


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """A record to append: everything but its place in the chain.

    ``resources`` and ``details`` are held as their canonical JSON text, encoded when the
    entry is made (in the caller's thread), so that appending -- which may run in the
    thread that commits for everyone -- only hashes and inserts.
    """

    time: dt.datetime
    principal: str
    tenant: str
    action: str
    resources: str  # canonical JSON array of identifiers
    key: KeyRef | None
    outcome: str
    reason: str
    request_id: str
    details: str  # canonical JSON object

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if not self.action:
            raise ValueError("an audit record needs an action")


def _writer_name() -> str:
    # Host, process and a random part: a restarted process (same pid) starts a new chain.
    host = socket.gethostname().split(".")[0][:32] or "host"
    return f"{host}-{os.getpid()}-{random_bytes(4).hex()}"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditLog:
    """One writer's chain in one database, and its checkpoints."""

    def __init__(self, engine: Engine, *, default_tenant: str, key: AuditKey | None = None,
                 writer: str | None = None, checkpoint_seconds: float = 60.0,
                 clock: Callable[[], dt.datetime] = _utc_now) -> None:
        if checkpoint_seconds <= 0:
            raise ValueError(f"checkpoint_seconds must be positive, got {checkpoint_seconds}")
        self.engine = engine
        self.writer = writer or _writer_name()
        self.default_tenant = default_tenant
        self.key = key
        self.checkpoint_seconds = checkpoint_seconds
        self._clock = clock
        self._committer = group_committer(engine)
        self._appended = 0  # appends tried since the last checkpoint (a hint, not a count)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- records -------------------------------------------------------------------------

    def entry(self, action: str, *, outcome: str = SUCCESS, reason: str = "",
              resources: Iterable[str | None] = (), key: KeyRef | None = None,
              details: Mapping[str, Any] | None = None, tenant: str | None = None,
              principal_id: str | None = None) -> AuditEntry:
        """An entry for the call being served (principal and request id from the context).

        ``principal_id`` names the caller where no principal is established (a refused
        call: the identity its certificate claims, or ``-``).
        """
        principal = current_principal()
        return AuditEntry(
            time=self._clock(),
            principal=principal_id or (principal.id if principal is not None
                                       else SYSTEM_PRINCIPAL),
            tenant=tenant or (principal.tenant if principal is not None
                              else self.default_tenant),
            action=action, resources=canonical_json([r for r in resources if r]), key=key,
            outcome=outcome, reason=reason[:MAX_REASON], request_id=current_request_id(),
            details=canonical_json(dict(details or {})))

    def failure(self, entry: AuditEntry, reason: str) -> AuditEntry:
        """``entry`` as the record of a failure with ``reason``."""
        return dataclasses.replace(entry, outcome=FAILURE, reason=reason[:MAX_REASON],
                                   time=self._clock())

    def append(self, conn: Connection, entry: AuditEntry) -> AuditRecord:
        """Append ``entry`` to this writer's chain inside the caller's write transaction."""
        scratch: dict[Any, Any] | None = conn.info.get(BATCH_SCRATCH)
        head_key = ("audit_head", self.writer)
        head = scratch.get(head_key) if scratch is not None else None
        if head is None:
            head = self._read_head(conn)
        seq, prev = head[0] + 1, head[1]
        resources, details = entry.resources, entry.details
        key_token = entry.key.token if entry.key else None
        key_id = entry.key.key_id if entry.key else None
        digest = record_hash(self.writer, seq, entry.time, entry.principal, entry.tenant,
                             entry.action, resources, key_token, key_id, entry.outcome,
                             entry.reason, entry.request_id, details, prev)
        values: dict[str, Any] = {"writer": self.writer, "seq": seq, "time": entry.time,
                  "principal": entry.principal, "tenant": entry.tenant,
                  "action": entry.action, "resources": resources, "key_token": key_token,
                  "key_id": key_id, "outcome": entry.outcome, "reason": entry.reason,
                  "request_id": entry.request_id, "details": details, "prev_hash": prev,
                  "record_hash": digest}
        # A prepared INSERT (service/storage/prepared.py): a record rides on the hot path of
        # issuance, where Connection.execute's machinery would cost more than the hashing.
        _INSERT_RECORD.execute(conn, values)
        if scratch is not None:
            # Valid for this transaction only: a rolled-back batch starts a new scratch.
            scratch[head_key] = (seq, digest)
        self._appended += 1
        return AuditRecord(**values)

    def op(self, entry: AuditEntry) -> Callable[[Connection], AuditRecord]:
        """A write operation appending ``entry`` (for a transaction the caller commits)."""
        return lambda conn: self.append(conn, entry)

    def record(self, action: str, **fields: Any) -> AuditRecord:
        """Append one record and return once it is committed."""
        return self._committer.run(self.op(self.entry(action, **fields)))

    def _read_head(self, conn: Connection) -> tuple[int, str]:
        row = _CHAIN_HEAD.first(conn, {"writer": self.writer})
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    # --- checkpoints ---------------------------------------------------------------------

    def checkpoint(self, *, close: bool = False) -> AuditRecord | None:
        """Append a signed checkpoint over every active chain's head; None without a key."""
        if self.key is None:
            return None
        key = self.key

        def write(conn: Connection) -> AuditRecord:
            heads = self._chain_heads(conn)
            # Built here, in whichever thread commits: the writer's own record, not a call's.
            rec = self.append(conn, AuditEntry(
                time=self._clock(), principal=SYSTEM_PRINCIPAL, tenant=self.default_tenant,
                action=CHECKPOINT_ACTION, resources="[]", key=None, outcome=SUCCESS, reason="",
                request_id="", details=canonical_json({"heads": heads, "close": close})))
            signature = key.sign(bytes.fromhex(rec.record_hash))
            conn.execute(insert(checkpoint_t), [{
                "writer": rec.writer, "seq": rec.seq, "key_label": AUDIT_KEY_LABEL,
                "algorithm": AUDIT_KEY_ALGORITHM, "signature": signature}])
            return rec

        rec = self._committer.run(write)
        self._appended = 0
        return rec

    def _chain_heads(self, conn: Connection) -> dict[str, list[Any]]:
        """{writer: [seq, record_hash]} of every chain with a record in the last week."""
        last = (select(record_t.c.writer, func.max(record_t.c.seq).label("seq"))
                .group_by(record_t.c.writer).subquery())
        since = self._clock() - CHECKPOINT_HEADS_WINDOW
        rows = conn.execute(
            select(record_t.c.writer, record_t.c.seq, record_t.c.record_hash)
            .join(last, and_(record_t.c.writer == last.c.writer, record_t.c.seq == last.c.seq))
            .where(record_t.c.time >= since)).all()
        return {str(w): [int(s), str(h)] for w, s, h in rows}

    def start(self) -> None:
        """Sign a checkpoint now (the chain's first record) and then every interval."""
        self.checkpoint()
        self._thread = threading.Thread(target=self._run, name="hsmca-audit-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.checkpoint_seconds):
            if not self._appended:
                continue
            try:
                self.checkpoint()
            except Exception:
                # The records stay; the next checkpoint covers them. The log says why.
                _log.exception("audit checkpoint of chain %s failed", self.writer)

    def close(self) -> None:
        """Stop the checkpoint thread and sign a closing checkpoint (no records after it)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.checkpoint(close=True)
        except Exception:
            _log.exception("closing audit checkpoint of chain %s failed", self.writer)


# --- the process's audit log ---------------------------------------------------------------

_installed: AuditLog | None = None


def install(log: AuditLog | None) -> None:
    """Make ``log`` the process's audit log (the worker's App does, once)."""
    global _installed
    _installed = log


def installed() -> AuditLog | None:
    """The process's audit log, or None where none is installed (library use, unit tests)."""
    return _installed


def record(action: str, **fields: Any) -> AuditRecord | None:
    """Append one record to the process's audit log; returns once it is committed.

    ``fields``: ``outcome`` (SUCCESS, FAILURE, REFUSED), ``reason``, ``resources`` (resource
    identifiers), ``key`` (:class:`KeyRef`), ``details`` (a JSON object without secrets)
    and ``tenant`` (default: the principal's). Principal and request id come from the
    context of the call being served.
    """
    log = _installed
    if log is None:
        return None
    return log.record(action, **fields)


def refused(kind: str, *, reason: str, resources: Iterable[str | None] = (),
            details: Mapping[str, Any] | None = None,
            principal_id: str | None = None, tenant: str | None = None) -> AuditRecord | None:
    """Record a call refused by authentication, authorization or rate limiting.

    ``kind`` is ``authn``, ``authz`` or ``rate_limit``; the action is ``refused.<kind>`` and
    the refusal is counted in ``hsmca_refusals_total{kind}``. ``details`` may name the RPC
    method (``{"method": ...}``), never the request's contents.
    """
    from service import metrics

    metrics.refusal(kind)
    return record(f"refused.{kind}", outcome=REFUSED, reason=reason, resources=resources,
                  details=details, principal_id=principal_id, tenant=tenant)


@contextlib.contextmanager
def key_use(action: str, *, key: KeyRef | None, resources: Iterable[str | None] = (),
            tenant: str | None = None, details: Mapping[str, Any] | None = None
            ) -> Iterator[dict[str, Any]]:
    """Record the key use in the ``with`` block: SUCCESS when it ends, FAILURE if it raises.

    The SUCCESS record is committed before the block's result reaches the caller (the
    ``with`` ends first), so a signature or plaintext never leaves without its record; if
    that commit fails, the caller gets the error instead of the result. The block may add
    details (e.g. a message's SHA-256) to the dict it is given.
    """
    extra: dict[str, Any] = dict(details or {})
    resources = tuple(resources)
    try:
        yield extra
    except BaseException as e:
        record_failure(action, e, key=key, resources=resources, tenant=tenant, details=extra)
        raise
    record(action, key=key, resources=resources, tenant=tenant, details=extra)


def record_failure(action: str, error: BaseException, **fields: Any) -> None:
    """Record that ``action`` failed with ``error`` (outcome FAILURE), as far as possible.

    Never raises: the caller is about to raise ``error``, which is what its caller must
    get; a record that cannot be written (the database away) is logged instead.
    """
    reason = getattr(error, "reason", "") or type(error).__name__
    message = getattr(error, "message", "") or str(error)
    try:
        record(action, outcome=FAILURE, reason=f"{reason}: {message}", **fields)
    except Exception:
        _log.exception("could not record the failed %s", action)


def record_op(action: str, **fields: Any) -> Callable[[Connection], Any]:
    """:func:`record` as a write operation for the caller's own transaction."""
    log = _installed
    if log is None:
        return _nothing
    return log.op(log.entry(action, **fields))


def _nothing(conn: Connection) -> None:
    return None
