"""Async job claiming: each job goes to exactly one claimer, across engines and processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import threading

import pytest
from sqlalchemy import Engine
from storage_factories import T0, ca_row, pending_job

from service.errors import AlreadyExists, FailedPrecondition
from service.private_ca.jobs import JobLease, JobQueue
from service.storage import repo
from service.storage.db import create_engine_for
from service.storage.store import Store

LEASE = 60.0


def _setup_jobs(engine: Engine, n: int) -> tuple[repo.CaRow, list[str]]:
    ca = ca_row()
    jobs = [pending_job(ca, created_at=T0 + dt.timedelta(milliseconds=i)) for i in range(n)]
    with engine.begin() as conn:
        repo.insert_ca(conn, ca)
        for job in jobs:
            repo.insert_pending(conn, job)
    return ca, [j.identifier for j in jobs]


def _claim(engine: Engine, worker: str, now: dt.datetime = T0) -> repo.CertificateRow | None:
    with engine.begin() as conn:
        return repo.claim_pending(conn, worker, LEASE, now)


@pytest.mark.parametrize("round_", range(10))
def test_one_job_goes_to_exactly_one_of_two_engines(db_url: str, round_: int) -> None:
    engines = [create_engine_for(db_url), create_engine_for(db_url)]
    _, (job_id,) = _setup_jobs(engines[0], 1)
    barrier = threading.Barrier(2)
    results: dict[str, repo.CertificateRow | None] = {}

    def run(index: int) -> None:
        barrier.wait()
        results[f"w{index}"] = _claim(engines[index], f"w{index}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    winners = {w: r for w, r in results.items() if r is not None}
    assert len(results) == 2 and len(winners) == 1
    ((worker, row),) = winners.items()
    assert row.identifier == job_id
    assert (row.lease_owner, row.attempts) == (worker, 1)
    assert row.lease_expires_at == T0 + dt.timedelta(seconds=LEASE)


def _drain(url: str, worker: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    engine = create_engine_for(url)
    claimed = []
    while (row := _claim(engine, worker)) is not None:
        claimed.append(row.identifier)
    engine.dispose()
    out.put((worker, claimed))


def test_two_processes_claim_every_job_exactly_once(engine: Engine, db_url: str) -> None:
    _, job_ids = _setup_jobs(engine, 60)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(db_url, f"p{i}", out)) for i in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    claimed = [j for ids in results.values() for j in ids]
    assert sorted(claimed) == sorted(job_ids)  # all claimed, none twice


def test_leased_job_is_not_claimed_again_until_the_lease_expires(engine: Engine) -> None:
    _, (job_id,) = _setup_jobs(engine, 1)
    first = _claim(engine, "a")
    assert first is not None and first.identifier == job_id
    assert _claim(engine, "b", T0 + dt.timedelta(seconds=LEASE - 1)) is None
    again = _claim(engine, "b", T0 + dt.timedelta(seconds=LEASE + 1))
    assert again is not None and (again.lease_owner, again.attempts) == ("b", 2)


def test_claimed_job_reserves_issues_and_is_done(engine: Engine) -> None:
    ca, (job_id,) = _setup_jobs(engine, 1)
    job = _claim(engine, "a")
    assert job is not None
    reserved = dataclasses.replace(
        job,
        serial="abc",
        tbs=b"\x30\x00",
        common_name="alice",
        not_before=T0,
        not_after=T0 + dt.timedelta(days=30),
    )
    with pytest.raises(FailedPrecondition), engine.begin() as conn:
        repo.reserve_claimed(conn, reserved, "not-the-leaseholder")
    with engine.begin() as conn:
        repo.reserve_claimed(conn, reserved, "a")
        repo.mark_issued(conn, job_id, b"\x30\x01")
    # Issued jobs are never handed out again, even long after the lease.
    assert _claim(engine, "b", T0 + dt.timedelta(days=1)) is None
    with engine.connect() as conn:
        got = repo.get_certificate(conn, ca.owner, job_id)
    assert got is not None
    assert (got.status, got.serial, got.lease_owner, got.certificate) == (
        "ISSUED",
        "abc",
        None,
        b"\x30\x01",
    )


def test_job_reserved_by_a_dead_worker_is_reclaimed_with_its_tbs(engine: Engine) -> None:
    _, (job_id,) = _setup_jobs(engine, 1)
    job = _claim(engine, "dies")
    assert job is not None
    with engine.begin() as conn:
        repo.reserve_claimed(conn, dataclasses.replace(job, serial="beef", tbs=b"TBS"), "dies")
    assert _claim(engine, "b", T0 + dt.timedelta(seconds=1)) is None  # lease still held
    retry = _claim(engine, "b", T0 + dt.timedelta(seconds=LEASE + 1))
    assert retry is not None
    assert (retry.status, retry.serial, retry.tbs, retry.lease_owner) == (
        "RESERVED",
        "beef",
        b"TBS",
        "b",
    )


def test_claimed_job_with_used_serial_is_already_exists(engine: Engine) -> None:
    ca, _ = _setup_jobs(engine, 1)
    with engine.begin() as conn:
        repo.reserve_certificate(
            conn,
            repo.CertificateRow(
                identifier="x",
                owner=ca.owner,
                issuer_identifier=ca.identifier,
                status="RESERVED",
                kind="SERVER",
                created_at=T0,
                updated_at=T0,
                serial="abc",
                tbs=b"t",
            ),
        )
    job = _claim(engine, "a")
    assert job is not None
    with pytest.raises(AlreadyExists) as e, engine.begin() as conn:
        repo.reserve_claimed(conn, dataclasses.replace(job, serial="abc", tbs=b"t"), "a")
    assert e.value.reason == "AlreadyExists.SerialNumber"


def test_failed_rows_are_never_claimed_synchronous_ones_once_left_over(
        engine: Engine) -> None:
    ca, (job_id,) = _setup_jobs(engine, 1)
    with engine.begin() as conn:
        assert repo.mark_failed(conn, job_id, "bad CSR")
        # A synchronous reservation: held by its call while it is younger than a lease; a
        # crash's leftover after that, for the recovery pass to sign again (or revoke).
        repo.reserve_certificate(
            conn,
            repo.CertificateRow(
                identifier="sync",
                owner=ca.owner,
                issuer_identifier=ca.identifier,
                status="RESERVED",
                kind="SERVER",
                created_at=T0,
                updated_at=T0,
                serial="1",
                tbs=b"t",
            ),
        )
    assert _claim(engine, "a", T0 + dt.timedelta(seconds=LEASE - 1)) is None
    leftover = _claim(engine, "a", T0 + dt.timedelta(seconds=LEASE + 1))
    assert leftover is not None and leftover.identifier == "sync"
    assert (leftover.status, leftover.serial, leftover.tbs) == ("RESERVED", "1", b"t")
    # Leased now: nobody else takes it until the lease runs out; the FAILED job, never.
    assert _claim(engine, "b", T0 + dt.timedelta(seconds=LEASE + 2)) is None
    again = _claim(engine, "b", T0 + dt.timedelta(seconds=3 * LEASE))
    assert again is not None and again.identifier == "sync"  # the FAILED job is never taken


def test_leases_are_renewed_and_given_back(engine: Engine) -> None:
    _, (first, second) = _setup_jobs(engine, 2)
    job = _claim(engine, "a")
    assert job is not None and job.identifier == first
    with engine.begin() as conn:
        # Renewed while the job runs: still held after the first lease would have run out.
        assert repo.renew_lease(conn, first, "a", T0 + dt.timedelta(seconds=3 * LEASE))
        # Only by its holder, and only one job: the other is not "a"'s.
        assert not repo.renew_lease(conn, first, "b", T0 + dt.timedelta(seconds=3 * LEASE))
        assert not repo.renew_lease(conn, second, "a", T0 + dt.timedelta(seconds=3 * LEASE))
    taken = _claim(engine, "b", T0 + dt.timedelta(seconds=2 * LEASE))
    assert taken is not None and taken.identifier == second  # not the renewed one
    with engine.begin() as conn:
        # A worker that stops cleanly gives its leases back: claimable at once.
        assert repo.release_leases(conn, "a", T0 + dt.timedelta(seconds=1)) == 1
        assert repo.release_leases(conn, "a", T0 + dt.timedelta(seconds=1)) == 0
    back = _claim(engine, "c", T0 + dt.timedelta(seconds=2))
    assert back is not None and back.identifier == first


def test_a_call_that_lost_its_job_to_a_worker_leaves_the_job_to_it(engine: Engine) -> None:
    # A synchronous call with a custom_identifier holds its job's lease; if the lease runs
    # out while the call waits, a job thread claims the job and issues it. The call then
    # fails (its own reservation is refused), and settling its job must leave the job to
    # the worker that holds it now, not mark it FAILED under that worker's hands.
    ca = ca_row()
    job = pending_job(ca, lease_owner="sync-call", lease_expires_at=T0 + dt.timedelta(seconds=1))
    with engine.begin() as conn:
        repo.insert_ca(conn, ca)
        repo.insert_pending(conn, job)
    claimed = _claim(engine, "worker-took-over", T0 + dt.timedelta(seconds=5))
    assert claimed is not None and claimed.identifier == job.identifier
    store = Store(engine)
    try:
        JobQueue(store, lambda: T0 + dt.timedelta(seconds=6)).abandon(
            JobLease(job.identifier, "sync-call"),
            FailedPrecondition("the job is no longer leased by this call",
                               reason="IncorrectStatus.Certificate"))
    finally:
        store.close()
    with engine.connect() as conn:
        row = repo.get_certificate(conn, ca.owner, job.identifier)
    assert row is not None
    assert (row.status, row.lease_owner) == ("PENDING", "worker-took-over")
