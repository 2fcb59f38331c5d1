"""`hsmca serve` as a user runs it: worker processes, health, drain on SIGTERM, clear errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_support import REPO, ServeProcess, free_port, init_state, serve_env

from service.gen.hsmca.v1 import private_ca_pb2, private_ca_pb2_grpc


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_state(tmp_path_factory.mktemp("serve-state"))


@pytest.fixture(scope="module")
def server(state: Path) -> Iterator[ServeProcess]:
    srv = ServeProcess(state, workers=2)
    yield srv
    srv.stop()


def _thread_cpus(pid: int) -> dict[int, set[int]]:
    """CPUs each thread of ``pid`` may run on (Linux /proc)."""
    cpus: dict[int, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "status").read_text()
        listed = re.search(r"^Cpus_allowed_list:\s*(\S+)", text, re.M)
        assert listed is not None
        allowed: set[int] = set()
        for part in listed.group(1).split(","):
            lo, _, hi = part.partition("-")
            allowed.update(range(int(lo), int(hi or lo) + 1))
        cpus[int(task.name)] = allowed
    return cpus


def _worker_pids(server: ServeProcess) -> list[int]:
    found = re.findall(r"pids \[([0-9, ]+)\]", server.log.read_text())[0]
    return [int(p) for p in found.split(",")]


def test_two_workers_share_the_port_and_answer(server: ServeProcess) -> None:
    log = server.log.read_text()
    assert "2 worker process(es)" in log
    # New connections are spread over the workers by the kernel; every one answers.
    for _ in range(10):
        with grpc.insecure_channel(server.target) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="hsmca.v1.KmsCertificates"), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_workers_run_with_the_grpc_experiments_default(server: ServeProcess) -> None:
    from service.serve import GRPC_EXPERIMENTS_DEFAULT

    pids = _worker_pids(server)
    assert len(pids) == 2
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"GRPC_EXPERIMENTS={GRPC_EXPERIMENTS_DEFAULT}".encode() in environ


def test_each_worker_runs_on_its_own_cpu(server: ServeProcess) -> None:
    from service.serve import worker_cpus

    allowed = os.sched_getaffinity(0)
    expected = worker_cpus(2, allowed, pin=True)
    pids = _worker_pids(server)
    for pid, cpu in zip(pids, expected, strict=True):
        threads = _thread_cpus(pid)
        assert len(threads) > 2  # gRPC's and the pool's threads, not just the main one
        # Every thread, including those gRPC started after the pin, stays on the worker's CPU.
        want = allowed if cpu is None else {cpu}
        assert set(map(frozenset, threads.values())) == {frozenset(want)}, (pid, threads)
    if len(allowed) >= 2:
        assert expected[0] != expected[1]
        assert f"CPUs {expected}" in server.log.read_text()


def test_pin_workers_false_leaves_workers_on_every_cpu(state: Path) -> None:
    srv = ServeProcess(state, workers=2, HSMCA_GRPC_PIN_WORKERS="false")
    try:
        allowed = os.sched_getaffinity(0)
        for pid in _worker_pids(srv):
            assert set(map(frozenset, _thread_cpus(pid).values())) == {frozenset(allowed)}
        assert "CPUs ['any', 'any']" in srv.log.read_text()
    finally:
        assert srv.stop() == 0


def test_migrated_database_lives_under_the_state_dir(server: ServeProcess, state: Path) -> None:
    assert (state / "hsmca.db").is_file()


def test_sigterm_drains_an_in_flight_call(state: Path) -> None:
    srv = ServeProcess(state, workers=1)
    result: dict[str, object] = {}

    def slow_call() -> None:
        # RSA-4096 key generation in SoftHSM takes a second or more: long enough to be
        # in flight when SIGTERM arrives.
        with grpc.insecure_channel(srv.target) as ch:
            try:
                result["response"] = private_ca_pb2_grpc.PrivateCaStub(ch).CreateRootCACertificate(
                    private_ca_pb2.CreateRootCACertificateRequest(
                        common_name="Drain Root", organization="Example",
                        organization_unit="PKI", country_code="CN", state="Zhejiang",
                        locality="Hangzhou", algorithm="RSA_4096", years=5),
                    timeout=60)
            except grpc.RpcError as e:
                result["error"] = e

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.4)
    code = srv.stop()
    t.join(60)
    assert code == 0, srv.log.read_text()
    assert "error" not in result, result.get("error")
    response = result["response"]
    assert isinstance(response, private_ca_pb2.CreateRootCACertificateResponse)
    assert response.identifier and "BEGIN CERTIFICATE" in response.certificate
    assert "draining in-flight calls" in srv.log.read_text()


def _serve_once(state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--workers", "1"],
        env=serve_env(state, HSMCA_GRPC_LISTEN=f"127.0.0.1:{free_port()}", **env),
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def test_wrong_pin_is_a_clear_error(state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pin"
    bad.write_text("000000")
    out = _serve_once(state, HSMCA_HSM_PIN_SOURCE=f"file:{bad}")
    assert out.returncode == 2
    assert "refused the PIN" in out.stderr and "CKR_PIN_INCORRECT" in out.stderr
    assert "000000" not in out.stderr + out.stdout
    # One wrong attempt must not have locked the token: the right PIN still logs in.
    check = subprocess.run(
        [sys.executable, "-c",
         "from service.cli import _preflight; from service.config import load_config; "
         "_preflight(load_config()); print('login ok')"],
        env=serve_env(state), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "login ok" in check.stdout, check.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HSMCA_GRPC_WORKERS": "x"}, "grpc.workers"),
        ({"HSMCA_HSM_TOKEN_LABEL": "no-such-token"}, "no token labelled 'no-such-token'"),
        ({"HSMCA_HSM_MODULE": "/nonexistent/libpkcs11.so"}, "/nonexistent/libpkcs11.so"),
        ({"HSMCA_HSM_PIN_SOURCE": "env:HSMCA_TEST_UNSET_PIN"}, "HSMCA_TEST_UNSET_PIN is unset"),
    ],
)
def test_config_errors_are_clear(state: Path, env: dict[str, str], message: str) -> None:
    out = _serve_once(state, **env)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_command_brings_a_new_database_to_head(tmp_path: Path) -> None:
    from service.storage.db import create_engine_for, current_revision, head_revision

    out = subprocess.run([sys.executable, "-m", "service.cli", "migrate"],
                         env=serve_env(tmp_path), capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    engine = create_engine_for(f"sqlite:///{tmp_path / 'hsmca.db'}")
    try:
        assert current_revision(engine) == head_revision() is not None
    finally:
        engine.dispose()
