"""Group commit: every operation is committed before its caller returns; errors stay local."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

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
        self.release = threading.Event()
        self.fail_next = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.fail_next:
            self.fail_next = False
            raise OSError("flock failed")
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        with super().held():
            yield


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
    gate.release.set()
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
