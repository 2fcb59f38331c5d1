"""Certificate issuance over gRPC against the real service, next to the raw token rate.

    python bench/bench_issuance.py [--seconds S] [--workers N] [--concurrency C]
                                   [--client h2load|python] [--clients P] [--profile]
                                   [--no-pin-workers]

Starts the real service (bench/harness.py: service.serve.Supervisor, N worker processes
sharing one port with SO_REUSEPORT) on a temporary SoftHSM state and SQLite database,
creates an RSA_2048 and an ECC_256 root -> sub CA over gRPC, then issues server
certificates from pre-made CSRs (CreateServerCertificateWithCsr, immediately = 1) with C
calls in flight for S seconds per algorithm. Prints certs/s next to the raw token signing
rate (bench/bench_token.py) and next to the peer, cfssl without and with its SQLite certdb
(bench/bench_cfssl.py), all three taking turns (raw, hsmca, cfssl, cfssl + certdb, and
again), and the ratios of the medians with their targets. Method and history: docs/benchmarks.md.

The load comes from one of two clients, both on this machine and so sharing its cores with
the service:

- ``h2load`` (default when installed; Debian's nghttp2-client, which ``make bench``
  installs): nghttp2's HTTP/2 load generator, in C, posting a gRPC-framed request on C
  connections with one stream each (C calls in flight). It costs the two cores little, so the
  figure is the service's. It posts one body per run (one CSR; each run takes the next), and
  it does not read gRPC's status trailer, so each run is checked against the service's own
  record: the certificates the database holds as ISSUED for the CA must account for every
  call h2load counted as answered, and the workers' log must show no failed call.
- ``python``: P client processes of grpc.aio callers over a pool of connections, each call
  a different CSR, every status checked by the client. It costs about 0.3 cores at these
  rates, which the service then does not have.

The workers run as ``make serve`` runs them: each pinned to its own CPU (``grpc.pin_workers``,
service/serve.py); --no-pin-workers lets them float, for comparison.

It ends with a line of facts about the machine that explain why the ratios differ between
machines of one size: how long a small write and its fdatasync take where the databases
are, what a system call costs, and how fast this interpreter runs a plain loop.

--profile also runs the domain issuance path in this process under cProfile (no gRPC) and
prints where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from harness import (  # noqa: E402
    ALGORITHMS,
    CSR_KEYS,
    CSRS_PER_KEY,
    ClientResult,
    create_hierarchy,
    free_port,
    h2load_rate,
    issue_rate,
    make_csrs,
    serving,
)

# Targets as ratios measured in the same run (docs/benchmarks.md): to the raw 2-process
# token rate, to cfssl without a database, to cfssl with its SQLite certdb.
TARGETS = {"RSA_2048": {"raw": 0.5, "certdb": 2.0}, "ECC_256": {"nodb": 0.35, "certdb": 2.0}}


def profile_domain(algorithm: str, n: int) -> None:
    """cProfile the domain issuance path in this process (no gRPC); print the top entries."""
    code = f"""
import cProfile, os, pstats, sys, time
from pathlib import Path
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'bench')!r}]
from bench_token import token_site
from harness import make_csrs

