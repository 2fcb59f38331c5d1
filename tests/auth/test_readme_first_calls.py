"""A fresh `make serve` comes up with mTLS, and the README's first calls work as written.

The README's shell blocks under "First calls" run verbatim with bash in a directory whose
`.venv` is this checkout's and whose `var/` is a fresh state dir, against `make serve`
started on free ports (the only difference from a user's run: HSMCA_GRPC_LISTEN and
HSMCA_HTTP_LISTEN, which the client reads too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.log_output import FLUSH_INTERVAL_SECONDS
from service.rpc.channel import client_channel
from tests.e2e.serve_support import REPO, free_port

pytestmark = pytest.mark.slow


def first_calls() -> list[str]:
    """The runnable ```sh blocks of the README section "First calls" (the tour of every
    command, which has `<identifier from above>` placeholders, is not meant to be pasted)."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## First calls\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [b for b in blocks if not re.search(r"<[a-z][a-z ]*>", b)]


def _wait_for_mtls(work: Path, target: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240  # make: deps check, tokens, bootstrap, workers
    tls = work / "var" / "tls"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"make serve exited:\n{log.read_text()}")
        if (tls / "admin.key").exists() and "worker process(es)" in log.read_text():
            with client_channel(target, tls, insecure=False) as ch:
                try:
                    health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=2)
                    return
                except grpc.RpcError:
                    pass
        time.sleep(0.2)
    raise AssertionError(f"make serve not serving:\n{log.read_text()}")


def test_make_serve_and_the_readme_first_calls(tmp_path: Path) -> None:
    blocks = first_calls()
    assert len(blocks) == 2 and "hsmca principal issue" in blocks[1], blocks
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HSMCA_") and k not in ("SOFTHSM2_CONF", "GRPC_EXPERIMENTS")}
    env.update(HSMCA_GRPC_LISTEN=f"127.0.0.1:{port}", HSMCA_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
               HSMCA_GRPC_WORKERS="1")
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(["make", "-C", str(REPO), "serve", f"STATE={work / 'var'}"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_for_mtls(work, f"127.0.0.1:{port}", proc, log)
        # A worker writes its INFO lines in blocks (service/log_output.py): its "gRPC server
        # ... (mTLS)" line may reach the log a flush interval after the server answers.
        until = time.monotonic() + 10 * FLUSH_INTERVAL_SECONDS
        while "mTLS" not in log.read_text() and time.monotonic() < until:
            time.sleep(FLUSH_INTERVAL_SECONDS / 4)
        served = log.read_text()
        assert "mTLS" in served and "PLAINTEXT" not in served
        # Plaintext is refused by an mTLS server.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        for block in blocks:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, (block, done.stdout, done.stderr)
        listed = json.loads(done.stdout[done.stdout.index("{"):])
        # team-a sees none of the default tenant's CAs.
        assert not listed.get("certificate_list") and not int(listed.get("total_count", 0))
        # What the README says next: a forbidden action, a name outside the role.
        as_web = {**env, "HSMCA_CLIENT_CERT": "var/principals/web.pem",
                  "HSMCA_CLIENT_KEY": "var/principals/web.key"}
        denied = subprocess.run(
            [".venv/bin/hsmca", "call", "PrivateCa/CreateRootCACertificate", "{}"], cwd=work,
            env=as_web, capture_output=True, text=True, timeout=60)
        assert denied.returncode == 1
        assert "PERMISSION_DENIED Forbidden.Action" in denied.stderr
        revoked = subprocess.run(
            [".venv/bin/hsmca", "principal", "revoke", "--cert", "var/principals/web.pem"],
            cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(1.5)
        refused = subprocess.run(
            [".venv/bin/hsmca", "call", "PrivateCa/DescribeCACertificateList", "{}"], cwd=work,
            env=as_web, capture_output=True, text=True, timeout=60)
        assert "UNAUTHENTICATED" in refused.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
