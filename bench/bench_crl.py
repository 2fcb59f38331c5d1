"""CRLs at scale: revocation latency, CRL size and issuance while revocations run.

    python bench/bench_crl.py [--issued N] [--revoked R] [--seconds S] [--workers W]
                              [--concurrency C] [--revokers T] [--postgresql | --database-url URL]

Starts the real service (as bench_issuance.py does: N worker processes, temporary SoftHSM
state, SQLite unless told otherwise), creates an ECC_256 root -> sub CA with CRLs, and seeds
the sub CA with N issued certificates of which R revoked straight into the database (rows as
issuance leaves them, with random serials; signing 100k certificates through the token would
take the benchmark's whole budget and measure something else). Then it measures, in the same
run:

- one revocation: the latency of CreateRevokeClientCertificate (median and p90 of 30, one at
  a time), and how long until the CRL served over HTTP lists the serial;
- the CRL: size in bytes and entries;
- issuance (CreateServerCertificateWithCsr, python client) for S seconds without
  revocations, then for S seconds while T threads revoke certificates one after another; the
  ratio of the two (target: >= 0.8);
- the database: its size, and the CRLs it holds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench", REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

SEED_CHUNK = 5000


def _stub(target: str) -> Any:
    import grpc

    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    return private_ca_pb2_grpc.PrivateCaStub(grpc.insecure_channel(target))


def _hierarchy(target: str) -> str:
    from service.gen.hsmca.v1 import private_ca_pb2 as pb

    stub = _stub(target)
    root = stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
        common_name="crl bench root", organization="hsmca bench", country_code="CN",
        algorithm="ECC_256", years=10, enable_crl=1, crl_day=7), timeout=60)
    sub = stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
        parent_identifier=root.identifier, common_name="crl bench sub",
        organization="hsmca bench", country_code="CN", algorithm="ECC_256", years=5,
        enable_crl=1, crl_day=7), timeout=60)
    return str(sub.identifier)


def seed(url: str, ca_identifier: str, issued: int, revoked: int) -> float:
    """Insert ``issued`` ISSUED rows under the CA, ``revoked`` of them REVOKED; seconds."""
    from sqlalchemy import insert

    from service.storage.db import create_engine_for
    from service.storage.schema import certificate as cert_t

    engine = create_engine_for(url)
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        for start in range(0, issued, SEED_CHUNK):
            rows = []
            for i in range(start, min(issued, start + SEED_CHUNK)):
                is_revoked = i < revoked
                created = now - dt.timedelta(seconds=issued - i)
                rows.append({
                    "identifier": str(uuid.uuid4()), "owner": "default",
                    "issuer_identifier": ca_identifier,
                    "serial": format(int.from_bytes(secrets.token_bytes(16)) >> 1, "x"),
                    "status": "REVOKED" if is_revoked else "ISSUED", "kind": "SERVER",
                    # As large as what issuance stores (an ECC leaf and its TBS).
                    "tbs": secrets.token_bytes(420), "certificate": secrets.token_bytes(560),
                    "common_name": f"seed{i}.bench.example", "subject_der": b"\x30\x00",
                    "sans": [], "not_before": created,
                    "not_after": created + dt.timedelta(days=90), "asynchronous": False,
                    "attempts": 0, "tags": {}, "enable_crl": True,
                    "revoked_at": created if is_revoked else None,
                    "revocation_reason": 1 if is_revoked and i % 2 else None,
                    "created_at": created, "updated_at": created,
                })
            with engine.begin() as conn:
                conn.execute(insert(cert_t), rows)
    finally:
        engine.dispose()
    return time.monotonic() - started


def _issue_one(stub: Any, sub: str, csr: str) -> str:
    from service.gen.hsmca.v1 import private_ca_pb2 as pb

    resp = stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        parent_identifier=sub, csr=csr, days=30, immediately=1), timeout=30)
    return str(resp.identifier)


def _revoke(stub: Any, identifier: str) -> float:
    from service.gen.hsmca.v1 import private_ca_pb2 as pb

    started = time.perf_counter()
    stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=identifier, reason_code=4), timeout=60)
    return time.perf_counter() - started


def _crl(http_port: int, ca: str) -> bytes:
    with urllib.request.urlopen(  # noqa: S310 - our own loopback server
            f"http://127.0.0.1:{http_port}/crl/{ca}.crl", timeout=30) as resp:
        data: bytes = resp.read()
        return data


def _serial_of(stub: Any, identifier: str) -> int:
    from service.gen.hsmca.v1 import private_ca_pb2 as pb

    st = stub.DescribeClientCertificateStatus(pb.DescribeClientCertificateStatusRequest(
        identifier=identifier), timeout=10).certificate_status[0]
    return int(st.serial_number, 16)


def _database_facts(url: str) -> tuple[int, int, int]:
    """(database bytes, CRL rows, CRL bytes stored)."""
    from sqlalchemy import func, select, text
    from sqlalchemy.engine import make_url

    from service.storage.db import create_engine_for
    from service.storage.schema import crl as crl_t

    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            rows, stored = conn.execute(
                select(func.count(), func.coalesce(func.sum(func.length(crl_t.c.der)), 0))
            ).one()
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                path = Path(parsed.database or "")
                size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
            else:
                size = int(conn.execute(text("SELECT pg_database_size(current_database())"))
                           .scalar_one())
        return size, int(rows), int(stored)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its report."""
    from bench_issuance import _free_port, _issue_rate, _make_csrs, _service
    from cryptography import x509

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issued", type=int, default=100_000)
    p.add_argument("--revoked", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=8.0, help="length of one issuance run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--concurrency", type=int, default=16, help="issuance calls in flight")
    p.add_argument("--clients", type=int, default=2, help="issuance client processes")
    p.add_argument("--revokers", type=int, default=2, help="revoking threads during the run")
    p.add_argument("--database-url", default="", help="SQLAlchemy URL (default: SQLite)")
    p.add_argument("--postgresql", action="store_true",
                   help="run on a private PostgreSQL cluster started for the benchmark")
    args = p.parse_args(argv)

    cluster: Any = None
    url = args.database_url
    if args.postgresql:
        from pg_support import PostgresCluster, server_bin_dir

        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise SystemExit("no PostgreSQL server under /usr/lib/postgresql")
        cluster = PostgresCluster(bin_dir)
        cluster.start()
        url = cluster.create_database("bench_crl")
    ctx = multiprocessing.get_context("spawn")
    try:
        with tempfile.TemporaryDirectory(prefix="hsmca-bench-crl-") as tmp:
            state = Path(tmp)
            url = url or f"sqlite:///{state / 'hsmca.db'}"
            port, http_port = _free_port(), _free_port()
            with _service(state, args.workers, port, overrides={
                    "HSMCA_DATABASE_URL": url, "HSMCA_HTTP_LISTEN": f"127.0.0.1:{http_port}"}):
                target = f"127.0.0.1:{port}"
                sub = _hierarchy(target)
                seconds = seed(url, sub, args.issued, args.revoked)
                print(f"database: {url.split('://')[0]}; seeded {args.issued} certificates, "
                      f"{args.revoked} revoked, in {seconds:.1f}s")
                csrs = _make_csrs("ECC_256")
                stub = _stub(target)
                pool = [_issue_one(stub, sub, csrs[i % len(csrs)]) for i in range(400)]

                # One revocation at a time: latency, and until the served CRL lists it.
                latencies, visible = [], []
                for _ in range(30):
                    identifier = pool.pop()
                    serial = _serial_of(stub, identifier)
                    t0 = time.perf_counter()
                    latencies.append(_revoke(stub, identifier))
                    while True:
                        crl = x509.load_der_x509_crl(_crl(http_port, sub))
                        if crl.get_revoked_certificate_by_serial_number(serial) is not None:
                            break
                        time.sleep(0.01)
                    visible.append(time.perf_counter() - t0)
                latencies.sort()
                der = _crl(http_port, sub)
                entries = len(x509.load_der_x509_crl(der))
                print(f"one revocation: median {statistics.median(latencies) * 1000:.0f} ms, "
                      f"p90 {latencies[int(len(latencies) * 0.9)] * 1000:.0f} ms; on the "
                      f"served CRL after median {statistics.median(visible) * 1000:.0f} ms, "
                      f"max {max(visible) * 1000:.0f} ms")
                print(f"CRL: {len(der)} bytes, {entries} entries")

                base, results = _issue_rate(ctx, target, sub, csrs, args.concurrency,
                                            args.clients, args.seconds)
                for r in results:
                    if r.first_error:
                        print(f"issuance error: {r.first_error} ({r.errors} errors)")
                if not base:
                    raise SystemExit("no certificate was issued in the first run")
                stop = threading.Event()
                revoked_during: list[float] = []

                def revoker() -> None:
                    own = _stub(target)
                    while not stop.is_set() and pool:
                        try:
                            identifier = pool.pop()
                        except IndexError:
                            return
                        revoked_during.append(_revoke(own, identifier))

                threads = [threading.Thread(target=revoker, daemon=True)
                           for _ in range(args.revokers)]
                for t in threads:
                    t.start()
                loaded, _ = _issue_rate(ctx, target, sub, csrs, args.concurrency,
                                        args.clients, args.seconds)
                stop.set()
                for t in threads:
                    t.join(120)
                print(f"issuance: {base:.0f} certs/s without revocations, {loaded:.0f} certs/s "
                      f"while {args.revokers} threads revoked ({len(revoked_during)} "
                      f"revocations, median {statistics.median(revoked_during) * 1000:.0f} ms)"
                      f"; ratio {loaded / base:.2f} (target >= 0.8)" if revoked_during else
                      f"issuance: {base:.0f} certs/s; no revocation ran during the second run")
                size, crl_rows, crl_bytes = _database_facts(url)
                print(f"database: {size / 1e6:.1f} MB; {crl_rows} CRL rows holding "
                      f"{crl_bytes / 1e6:.2f} MB")
    finally:
        if cluster is not None:
            cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
