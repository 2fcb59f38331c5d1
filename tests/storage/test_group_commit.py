"""Group commit: every operation is committed before its caller returns; errors stay local."""

from __future__ import annotations

import threading
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
