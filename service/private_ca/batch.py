"""The signing pipeline: steps 6-9 of many issuances at once, one commit per round.

A named component behind the issuance cycle (service/private_ca/issuance.py): the cycle
hands it a Reservation and gets the recorded certificate back; the rounds, the batching of
token calls and the shared commits are its business alone.

Why: concurrent requests in one worker process each used to run steps 6-9 themselves: two
group-committed writes, the token call and the verification. Every blocking call in that
path (SQLite statements, the commit's fsync, the write gate's flock, the token) hands the
GIL to another request thread and back, and on the VMs we measured each hand-over is a pair
of context switches: ~30 per certificate, ~40% of a worker's CPU in the kernel. Here the
request threads only prepare their TBSCertificate (steps 1-5) and queue it; one
of them at a time -- the *leader* -- runs rounds. Each round:

  - commits, in one transaction (GroupCommitter.run_many), the records of the certificates
    signed in the previous round (step 9; a failure to sign or verify is written as its
    Reservation says, FAILED with the reason in most cases) together with the
    reservations of everything queued since (step 6);
  - wakes each recorded caller with its certificate, and each refused one with its own
    error;
  - signs each newly reserved TBS in the token (step 7; one thread per process in the token
    anyway, docs/architecture.md), all of the round's back to back, and then assembles each
    certificate and verifies it against the CA key (step 8, invariant 3); the next round's commit
    records them.

So under load every commit does two jobs, and one fsync per round serves both. Invariant 2
holds per certificate: its reservation is committed before the token signs it, and it is
returned only after the commit that records it. A failure of one request (a duplicate
custom serial, a CA revoked meanwhile, a token error) reaches that caller only; the group
committer reruns the rest of a failed transaction without it.

Leadership passes like a baton, without a background thread: the leader runs rounds until
its own request is recorded, then hands the lead, and the certificates still waiting for
their record, to one of their callers (or to the oldest queued request), waking only that
thread; with nothing in flight the lead is free for the next caller.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from service.baton import Waiter

__all__ = ["MAX_BATCH", "Batcher", "Job", "RunAll"]

#: Tests only (tests/e2e/test_crash_leftovers.py): a file whose presence makes the process
#: exit right after a round's reservations are committed, before the token signs, as a
#: crash there would. The file is removed first, so the exit happens once.
_EXIT_AFTER_RESERVE = os.environ.get("HSMCA_TEST_EXIT_AFTER_RESERVE", "")


def _exit_if_asked() -> None:
    try:
        os.unlink(_EXIT_AFTER_RESERVE)
    except OSError:
        return
    os._exit(70)


#: Most requests one leader pass takes (bounds a batch's commit and its callers' latency).
MAX_BATCH = 64


class Job(Protocol):
    """What the pipeline needs from a reservation (issuance.Reservation)."""

    def reserve_op(self) -> Callable[[Any], Any]:
        """The step 6 write for this request."""

    def sign(self) -> bytes:
        """Step 7: the token's signature over the reserved TBS, or an exception."""

    def finish(self, signature: bytes) -> bytes:
        """Step 8: the certificate DER, verified against the CA key, or an exception."""

    def record_op(self, certificate: bytes) -> Callable[[Any], Any]:
        """The step 9 write that records the certificate."""

    def failed_op(self, error: BaseException) -> Callable[[Any], Any]:
        """The step 9 write after a failure to sign or verify (FAILED, as a rule)."""

    def release(self, error: BaseException) -> None:
        """Undo what preparing made (a generated key) after ``error``, unless the row stays
        RESERVED to be signed again (a job that met an outage), which needs it."""


#: Runs write operations and returns once they are committed, with (result, error) for each
#: operation (GroupCommitter.run_many): one operation's error leaves the others committed.
RunAll = Callable[[Sequence[Callable[[Any], Any]]], Sequence[tuple[Any, BaseException | None]]]


class _Item(Waiter):
    """One queued issuance and, once finished, its certificate or error."""

    __slots__ = ("certificate", "done", "error", "job")

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self.done = False
        self.certificate: bytes | None = None
        self.error: BaseException | None = None