with token_site() as site:
    os.environ["SOFTHSM2_CONF"] = site.softhsm_conf  # read once, when the module loads
    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token
    from service.private_ca.requests import *
    from service.private_ca.service import PrivateCaService
    from service.storage.db import create_engine_for, migrate
    hsm = Token(TokenConfig(TokenRole.HSM, site.module, "hsmca-hsm", site.pin))
    sw = Token(TokenConfig(TokenRole.SOFTWARE, site.module, "hsmca-software", site.pin))
    url = f"sqlite:///{{Path(site.softhsm_conf).parent}}/db.sqlite3"
    migrate(url)
    engine = create_engine_for(url)
    svc = PrivateCaService(engine, hsm, sw, public_base_url="http://127.0.0.1:8080",
                           min_rsa_bits=2048)
    alg = {algorithm!r}
    root = svc.create_root_ca("o", CreateRootCa(SubjectFields("root", country="CN"), alg, 10))
    sub = svc.create_sub_ca("o", CreateSubCa(root.identifier, SubjectFields("sub", country="CN"),
                                             alg, 5))
    csrs = make_csrs(alg)

    def req(i):
        return CreateServerCertificate(IssueCommon(sub.identifier, immediately=1),
                                       SubjectFields(), ValidityPeriod(days=30),
                                       csr=csrs[i % len(csrs)])

    for i in range(50):
        svc.create_server_certificate("o", req(i))
    t = time.perf_counter()
    for i in range({n}):
        svc.create_server_certificate("o", req(i))
    plain = {n} / (time.perf_counter() - t)
    pr = cProfile.Profile()
    pr.enable()
    for i in range({n}):
        svc.create_server_certificate("o", req(i))
    pr.disable()
    engine.dispose()
    print(f"{{alg}}: {{plain:.0f}} certs/s in one process, one thread, no gRPC")
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
"""
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code


def _compare_postgresql(args: Any, ctx: Any, csrs: dict[str, list[str]]) -> None:
    """hsmca's issuance rate on SQLite and on PostgreSQL, measured back to back (python
    client, same workers and concurrency), so the two are compared under the same load."""
    sys.path.insert(0, str(REPO / "tests"))
    from pg_support import PostgresCluster, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        print("PostgreSQL: no server under /usr/lib/postgresql; skipped")
        return
    cluster = PostgresCluster(bin_dir)
    cluster.start()
    try:
        print()
        for alg in ALGORITHMS:
            rates = {}
            for name in ("SQLite", "PostgreSQL"):
                state = Path(tempfile.mkdtemp(prefix="hsmca-bench-db-"))
                url = cluster.create_database("bench") if name == "PostgreSQL" else ""
                port = free_port()
                try:
                    with serving(state, args.workers, port, pin=args.pin_workers,
                                 overrides={"HSMCA_DATABASE_URL": url} if url else None):
                        sub_id = create_hierarchy(f"127.0.0.1:{port}", alg)
                        runs = [issue_rate(ctx, f"127.0.0.1:{port}", sub_id, csrs[alg],
                                           args.concurrency, args.clients, args.seconds)[0]
                                for _ in range(args.runs)]
                        rates[name] = statistics.median(runs)
                finally:
                    shutil.rmtree(state, ignore_errors=True)
            print(f"{alg}: SQLite {rates['SQLite']:.0f} certs/s, PostgreSQL "
                  f"{rates['PostgreSQL']:.0f} certs/s (PostgreSQL / SQLite = "
                  f"{rates['PostgreSQL'] / rates['SQLite']:.2f}x; python client, median of "
                  f"{args.runs} runs of {args.seconds:.0f} s)")
    finally:
        cluster.destroy()


@dataclass(frozen=True)
class MachineFacts:
    """What makes ratios differ between machines of the same size (docs/benchmarks.md)."""

    sync_ms: float  # a 4 KiB write and fdatasync where the databases are, wall clock
    syscall_us: float  # one trivial system call (getppid)
    python_us: float  # a loop of 1000 dict stores in this interpreter

    def line(self) -> str:
        """One line for the report."""
        return (f"machine: a 4 KiB write + fdatasync {self.sync_ms:.2f} ms, a system call "
                f"{self.syscall_us:.2f} us, 1000 Python dict stores {self.python_us:.0f} us "
                "(medians; the certdb ratios follow the first, since cfssl commits every "
                "certificate on its own; hsmca's CPU per certificate has followed the system "
                "call more than the loop, see docs/benchmarks.md)")


def measure_machine(directory: Path, *, syncs: int = 200, calls: int = 100_000,
                    loops: int = 200) -> MachineFacts:
    """Measure :class:`MachineFacts` in ``directory`` (the file it syncs is removed)."""
    path = directory / "sync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        block = b"\0" * 4096
        sync_times = []
        for i in range(syncs):
            started = time.perf_counter()
            os.pwrite(fd, block, (i % 64) * 4096)
            os.fdatasync(fd)
            sync_times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    call_times = []
    for _ in range(max(1, calls // 1000)):
        started = time.perf_counter()
        for _ in range(1000):
            os.getppid()
        call_times.append((time.perf_counter() - started) / 1000)
    loop_times = []
    for _ in range(loops):
        d: dict[int, int] = {}
        started = time.perf_counter()
        for i in range(1000):
            d[i] = i
        loop_times.append(time.perf_counter() - started)
    return MachineFacts(sync_ms=statistics.median(sync_times) * 1e3,
                        syscall_us=statistics.median(call_times) * 1e6,
                        python_us=statistics.median(loop_times) * 1e6)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    from bench_token import measure_raw_rates, token_site

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of one issuance run")
    p.add_argument("--runs", type=int, default=3, help="issuance runs per algorithm (median)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="service worker processes (default: cpu count)")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    p.add_argument("--client", choices=("h2load", "python"),
                   default="h2load" if shutil.which("h2load") else "python",
                   help="load generator (default: h2load when installed)")
    p.add_argument("--clients", type=int, default=2, help="client processes (python client)")
    p.add_argument("--raw-seconds", type=float, default=1.0,
                   help="length of one raw token signing run (3 before each issuance run)")
    p.add_argument("--profile", action="store_true", help="also cProfile the domain path")
    p.add_argument("--no-pin-workers", dest="pin_workers", action="store_false",
                   help="let worker processes float over every CPU (grpc.pin_workers = false)")
    p.add_argument("--no-cfssl", dest="cfssl", action="store_false",
                   help="skip the peer (cfssl with and without its certdb)")
    p.add_argument("--postgresql", action="store_true",
                   help="also issue against a private PostgreSQL cluster (python client) and "
                        "print its rate next to SQLite's")
    args = p.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0:
        p.error("--runs must be >= 1 and --seconds > 0")

    ctx = multiprocessing.get_context("spawn")
    print(f"pre-making CSRs ({CSR_KEYS * CSRS_PER_KEY} per algorithm) ...", flush=True)
    csrs = {alg: make_csrs(alg) for alg in ALGORITHMS}
    import bench_cfssl

    with_peer = args.cfssl and args.client == "h2load" and bench_cfssl.available()
    if args.cfssl and not with_peer:
        print("cfssl (make bench-deps) or h2load is missing: no peer figures", flush=True)
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-issuance-"))
    machine = measure_machine(state)
    port = free_port()
    target = f"127.0.0.1:{port}"
    rates: dict[str, tuple[float, list[float], list[ClientResult]]] = {}
    raw_runs: dict[str, list[dict[str, float]]] = {}  # per algorithm, before each run
    peer: dict[tuple[str, bool], tuple[float, list[float], int]] = {}
    try:
        with serving(state, args.workers, port, pin=args.pin_workers), \
                contextlib.ExitStack() as stack:
            raw_site = stack.enter_context(token_site())  # one token for every raw run
            for alg, spec in ALGORITHMS.items():
                # Per algorithm, the raw token rate, hsmca and cfssl take turns, so that
                # each ratio compares figures taken within a minute or two: a shared (or
                # virtual) machine's speed drifts within one make bench.
                sub_id = create_hierarchy(target, alg)
                servers = stack.enter_context(bench_cfssl.peers(alg)) if with_peer else {}
                client = ("h2load" if args.client == "h2load" else
                          f"{args.clients} python client processes")
                print(f"{alg}: {args.runs} rounds of the raw token signing rate (1 and "
                      f"{args.workers} processes, median of 3 x {args.raw_seconds:g} s), then "
                      f"{args.seconds:.0f} s of hsmca"
                      f"{', cfssl and cfssl + certdb' if servers else ''} "
                      f"(concurrency {args.concurrency}, {client}, {args.workers} workers) ...",
                      flush=True)
                raw_runs[alg] = []
                runs = []
                peer_runs: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
                for i in range(args.runs):
                    csr = csrs[alg][i % len(csrs[alg])]
                    raw_runs[alg].append(measure_raw_rates(
                        [spec], args.workers, args.raw_seconds, site=raw_site)["results"][spec])
                    if args.client == "h2load":
                        runs.append(h2load_rate(state, target, sub_id, csr, args.concurrency,
                                                args.seconds))
                    else:
                        runs.append(issue_rate(ctx, target, sub_id, csrs[alg],
                                               args.concurrency, args.clients, args.seconds))
                    for database, (url, db_path) in servers.items():
                        peer_runs[database].append(bench_cfssl.h2load_sign_rate(
                            url, db_path, csr, args.concurrency, args.seconds, state))
                each = [r for r, _ in runs]
                median = statistics.median(each)
                # The clients' figures of the median run (or of the last, for an even count).
                chosen = min(runs, key=lambda r: abs(r[0] - median))
                rates[alg] = (median, each, chosen[1])
                for database, measured in peer_runs.items():
                    if measured:
                        peer[(alg, database)] = (statistics.median(r for r, _ in measured),
                                                 [r for r, _ in measured],
                                                 sum(e for _, e in measured))
    finally:
        shutil.rmtree(state, ignore_errors=True)

    header = (f"{'CA':<9} {'certs/s':>8} {'raw 1 proc':>11} {f'raw {args.workers} proc':>11} "
              f"{'ratio':>6} {'client CPU':>10} {'errors':>6}")
    print()
    print(header)
    print("-" * len(header))
    for alg in ALGORITHMS:
        rate, each, results = rates[alg]
        r = {kind: statistics.median(x[kind] for x in raw_runs[alg])
             for kind in ("single", "multi")}
        cpu = sum(x.cpu_seconds for x in results) / max(x.seconds for x in results)
        errors = sum(x.errors for x in results)
        print(f"{alg:<9} {rate:>8.0f} {r['single']:>11.0f} {r['multi']:>11.0f} "
              f"{rate / r['multi']:>5.2f}x {cpu:>9.2f}c {errors:>6}")
        raw_each = ", ".join(f"{x['multi']:.0f}" for x in raw_runs[alg])
        print(f"  runs: {', '.join(f'{x:.0f}' for x in each)} certs/s; raw {args.workers}-process "
              f"token rate before each: {raw_each}/s")
        service_cpu = sum(x.service_cpu_seconds for x in results)
        if service_cpu and results[0].ok:
            # CPU per certificate is much less sensitive to other load on the machine than
            # a rate; against the token's own CPU per signature it gives a load-robust
            # ratio (a pinned worker is one core: certs/s per core = 1 / CPU per cert).
            per_cert = service_cpu / sum(x.ok for x in results) * 1e3
            print(f"  service CPU: {per_cert:.2f} ms per certificate (all workers, median run)")
        for x in results:
            if x.first_error:
                print(f"  first error: {x.first_error}")
        ratios = {"raw": rate / r["multi"]}
        for database, label in ((False, "nodb"), (True, "certdb")):
            if (alg, database) in peer:
                cfssl_rate, cfssl_runs, cfssl_errors = peer[(alg, database)]
                ratios[label] = rate / cfssl_rate if cfssl_rate else float("inf")
                which = "with its SQLite certdb" if database else "without a database"
                listed = ", ".join(f"{x:.0f}" for x in cfssl_runs)
                print(f"  cfssl {which}: {cfssl_rate:.0f} certs/s (runs {listed}; errors "
                      f"{cfssl_errors}); hsmca / cfssl = {ratios[label]:.2f}x")
        for name, target in TARGETS[alg].items():
            if name in ratios:
                what = {"raw": f"raw {args.workers}-process token rate",
                        "nodb": "cfssl without a database",
                        "certdb": "cfssl with its certdb"}[name]
                met = "met" if ratios[name] >= target else "NOT met"
                print(f"  target: >= {target:g}x {what}: {ratios[name]:.2f}x, {met}")
    print(f"(certs/s = median of {args.runs} runs of {args.seconds:.0f} s; ratio = certs/s over "
          f"the raw {args.workers}-process signing rate, the median of those measured before "
          f"each run; client: {args.client}, its CPU in cores; cpu_count={os.cpu_count()}; workers "
          f"{'pinned to one CPU each' if args.pin_workers else 'not pinned'}; SQLite "
          "synchronous=FULL, the durable default; cfssl: the same CSRs, load generator and "
          "concurrency, HTTP/1.1. On a shared machine absolute figures are noisy; the ratios "
          "within one run are what counts)")
    print(machine.line())
    if args.postgresql:
        _compare_postgresql(args, ctx, csrs)
    if args.profile:
        for alg in ALGORITHMS:
            profile_domain(alg, 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
