"""Certificate issuance over gRPC against the real service, next to the raw token rate.

    python bench/bench_issuance.py [--seconds S] [--workers N] [--concurrency C]
                                   [--client h2load|python] [--clients P] [--profile]
                                   [--no-pin-workers]

Starts the real service (service.serve.Supervisor: N worker processes sharing one port with
SO_REUSEPORT) on a temporary SoftHSM state and SQLite database, creates an RSA_2048 and an
ECC_256 root -> sub CA over gRPC, then issues server certificates from pre-made CSRs
(CreateServerCertificateWithCsr, immediately = 1) with C calls in flight for S seconds per
algorithm. Prints certs/s next to the raw token signing rate measured in the same run
(bench/bench_token.py) and next to the peer, cfssl without and with its SQLite certdb
(bench/bench_cfssl.py), whose runs alternate with hsmca's; and the ratios with their
targets. Method and history: docs/benchmarks.md.

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
import dataclasses
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

ALGORITHMS = {"RSA_2048": "RSA_2048", "ECC_256": "EC_P256"}  # CA algorithm -> token key spec
# Targets as ratios measured in the same run (docs/benchmarks.md): to the raw 2-process
# token rate, to cfssl without a database, to cfssl with its SQLite certdb.
TARGETS = {"RSA_2048": {"raw": 0.5, "certdb": 2.0}, "ECC_256": {"nodb": 0.35, "certdb": 2.0}}
CSR_KEYS = 16  # distinct subscriber keys per algorithm (RSA key generation is slow)
CSRS_PER_KEY = 32
CONNECTIONS_PER_CALLER = 4  # see _client_run
ISSUE_METHOD = "/hsmca.v1.PrivateCa/CreateServerCertificateWithCsr"


@dataclass(frozen=True)
class ClientResult:
    """What one client process achieved."""

    ok: int
    errors: int
    first_error: str
    seconds: float
    cpu_seconds: float
    service_cpu_seconds: float = 0.0  # the worker processes' CPU time in the run


def workers_cpu_seconds() -> float:
    """User + system CPU time so far of this process's live children (the service workers)."""
    import multiprocessing as mp

    total = 0
    for child in mp.active_children():
        with contextlib.suppress(OSError), open(f"/proc/{child.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ClientTls:
    """A client identity for mTLS (PEM bytes, so it pickles to client processes)."""

    ca: bytes
    key: bytes
    cert: bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _make_csrs(algorithm: str) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    out = []
    for k in range(CSR_KEYS):
        key: Any = (rsa.generate_private_key(65537, 2048) if algorithm == "RSA_2048"
                    else ec.generate_private_key(ec.SECP256R1()))
        for i in range(CSRS_PER_KEY):
            name = f"host{k}-{i}.bench.example"
            csr = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                   .sign(key, hashes.SHA256()))
            out.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return out


def _client(target: str, sub_id: str, csrs: list[str], calls: int, start_at: float,
            seconds: float, tls: ClientTls | None = None) -> ClientResult:
    """A client process (see _client_run); its errors cross back to the parent as text."""
    try:
        return _client_run(target, sub_id, csrs, calls, start_at, seconds, tls)
    except BaseException as e:
        # gRPC errors hold locks and do not pickle: the pool would report only that.
        import traceback
        raise RuntimeError("".join(traceback.format_exception(e))) from None


def _client_run(target: str, sub_id: str, csrs: list[str], calls: int, start_at: float,
                seconds: float, tls: ClientTls | None = None) -> ClientResult:
    """A client process: ``calls`` asyncio callers over a pool of connections.

    grpc.aio costs the client about half the CPU per call of blocking stubs in threads
    (measured here: ~0.16 ms against ~0.3 ms), and the client shares the two cores with the
    service, so a cheap client leaves the service what it would have in production.

    Connections, not calls, are spread over the workers (SO_REUSEPORT hashes each new
    connection to one worker). With one long-lived connection per caller, 16 connections
    split unevenly (e.g. 10/6) and the worker with fewer sat partly idle (measured: 0.82 and
    0.49 cores). So each process opens CONNECTIONS_PER_CALLER connections per caller, and a
    caller takes the connection freed most recently (LIFO): connections to the worker that
    answers sooner come back sooner and carry more calls, like a client balancing by
    outstanding calls. At most ``calls`` calls are in flight, as before. With ``tls`` the
    connections are mTLS (bench/bench_mtls.py), else plaintext.
    """
    import asyncio
    import collections

    import grpc

    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    requests = [pb.CreateServerCertificateWithCsrRequest(
        csr=csr, parent_identifier=sub_id, days=30, immediately=1) for csr in csrs]

    async def main() -> ClientResult:
        # A local subchannel pool gives every channel its own TCP connection; without it,
        # grpc shares one connection between all channels of a process to the same target.
        options = [("grpc.use_local_subchannel_pool", 1)]
        creds = (grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
                 if tls is not None else None)
        channels = [grpc.aio.secure_channel(target, creds, options=options) if creds else
                    grpc.aio.insecure_channel(target, options=options)
                    for _ in range(calls * CONNECTIONS_PER_CALLER)]
        stubs = [private_ca_pb2_grpc.PrivateCaStub(c) for c in channels]
        free = collections.deque(stubs)
        counts = [0] * calls
        errors = [0] * calls
        first: list[str] = []
        stop_at = start_at + seconds

        async def run(n: int) -> None:
            i = n
            while time.time() < stop_at:
                req = requests[i % len(requests)]
                i += calls
                stub = free.pop()  # the most recently freed connection
                try:
                    await stub.CreateServerCertificateWithCsr(req, timeout=30)
                    counts[n] += 1
                except grpc.RpcError as e:
                    errors[n] += 1
                    if not first:
                        first.append(f"{e.code()}: {e.details()}")
                finally:
                    free.append(stub)

        # Connect (TCP, and TLS with ``tls``) before the clock starts. Not by a call: any
        # call costs the service CPU outside the measured window, and a DescribeCA... call
        # once cost more with every certificate the CA had issued (bench/bench_drift.py).
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(run(n) for n in range(calls)))
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        for c in channels:
            await c.close()
        return ClientResult(sum(counts), sum(errors), first[0] if first else "", elapsed, cpu)

    return asyncio.run(main())


