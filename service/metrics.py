"""Prometheus metrics: what every worker process counts, and what is read from the database.

Workers are processes, so counters and histograms use prometheus_client's multiprocess
mode: ``hsmca serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a directory of its own, emptied
at start, before the workers are spawned; each worker writes its values to memory-mapped
files there and ``GET /metrics`` (served by any worker) sums them. Without the variable
(tests, library use) the values live in this process.

Gauges that describe shared state (job queue depth and age, CRL age and size) are not kept
by any process: :class:`DatabaseCollector` reads them from the database at scrape time, so
they are right whichever worker answers.

Names follow Prometheus conventions (``hsmca_..._total``, ``_seconds``, ``_bytes``). Label
values are bounded: RPC method names, status code names, token mechanisms, CA identifiers
and profile kinds; never serials or principals.

Cost on the hot path: label children are looked up once and kept, so an observation is a
dict lookup and an increment (in multiprocess mode, a write to a memory-mapped file);
``make bench`` A/B-measures issuance with and without (bench/bench_metrics.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, func, select

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DatabaseCollector",
    "IssuanceMetrics",
    "MULTIPROC_ENV",
    "certificate_issued",
    "db_commit",
    "enabled",
    "prepare_multiprocess_dir",
    "refusal",
    "render",
    "rpc_call",
    "token_operation",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Set to 0 to record nothing (the A/B baseline of bench/bench_metrics.py).
ENABLED_ENV = "HSMCA_METRICS"

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RPC_CALLS = Counter("hsmca_rpc_calls_total", "gRPC calls served, by method and status code",
                    ["method", "code"])
RPC_DURATION = Histogram("hsmca_rpc_duration_seconds", "gRPC call latency, by method",
                         ["method"], buckets=_FAST)
CERTIFICATES_ISSUED = Counter("hsmca_certificates_issued_total",
                              "Certificates issued (recorded), by issuing CA and profile",
                              ["ca", "profile"])
TOKEN_OPERATIONS = Counter("hsmca_token_operations_total",
                           "PKCS#11 token operations, by operation, mechanism and outcome",
                           ["operation", "mechanism", "outcome"])
TOKEN_DURATION = Histogram("hsmca_token_operation_duration_seconds",
                           "PKCS#11 token operation latency, by operation and mechanism",
                           ["operation", "mechanism"], buckets=_FAST)
DB_COMMIT_DURATION = Histogram("hsmca_db_commit_duration_seconds",
                               "Latency of the group committer's database commits",
                               buckets=_FAST)
REFUSALS = Counter("hsmca_refusals_total",
                   "Calls refused before the domain ran, by kind (authn, authz, rate_limit)",
                   ["kind"])
OCSP_RESPONSES = Counter("hsmca_ocsp_responses_total",
                         "OCSP responses served, by certificate status and cache use",
                         ["status", "cache"])

_enabled = os.environ.get(ENABLED_ENV, "1") != "0"
_children: dict[tuple[Any, ...], Any] = {}


def enabled() -> bool:
    """False when ``HSMCA_METRICS=0`` (nothing is recorded)."""
    return _enabled


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def rpc_call(method: str, code: str, seconds: float) -> None:
    """One gRPC call finished with ``code`` after ``seconds``."""
    if _enabled:
        _child(RPC_CALLS, method, code).inc()
        _child(RPC_DURATION, method).observe(seconds)


def certificate_issued(ca: str, profile: str, count: int = 1) -> None:
    """Certificates recorded as issued by ``ca`` with ``profile``."""
    if _enabled:
        _child(CERTIFICATES_ISSUED, ca, profile).inc(count)


class _TokenOperation:
    """The context manager of :func:`token_operation`: a class, not a generator, because
    every certificate's signature runs in one."""

    __slots__ = ("_mechanism", "_operation", "_started")

    def __init__(self, operation: str, mechanism: str) -> None:
        self._operation = operation
        self._mechanism = mechanism

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        _child(TOKEN_DURATION, self._operation, self._mechanism).observe(
            time.perf_counter() - self._started)
        _child(TOKEN_OPERATIONS, self._operation, self._mechanism,
               "ok" if exc_type is None else "error").inc()


_NOT_COUNTED = contextlib.nullcontext()


