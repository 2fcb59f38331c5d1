"""Group commit: every operation is committed before its caller returns; errors stay local."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from service import baton
from service.storage.db import create_engine_for
from service.storage.group_commit import GroupCommitter, WriteGate, write_gate


def _engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine_for(f"sqlite:///{tmp_path / 'gc.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    return engine


def test_concurrent_operations_share_commits(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine, write_gate(engine))
    barrier = threading.Barrier(16)
    seen_after_return: list[bool] = []

    def insert(k: int) -> None:
        barrier.wait()
        committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": k}))
        # Durable before the caller goes on: a fresh connection sees the row.
        with engine.connect() as conn:
            seen_after_return.append(
                conn.execute(text("SELECT count(*) FROM t WHERE k = :k"), {"k": k}).scalar_one()
                == 1)

    threads = [threading.Thread(target=insert, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen_after_return == [True] * 16
    assert 1 <= committer.commits <= 16


def test_a_failing_operation_fails_alone(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine, write_gate(engine))
    committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
    results: dict[int, BaseException | None] = {}
    barrier = threading.Barrier(8)

    def insert(k: int) -> None:
        barrier.wait()
        try:
            committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": k}))
            results[k] = None
        except Exception as e:  # the duplicate key 1
            results[k] = e

    threads = [threading.Thread(target=insert, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[1] is not None
    assert all(results[k] is None for k in range(2, 9))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 8


def test_result_is_returned(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine, write_gate(engine))

    def op(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t VALUES (42)"))
        return 7

    assert committer.run(op) == 7


def test_gate_is_reentrant_and_locks_a_file(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "db.write-lock")
    with gate.held(), gate.held():
        assert (tmp_path / "db.write-lock").exists()
    with pytest.raises(ValueError):
        GroupCommitter(_engine(tmp_path), gate, max_batch=0)


class _HeldGate(WriteGate):
    """A gate whose first holder waits for ``release`` (another process holding it)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.entered = threading.Event()
        self.go = threading.Event()
        self.fail_next = False

    def acquire(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("flock failed")
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(10)
        super().acquire()


def test_operations_queued_while_waiting_for_the_gate_share_its_commit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    gate = _HeldGate()
    committer = GroupCommitter(engine, gate)

    def insert(k: int) -> None:
        committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": k}))

    first = threading.Thread(target=insert, args=(0,))
    first.start()
    assert gate.entered.wait(10)  # the leader waits for the gate
    others = [threading.Thread(target=insert, args=(k,)) for k in range(1, 8)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(committer._queue) < 8 and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.001)
    gate.go.set()
    for t in [first, *others]:
        t.join(10)
        assert not t.is_alive()
    # Taken once the gate was ours: one transaction for all eight.
    assert (committer.commits, committer.operations) == (1, 8)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 8


def test_an_operation_not_taken_when_the_gate_fails_never_runs(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    gate = _HeldGate()
    gate.entered.set()
    committer = GroupCommitter(engine, gate)
    gate.fail_next = True
    with pytest.raises(OSError, match="flock failed"):
        committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
    assert committer._queue == []  # noqa: SLF001
    # The next caller leads and commits only its own operation.
    committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (2)")))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT k FROM t")).scalars().all() == [2]


class _RecordingLock:
    """A caller's wake-up lock (service.baton.allocate_lock) that logs its releases."""

    def __init__(self, log: list[tuple[str, int]], committer: list[GroupCommitter]) -> None:
        self._lock = threading.Lock()
        self._log = log
        self._committer = committer
        self.owner = threading.current_thread().name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._log.append((self.owner, self._committer[0].commits))
        self._lock.release()


def test_a_commit_wakes_only_its_batch_callers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(tmp_path)
    gate = _HeldGate()
    committer = GroupCommitter(engine, gate, max_batch=2)
    releases: list[tuple[str, int]] = []
    monkeypatch.setattr(baton, "allocate_lock", lambda: _RecordingLock(releases, [committer]))

    def insert(k: int) -> None:
        committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": k}))

    threads = [threading.Thread(target=insert, args=(k,), name=f"caller-{k}") for k in range(4)]
    threads[0].start()
    assert gate.entered.wait(10)  # caller-0 leads and waits for the gate
    for k, t in enumerate(threads[1:], start=2):
        t.start()  # queued in order: 0, 1, 2, 3
        deadline = time.monotonic() + 10
        while len(committer._queue) < k and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.001)
    gate.go.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    # Batches [0, 1] and [2, 3]: caller-1 is woken once its batch committed, caller-2 once to
    # lead the next batch, caller-3 once by the second commit; the leader is never woken.
    # (A notify_all per commit would wake caller-3 at the first commit too.)
    assert (committer.commits, committer.operations) == (2, 4)
    owners = sorted(owner for owner, _ in releases)
    assert owners == ["caller-1", "caller-2", "caller-3"]
    assert dict(releases)["caller-3"] == 2
    assert dict(releases)["caller-1"] >= 1 and dict(releases)["caller-2"] == 1


