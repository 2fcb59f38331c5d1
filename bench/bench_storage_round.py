"""The storage side of a signing-pipeline round alone: CPU per certificate, WAL frames.

    python bench/bench_storage_round.py [--per-round K] [--certificates N] [--processes P]

No token, no gRPC: what service/private_ca/batch.py asks of the store per round, on a
temporary SQLite file (WAL, synchronous=FULL, the service's engine). Each round is one
``Store.run_many`` with the previous round's records (``repo.mark_issued`` and the audit
record of the CA key's use, as issuance's step 9 writes them) and K new reservations
(``repo.reserve_certificate`` and the CA's status read in the batch, step 6). Rows are
shaped like the service's (identifiers and serials from service/entropy.py, created now).

Prints, per process, the thread CPU per certificate of run_many split into the cursor work
of the statements (binding, SQLite, cursor), the COMMIT call (WAL writes and fdatasync) and
the Python around them, plus the audit entry made in the caller's thread; then the WAL
frames one commit wrote, by table and index (SQLite's dbstat). With ``--processes 2`` two
processes run rounds on one file through the write gate, as two workers do: each one's
commit empties the other's page cache.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import multiprocessing
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CERTIFICATE = b"\x30\x82\x02\x40" + bytes(572)  # the size of a P-256 server certificate
TBS = b"\x30\x82\x01\xe0" + bytes(476)


def _rounds(url: str, ca_identifier: str, per_round: int, certificates: int,
            out: Any, frames_path: str | None) -> None:
    """One process: rounds until ``certificates`` are recorded; its figures into ``out``."""
    from service import entropy
    from service.audit.log import AuditLog, KeyRef
    from service.storage import group_commit, prepared, repo
    from service.storage.db import create_engine_for
    from service.storage.schema import CertificateKind, CertificateStatus
    from service.storage.store import Store

    engine = create_engine_for(url)
    store = Store(engine)
    log = AuditLog(engine, default_tenant="bench")
    cpu = {"cursor": 0, "commit": 0, "run_many": 0, "entry": 0}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return fn(*args)
            finally:
                cpu[name] += time.thread_time_ns() - started
        return call

    prepared._on_cursor = timed("cursor", prepared._on_cursor)  # type: ignore[assignment]  # noqa: SLF001
    group_commit.GroupCommitter._commit_transaction = staticmethod(  # type: ignore[method-assign]  # noqa: SLF001
        timed("commit", group_commit.GroupCommitter._commit_transaction))  # noqa: SLF001

    def row() -> Any:
        now = dt.datetime.now(dt.UTC)
        serial = format(int.from_bytes(entropy.random_bytes(16), "big") >> 1, "x")
        return repo.CertificateRow(
            identifier=entropy.new_identifier(), owner="bench", issuer_identifier=ca_identifier,
            status=CertificateStatus.RESERVED, kind=CertificateKind.SERVER, created_at=now,
            updated_at=now, serial=serial, tbs=TBS, common_name="www.example.com",
            subject_der=b"\x30\x1a", sans=(("dNSName", "www.example.com"),), not_before=now,
            not_after=now + dt.timedelta(days=90))

    def reserve(r: Any) -> Callable[[Any], None]:
        def op(conn: Any) -> None:
            repo.reserve_certificate(conn, r)
            Store.ca_status_in_batch(conn, ca_identifier)
        return op

    def record(r: Any, entry: Any) -> Callable[[Any], None]:
        append = log.op(entry)

        def op(conn: Any) -> None:
            repo.mark_issued(conn, r.identifier, CERTIFICATE)
            append(conn)
        return op

    def run(n: int) -> None:
        signed: list[Any] = []
        done = 0
        while done < n:
            new = [row() for _ in range(per_round)]
            started = time.thread_time_ns()
            entries = [log.entry("certificate.sign", key=KeyRef("hsm", "0a0b"),
                                 resources=[r.identifier, ca_identifier], tenant="bench",
                                 details={"serial": r.serial, "kind": "SERVER"})
                       for r in signed]
            cpu["entry"] += time.thread_time_ns() - started
            ops = [record(r, e) for r, e in zip(signed, entries, strict=True)]
            ops += [reserve(r) for r in new]
            started = time.thread_time_ns()
            for _, error in store.run_many(ops):
                if error is not None:
                    raise error
            cpu["run_many"] += time.thread_time_ns() - started
            signed, done = new, done + per_round

    run(min(certificates, 600))  # warm-up
    for k in cpu:
        cpu[k] = 0
    run(certificates)
    us = {k: v / certificates / 1e3 for k, v in cpu.items()}
    out.put({"run_many": us["run_many"], "cursor": us["cursor"], "commit": us["commit"],
             "python": us["run_many"] - us["cursor"] - us["commit"], "entry": us["entry"]})
    if frames_path:
        database = url.removeprefix("sqlite:///")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        commits = store.commits
        run(per_round * 100)
        out.put(_frames(database, store.commits - commits))
    store.close()
    engine.dispose()


def _frames(database: str, commits: int) -> dict[str, float]:
    """WAL frames written since the last checkpoint, per commit, by table or index."""
    with open(database + "-wal", "rb") as f:
        data = f.read()
    page_size = struct.unpack(">I", data[8:12])[0]
    pages: collections.Counter[int] = collections.Counter()
    offset = 32  # WAL header; each frame is a 24-byte header and a page
    while offset + 24 + page_size <= len(data):
        pages[struct.unpack(">I", data[offset:offset + 4])[0]] += 1
        offset += 24 + page_size
    con = sqlite3.connect(database)
    try:
        owner = dict(con.execute("SELECT pageno, name FROM dbstat").fetchall())
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        owner = {}
    finally:
        con.close()
    by: collections.Counter[str] = collections.Counter()
    for page, n in pages.items():
        by[owner.get(page, "?")] += n
    return {name: n / commits for name, n in by.most_common()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-round", type=int, default=3, help="certificates per round")
    p.add_argument("--certificates", type=int, default=6000, help="per process")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="runs (medians are printed)")
    args = p.parse_args(argv)

    from service.storage import repo
    from service.storage.db import create_engine_for, migrate
    from service.storage.schema import CaKind, CaStatus
    from service.storage.store import Store

    results: list[dict[str, float]] = []
    frames: dict[str, float] = {}
    for i in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="hsmca-bench-storage-"))
        try:
            url = f"sqlite:///{work / 'hsmca.sqlite3'}"
            migrate(url)
            engine = create_engine_for(url)
            now = dt.datetime.now(dt.UTC)
            ca = repo.CaRow(
                identifier="00000000-0000-4000-8000-000000000001", owner="bench",
                kind=CaKind.SUB, common_name="Bench Sub CA", subject_der=b"\x30\x00",
                algorithm="ECC_256", key_token="hsm", key_id="0a0b",  # noqa: S106
                public_key_info=b"\x30\x00", serial="1", not_before=now,
                not_after=now + dt.timedelta(days=3650), status=CaStatus.ISSUE,
                created_at=now, updated_at=now)
            store = Store(engine)
            with store.write() as conn:
                repo.insert_ca(conn, ca)
            store.close()
            engine.dispose()
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            procs = [ctx.Process(target=_rounds, args=(
                url, ca.identifier, args.per_round, args.certificates, out,
                url if i == 0 and args.processes == 1 else None))
                for _ in range(args.processes)]
            for proc in procs:
                proc.start()
            got = [out.get(timeout=600)
                   for _ in range(args.processes + (i == 0 and args.processes == 1))]
            for proc in procs:
                proc.join(60)
            for g in got:
                if "run_many" in g:
                    results.append(g)
                else:
                    frames.update(g)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.processes} process(es), {args.per_round} certificates per round, "
          f"{args.certificates} certificates each, {args.repeat} runs; CPU per certificate "
          "(thread time, us, medians):")
    for key, what in (("run_many", "Store.run_many"), ("cursor", "  statements' cursor work"),
                      ("commit", "  COMMIT (WAL writes, fdatasync)"),
                      ("python", "  Python around them"),
                      ("entry", "audit entries (caller's thread)")):
        values = [r[key] for r in results]
        print(f"  {what}: {statistics.median(values):.0f} "
              f"({', '.join(f'{v:.0f}' for v in values)})")
    if frames:
        print(f"WAL frames per commit: {sum(frames.values()):.1f}")
        for name, n in frames.items():
            print(f"  {name}: {n:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
