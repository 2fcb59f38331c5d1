"""`hsmca serve`: a supervisor and N worker processes sharing the gRPC port (SO_REUSEPORT).

Why processes: SoftHSM under python-pkcs11 runs without internal locking, so only one
thread per process may be in the token at a time (docs/architecture.md). Each worker therefore opens
its own long-lived token sessions after it starts (workers are *spawned*, never forked
from a process that loaded the PKCS#11 module), and the kernel spreads connections across
workers that share the port.

SIGTERM/SIGINT to the supervisor is forwarded to every worker; a worker stops accepting
calls, lets in-flight calls finish within ``grpc.grace_seconds`` and exits 0. A worker that
dies unexpectedly is restarted (at most once a second).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from hsm.config import TokenRole
from service.auth.ratelimit import SharedRateLimiter
from service.config import Config

log = logging.getLogger(__name__)


#: gRPC's switch for its rollout experiments, read once when grpc is imported.
GRPC_EXPERIMENTS_VARIABLE = "GRPC_EXPERIMENTS"
#: What the workers run with unless the environment says otherwise. Without the EventEngine
#: listener, accepted connections are polled by the server's own completion-queue thread
#: (gRPC's long-standing iomgr path) instead of being handed to EventEngine's thread pool.
#: Measured here with a sync server (16 threads, 0.3 ms handlers, 2 processes): context
#: switches per call 11.7 -> 7.4 and server CPU per call -6%; on certificate issuance,
#: ~23 -> ~20 switches per certificate. Thread hand-offs are what costs most on these VMs.
GRPC_EXPERIMENTS_DEFAULT = "-event_engine_listener"


def worker_cpus(workers: int, allowed: set[int] | None, *, pin: bool) -> list[int | None]:
    """The CPU each worker process is pinned to (None: not pinned), round-robin over ``allowed``.

    Why: a worker is one Python interpreter, so it runs on about one core whatever the
    scheduler does, but its threads (gRPC's poller, the request threads, the batch leader)
    hand work to each other many times per call. When those threads float over all cores,
    each wake-up lands on another core: on the VMs we measured that is an inter-processor
    interrupt and a cold cache each time. Pinned, a worker's hand-offs stay on its own core:
    in ``make bench`` on 2 cores, P-256 issuance went from 1160-1300 to 1550-1750 certs/s and
    RSA-2048 from 910-1060 to 1130-1470 (docs/benchmarks.md, "History"; on a nested-
    virtualization VM later, unpinned workers cost 1.05x CPU per certificate and 0.88x rate).
    Only with 2 or more workers and CPUs: a single worker keeps every core for gRPC's own
    threads.
    """
    cpus = sorted(allowed or ())
    if not pin or workers < 2 or len(cpus) < 2:
        return [None] * workers
    return [cpus[i % len(cpus)] for i in range(workers)]


def _allowed_cpus() -> set[int] | None:
    getter = getattr(os, "sched_getaffinity", None)  # Linux only
    return set(getter(0)) if getter is not None else None


@dataclass(frozen=True)
class WorkerReady:
    """What a worker reports once it is serving."""

    index: int
    pid: int
    grpc_port: int
    http_port: int


def _worker_main(config: Config, index: int, reuse_port: bool, ready: Any,
                 cpu: int | None = None, limiter: SharedRateLimiter | None = None) -> None:
    """Entry point of one worker process."""
    if cpu is not None:
        # First thing: threads started later (gRPC's, the pool's, the jobs thread) inherit
        # the calling thread's affinity; threads already running would not.
        os.sched_setaffinity(0, {cpu})
    from service.app import open_app
    from service.log_output import log_to_stderr

    # One line per call: written in blocks, not one system call each (service/log_output.py).
    output = log_to_stderr(f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = open_app(config)
    # SIGHUP: reload the policy now; open connections and in-flight calls are untouched.
    signal.signal(signal.SIGHUP, lambda *_: app.reload())
    try:
        running = app.start(reuse_port=reuse_port, limiter=limiter)
        ready.send(WorkerReady(index, os.getpid(), running.grpc_port, running.http_port))
        ready.close()
        stop.wait()
        log.info("draining in-flight calls (grace %ss)", config.grpc.grace_seconds)
        running.stop(config.grpc.grace_seconds)
    finally:
        app.close()
        output.close()  # the buffered lines, before the process exits


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, config: Config, workers: int | None = None) -> None:
        self.config = config
        self.n = workers if workers is not None else config.grpc.worker_count()
        self.reuse_port = self.n > 1
        self.cpus = worker_cpus(self.n, _allowed_cpus(), pin=config.grpc.pin_workers)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[int, Any] = {}
        self.ready: dict[int, WorkerReady] = {}
        self._stopping = threading.Event()
        # One rate-limit table for every worker (and every restarted one): see ratelimit.py.
        self.limiter = SharedRateLimiter.create(self._ctx)

    def _spawn(self, index: int, timeout: float = 60.0) -> WorkerReady:
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.config, index, self.reuse_port, child, self.cpus[index], self.limiter),
            name=f"hsmca-worker-{index}",
        )
        proc.start()
        child.close()
        self._procs[index] = proc
        if not parent.poll(timeout):
            proc.terminate()
            raise RuntimeError(f"worker {index} did not become ready within {timeout}s")
        try:
            info: WorkerReady = parent.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(
                f"worker {index} exited during start-up (exit code {proc.exitcode}); "
                "see its log above"
            ) from None
        self.ready[index] = info
        return info

    def start(self) -> list[WorkerReady]:
        """Spawn every worker and wait until each one serves."""
        # Spawned workers inherit this environment; gRPC reads it when it is imported.
        os.environ.setdefault(GRPC_EXPERIMENTS_VARIABLE, GRPC_EXPERIMENTS_DEFAULT)
        return [self._spawn(i) for i in range(self.n)]

    def watch(self) -> None:
        """Restart dead workers until stop() is called."""
        while not self._stopping.wait(1.0):
            for index, proc in list(self._procs.items()):
                if not proc.is_alive() and not self._stopping.is_set():
                    log.error("worker %d (pid %s) exited with %s; restarting",
                              index, proc.pid, proc.exitcode)
                    if proc.pid is not None:
                        from service.metrics import mark_process_dead

                        mark_process_dead(proc.pid)
                    try:
                        self._spawn(index)
                    except RuntimeError as e:
                        log.error("%s", e)
                        time.sleep(1.0)

    def hangup(self) -> None:
        """Forward SIGHUP (reload the policy) to every worker."""
        for proc in self._procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGHUP)

    def stop(self) -> None:
        """Forward SIGTERM to every worker and wait for them to drain."""
        self._stopping.set()
        for proc in self._procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.grpc.grace_seconds + 10
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker pid %s did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()


#: How often the supervisor checks whether the server certificate or the CRL is due.
RENEWAL_CHECK_SECONDS = 3600.0


def _renew_loop(config: Config, stop: threading.Event,
                every: float = RENEWAL_CHECK_SECONDS) -> None:
    """Renew the server certificate and re-sign the client CRL when due, until stopped.

    The supervisor does it (one process, one token session opened only for the renewal);
    workers notice the new files at their next handshake (service/rpc/tls.py).
    """
    from hsm.token import Token
    from service.auth.bootstrap import refresh_crl_if_due, renew_server_certificate_if_due

    while not stop.wait(every):
        try:
            token = Token(config.token_config(TokenRole.HSM))
            try:
                renew_server_certificate_if_due(config, token)
                refresh_crl_if_due(config, token)
            finally:
                token.close()
        except Exception:
            log.exception("TLS renewal failed; retrying in %ss", every)


def serve(config: Config) -> int:
    """Run the service until SIGTERM/SIGINT; returns the process exit code."""
    from service.storage.db import migrate

    migrate(config.database.url)
    # Per run, emptied first; spawned workers inherit the variable (service/metrics.py).
    from service.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir(config.state_dir / "prometheus")
    supervisor = Supervisor(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: supervisor.hangup())
    workers = supervisor.start()
    log.info(
        "serving gRPC on %s and HTTP on %s with %d worker process(es): pids %s, CPUs %s",
        config.grpc.listen, config.http.listen, len(workers), [w.pid for w in workers],
        ["any" if c is None else c for c in supervisor.cpus],
    )
    watcher = threading.Thread(target=supervisor.watch, daemon=True)
    watcher.start()
    if not config.grpc.insecure and config.tls.managed:
        threading.Thread(target=_renew_loop, args=(config, stop), daemon=True,
                         name="tls-renewal").start()
    stop.wait()
    log.info("stopping")
    supervisor.stop()
    return 0
