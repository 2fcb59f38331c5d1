"""Serialised writers and group commit for the issuance hot path.

Why: every issued certificate needs two durable writes (DESIGN.md invariant 2: the
reservation with the exact TBS is committed *before* the token signs; the certificate is
recorded after). With ``synchronous=FULL`` each SQLite commit costs an fsync (~0.3 ms here),
and several worker *processes* writing one SQLite file contend for its write lock, whose busy
handler sleeps in millisecond steps (1, 2, 5, 10, ... ms) instead of waking when the lock is
free. Two measures, neither of which weakens durability:

- :class:`WriteGate`: one exclusive writer per database, across threads (a lock) and across
  processes (``flock`` on a lock file next to the SQLite database). Waiting on ``flock``
  blocks in the kernel and wakes as soon as the holder releases it, so SQLite's busy
  handler no longer sleeps between hsmca processes (it still protects against writers that
  do not use the gate, e.g. ``sqlite3`` from a shell).
- :class:`GroupCommitter`: operations submitted by concurrent request threads of one process
  run in one transaction and share one commit. Each caller returns only after the commit
  that contains its operation, so "committed before the token signs" holds per request.

An operation that raises is reported to its caller only: the batch is rolled back and run
again without it (operations are plain SQL on a connection, so re-running them after a
rollback is safe).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

__all__ = ["BATCH_SCRATCH", "GroupCommitter", "WriteGate", "group_committer", "write_gate"]

T = TypeVar("T")

#: Most operations one transaction takes; bounds the work redone when one of them fails.
MAX_BATCH = 64
#: Key of ``Connection.info`` holding a dict that lives for one batch's transaction:
#: operations may share what they read after the transaction took the write lock.
BATCH_SCRATCH = "hsmca.group_commit.batch"


class WriteGate:
    """One writer at a time for a database: a reentrant thread lock plus a file lock."""

    def __init__(self, lock_path: Path | None) -> None:
        self._lock = threading.RLock()
        self._path = lock_path
        self._fd: int | None = None
        self._pid = os.getpid()
        self._depth = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate (reentrant within a thread)."""
        with self._lock:
            if self._depth == 0:
                self._lock_file()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._unlock_file()

    def _lock_file(self) -> None:
        if self._path is None:
            return
        if self._fd is None or self._pid != os.getpid():
            # A file lock belongs to the open file description: each process opens its own.
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without holding the GIL

    def _unlock_file(self) -> None:
        if self._path is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class _Pending(Generic[T]):
    """One submitted operation and, once its batch committed, its result or error."""

    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Callable[[Connection], T]) -> None:
        self.op = op
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommitter:
    """Runs write operations of concurrent threads in shared transactions (group commit)."""

    def __init__(self, engine: Engine, gate: WriteGate, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._engine = engine
        self._gate = gate
        self._max_batch = max_batch
        self._queue: list[_Pending[Any]] = []
        # Guards the queue and the leader flag; waiters sleep on it until their operation
        # is done or nobody leads. (A plain lock that every waiter had to take in turn kept
        # threads whose operation was already committed queued behind the next commits.)
        self._cond = threading.Condition(threading.Lock())
        self._leading = False
        # Held by the leader while it commits (and by close()).
        self._commit_lock = threading.Lock()
        # Held for the process lifetime (used under the commit lock only): a pool checkout
        # and its reset-on-return ROLLBACK per batch cost more than the batch's INSERT.
        self._conn: Connection | None = None
        self._pid = os.getpid()
        self.commits = 0  # transactions committed (for tests and benchmarks)
        self.operations = 0  # operations committed

    def run(self, op: Callable[[Connection], T]) -> T:
        """Run ``op(conn)`` in a transaction; return once that transaction has committed."""
        mine: _Pending[T] = _Pending(op)
        with self._cond:
            self._queue.append(mine)
            # One leader at a time commits everything queued so far: while one batch
            # commits, the next one gathers, and the next leader commits it for all of them.
            while self._leading and not mine.done:
                self._cond.wait()
            if not mine.done:
                self._leading = True
        if not mine.done:
            self._lead(mine)
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]  # set by _commit when no error

    def _lead(self, mine: _Pending[Any]) -> None:
        """Commit batches until ``mine`` is done, then hand leadership on."""
        try:
            with self._commit_lock:
                while not mine.done:
                    self._commit()
                    with self._cond:
                        self._cond.notify_all()  # the batch's callers may go on
        except BaseException:
            # Not even taken (the gate failed): it must never run after we raised.
            with self._cond:
                if not mine.done and mine in self._queue:
                    self._queue.remove(mine)
            raise
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()  # one waiter whose operation is queued leads next

    def _take(self) -> list[_Pending[Any]]:
        with self._cond:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        return batch

    def _commit(self) -> None:
        batch: list[_Pending[Any]] = []
        try:
            with self._gate.held():
                # The batch is taken once the gate is ours: whatever queued while another
                # process held it (most of a busy gate's wait) shares this commit too.
                batch = self._take()
                while batch:
                    failed = self._try(batch)
                    if failed is None:
                        self.commits += 1
                        self.operations += len(batch)
                        for p in batch:
                            p.done = True
                        return
                    # Only the failing operation's caller sees its error; the rest run again.
                    batch = [p for p in batch if p is not failed]
        except BaseException as e:
            # The commit itself (or the gate) failed: nobody in the batch is durable.
            for p in batch:
                if not p.done:
                    p.result, p.error, p.done = None, e, True
            raise

    def _try(self, batch: list[_Pending[Any]]) -> _Pending[Any] | None:
        """Run the batch in one transaction; the operation that raised, or None if committed."""
        current: _Pending[Any] | None = None
        conn = self._connection()
        try:
            with conn.begin():
                conn.info[BATCH_SCRATCH] = {}
                for p in batch:
                    current = p
                    p.result = p.op(conn)
                current = None
        except Exception as e:
            if current is None:
                self._drop_connection()  # the commit failed: start afresh next time
                raise
            current.result, current.error, current.done = None, e, True
            return current
        finally:
            conn.info.pop(BATCH_SCRATCH, None)
        return None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated or (
                self._pid != os.getpid()):
            self._conn = self._engine.connect()
            self._pid = os.getpid()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Return the held connection to the pool (call before disposing of the engine)."""
        with self._commit_lock:
            self._drop_connection()


_gates: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
_committers: weakref.WeakKeyDictionary[Engine, GroupCommitter] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _lock_path(engine: Engine) -> Path | None:
    url = make_url(str(engine.url))
    if url.get_backend_name() != "sqlite":
        return None  # PostgreSQL serialises writers itself, without sleeping
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in database or database.startswith("file:"):
        return None  # one process only
    return Path(database + ".write-lock")


def write_gate(engine: Engine) -> WriteGate:
    """The process's WriteGate for ``engine``'s database (one per engine)."""
    with _registry_lock:
        gate = _gates.get(engine)
        if gate is None:
            gate = _gates[engine] = WriteGate(_lock_path(engine))
        return gate


def group_committer(engine: Engine) -> GroupCommitter:
    """The process's GroupCommitter for ``engine`` (sharing the engine's WriteGate)."""
    gate = write_gate(engine)
    with _registry_lock:
        committer = _committers.get(engine)
        if committer is None:
            committer = _committers[engine] = GroupCommitter(engine, gate)
        return committer