def _issue_rate(ctx: Any, target: str, sub_id: str, csrs: list[str], concurrency: int,
                clients: int, seconds: float, tls: ClientTls | None = None,
                warmup: float = 2.0) -> tuple[float, list[ClientResult]]:
    """Issue for ``seconds`` with P client processes: (certs/s, the clients' results).

    The clients start together ``warmup`` seconds from now (every client process spawned
    and connected). The service workers' CPU time is sampled when the clients' clock starts
    and when it stops, so it covers the load alone (not the clients' start-up and
    connecting); it is reported as the first result's ``service_cpu_seconds`` (the others'
    is 0, so a sum over the results is the window's).
    """
    calls = [concurrency // clients + (1 if i < concurrency % clients else 0)
             for i in range(clients)]
    start_at = time.time() + warmup
    with ctx.Pool(clients) as pool:
        pending = pool.starmap_async(
            _client, [(target, sub_id, csrs, n, start_at, seconds, tls) for n in calls])
        time.sleep(max(0.0, start_at - time.time()))
        service0 = workers_cpu_seconds()
        time.sleep(max(0.0, start_at + seconds - time.time()))
        service_cpu = workers_cpu_seconds() - service0
        results: list[ClientResult] = pending.get()
    results[0] = dataclasses.replace(results[0], service_cpu_seconds=service_cpu)
    elapsed = max(r.seconds for r in results)
    return sum(r.ok for r in results) / elapsed, results


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed), as sent in an HTTP/2 DATA frame."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def parse_h2load(output: str) -> dict[str, float]:
    """The counts and duration of an h2load report (its 'finished in' and 'requests' lines)."""
    finished = re.search(r"^finished in ([0-9.]+)s", output, re.MULTILINE)
    requests = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", output, re.MULTILINE)
    if finished is None or requests is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    names = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    counts: dict[str, float] = {n: int(v) for n, v in zip(names, requests.groups(), strict=True)}
    counts["seconds"] = float(finished.group(1))
    return counts


def _issued_count(database: Path, ca_id: str) -> int:
    """Certificates the service recorded as ISSUED by ``ca_id`` (read-only connection)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT count(*) FROM certificate WHERE issuer_identifier = ? "
                         "AND status = 'ISSUED'", (ca_id,)).fetchone()
    return int(row[0])


def _failed_calls(log: Path, offset: int) -> list[str]:
    """Lines of the workers' log after ``offset`` for issuance calls that did not end OK."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines()
            if f"method={ISSUE_METHOD} " in line and " code=OK " not in line]


