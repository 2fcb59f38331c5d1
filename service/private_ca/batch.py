"""Steps 6-10 of issuance for many requests at once: one thread signs, two commits per batch.

Why: concurrent requests in one worker process each used to run steps 6-10 themselves: two
group-committed writes, the token call and the verification. Every blocking call in that
path (SQLite statements, the commit's fsync, the write gate's flock, the token) hands the
GIL to another request thread and back, and on the VMs we measured each hand-over is a pair
of context switches: ~30 per certificate, ~40% of a worker's CPU in the kernel. Here the
request threads only prepare their TBSCertificate (steps 1-5, pure CPU) and queue it; one
of them at a time -- the *leader* -- takes everything queued and, for the whole batch:

  6. reserves every (issuer, serial) with its TBS in one transaction (one commit);
  7. signs each TBS in the token (one thread per process in the token anyway, DESIGN.md);
  8. assembles and verifies each certificate against the CA key (invariant 3);
  9. records every certificate, or marks FAILED the ones whose signing failed, in one
     transaction (one commit);
 10. hands each caller its certificate or its own error, waking only that caller.

Invariant 2 holds per certificate: its reservation is committed before the token signs it,
and it is returned only after the commit that records it. A failure of one request (a
duplicate custom serial, a CA revoked meanwhile, a token error) is reported to that caller
only; the group committer reruns the rest of a failed transaction without it.

Leadership passes like a baton, without a background thread: the leader runs batches until
its own request is done, then hands leadership to the oldest queued request (waking only
that thread) or, if none is queued, leaves it free for the next caller.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["MAX_BATCH", "Batcher", "Job", "RunAll"]

#: Most requests one leader pass takes (bounds a batch's commit and its callers' latency).
MAX_BATCH = 64


class Job(Protocol):
    """What the batcher needs from a prepared issuance (service.py's _Prepared)."""

    def reserve_op(self) -> Callable[[Any], Any]:
        """The step 6 write for this request."""

    def sign_and_verify(self) -> bytes:
        """Steps 7-8: the verified certificate DER, or an exception."""

    def record_op(self, certificate: bytes) -> Callable[[Any], Any]:
        """The step 9 write that records the certificate."""

    def failed_op(self, error: BaseException) -> Callable[[Any], Any]:
        """The step 9 write that marks the reservation FAILED after a signing error."""

    def release(self) -> None:
        """Undo what preparing made (a generated key) after a failure."""


#: Runs write operations and returns once they are committed, with (result, error) for each
#: operation (GroupCommitter.run_many): one operation's error leaves the others committed.
RunAll = Callable[[Sequence[Callable[[Any], Any]]], Sequence[tuple[Any, BaseException | None]]]


@dataclasses.dataclass(eq=False)
class _Item:
    job: Job
    wake: Any = dataclasses.field(default_factory=threading.Lock)
    lead: bool = False
    done: bool = False
    certificate: bytes | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.wake.acquire()  # released once: when done, or when handed leadership


class Batcher:
    """Runs steps 6-10 of queued issuances in batches (see the module docstring)."""

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
        self.batches = 0  # leader passes that ran (for tests and benchmarks)
        self.jobs = 0

    def issue(self, job: Job) -> bytes:
        """Steps 6-10 for ``job``; the verified certificate DER once it is recorded."""
        item = _Item(job)
        with self._mutex:
            self._queue.append(item)
            if not self._leading:
                self._leading = item.lead = True
        if not item.lead:
            item.wake.acquire()  # done, or leadership handed to us
        if not item.done:
            self._lead(item)
        if item.error is not None:
            raise item.error
        assert item.certificate is not None
        return item.certificate

    def _lead(self, mine: _Item) -> None:
        try:
            while not mine.done:
                with self._mutex:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                self._run(batch, mine)
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.release()
                else:
                    self._leading = False

    def _run(self, batch: list[_Item], mine: _Item) -> None:
        try:
            self._steps(batch)
        except BaseException as e:
            # Not a request's own failure (those are caught per item): every caller left in
            # the batch learns it instead of waiting forever.
            for item in batch:
                if not item.done:
                    item.error, item.done = e, True
                    item.job.release()
            raise
        finally:
            for item in batch:
                if item is not mine and item.done:
                    item.wake.release()
        self.batches += 1
        self.jobs += len(batch)

    def _steps(self, batch: list[_Item]) -> None:
        # Step 6: every reservation committed before the token signs anything.
        reserved = []
        for item, (_, error) in zip(batch, self._run_all([i.job.reserve_op() for i in batch]),
                                    strict=True):
            if error is not None:
                self._fail(item, error)
            else:
                reserved.append(item)
        # Steps 7-8: sign and verify, one after another (the token takes one call at a time).
        records: list[tuple[_Item, Callable[[Any], Any], BaseException | None]] = []
        for item in reserved:
            try:
                certificate = item.job.sign_and_verify()
            except Exception as e:
                records.append((item, item.job.failed_op(e), self._token_error(e)))
            else:
                item.certificate = certificate
                records.append((item, item.job.record_op(certificate), None))
        # Step 9: one commit records every certificate (and every failure, with its reason).
        outcomes = self._run_all([op for _, op, _ in records])
        for (item, _, sign_error), (_, error) in zip(records, outcomes, strict=True):
            if sign_error is not None:
                self._fail(item, sign_error)
            elif error is not None:
                # Signed but not recorded: the row stays RESERVED with its TBS (revocable);
                # the caller gets the error, never an unrecorded certificate.
                item.certificate = None
                self._fail(item, error, release=False)
            else:
                item.done = True

    @staticmethod
    def _fail(item: _Item, error: BaseException, *, release: bool = True) -> None:
        item.error, item.done = error, True
        if release:
            item.job.release()
