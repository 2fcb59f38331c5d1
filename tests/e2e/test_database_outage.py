"""A PostgreSQL restart under load, injected for real into a running `hsmca serve`.

The server (two workers) and the database (a private cluster of this test) run while a
client issues certificates and asynchronous jobs are queued; the cluster is stopped and
started again (pg_ctl). Wanted: calls that meet the outage answer UNAVAILABLE with the reason
ServiceUnavailable.Database (never INTERNAL); the service recovers as soon as the database
is back, without a restart; every asynchronous job is issued exactly once, none FAILED.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from grpc_health.v1 import health_pb2
from serve_support import (
    ServeProcess,
    create_ecc_hierarchy,
    health_status,
    init_state,
    issue_server_certificate,
    server_csr,
)

from service.rpc.client import error_info

pytestmark = pytest.mark.slow

DATABASE_REASON = "ServiceUnavailable.Database"
DOWN_SECONDS = 2.5
RECOVERY_BOUND_SECONDS = 15.0


CSR = server_csr("outage.example")


def _issue(target: str, parent: str, immediately: int = 1) -> Any:
    return issue_server_certificate(target, parent, CSR, immediately)


_health = health_status


def test_postgresql_restart_under_load(private_postgres: Any, tmp_path: Path) -> None:
    cluster = private_postgres  # of this test only: restarting it disturbs no other test
    url = cluster.create_database("outage")
    state = init_state(tmp_path / "state")
    # A short lease: a job whose worker met the outage while deferring it is deferred by the
    # worker's next claim, or else taken by the other worker once its lease runs out.
    srv = ServeProcess(state, workers=2, HSMCA_DATABASE_URL=url,
                       HSMCA_JOBS_POLL_SECONDS="0.1", HSMCA_JOBS_LEASE_SECONDS="3")
    calls: list[tuple[float, grpc.StatusCode, str]] = []
    jobs: list[str] = []
    stop = threading.Event()
    try:
        _, issuer = create_ecc_hierarchy(srv.target, "outage")

        def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    # Every fifth call queues a job: some are in flight at the outage.
                    resp = _issue(srv.target, issuer, immediately=0 if n % 5 == 0 else 1)
                    if n % 5 == 0:
                        jobs.append(resp.identifier)
                    calls.append((time.monotonic(), grpc.StatusCode.OK, ""))
                except grpc.RpcError as e:
                    code, reason = error_info(e)  # type: ignore[arg-type]
                    calls.append((time.monotonic(), code, reason))
                    time.sleep(0.05)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        down_at = time.monotonic()
        cluster.stop("fast")
        seen_not_serving = False
        while time.monotonic() - down_at < DOWN_SECONDS:
            try:
                seen_not_serving |= _health(srv.target) == \
                    health_pb2.HealthCheckResponse.NOT_SERVING
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        cluster.start()
        up_at = time.monotonic()

        deadline = up_at + RECOVERY_BOUND_SECONDS
        streak = 0
        while streak < 20:
            assert time.monotonic() < deadline, srv.log.read_text()[-6000:]
            try:
                _issue(srv.target, issuer)
                serving = _health(srv.target) == health_pb2.HealthCheckResponse.SERVING
                streak = streak + 1 if serving else 0
            except grpc.RpcError:
                streak = 0
            if streak == 0:
                time.sleep(0.1)
        recovered_in = time.monotonic() - up_at
        stop.set()
        for t in threads:
            t.join(60)

        failures = {(code, reason) for _, code, reason in calls if code != grpc.StatusCode.OK}
        assert failures, "no call met the outage"
        assert failures == {(grpc.StatusCode.UNAVAILABLE, DATABASE_REASON)}, failures
        assert seen_not_serving, "health never reported NOT_SERVING while the database was down"
        during = sum(1 for t, _, _ in calls if down_at <= t <= up_at)
        print(f"{len(calls)} calls, {during} during the outage, "
              f"{sum(c != grpc.StatusCode.OK for _, c, _ in calls)} UNAVAILABLE; "
              f"recovered in {recovered_in:.2f}s after the restart")

        # Every queued job is issued exactly once; none FAILED.
        assert jobs
        engine = sqlalchemy.create_engine(url)
        try:
            deadline = time.monotonic() + 60
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(sqlalchemy.text(
                        "SELECT identifier, status, serial FROM certificate "
                        "WHERE identifier = ANY(:ids)"), {"ids": jobs}).all()
                statuses = {r.status for r in rows}
                if statuses <= {"ISSUED"} or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert len(rows) == len(jobs)
            assert statuses == {"ISSUED"}, (rows, srv.log.read_text()[-6000:])
            with engine.connect() as conn:
                duplicates = conn.execute(sqlalchemy.text(
                    "SELECT issuer_identifier, serial FROM certificate WHERE serial IS NOT NULL "
                    "GROUP BY issuer_identifier, serial HAVING count(*) > 1")).all()
            assert duplicates == []
        finally:
            engine.dispose()
    finally:
        stop.set()
        assert srv.stop() == 0
