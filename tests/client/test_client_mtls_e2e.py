"""The CLI and the client against `hsmca serve` over real mTLS, with the default credentials.

The state dir is a fresh one: `hsmca serve` bootstraps its tls/ (operations CA, server and
admin certificates), and the policy written first gives the admin a small read quota, so the
server itself answers RESOURCE_EXHAUSTED with RetryInfo and the client's retries are seen
against the real rate limiter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from service.client import HsmcaClient, Refused, RetryPolicy
from service.config import load_config
from tests.e2e.serve_support import REPO, ServeProcess, init_state, serve_env

pytestmark = pytest.mark.slow

POLICY = """
[roles.admin]
actions = ["*"]
rate_per_second = 1000
key_use_per_second = 1000
reads_per_second = 2

[[principals]]
id = "admin"
tenant = "default"
roles = ["admin"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    state = init_state(tmp_path_factory.mktemp("client-mtls"))
    (state / "policy.toml").write_text(POLICY)
    srv = ServeProcess(state, workers=1, HSMCA_GRPC_INSECURE="false")
    yield srv
    srv.stop()


def hsmca(server: ServeProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    """`hsmca ARGV` as a user on the server's machine runs it: no credentials given."""
    env = serve_env(server.state, HSMCA_GRPC_INSECURE="false", HSMCA_TARGET=server.target)
    done = subprocess.run([sys.executable, "-m", "service.cli", *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_cli_uses_var_tls_by_default(server: ServeProcess, tmp_path: Path) -> None:
    root = hsmca(server, "pca", "create-root-ca-certificate", "--common-name", "mTLS Root",
                 "--organization", "hsmca", "--country-code", "CN", "--algorithm", "ECC_256",
                 "--years", "2", "--json")
    assert root.returncode == 0, root.stderr
    sub = hsmca(server, "pca", "create-sub-ca-certificate", "--parent-identifier",
                json.loads(root.stdout)["identifier"], "--common-name", "mTLS Sub",
                "--organization", "hsmca", "--country-code", "CN", "--algorithm", "ECC_256",
                "--years", "1", "--json")
    assert sub.returncode == 0, sub.stderr
    issued = hsmca(server, "pca", "issue-server", "--parent-identifier",
                   json.loads(sub.stdout)["identifier"], "--name", "mtls.example.com",
                   "--out", str(tmp_path / "c.pem"), "--key-out", str(tmp_path / "k.pem"))
    assert issued.returncode == 0, issued.stderr
    assert x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    # Plaintext is no way in: the server wants a client certificate.
    refused = hsmca(server, "pca", "describe-ca-certificate-list", "--insecure",
                    "--attempts", "1", "--timeout", "5")
    assert refused.returncode == 3, refused.stderr


def test_the_client_waits_out_the_real_rate_limit(server: ServeProcess) -> None:
    config = load_config(env={"HSMCA_STATE_DIR": str(server.state)})
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    channel = HsmcaClient.connect(server.target, config=config, insecure=False).channel
    patient = HsmcaClient(channel, retry=RetryPolicy(max_attempts=20), sleep=sleep)
    impatient = HsmcaClient(channel, retry=RetryPolicy(max_attempts=1))
    try:
        # Two reads a second: a burst of calls runs into the quota.
        with pytest.raises(Refused) as e:
            for _ in range(20):
                impatient.pca.describe_ca_certificate_list(show_size=1)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert e.value.reason.startswith("LimitExceeded")
        assert e.value.retry_delay is not None and 0 < e.value.retry_delay <= 1
        # The patient client gets every answer, having waited what the server asked.
        for _ in range(3):
            assert patient.pca.describe_ca_certificate_list(show_size=1).request_id
        assert waits and all(0 < w <= 1 for w in waits)
    finally:
        channel.close()