def _h2load_rate(state: Path, target: str, sub_id: str, csr: str, concurrency: int,
                 seconds: float) -> tuple[float, list[ClientResult]]:
    """One run of h2load: its answered calls per second, checked against the service's record.

    h2load counts an HTTP/2 response with status 200 as succeeded, and gRPC reports errors
    in a trailer that h2load does not read; so a call counts only if the database holds its
    certificate (ISSUED rows by this CA, before and after the run, once the calls in flight
    at the end have finished) and no issuance call in the workers' log ended other than OK.
    """
    from service.gen.hsmca.v1 import private_ca_pb2 as pb

    body = state / "h2load-request.bin"
    body.write_bytes(grpc_frame(pb.CreateServerCertificateWithCsrRequest(
        csr=csr, parent_identifier=sub_id, days=30, immediately=1).SerializeToString()))
    database, log = state / "hsmca.db", state / "workers.log"
    before, log_offset = _issued_count(database, sub_id), log.stat().st_size
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    service0 = workers_cpu_seconds()
    out = subprocess.run(  # noqa: S603 - fixed arguments
        ["h2load", "--clients", str(concurrency), "--max-concurrent-streams", "1",  # noqa: S607
         "--duration", f"{seconds:g}", "--data", str(body),
         "--header", "content-type: application/grpc", "--header", "te: trailers",
         f"http://{target}{ISSUE_METHOD}"], capture_output=True, text=True, check=True)
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts = parse_h2load(out.stdout)
    time.sleep(1.0)  # the calls in flight when h2load stopped finish in milliseconds
    service_cpu = workers_cpu_seconds() - service0
    recorded = _issued_count(database, sub_id) - before
    failed = _failed_calls(log, log_offset)
    # Calls answered with 200 whose certificate the service did not record carried an error.
    unrecorded = max(0, int(counts["done"]) - recorded)
    errors = int(counts["failed"] + counts["errored"] + counts["timeout"]) + max(
        unrecorded, len(failed))
    first = "code=" + failed[0].split(" code=", 1)[-1] if failed else (
        f"{unrecorded} answered calls without an ISSUED certificate" if unrecorded else "")
    ok = int(counts["done"]) - unrecorded
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    result = ClientResult(ok, errors, first, counts["seconds"], cpu, service_cpu)
    return ok / counts["seconds"], [result]


@contextlib.contextmanager
def _service(state: Path, workers: int, port: int, *, pin: bool = True,
             overrides: dict[str, str] | None = None,
             before_start: Any = None) -> Iterator[Any]:
    """The real service (Supervisor + workers) on a temp SoftHSM state and SQLite file.

    ``overrides`` replaces environment settings (bench/bench_mtls.py serves mTLS with
    ``HSMCA_GRPC_INSECURE=false``); ``before_start(config)`` runs before the workers start.
    """
    from service.config import load_config
    from service.serve import Supervisor
    from service.storage.db import migrate

    subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(state / "softhsm")],  # noqa: S603
                   check=True, stdout=subprocess.DEVNULL)
    env = {
        "HSMCA_STATE_DIR": str(state),
        "HSMCA_DATABASE_URL": f"sqlite:///{state / 'hsmca.db'}",
        "HSMCA_GRPC_LISTEN": f"127.0.0.1:{port}",
        "HSMCA_GRPC_WORKERS": str(workers),
        "HSMCA_GRPC_PIN_WORKERS": "true" if pin else "false",
        "HSMCA_HTTP_LISTEN": f"127.0.0.1:{_free_port()}",
        # h2load presents no client certificate: this benchmark runs plaintext on loopback
        # (bench/bench_mtls.py compares mTLS with plaintext).
        "HSMCA_GRPC_INSECURE": "true",
        **(overrides or {}),
    }
    os.environ.update(env)
    os.environ["SOFTHSM2_CONF"] = str(state / "softhsm" / "softhsm2.conf")
    config = load_config(env={**env, "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"]})
    migrate(config.database.url)
    if before_start is not None:
        before_start(config)
    supervisor = Supervisor(config, workers=workers)
    # Workers log one line per RPC to stderr; keep that out of the report.
    log = open(state / "workers.log", "ab")  # noqa: SIM115 - closed below
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    try:
        supervisor.start()
        yield config
    finally:
        supervisor.stop()
        os.dup2(saved, 2)
        os.close(saved)
        log.close()


def _create_hierarchy(target: str, algorithm: str) -> str:
    import grpc

    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = private_ca_pb2_grpc.PrivateCaStub(channel)
        root = stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
            common_name=f"bench root {algorithm}", organization="hsmca bench",
            country_code="CN", algorithm=algorithm, years=10), timeout=60)
        sub = stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
            parent_identifier=root.identifier, common_name=f"bench sub {algorithm}",
            organization="hsmca bench", country_code="CN", algorithm=algorithm, years=5),
            timeout=60)
        identifier: str = sub.identifier
        return identifier


