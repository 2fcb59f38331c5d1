"""CRLs at scale: revocation latency, CRL size and issuance while revocations run.

    python bench/bench_crl.py [--issued N] [--revoked R] [--seconds S] [--workers W]
                              [--concurrency C] [--revokers T] [--rounds ROUNDS] [--warmup U]
                              [--postgresql | --database-url URL]

Starts the real service (bench/harness.py: N worker processes, temporary SoftHSM
state, SQLite unless told otherwise), creates an ECC_256 root -> sub CA with CRLs, and seeds
the sub CA with N issued certificates of which R revoked straight into the database (rows as
issuance and revocation leave them, with random serials; signing 100k certificates through
the token would take the benchmark's whole budget and measure something else). Then it
measures, in the same run:

- one revocation: the latency of CreateRevokeClientCertificate (median and p90 of 30, one at
  a time), and how long until the CRL served over HTTP lists the serial;
- the CRL: size in bytes and entries;
- issuance (CreateServerCertificateWithCsr, python client) for S seconds without
  revocations, then for S seconds while T threads revoke seeded certificates one after
  another, alternating ROUNDS times; the ratio of the medians (target: >= 0.8), with the
  revocations' rate and latency;
- the database: its size, and the CRLs it holds;
- the Python work of one re-issue's TBSCertList at R and 5R entries, encoding every entry
  against adding one to entries kept encoded (what the publisher does).
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


class _Stub:
    """A PrivateCa stub on its own channel (connection)."""

    def __init__(self, target: str) -> None:
        import grpc

        from service.gen.hsmca.v1 import private_ca_pb2_grpc

        self._channel = grpc.insecure_channel(target)
        self._stub = private_ca_pb2_grpc.PrivateCaStub(self._channel)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def close(self) -> None:
        self._channel.close()


def _stub(target: str) -> Any:
    return _Stub(target)


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


def seed(url: str, ca_identifier: str, issued: int, revoked: int,
         keep: int = 0) -> tuple[float, list[str]]:
    """Insert ``issued`` ISSUED rows under the CA, ``revoked`` of them REVOKED, as the
    service's revocations leave them (numbered, counted); seconds taken, and the identifiers
    of the last ``keep`` rows still ISSUED."""
    from sqlalchemy import insert, update

    from service.storage.db import create_engine_for
    from service.storage.schema import ca as ca_t
    from service.storage.schema import certificate as cert_t

    numbered = "revocation_seq" in cert_t.c  # (older schemas: an A/B run against them)
    engine = create_engine_for(url)
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    kept: list[str] = []
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
                    **({"revocation_seq": i + 1 if is_revoked else None} if numbered else {}),
                })
                if i >= issued - keep:
                    kept.append(rows[-1]["identifier"])
            with engine.begin() as conn:
                conn.execute(insert(cert_t), rows)
        with engine.begin() as conn:
            conn.execute(update(ca_t).where(ca_t.c.identifier == ca_identifier)
                         .values(revocation_count=ca_t.c.revocation_count + revoked))
    finally:
        engine.dispose()
    return time.monotonic() - started, kept


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


def reissue_work(sizes: Sequence[int], repeat: int = 5) -> list[tuple[int, float, float]]:
    """Per CRL size: the Python work of one re-issue after one more revocation (the
    TBSCertList; signing is one token call whatever the size), in ms, encoding every entry
    again (before) and adding the new entry to entries kept encoded (CrlEntries, now)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    sys.path.insert(0, str(REPO / "tests" / "pki_builder"))  # a CA with a software key
    from pkib_support import build_hierarchy, ec_signer

    from service.pki.crl import CrlEntries, RevokedCertificate, build_tbs_crl
    from service.pki.signer import SignatureAlgorithm

    signer = ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA)
    issuer = build_hierarchy("crl bench", signer, signer).sub_issuer
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = []
    for size in sizes:
        revoked = [RevokedCertificate(int.from_bytes(secrets.token_bytes(16)) >> 1 or 1, now)
                   for _ in range(size + repeat)]
        full, incremental = [], []
        kept = CrlEntries(revoked[:size])
        for i in range(repeat):
            t0 = time.perf_counter()
            build_tbs_crl(issuer, 2, now, now + dt.timedelta(days=1), revoked[:size + i + 1])
            t1 = time.perf_counter()
            kept.add([revoked[size + i]])
            build_tbs_crl(issuer, 2, now, now + dt.timedelta(days=1), kept)
            t2 = time.perf_counter()
            full.append(t1 - t0)
            incremental.append(t2 - t1)
        out.append((size, statistics.median(full) * 1000, statistics.median(incremental) * 1000))
    return out


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
    from cryptography import x509
    from harness import free_port, issue_rate, make_csrs, serving

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issued", type=int, default=100_000)
    p.add_argument("--revoked", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=8.0, help="length of one issuance run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--concurrency", type=int, default=16, help="issuance calls in flight")
    p.add_argument("--clients", type=int, default=2, help="issuance client processes")
    p.add_argument("--revokers", type=int, default=2, help="revoking threads during the run")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs without and with revocations, alternating (medians)")
    p.add_argument("--warmup", type=float, default=4.0,
                   help="seconds the issuance clients get to start and connect")
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
            port, http_port = free_port(), free_port()
            with serving(state, args.workers, port, overrides={
                    "HSMCA_DATABASE_URL": url, "HSMCA_HTTP_LISTEN": f"127.0.0.1:{http_port}"}):
                target = f"127.0.0.1:{port}"
                sub = _hierarchy(target)
                seconds, revocable = seed(url, sub, args.issued, args.revoked,
                                          keep=min(args.issued - args.revoked, 20_000))
                print(f"database: {url.split('://')[0]}; seeded {args.issued} certificates, "
                      f"{args.revoked} revoked, in {seconds:.1f}s")
                csrs = make_csrs("ECC_256")
                stub = _stub(target)
                pool = [_issue_one(stub, sub, csrs[i % len(csrs)]) for i in range(400)]

                # One revocation at a time: latency, and until the served CRL lists it.
                latencies, visible = [], []
                for _ in range(30):
                    identifier = pool.pop()
                    serial = _serial_of(stub, identifier)
                    # A new connection each time, so the revocations reach every worker:
                    # each one's first CRL of the CA reads every entry (once per process),
                    # which belongs here, not in the runs below.
                    own = _stub(target)
                    t0 = time.perf_counter()
                    latencies.append(_revoke(own, identifier))
                    own.close()
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

                cpu = {"base": 0.0, "base_issued": 0.0, "loaded": 0.0, "loaded_issued": 0.0}

                def measure_rate(kind: str = "base") -> float:
                    rate, results = issue_rate(ctx, target, sub, csrs, args.concurrency,
                                               args.clients, args.seconds,
                                               warmup=args.warmup)
                    for r in results:
                        if r.first_error:
                            print(f"issuance error: {r.first_error} ({r.errors} errors)")
                        if r.seconds < 0.9 * args.seconds:
                            print(f"a client ran {r.seconds:.1f}s of {args.seconds:.0f}s: it "
                                  "was not ready when the run started (raise --warmup)")
                    # The workers' CPU over the clients' window, and what was issued in it.
                    cpu[kind] += sum(r.service_cpu_seconds for r in results)
                    cpu[kind + "_issued"] += sum(r.ok for r in results)
                    return rate

                def loaded_rate() -> tuple[float, list[float], float]:
                    """Issuance while the revokers run: (rate, their latencies, seconds)."""
                    stop = threading.Event()
                    revoked: list[tuple[float, float]] = []  # (ended at, seconds)

                    def revoker() -> None:
                        # Seeded certificates: enough for every run.
                        own = _stub(target)
                        while not stop.is_set():
                            try:
                                identifier = revocable.pop()
                            except IndexError:
                                return
                            took = _revoke(own, identifier)
                            revoked.append((time.monotonic(), took))

                    threads = [threading.Thread(target=revoker, daemon=True)
                               for _ in range(args.revokers)]
                    for t in threads:
                        t.start()
                    run_from = time.monotonic() + args.warmup
                    rate = measure_rate("loaded")
                    run_to = time.monotonic()
                    stop.set()
                    for t in threads:
                        t.join(120)
                    return rate, [took for ended, took in revoked
                                  if run_from <= ended <= run_to], run_to - run_from

                # Runs without and with revocations alternate (a shared machine's load
                # drifts); the ratio is that of the medians.
                bases, loads, during, spent = [], [], [], 0.0
                for _ in range(args.rounds):
                    bases.append(measure_rate())
                    if not bases[-1]:
                        raise SystemExit("no certificate was issued in a run")
                    rate, took, seconds = loaded_rate()
                    loads.append(rate)
                    during += took
                    spent += seconds
                base, loaded = statistics.median(bases), statistics.median(loads)
                during.sort()
                print(f"issuance: {base:.0f} certs/s without revocations, {loaded:.0f} certs/s "
                      f"while {args.revokers} threads revoked ({len(during)} revocations, "
                      f"{len(during) / spent:.1f}/s, median "
                      f"{statistics.median(during) * 1000:.0f} ms, max "
                      f"{during[-1] * 1000:.0f} ms); ratio {loaded / base:.2f} (target >= 0.8; "
                      f"medians of {args.rounds} alternating runs of {args.seconds:.0f} s: "
                      f"{', '.join(f'{b:.0f}' for b in bases)} / "
                      f"{', '.join(f'{r:.0f}' for r in loads)})"
                      if during else
                      f"issuance: {base:.0f} certs/s; no revocation ran during the runs")
                if during and cpu["base_issued"]:
                    # Less sensitive to the machine's other load than the rates: the
                    # workers' CPU a certificate costs, and what the revocations (their
                    # re-issues included) cost on top of the certificates issued with them.
                    per_cert = cpu["base"] / cpu["base_issued"]
                    extra = cpu["loaded"] - cpu["loaded_issued"] * per_cert
                    print(f"workers' CPU: {per_cert * 1000:.2f} ms per certificate; "
                          f"{extra * 1000 / len(during):.1f} ms per revocation with its share "
                          f"of the re-issues ({extra / spent:.2f} cores while revoking)")
                size, crl_rows, crl_bytes = _database_facts(url)
                print(f"database: {size / 1e6:.1f} MB; {crl_rows} CRL rows holding "
                      f"{crl_bytes / 1e6:.2f} MB")
        for entries, full, kept in reissue_work([args.revoked, 5 * args.revoked]):
            print(f"TBSCertList of a re-issue at {entries} entries: {full:.1f} ms encoding "
                  f"every entry, {kept:.1f} ms adding one to the entries kept encoded "
                  f"({full / kept:.0f}x)")
    finally:
        if cluster is not None:
            cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
