"""`hsmca serve` with two workers: /metrics sums both processes, and each worker's audit
chain verifies after a clean shutdown."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from serve_support import REPO, ServeProcess, init_state, serve_env

CHECK = "/grpc.health.v1.Health/Check"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_state(tmp_path_factory.mktemp("serve-ops-state"))


def _checks_counted(server: ServeProcess) -> float:
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - test URL
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "hsmca_jobs_queue_depth" in families
    return sum(s.value for s in families["hsmca_rpc_calls"].samples
               if s.name == "hsmca_rpc_calls_total" and s.labels.get("method") == CHECK
               and s.labels.get("code") == "OK")


def _check(server: ServeProcess, n: int) -> None:
    for _ in range(n):  # a new channel each time: the kernel spreads them over the workers
        with grpc.insecure_channel(server.target) as ch:
            health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="hsmca.v1.PrivateCa"), timeout=5)


def test_metrics_sum_over_workers_and_audit_chains_verify(state: Path) -> None:
    server = ServeProcess(state, workers=2, HSMCA_AUDIT_CHECKPOINT_SECONDS="1")
    try:
        _check(server, 10)
        seen = {_checks_counted(server) for _ in range(10)}
        # Whichever worker answers the scrape, it reports the sum over both.
        assert len(seen) == 1
        (before,) = seen
        assert before >= 10
        _check(server, 5)
        assert _checks_counted(server) == before + 5
    finally:
        assert server.stop() == 0
    verify = subprocess.run([sys.executable, "-m", "service.cli", "audit", "verify"],
                            env=serve_env(state), cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "2 chain(s)" in verify.stderr and "0 finding(s)" in verify.stderr