class Batcher:
    """Runs steps 6-9 of queued issuances in pipelined rounds (see the module docstring)."""

    def __init__(self, run_all: RunAll, *, max_batch: int = MAX_BATCH,
                 token_error: Callable[[BaseException], BaseException] = lambda e: e) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run_all = run_all
        self._max_batch = max_batch
        self._token_error = token_error
        self._mutex = threading.Lock()
        self._queue: list[_Item] = []
        self._leading = False
        # Signed (or failed to sign) in the last round, to be recorded by the next one; only
        # the leader touches it, and it passes from leader to leader with the lead.
        self._signed: list[tuple[_Item, Callable[[Any], Any], BaseException | None]] = []
        self.rounds = 0  # commits made (for tests and benchmarks)
        self.jobs = 0  # requests finished

    def issue(self, job: Job) -> bytes:
        """Steps 6-9 for ``job``; the verified certificate DER once it is recorded."""
        item = _Item(job)
        with self._mutex:
            self._queue.append(item)
            if not self._leading:
                self._leading = item.lead = True
        if not item.lead:
            item.park()  # done, or leadership handed to us
        if not item.done:
            self._lead(item)
        if item.error is not None:
            raise item.error
        assert item.certificate is not None
        return item.certificate

    def _lead(self, mine: _Item) -> None:
        try:
            while not mine.done:
                self._round(mine)
        except BaseException as e:
            # Not a request's own failure (those are caught per item): every caller whose
            # request is in flight learns it instead of waiting forever. Their rows are
            # reserved and stay so (signed again later): their keys stay with them.
            for item, _, _ in self._signed:
                self._fail(item, e, release=False)
                if item is not mine:
                    item.wake()
            self.jobs += len(self._signed)
            self._signed = []
            raise
        finally:
            with self._mutex:
                # Whoever is in flight (signed, waiting for its record) or queued leads next;
                # only that thread is woken, and it carries the pipeline on.
                waiting = [i for i, _, _ in self._signed] + self._queue[:1]
                if waiting:
                    waiting[0].hand_lead()
                else:
                    self._leading = False

    def _round(self, mine: _Item) -> None:
        """One commit: record the last round's certificates and reserve the queued ones."""
        with self._mutex:
            new = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        signed, self._signed = self._signed, []
        finished: list[_Item] = []
        committed = False
        try:
            # Step 9 for the last round and step 6 for this one, in one transaction: a
            # certificate is returned only once recorded, and none is signed before its
            # reservation is committed.
            outcomes = self._run_all([op for _, op, _ in signed]
                                     + [i.job.reserve_op() for i in new])
            committed = True
            self.rounds += 1
            for (item, _, sign_error), (_, error) in zip(signed, outcomes[:len(signed)],
                                                         strict=True):
                if sign_error is not None:
                    # Its failure not committed: the row stays RESERVED and is signed again
                    # later (the recovery pass), with the key it names.
                    self._fail(item, sign_error, release=error is None)
                elif error is not None:
                    # Signed but not recorded: the row stays RESERVED with its TBS
                    # (revocable); the caller gets the error, never an unrecorded certificate.
                    item.certificate = None
                    self._fail(item, error, release=False)
                else:
                    item.done = True
                finished.append(item)
            reserved = []
            for item, (_, error) in zip(new, outcomes[len(signed):], strict=True):
                if error is not None:
                    self._fail(item, error)
                    finished.append(item)
                else:
                    reserved.append(item)
            # Step 10 for everyone this commit finished, before the token work below: their
            # answers are not held back by this round's signatures, and their next requests
            # are queued for the next round.
            self._wake(finished, mine)
            finished = []
            if reserved and _EXIT_AFTER_RESERVE:
                _exit_if_asked()
            # Step 7 for the whole round, then step 8 for each: the token takes one call at a
            # time anyway, and back to back its code stays in the CPU caches (a signature
            # cost ~3% less CPU in a loaded worker than with a verification in between:
            # 87 vs 90 us P-256, 502 vs 516 us RSA-2048). The next round's commit records
            # them.
            signatures: list[tuple[_Item, bytes | Exception]] = []
            for item in reserved:
                try:
                    signatures.append((item, item.job.sign()))
                except Exception as e:
                    signatures.append((item, e))
            for item, signature in signatures:
                failure: Exception | None = None
                if isinstance(signature, Exception):
                    failure = signature
                else:
                    try:
                        certificate = item.job.finish(signature)
                    except Exception as e:
                        failure = e
                if failure is not None:
                    self._signed.append((item, item.job.failed_op(failure),
                                         self._token_error(failure)))
                else:
                    item.certificate = certificate
                    self._signed.append((item, item.job.record_op(certificate), None))
        except BaseException as e:
            # Not a request's own failure: everyone of this round not yet finished or
            # handed on (in self._signed, which _lead fails) learns it.
            handed_on = {id(i) for i, _, _ in self._signed}
            # A row reserved stays so (signed again later) and keeps its key: the last round's
            # always, this round's once the commit went through; a request this round did not
            # reserve has no row to keep it for.
            for items, release in (([i for i, _, _ in signed], False), (new, not committed)):
                for item in items:
                    if not item.done and id(item) not in handed_on:
                        self._fail(item, e, release=release)
                        finished.append(item)
            raise
        finally:
            self._wake(finished, mine)

    def _wake(self, finished: list[_Item], mine: _Item) -> None:
        """Wake the callers of ``finished`` (the leader's own request returns by itself)."""
        self.jobs += len(finished)
        for item in finished:
            if item is not mine:
                item.wake()

    @staticmethod
    def _fail(item: _Item, error: BaseException, *, release: bool = True) -> None:
        item.error, item.done = error, True
        if release:
            item.job.release(error)

