"""/metrics: names and labels, the database gauges, and sums over worker processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from service import metrics
from service.storage.db import create_engine_for, migrate
from service.storage.schema import ca as ca_t
from service.storage.schema import certificate as cert_t
from service.storage.schema import crl as crl_t

REPO = Path(__file__).resolve().parent.parent


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


_COUNTING_SCRIPT = """
import json
from prometheus_client.parser import text_string_to_metric_families
from service import metrics

def samples():
    return {(s.name, json.dumps(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples}

before = samples()
metrics.rpc_call("/hsmca.v1.PrivateCa/CreateClientCertificate", "OK", 0.002)
metrics.rpc_call("/hsmca.v1.PrivateCa/CreateClientCertificate", "NOT_FOUND", 0.001)
with metrics.token_operation("sign", "ECDSA_SHA256"):
    pass
try:
    with metrics.token_operation("sign", "ECDSA_SHA256"):
        raise RuntimeError("token error")
except RuntimeError:
    pass
metrics.db_commit(0.0003)
metrics.refusal("authz")
metrics.certificate_issued("ca-1", "SERVER")
after = samples()
print(json.dumps([[name, labels, value - before.get((name, labels), 0.0)]
                  for (name, labels), value in after.items()]))
"""


def test_calls_token_operations_and_commits_are_counted() -> None:
    # In a fresh interpreter: this process's registry also counts what other tests' services
    # still do in the background (a CRL they sign), which would fall inside the window.
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    done = subprocess.run([sys.executable, "-c", _COUNTING_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    deltas = {(name, labels): value for name, labels, value in json.loads(done.stdout)}

    def delta(name: str, **labels: str) -> float:
        return deltas.get((name, json.dumps(sorted(labels.items()))), 0.0)

    method = "/hsmca.v1.PrivateCa/CreateClientCertificate"
    assert delta("hsmca_rpc_calls_total", method=method, code="OK") == 1
    assert delta("hsmca_rpc_calls_total", method=method, code="NOT_FOUND") == 1
    assert delta("hsmca_rpc_duration_seconds_count", method=method) == 2
    assert delta("hsmca_token_operations_total", operation="sign", mechanism="ECDSA_SHA256",
                 outcome="ok") == 1
    assert delta("hsmca_token_operations_total", operation="sign", mechanism="ECDSA_SHA256",
                 outcome="error") == 1
    assert delta("hsmca_token_operation_duration_seconds_count", operation="sign",
                 mechanism="ECDSA_SHA256") == 2
    assert delta("hsmca_db_commit_duration_seconds_count") == 1
    assert delta("hsmca_refusals_total", kind="authz") == 1
    assert delta("hsmca_certificates_issued_total", ca="ca-1", profile="SERVER") == 1


def test_database_gauges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    engine = create_engine_for(url)
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    ca = {c.name: None for c in ca_t.columns}
    ca.update(identifier="c" * 36, owner="o", kind="ROOT", common_name="x", subject_der=b"0",
              algorithm="ECC_256", key_token="hsm", key_id="00", public_key_info=b"0",
              serial="1", not_before=now, not_after=now, enable_crl=True, last_crl_number=2,
              revocation_count=0,
              status="ISSUE", tags={}, created_at=now, updated_at=now)
    with engine.begin() as conn:
        conn.execute(insert(ca_t), [ca])
        for n, age in ((1, 7200), (2, 600)):
            conn.execute(insert(crl_t), [dict(
                ca_identifier="c" * 36, crl_number=n, owner="o",
                this_update=now - dt.timedelta(seconds=age),
                next_update=now + dt.timedelta(days=1), der=b"x" * (100 + n),
                created_at=now)])
        for i, age in enumerate((30, 90)):
            conn.execute(insert(cert_t), [dict(
                identifier=f"{i:036d}", owner="o", issuer_identifier="c" * 36,
                status="PENDING", kind="SERVER", sans=[], asynchronous=True, attempts=0,
                tags={}, enable_crl=False, created_at=now - dt.timedelta(seconds=age),
                updated_at=now)])
    got = _samples(metrics.render(metrics.DatabaseCollector(engine, clock=lambda: now)))
    engine.dispose()
    assert got[("hsmca_jobs_queue_depth", ())] == 2
    assert got[("hsmca_jobs_oldest_age_seconds", ())] == 90
    assert got[("hsmca_crl_age_seconds", (("ca", "c" * 36),))] == 600  # the current CRL
    assert got[("hsmca_crl_size_bytes", (("ca", "c" * 36),))] == 102
    assert got[("hsmca_crl_next_update_seconds", (("ca", "c" * 36),))] == 86400


_CHILD = """
from service import metrics
for _ in range({n}):
    metrics.rpc_call("/hsmca.v1.KmsCertificates/CreateCertificate", "OK", 0.01)
"""


def test_worker_processes_sum(tmp_path: Path, monkeypatch) -> None:
    directory = tmp_path / "prom"
    env = {**os.environ}
    monkeypatch.setattr(os, "environ", env)  # prepare_multiprocess_dir exports into it
    metrics.prepare_multiprocess_dir(directory)
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", _CHILD.format(n=n)], env=env, cwd=REPO,
                       check=True)
    got = _samples(metrics.render())
    key = ("hsmca_rpc_calls_total", (("code", "OK"),
                                     ("method", "/hsmca.v1.KmsCertificates/CreateCertificate")))
    assert got[key] == 7
    # A new run starts from nothing.
    metrics.prepare_multiprocess_dir(directory)
    assert key not in _samples(metrics.render())
