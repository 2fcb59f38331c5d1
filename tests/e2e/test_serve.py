"""`hsmca serve` as a user runs it: worker processes, health, drain on SIGTERM, clear errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.gen.hsmca.v1 import private_ca_pb2, private_ca_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HSMCA_") and k != "SOFTHSM2_CONF"}
    env["HSMCA_STATE_DIR"] = str(state)
    # Each server also binds the CRL HTTP port (issue 4): a free one, so servers coexist.
    env["HSMCA_HTTP_LISTEN"] = f"127.0.0.1:{_free_port()}"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("serve-state")
    subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(state / "softhsm")],
                   check=True, stdout=subprocess.DEVNULL)
    return state


class Server:
    def __init__(self, state: Path, workers: int) -> None:
        self.port = _free_port()
        self.log = state / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--workers", str(workers)],
            env=_env(state, HSMCA_GRPC_LISTEN=f"127.0.0.1:{self.port}"),
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=REPO,
        )
        self.target = f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            try:
                with grpc.insecure_channel(self.target) as ch:
                    resp = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service="hsmca.v1.PrivateCa"), timeout=1)
                    # The supervisor logs once every worker serves.
                    if (resp.status == health_pb2.HealthCheckResponse.SERVING
                            and "worker process(es)" in self.log.read_text()):
                        return
            except grpc.RpcError:
                time.sleep(0.2)
        raise AssertionError(f"not serving after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture(scope="module")
def server(state: Path) -> Iterator[Server]:
    srv = Server(state, workers=2)
    srv.wait_serving()
    yield srv
    srv.stop()


def test_two_workers_share_the_port_and_answer(server: Server) -> None:
    log = server.log.read_text()
    assert "2 worker process(es)" in log
    # New connections are spread over the workers by the kernel; every one answers.
    for _ in range(10):
        with grpc.insecure_channel(server.target) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="hsmca.v1.KmsCertificates"), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_migrated_database_lives_under_the_state_dir(server: Server, state: Path) -> None:
    assert (state / "hsmca.db").is_file()


def test_sigterm_drains_an_in_flight_call(state: Path) -> None:
    srv = Server(state, workers=1)
    srv.wait_serving()
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
        env=_env(state, HSMCA_GRPC_LISTEN=f"127.0.0.1:{_free_port()}", **env),
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
        env=_env(state), capture_output=True, text=True, timeout=60, cwd=REPO)
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
                         env=_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    engine = create_engine_for(f"sqlite:///{tmp_path / 'hsmca.db'}")
    try:
        assert current_revision(engine) == head_revision() is not None
    finally:
        engine.dispose()
