"""service/private_ca/batch.py: batched steps 6-9, each caller with its own outcome.

The unit tests drive the Batcher with recording jobs (no keys are involved: the batcher only
orders the writes and the signing calls); the integration tests issue concurrently through
the real service and SoftHSM and check the invariants on the database and the certificates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pca_support import OWNER, Hierarchy, Pca, make_csr, new_key
from sqlalchemy import select

from service.private_ca.batch import Batcher, RunAll
from service.private_ca.requests import (
    CreateServerCertificate,
    IssueCommon,
    SubjectFields,
    ValidityPeriod,
)
from service.storage.schema import certificate as cert_t
from service.token_signer import TokenSigner


class Log:
    """The order of events across all jobs of a test."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, what: str, name: str) -> None:
        with self.lock:
            self.events.append((what, name))


class FakeJob:
    """A prepared issuance whose steps record themselves; failures on request."""

    def __init__(self, name: str, log: Log, *, reserve_fails: bool = False,
                 sign_fails: bool = False, verify_fails: bool = False,
                 record_fails: bool = False) -> None:
        self.name, self.log = name, log
        self.reserve_fails, self.sign_fails, self.verify_fails, self.record_fails = (
            reserve_fails, sign_fails, verify_fails, record_fails)
        self.released = 0
        self.failure_not_recorded = False  # the failed_op's write fails (the database away)

    def reserve_op(self) -> Callable[[Any], Any]:
        def op(_conn: Any) -> None:
            if self.reserve_fails:
                raise ValueError(f"duplicate serial for {self.name}")
            self.log.add("reserve", self.name)
        return op

    def sign(self) -> bytes:
        if self.sign_fails:
            raise RuntimeError(f"token refused {self.name}")
        self.log.add("sign", self.name)
        return f"sig-{self.name}".encode()

    def finish(self, signature: bytes) -> bytes:
        assert signature == f"sig-{self.name}".encode()  # its own signature, not another's
        if self.verify_fails:
            raise ValueError(f"signature of {self.name} does not verify")
        self.log.add("verify", self.name)
        return f"cert-{self.name}".encode()

    def record_op(self, certificate: bytes) -> Callable[[Any], Any]:
        def op(_conn: Any) -> None:
            if self.record_fails:
                raise ValueError(f"row of {self.name} is not RESERVED")
            self.log.add("record", certificate.decode())
        return op

    def failed_op(self, error: BaseException) -> Callable[[Any], Any]:
        def op(_conn: Any) -> None:
            if self.failure_not_recorded:
                raise OSError(f"database away while marking {self.name}")
            self.log.add("failed", f"{self.name}: {error}")
        return op

    def release(self, error: BaseException) -> None:
        self.released += 1


def committing(log: Log, *, delay: float = 0.0) -> RunAll:
    """A RunAll that runs every operation and then 'commits' the batch (one log entry)."""

    def run_all(ops: Sequence[Callable[[Any], Any]]) -> list[tuple[Any, BaseException | None]]:
        out: list[tuple[Any, BaseException | None]] = []
        for op in ops:
            try:
                out.append((op(None), None))
            except Exception as e:
                out.append((None, e))
        time.sleep(delay)  # the fsync: while it lasts, more callers queue
        log.add("commit", str(len(ops)))
        return out

    return run_all


def issue_all(batcher: Batcher, jobs: Sequence[FakeJob]) -> list[bytes | BaseException]:
    def one(job: FakeJob) -> bytes | BaseException:
        try:
            return batcher.issue(job)
        except Exception as e:
            return e

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs, timeout=30))


def test_every_caller_gets_its_own_certificate_and_commits_are_shared() -> None:
    log = Log()
    batcher = Batcher(committing(log, delay=0.01))
    jobs = [FakeJob(f"j{i}", log) for i in range(24)]
    results = issue_all(batcher, jobs)
    assert results == [f"cert-j{i}".encode() for i in range(24)]
    assert batcher.jobs == 24
    assert batcher.rounds < 24  # callers that queued during a commit shared the next one
    commits = [int(n) for what, n in log.events if what == "commit"]
    assert sum(commits) == 48  # one reservation and one record per job
    assert all(j.released == 0 for j in jobs)


