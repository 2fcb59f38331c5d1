"""What the benchmarks share: serving the real service, loading it, checking what it did.

- :func:`serving`: the real service (Supervisor + pinned workers, as ``make serve`` runs
  them) on a temporary SoftHSM state and SQLite database; :func:`create_hierarchy` makes a
  root -> sub CA over gRPC to issue from;
- :func:`h2load_rate`: one run of h2load (nghttp2's load generator, in C) posting one
  CreateServerCertificateWithCsr request, checked against the service's own record (the
  ISSUED rows in its database, the failed calls in its workers' log), with the workers' CPU
  time over the run;
- :func:`issue_rate`: the same with P Python client processes (grpc.aio), each call a
  different CSR and every status checked by the client;
- :func:`make_csrs`, :func:`free_port`, :func:`workers_cpu_seconds`,
  :func:`process_cpu_seconds`.

Used by bench/bench_issuance.py (``make bench``) and the other bench/ scripts; method and
history: docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # Appended, never put first: bench/bench_ab.py serves an older checkout's ``service``
    # with this module, and that checkout must stay ahead on the path.
    sys.path.append(str(REPO))

ALGORITHMS = {"RSA_2048": "RSA_2048", "ECC_256": "EC_P256"}  # CA algorithm -> token key spec
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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` (OSError if it is gone)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def workers_cpu_seconds() -> float:
    """User + system CPU time so far of this process's live children (the service workers)."""
    import multiprocessing as mp

    total = 0.0
    for child in mp.active_children():
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            total += process_cpu_seconds(child.pid)
    return total


@dataclass(frozen=True)
class ClientTls:
    """A client identity for mTLS (PEM bytes, so it pickles to client processes)."""

    ca: bytes
    key: bytes
    cert: bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_csrs(algorithm: str) -> list[str]:
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


def issue_rate(ctx: Any, target: str, sub_id: str, csrs: list[str], concurrency: int,
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


def failed_calls(log: Path, offset: int) -> list[str]:
    """Lines of the workers' log after ``offset`` for issuance calls that did not end OK."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines()
            if f"method={ISSUE_METHOD} " in line and " code=OK " not in line]


def h2load_rate(state: Path, target: str, sub_id: str, csr: str, concurrency: int,
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
    failed = failed_calls(log, log_offset)
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
def serving(state: Path, workers: int, port: int, *, pin: bool = True,
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
        "HSMCA_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
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


def create_hierarchy(target: str, algorithm: str) -> str:
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
