"""Serialised writers and group commit for the issuance hot path.

Why: every issued certificate needs two durable writes (docs/architecture.md, invariant 2: the
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
  ``run_many`` submits several operations that share one transaction (a batch of
  issuances: two commits for all of them).

An operation that raises is reported to its caller only: the batch is rolled back and run
again without it (operations are plain SQL on a connection, so re-running them after a
rollback is safe).

Wake-ups are counted, because each costs a pair of context switches (~40% of a busy worker's
CPU went to futex wake/wait in the kernel when every commit woke every waiting thread): a
caller sleeps on its own lock, released once -- by the leader whose commit finished the
caller's operations, or to hand the caller the lead. Nobody else is woken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction, exc
from sqlalchemy.engine import make_url

from service import metrics
from service.baton import Waiter

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

    def acquire(self) -> None:
        """Take the gate (reentrant within a thread); pair with :meth:`release`."""
        self._lock.acquire()
        try:
            if self._depth == 0:
                self._lock_file()
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1

    def release(self) -> None:
        """Give back one :meth:`acquire`."""
        self._depth -= 1
        try:
            if self._depth == 0:
                self._unlock_file()
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate (reentrant within a thread)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

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


class _Caller(Waiter):
    """One call of run/run_many: its wake-up (service/baton.py) and operations left.

    Woken by the leader that finished the caller's last operation, or handed the lead; so a
    commit wakes only the threads whose operations it contained.
    """

    __slots__ = ("left",)

    def __init__(self, operations: int) -> None:
        super().__init__()
        self.left = operations  # changed by the leader only


class _Pending:
    """One submitted operation and, once finished, its result or error."""

    __slots__ = ("caller", "done", "error", "op", "result")

    def __init__(self, op: Callable[[Connection], Any], caller: _Caller) -> None:
        self.op = op
        self.caller = caller
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommitter:
    """Runs write operations of concurrent threads in shared transactions (group commit)."""

    def __init__(self, engine: Engine, gate: WriteGate, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._engine = engine
        self._gate = gate
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        # Guards the queue and the leader flag (held briefly; nobody waits on it).
        self._mutex = threading.Lock()
        self._leading = False
        # Held by the leader while it commits (and by close()).
        self._commit_lock = threading.Lock()
        # Held for the process lifetime (used under the commit lock only): a pool checkout
        # and its reset-on-return ROLLBACK per batch cost more than the batch's INSERT.
        self._conn: Connection | None = None
        self._trans: RootTransaction | None = None
        self._pid = os.getpid()
        self.commits = 0  # transactions committed (for tests and benchmarks)
        self.operations = 0  # operations committed

    def run(self, op: Callable[[Connection], T]) -> T:
        """Run ``op(conn)`` in a transaction; return once that transaction has committed."""
        ((result, error),) = self._submit([op])
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    def run_many(
        self, ops: Sequence[Callable[[Connection], Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        """Run every op in one transaction (unless one fails); ``(result, error)`` per op.

        Returns once the transaction containing them has committed. An op that raises is
        left out and the rest run again without it (its error is in its tuple); the ops
        are never split across transactions otherwise.
        """
        if not ops:
            return []
        outcomes = self._submit(ops)
        for _, error in outcomes:
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt and the like are not outcomes
        return outcomes

    def _submit(
        self, ops: Sequence[Callable[[Connection], Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        me = _Caller(len(ops))
        mine = [_Pending(op, me) for op in ops]
        with self._mutex:
            self._queue.extend(mine)
            # One leader at a time commits everything queued so far: while one batch
            # commits, the next one gathers, and the next leader commits it for all of them.
            if not self._leading:
                self._leading = me.lead = True
        if not me.lead:
            me.park()  # until our operations are done, or we are handed the lead
        if me.left:
            self._lead(me, mine)
        return [(p.result, p.error) for p in mine]

    def _lead(self, me: _Caller, mine: list[_Pending]) -> None:
        """Commit batches until ``me``'s operations are done, then hand leadership on."""
        finished: list[_Caller] = []
        try:
            with self._commit_lock:
                while me.left:
                    taken: list[_Pending] = []
                    try:
                        self._commit(taken)
                    finally:
                        finished = self._finish(taken, me)
                    if me.left:
                        self._wake(finished)
                        finished = []
        except BaseException as e:
            # Ours not even taken (the gate failed): they must never run after we return,
            # and their callers learn why (taken ones already carry the error).
            with self._mutex:
                for p in mine:
                    if not p.done and p in self._queue:
                        self._queue.remove(p)
                        p.result, p.error, p.done = None, e, True
            if not isinstance(e, Exception):
                raise
        finally:
            with self._mutex:
                if self._queue:
                    # The oldest queued caller leads next; only that thread is woken.
                    successor = self._queue[0].caller
                    successor.hand_lead()
                else:
                    self._leading = False
            self._wake(finished)

    @staticmethod
    def _finish(taken: list[_Pending], me: _Caller) -> list[_Caller]:
        """Count finished operations; the callers (other than ``me``) now all done."""
        finished = []
        for p in taken:
            caller = p.caller
            caller.left -= 1
            if not caller.left and caller is not me:
                finished.append(caller)
        return finished

    @staticmethod
    def _wake(callers: list[_Caller]) -> None:
        for caller in callers:
            caller.wake()

    def _take(self, taken: list[_Pending]) -> None:
        with self._mutex:
            queue = self._queue
            n = min(self._max_batch, len(queue))
            # A run_many call's operations stay in one transaction.
            while 0 < n < len(queue) and queue[n].caller is queue[n - 1].caller:
                n += 1
            taken.extend(queue[:n])
            del queue[:n]

    def _commit(self, taken: list[_Pending]) -> None:
        """Take a batch into ``taken`` and commit it; every taken operation ends done."""
        self._gate.acquire()
        try:
            # The batch is taken once the gate is ours: whatever queued while another
            # process held it (most of a busy gate's wait) shares this commit too.
            self._take(taken)
            batch = taken
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
            for p in taken:
                if not p.done:
                    p.result, p.error, p.done = None, e, True
            raise
        finally:
            self._gate.release()

    def _try(self, batch: list[_Pending]) -> _Pending | None:
        """Run the batch in one transaction; the operation that raised, or None if committed."""
        conn, trans = self._transaction()
        info = conn.info
        info[BATCH_SCRATCH] = {}
        current: _Pending | None = None
        try:
            for p in batch:
                current = p
                p.result = p.op(conn)
            current = None
            self._commit_transaction(conn, trans)
        except BaseException as e:
            if current is None:
                self._drop_connection()  # the commit failed: start afresh next time
                raise
            self._rollback(trans)
            if not isinstance(e, Exception):
                raise
            current.result, current.error, current.done = None, e, True
            return current
        finally:
            info.pop(BATCH_SCRATCH, None)
        return None

    # The held connection stays in one SQLAlchemy transaction (RootTransaction) across
    # batches, and each batch ends with the DBAPI connection's own commit(): the DBAPI
    # (pysqlite, psycopg) begins its next transaction implicitly at the next statement, and
    # SQLAlchemy's begin emits nothing for them, so this is the same SQL as
    # ``with conn.begin()`` per batch without SQLAlchemy's per-transaction bookkeeping. The
    # operations see an ordinary Connection in a transaction. A failed batch is rolled back
    # through SQLAlchemy, which then begins a new transaction for the next one.

    def _transaction(self) -> tuple[Connection, RootTransaction]:
        conn = self._connection()
        trans = self._trans
        if trans is None or not trans.is_active or conn.get_transaction() is not trans:
            if conn.in_transaction():
                conn.rollback()
            trans = self._trans = conn.begin()
        return conn, trans

    @staticmethod
    def _commit_transaction(conn: Connection, trans: RootTransaction) -> None:
        if not trans.is_active or conn.get_transaction() is not trans:
            raise exc.InvalidRequestError("an operation ended the group commit's transaction")
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is None:
            raise exc.ResourceClosedError("the group commit's connection is closed")
        dialect = conn.dialect
        error = dialect.loaded_dbapi.Error
        started = time.perf_counter()
        try:
            dbapi_connection.commit()
        except error as e:
            raise exc.DBAPIError.instance(None, None, e, error, dialect=dialect) from e
        metrics.db_commit(time.perf_counter() - started)

    def _rollback(self, trans: RootTransaction) -> None:
        self._trans = None
        try:
            trans.rollback()
        except Exception:  # noqa: BLE001 - the connection is unusable: replace it
            self._drop_connection()

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated or self._pid != os.getpid():
            if conn is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    conn.close()
            conn = self._conn = self._engine.connect()
            self._trans = None
            self._pid = os.getpid()
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn, self._trans = self._conn, None, None
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