def test_each_reservation_is_committed_before_its_signature_and_recorded_after() -> None:
    log = Log()
    jobs = [FakeJob(f"j{i}", log) for i in range(12)]
    issue_all(Batcher(committing(log, delay=0.005)), jobs)
    for job in jobs:
        reserve = log.events.index(("reserve", job.name))
        sign = log.events.index(("sign", job.name))
        record = log.events.index(("record", f"cert-{job.name}"))
        commit_after_reserve = next(i for i, e in enumerate(log.events)
                                    if i > reserve and e[0] == "commit")
        assert commit_after_reserve < sign < record


def test_a_failed_reservation_fails_only_its_caller_and_releases_its_key() -> None:
    log = Log()
    jobs = [FakeJob(f"j{i}", log, reserve_fails=i == 3) for i in range(8)]
    results = issue_all(Batcher(committing(log)), jobs)
    assert isinstance(results[3], ValueError)
    assert "duplicate serial for j3" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [
        f"cert-j{i}".encode() for i in range(8) if i != 3]
    assert ("sign", "j3") not in log.events  # never signed without a reservation
    assert [j.released for j in jobs] == [1 if i == 3 else 0 for i in range(8)]


@pytest.mark.parametrize(("failing", "message"), [
    ("sign_fails", "token refused j1"),
    ("verify_fails", "signature of j1 does not verify"),
])
def test_a_signing_or_verification_failure_marks_the_row_failed_and_maps_the_error(
        failing: str, message: str) -> None:
    log = Log()
    mapped: list[BaseException] = []

    def token_error(e: BaseException) -> BaseException:
        mapped.append(e)
        return LookupError(f"mapped: {e}")

    jobs = [FakeJob(f"j{i}", log, **{failing: i == 1}) for i in range(4)]
    results = issue_all(Batcher(committing(log), token_error=token_error), jobs)
    assert isinstance(results[1], LookupError)
    assert str(results[1]) == f"mapped: {message}"
    assert [str(e) for e in mapped] == [message]
    assert ("failed", f"j1: {message}") in log.events
    assert ("record", "cert-j1") not in log.events
    assert jobs[1].released == 1
    assert [results[i] for i in (0, 2, 3)] == [b"cert-j0", b"cert-j2", b"cert-j3"]


def test_a_signing_failure_that_could_not_be_recorded_keeps_the_key() -> None:
    # The row stays RESERVED (its failure was not written), so the recovery pass signs it
    # again later: the key it names must still be there then.
    log = Log()
    jobs = [FakeJob("ok", log), FakeJob("unrecorded", log, sign_fails=True)]
    jobs[1].failure_not_recorded = True
    results = issue_all(Batcher(committing(log)), jobs)
    assert results[0] == b"cert-ok" and isinstance(results[1], RuntimeError)
    assert jobs[1].released == 0


def test_a_round_signs_all_its_reservations_before_verifying_any() -> None:
    log = Log()
    issue_all(Batcher(committing(log, delay=0.005)), [FakeJob(f"j{i}", log) for i in range(24)])
    rounds: list[list[str]] = [[]]
    for what, _ in log.events:
        if what == "commit":
            rounds.append([])
        elif what in ("sign", "verify"):
            rounds[-1].append(what)
    assert any(r.count("sign") >= 2 for r in rounds)  # some round signed several
    for r in rounds:
        assert r == sorted(r, key=lambda what: what == "verify")  # signs, then verifies


def test_a_certificate_that_could_not_be_recorded_is_never_returned() -> None:
    log = Log()
    jobs = [FakeJob("ok", log), FakeJob("lost", log, record_fails=True)]
    results = issue_all(Batcher(committing(log)), jobs)
    assert results[0] == b"cert-ok"
    assert isinstance(results[1], ValueError)
    # The reservation (with its TBS) stays: the key is kept for the row that names it.
    assert jobs[1].released == 0