def test_run_many_commits_together_and_keeps_errors_local(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine, write_gate(engine), max_batch=4)
    committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))

    def insert(k: int) -> Callable[[Connection], int]:
        def op(conn: Connection) -> int:
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": k})
            if k == 7:
                raise ValueError("seven")  # after its INSERT: that must not persist
            return k * 10
        return op

    outcomes = committer.run_many([insert(k) for k in range(1, 11)])
    # One transaction although max_batch is 4: a run_many call is never split.
    assert (committer.commits, committer.operations) == (2, 1 + 8)
    assert [r for r, e in outcomes if e is None] == [20, 30, 40, 50, 60, 80, 90, 100]
    errors = {k: e for k, (_, e) in enumerate(outcomes, start=1) if e is not None}
    assert set(errors) == {1, 7}
    assert isinstance(errors[1], IntegrityError)
    assert isinstance(errors[7], ValueError)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT k FROM t ORDER BY k")).scalars().all() == [
            1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert committer.run_many([]) == []


def test_a_failed_commit_fails_its_whole_batch_only(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE child (k INTEGER REFERENCES t (k))"))
    gate = _HeldGate()
    committer = GroupCommitter(engine, gate)

    def orphan(conn: Connection) -> None:
        # A deferred foreign key fails at COMMIT, not at the statement.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.execute(text("INSERT INTO child VALUES (99)"))

    results: dict[str, BaseException | None] = {}

    def call(name: str, op: Callable[[Connection], Any]) -> None:
        try:
            committer.run(op)
            results[name] = None
        except Exception as e:
            results[name] = e

    first = threading.Thread(target=call, args=(
        "good", lambda conn: conn.execute(text("INSERT INTO t VALUES (1)"))))
    first.start()
    assert gate.entered.wait(10)
    second = threading.Thread(target=call, args=("orphan", orphan))
    second.start()
    deadline = time.monotonic() + 10
    while len(committer._queue) < 2 and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.001)
    gate.go.set()
    for t in (first, second):
        t.join(10)
        assert not t.is_alive()
    # Nobody in the failed transaction is durable, and everybody in it is told so.
    assert isinstance(results["good"], IntegrityError)
    assert results["orphan"] is results["good"]
    assert committer.commits == 0
    # The next batch starts afresh on a new connection.
    committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (2)")))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT k FROM t")).scalars().all() == [2]
        assert conn.execute(text("SELECT count(*) FROM child")).scalar_one() == 0


def test_operations_get_a_connection_in_a_transaction(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine, write_gate(engine))
    seen: list[bool] = []

    def op(conn: Connection) -> None:
        seen.append(conn.in_transaction())
        conn.execute(text("INSERT INTO t VALUES (5)"))

    def fails(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES (7)"))
        raise ValueError("after its INSERT")

    committer.run(op)
    with pytest.raises(ValueError):
        committer.run(fails)  # rolled back: 7 is not stored
    committer.run(lambda conn: seen.append(conn.in_transaction()))
    committer.close()  # the held connection goes back; the next call takes a new one
    committer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (6)")))
    assert seen == [True, True]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT k FROM t ORDER BY k")).scalars().all() == [5, 6]


def test_many_threads_every_operation_committed_once(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine, write_gate(engine), max_batch=3)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(60):
                k = w * 1000 + i * 10
                if i % 3:
                    committer.run(
                        lambda conn, k=k: conn.execute(text("INSERT INTO t VALUES (:k)"),
                                                       {"k": k}))
                else:
                    outcomes = committer.run_many([
                        lambda conn, k=k + j: conn.execute(
                            text("INSERT INTO t VALUES (:k)"), {"k": k}) for j in range(3)])
                    assert all(e is None for _, e in outcomes)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert errors == []
    expected = 12 * (40 + 20 * 3)
    assert committer.operations == expected
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == expected
    assert committer._queue == [] and not committer._leading  # noqa: SLF001


def test_gate_acquire_failure_leaves_it_free(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "missing-dir" / "db.write-lock")
    with pytest.raises(OSError):
        gate.acquire()
    free: list[bool] = []
    t = threading.Thread(target=lambda: free.append(gate._lock.acquire(blocking=False)))  # noqa: SLF001
    t.start()
    t.join(10)
    assert free == [True]