def token_operation(operation: str, mechanism: str) -> contextlib.AbstractContextManager[None]:
    """Time a token operation; an exception counts as an error (and propagates)."""
    return _TokenOperation(operation, mechanism) if _enabled else _NOT_COUNTED


def db_commit(seconds: float) -> None:
    """One database commit of the group committer took ``seconds``."""
    if _enabled:
        DB_COMMIT_DURATION.observe(seconds)


def refusal(kind: str) -> None:
    """A call refused by authentication (authn), authorization (authz) or rate limiting."""
    if _enabled:
        _child(REFUSALS, kind).inc()


def ocsp_response(status: str, cache: str) -> None:
    """An OCSP response: status good/revoked/unknown/error; cache hit/miss/nonce."""
    if _enabled:
        _child(OCSP_RESPONSES, status, cache).inc()


def prepare_multiprocess_dir(path: Path) -> Path:
    """Empty ``path`` and point this process and its children's prometheus_client at it.

    Call before any worker is spawned (they read the variable when they import
    prometheus_client); the values of an earlier run must not be summed into this one.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def mark_process_dead(pid: int) -> None:
    """Tell multiprocess mode a worker is gone (its live gauges stop counting)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time: job queue and CRLs."""

    def __init__(self, engine: Engine, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def collect(self) -> Iterable[Any]:
        """Yield the job queue and per-CA CRL gauges."""
        from service.storage.schema import CertificateStatus
        from service.storage.schema import certificate as cert_t
        from service.storage.schema import crl as crl_t

        now = self._clock()
        depth = GaugeMetricFamily("hsmca_jobs_queue_depth",
                                  "Asynchronous issuance jobs waiting (PENDING)")
        age = GaugeMetricFamily("hsmca_jobs_oldest_age_seconds",
                                "Age of the oldest waiting job (0 when none waits)")
        crl_age = GaugeMetricFamily("hsmca_crl_age_seconds",
                                    "Time since the current CRL's thisUpdate, per CA",
                                    labels=["ca"])
        crl_next = GaugeMetricFamily("hsmca_crl_next_update_seconds",
                                     "Time until the current CRL's nextUpdate, per CA",
                                     labels=["ca"])
        crl_size = GaugeMetricFamily("hsmca_crl_size_bytes", "Size of the current CRL, per CA",
                                     labels=["ca"])
        with self._engine.connect() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(cert_t.c.created_at))
                .where(cert_t.c.status == CertificateStatus.PENDING)).one()
            latest = (select(crl_t.c.ca_identifier, func.max(crl_t.c.crl_number).label("n"))
                      .group_by(crl_t.c.ca_identifier).subquery())
            crls = conn.execute(
                select(crl_t.c.ca_identifier, crl_t.c.this_update, crl_t.c.next_update,
                       func.length(crl_t.c.der))
                .join(latest, and_(crl_t.c.ca_identifier == latest.c.ca_identifier,
                                   crl_t.c.crl_number == latest.c.n))).all()
        depth.add_metric([], float(count))
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        for ca, this_update, next_update, size in crls:
            this_update = this_update if this_update.tzinfo else this_update.replace(tzinfo=dt.UTC)
            next_update = next_update if next_update.tzinfo else next_update.replace(tzinfo=dt.UTC)
            crl_age.add_metric([ca], (now - this_update).total_seconds())
            crl_next.add_metric([ca], (next_update - now).total_seconds())
            crl_size.add_metric([ca], float(size))
        return [depth, age, crl_age, crl_next, crl_size]


def render(database: Collector | None = None) -> bytes:
    """The exposition text: every process's values (or this one's) plus ``database``'s."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if database is not None:
        extra = CollectorRegistry()
        extra.register(database)
        text += generate_latest(extra)
    return text


class IssuanceMetrics:
    """An issuance observer (service/private_ca/issuance.py) counting issued certificates."""

    def authorize(self, event: Any) -> None:
        """Nothing to count before issuance."""

    def issued(self, event: Any, certificate: bytes) -> None:
        """One certificate recorded, by issuing CA and kind (SERVER, CLIENT, CUSTOM, ...)."""
        certificate_issued(event.ca_identifier, str(event.kind))

    def failed(self, event: Any, error: BaseException) -> None:
        """Failures are counted by the RPC metrics (status code)."""
