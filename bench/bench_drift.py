"""Drift in a long run: the service's CPU per certificate early and late, as the database grows.

    python bench/bench_drift.py [--intervals K] [--seconds S] [--workers N]
                                [--concurrency C] [--clients P] [--describes D]

Starts the real service (bench/harness.py: N workers, SQLite, SoftHSM) and
issues ECC_256 server certificates without a pause for K intervals of S seconds, with
bench/harness.py's Python client (C calls in flight, P processes). Per interval it prints
the workers' CPU per certificate over the load window and, between intervals, the workers'
CPU for one DescribeCACertificateList (D calls; it answers each CA's cert_issued_count, the
count that once read every row a CA had issued), next to the number of certificates stored.

It prints the late figures (last two intervals) against the early ones (first two) as
ratios measured in the same run: CPU per certificate late / early (target: at most 1.2x,
issuance does not grow with the database), and a describe's CPU growth per 10,000
certificates stored in certificates' worth of issuance CPU (target: at most 2x; the count
reads an index, so it grows a little). CPU is used rather than a rate because other load on
a shared machine distorts it less; fewer certificates per second under such load also
means smaller group commits, which raises CPU per certificate somewhat.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import harness  # noqa: E402

#: Late over early CPU per certificate: issuance's cost must not grow with the database.
TARGET_RATIO = 1.2
#: A describe's CPU growth per 10,000 certificates stored, in certificates' worth of
#: issuance CPU measured in the same run (counting rows instead of index entries: ~11x).
DESCRIBE_GROWTH_TARGET = 2.0


def _certificates(database: Path) -> int:
    """Rows in the certificate table (read-only connection)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM certificate").fetchone()[0])


def _describe_cpu_ms(target: str, calls: int) -> float:
    """The workers' CPU (ms) per DescribeCACertificateList, over ``calls`` calls."""
    import grpc

    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = private_ca_pb2_grpc.PrivateCaStub(channel)
        stub.DescribeCACertificateList(pb.DescribeCACertificateListRequest(), timeout=60)
        cpu0 = harness.workers_cpu_seconds()
        for _ in range(calls):
            stub.DescribeCACertificateList(pb.DescribeCACertificateListRequest(), timeout=60)
        return (harness.workers_cpu_seconds() - cpu0) / calls * 1000


def main(argv: Sequence[str] | None = None) -> int:
    """Run the long load and print the drift."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intervals", type=int, default=8, help="load intervals, back to back")
    p.add_argument("--seconds", type=float, default=10.0, help="length of one interval")
    p.add_argument("--workers", type=int, default=2, help="service worker processes")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--describes", type=int, default=20,
                   help="DescribeCACertificateList calls measured after each interval")
    args = p.parse_args(argv)
    if args.intervals < 2 or args.seconds <= 0 or args.describes < 1:
        p.error("--intervals must be >= 2, --seconds > 0 and --describes >= 1")
    ctx = multiprocessing.get_context("spawn")
    csrs = harness.make_csrs("ECC_256")
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-drift-"))
    port = harness.free_port()
    target = f"127.0.0.1:{port}"
    rows: list[tuple[int, float, float, float]] = []  # (certificates, ms/cert, describe ms, /s)
    errors = 0
    try:
        with harness.serving(state, args.workers, port):
            sub_id = harness.create_hierarchy(target, "ECC_256")
            print(f"issuing ECC_256 server certificates: {args.intervals} intervals of "
                  f"{args.seconds:.0f} s back to back, concurrency {args.concurrency}, "
                  f"{args.clients} client processes, {args.workers} workers", flush=True)
            print(f"{'interval':>8} {'certs/s':>8} {'CPU/cert':>11} {'stored':>8} "
                  f"{'CPU/describe':>13}", flush=True)
            for i in range(args.intervals):
                rate, results = harness.issue_rate(ctx, target, sub_id, csrs, args.concurrency,
                                                   args.clients, args.seconds)
                issued = sum(r.ok for r in results)
                errors += sum(r.errors for r in results)
                per_cert = sum(r.service_cpu_seconds for r in results) / max(1, issued) * 1000
                describe = _describe_cpu_ms(target, args.describes)
                stored = _certificates(state / "hsmca.db")
                rows.append((stored, per_cert, describe, rate))
                first = next((r.first_error for r in results if r.first_error), "")
                print(f"{i + 1:>8} {rate:>8.0f} {per_cert:>8.3f} ms {stored:>8} "
                      f"{describe:>10.2f} ms{'  first error: ' + first if first else ''}",
                      flush=True)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    # Early and late: the first two and the last two intervals, averaged (one interval's
    # figure moves with the machine's other load).
    early, late = rows[:2], rows[-2:]
    n0, n1 = (sum(r[0] for r in x) / len(x) for x in (early, late))
    cert0, cert1 = (sum(r[1] for r in x) / len(x) for x in (early, late))
    desc0, desc1 = (sum(r[2] for r in x) / len(x) for x in (early, late))
    ratio = cert1 / cert0 if cert0 else float("inf")
    print()
    print(f"CPU per certificate: {cert0:.3f} ms early ({n0:.0f} stored), {cert1:.3f} ms late "
          f"({n1:.0f} stored): late / early = {ratio:.2f}x (target <= {TARGET_RATIO:g}x, "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    # A describe counts the CA's certificates in an index, so it may grow a little with
    # them: its growth per 10,000 stored, in certificates' worth of issuance CPU.
    growth = (desc1 - desc0) / max(1.0, n1 - n0) * 10_000
    worth = growth / cert1 if cert1 else float("inf")
    print(f"CPU per DescribeCACertificateList: {desc0:.2f} ms early, {desc1:.2f} ms late "
          f"(late / early = {desc1 / desc0 if desc0 else float('inf'):.2f}x): "
          f"{growth:+.2f} ms per 10,000 certificates stored = {worth:.2f}x one certificate's "
          f"issuance CPU (target <= {DESCRIBE_GROWTH_TARGET:g}x, "
          f"{'met' if worth <= DESCRIBE_GROWTH_TARGET else 'NOT met'})")
    print(f"(workers' CPU over each load window; python client; errors {errors}; "
          f"cpu_count={os.cpu_count()})")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