def profile_domain(algorithm: str, n: int) -> None:
    """cProfile the domain issuance path in this process (no gRPC); print the top entries."""
    import cProfile
    import pstats

    code = f"""
import os, subprocess, sys, tempfile, time, cProfile, pstats
from pathlib import Path
state = Path(tempfile.mkdtemp(prefix="hsmca-bench-prof-"))
subprocess.run([{str(REPO / 'softhsm' / 'init-tokens.sh')!r}, str(state)], check=True,
               stdout=subprocess.DEVNULL)
os.environ["SOFTHSM2_CONF"] = str(state / "softhsm2.conf")
pin = (state / "user.pin").read_text().strip()
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'bench')!r}]
from bench_issuance import _make_csrs
from hsm.config import TokenConfig, TokenRole
from hsm.token import Token
from service.private_ca.requests import *
from service.private_ca.service import PrivateCaService
from service.storage.db import create_engine_for, migrate
mod = "/usr/lib/softhsm/libsofthsm2.so"
hsm = Token(TokenConfig(TokenRole.HSM, mod, "hsmca-hsm", pin))
sw = Token(TokenConfig(TokenRole.SOFTWARE, mod, "hsmca-software", pin))
url = f"sqlite:///{{state}}/db.sqlite3"; migrate(url); engine = create_engine_for(url)
svc = PrivateCaService(engine, hsm, sw, public_base_url="http://127.0.0.1:8080",
                       min_rsa_bits=2048)
alg = {algorithm!r}
root = svc.create_root_ca("o", CreateRootCa(SubjectFields("root", country="CN"), alg, 10))
sub = svc.create_sub_ca("o", CreateSubCa(root.identifier, SubjectFields("sub", country="CN"),
                                         alg, 5))
csrs = _make_csrs(alg)
def req(i):
    return CreateServerCertificate(IssueCommon(sub.identifier, immediately=1), SubjectFields(),
                                   ValidityPeriod(days=30), csr=csrs[i % len(csrs)])
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
print(f"{{alg}}: {{plain:.0f}} certs/s in one process, one thread, no gRPC")
pstats.Stats(pr).sort_stats("tottime").print_stats(25)
"""
    del cProfile, pstats
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
                port = _free_port()
                try:
                    with _service(state, args.workers, port, pin=args.pin_workers,
                                  overrides={"HSMCA_DATABASE_URL": url} if url else None):
                        sub_id = _create_hierarchy(f"127.0.0.1:{port}", alg)
                        runs = [_issue_rate(ctx, f"127.0.0.1:{port}", sub_id, csrs[alg],
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
    from bench_token import measure_raw_rates

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
    p.add_argument("--raw-seconds", type=float, default=2.0, help="raw token rate run length")
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
    csrs = {alg: _make_csrs(alg) for alg in ALGORITHMS}
    import bench_cfssl

    with_peer = args.cfssl and args.client == "h2load" and bench_cfssl.available()
    if args.cfssl and not with_peer:
        print("cfssl (make bench-deps) or h2load is missing: no peer figures", flush=True)
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-issuance-"))
    machine = measure_machine(state)
    port = _free_port()
    target = f"127.0.0.1:{port}"
    rates: dict[str, tuple[float, list[float], list[ClientResult]]] = {}
    raw_by_alg: dict[str, dict[str, float]] = {}
    peer: dict[tuple[str, bool], tuple[float, list[float], int]] = {}
    try:
        with _service(state, args.workers, port, pin=args.pin_workers), \
                contextlib.ExitStack() as stack:
            for alg, spec in ALGORITHMS.items():
                # Per algorithm, close together in time: the raw token rate, then hsmca's
                # runs alternating with cfssl's (a shared machine's load drifts).
                print(f"{alg}: raw token signing rate (1 and {args.workers} processes) ...",
                      flush=True)
                raw_by_alg[alg] = measure_raw_rates([spec], args.workers,
                                                    args.raw_seconds)["results"][spec]
                sub_id = _create_hierarchy(target, alg)
                servers = stack.enter_context(bench_cfssl.peers(alg)) if with_peer else {}
                client = ("h2load" if args.client == "h2load" else
                          f"{args.clients} python client processes")
                print(f"{alg}: {args.runs} runs of {args.seconds:.0f} s each of hsmca"
                      f"{', cfssl and cfssl + certdb, alternating' if servers else ''} "
                      f"(concurrency {args.concurrency}, {client}, {args.workers} workers) ...",
                      flush=True)
                runs = []
                peer_runs: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
                for i in range(args.runs):
                    csr = csrs[alg][i % len(csrs[alg])]
                    if args.client == "h2load":
                        runs.append(_h2load_rate(state, target, sub_id, csr, args.concurrency,
                                                 args.seconds))
                    else:
                        runs.append(_issue_rate(ctx, target, sub_id, csrs[alg],
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
        r = raw_by_alg[alg]
        cpu = sum(x.cpu_seconds for x in results) / max(x.seconds for x in results)
        errors = sum(x.errors for x in results)
        print(f"{alg:<9} {rate:>8.0f} {r['single']:>11.0f} {r['multi']:>11.0f} "
              f"{rate / r['multi']:>5.2f}x {cpu:>9.2f}c {errors:>6}")
        print(f"  runs: {', '.join(f'{x:.0f}' for x in each)} certs/s")
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
          f"the raw {args.workers}-process signing rate measured above; client: {args.client}, "
          f"its CPU in cores; cpu_count={os.cpu_count()}; workers "
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
