"""The store conventions every storage access of both services goes through.

- Reads: ``with store.read() as conn`` -- a pooled connection, no transaction held open.
- Writes: ``with store.write() as conn`` -- one transaction under the database's
  :class:`~service.storage.group_commit.WriteGate` (one writer across threads and worker
  processes, so SQLite's busy handler never sleeps), committed when the block ends.
- Hot-path writes: :meth:`Store.run_many` -- operations of concurrent callers share one
  transaction and one commit (group commit); each caller returns once its operations are
  committed. The issuance pipeline (service/private_ca/batch.py) uses it.

The repository functions (service/storage/repo.py) are the operations; callers never open
transactions on the engine themselves. Why the gate and the group commit exist:
service/storage/group_commit.py and docs/architecture.md ("Storage conventions").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from service.storage import repo
from service.storage.group_commit import BATCH_SCRATCH, group_committer, write_gate
from service.storage.schema import CaStatus

__all__ = ["Operation", "Outcome", "Store"]

#: A write operation: plain SQL on a connection inside a transaction the store owns.
Operation = Callable[[Connection], Any]
#: What :meth:`Store.run_many` reports per operation: (result, error).
Outcome = tuple[Any, BaseException | None]


class Store:
    """Reads, gated write transactions and group-committed writes over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._gate = write_gate(engine)
        self._committer = group_committer(engine)

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (no write lock is taken)."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, one writer at a time per database; commits on success."""
        with self._gate.held(), self.engine.begin() as conn:
            yield conn

    def run_many(self, ops: Sequence[Operation]) -> Sequence[Outcome]:
        """Run ``ops`` in one shared, group-committed transaction; (result, error) per op.

        An op that raises is left out (its error is in its tuple) and the rest are committed
        without it; returns once the transaction holding them has committed.
        """
        return self._committer.run_many(ops)

    @property
    def commits(self) -> int:
        """Group commits made so far in this process (for tests and benchmarks)."""
        return self._committer.commits

    @staticmethod
    def ca_status_in_batch(conn: Connection, ca_identifier: str) -> CaStatus | None:
        """A CA's status, read once per group-commit batch (it cannot change within one)."""
        scratch: dict[Any, Any] | None = conn.info.get(BATCH_SCRATCH)
        if scratch is None:
            return repo.ca_status(conn, ca_identifier)
        key = ("ca_status", ca_identifier)
        if key not in scratch:
            scratch[key] = repo.ca_status(conn, ca_identifier)
        status: CaStatus | None = scratch[key]
        return status

    def close(self) -> None:
        """Hand back the connection the group committer holds (before disposing the engine)."""
        self._committer.close()