def test_a_broken_commit_reaches_every_caller_of_the_batch_and_nobody_hangs() -> None:
    calls = 0
    gate = threading.Event()

    def run_all(ops: Sequence[Callable[[Any], Any]]) -> list[tuple[Any, BaseException | None]]:
        nonlocal calls
        calls += 1
        gate.wait(5)  # let every caller queue behind the first batch
        if calls == 2:
            raise OSError("disk I/O error")
        return [(op(None), None) for op in ops]

    log = Log()
    batcher = Batcher(run_all)
    jobs = [FakeJob(f"j{i}", log) for i in range(6)]
    timer = threading.Timer(0.2, gate.set)
    timer.start()
    results = issue_all(batcher, jobs)
    timer.cancel()
    failed = [r for r in results if isinstance(r, OSError)]
    assert failed, results
    assert all(isinstance(r, bytes | OSError) for r in results)
    # A request whose reservation committed before the broken commit keeps its key: its row
    # stays RESERVED and is signed again later. One never reserved has its key released.
    reserved = {name for what, name in log.events if what == "reserve"}
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, OSError):
            assert job.released == (0 if job.name in reserved else 1), job.name
    # The batcher is usable afterwards.
    assert batcher.issue(FakeJob("after", log)) == b"cert-after"


def test_max_batch_is_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(committing(Log()), max_batch=0)


# --- the real service ----------------------------------------------------------------------


def _request(sub_id: str, csr: str) -> CreateServerCertificate:
    return CreateServerCertificate(IssueCommon(sub_id, immediately=1), SubjectFields(),
                                   ValidityPeriod(days=30), csr=csr)


def test_concurrent_issuance_batches_and_every_certificate_is_recorded(
        pca: Pca, ecc_ca: Hierarchy) -> None:
    key = new_key("ECC_256")
    csrs = [make_csr(key, f"batch{i}.example.com") for i in range(32)]
    before = pca.service.pipeline.rounds
    with ThreadPoolExecutor(16) as pool:
        issued = list(pool.map(
            lambda csr: pca.service.create_server_certificate(OWNER, _request(ecc_ca.sub_id, csr)),
            csrs, timeout=120))
    assert pca.service.pipeline.rounds - before < 32  # some commits were shared
    sub = x509.load_der_x509_certificate(ecc_ca.sub_der)
    serials = set()
    with pca.engine.connect() as conn:
        for i, result in enumerate(issued):
            cert = x509.load_pem_x509_certificate(result.certificate_pem.encode())
            cert.verify_directly_issued_by(sub)
            assert cert.subject.rfc4514_string().startswith(f"CN=batch{i}.example.com")
            serials.add(cert.serial_number)
            row = conn.execute(select(cert_t.c.status, cert_t.c.certificate, cert_t.c.serial)
                               .where(cert_t.c.identifier == result.identifier)).one()
            assert row.status == "ISSUED"
            assert row.certificate == cert.public_bytes(Encoding.DER)
            assert int(row.serial, 16) == cert.serial_number == int(result.serial_number, 16)
    assert len(serials) == 32


def test_the_token_signs_only_committed_reservations(pca: Pca, ecc_ca: Hierarchy,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant 2 under batching: at signing time, another connection sees the row."""
    service = pca.service
    seen: list[str | None] = []
    real_sign = TokenSigner.sign

    def checking_sign(self: TokenSigner, tbs: bytes) -> bytes:
        with pca.engine.connect() as other:  # a separate connection: committed rows only
            seen.append(other.execute(select(cert_t.c.status).where(cert_t.c.tbs == tbs))
                        .scalar_one_or_none())
        return real_sign(self, tbs)

    monkeypatch.setattr(TokenSigner, "sign", checking_sign)
    key = new_key("ECC_256")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: service.create_server_certificate(
            OWNER, _request(ecc_ca.sub_id, make_csr(key, f"inv{i}.example.com"))), range(8),
            timeout=120))
    assert seen == ["RESERVED"] * 8


def test_one_commit_records_the_last_round_and_reserves_the_next() -> None:
    """Pipelining: under load a commit carries records and reservations together."""
    log = Log()
    batcher = Batcher(committing(log, delay=0.005))
    issue_all(batcher, [FakeJob(f"j{i}", log) for i in range(24)])
    segments: list[set[str]] = [set()]
    for what, _ in log.events:
        if what == "commit":
            segments.append(set())
        else:
            segments[-1].add(what)
    assert any({"record", "reserve"} <= kinds for kinds in segments)
    assert batcher.rounds < 2 * 24 / 2  # fewer commits than two per round of two
