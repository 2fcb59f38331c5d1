"""Rate limits per principal and action class, shared by every worker process of a server.

Which limiter and why: a token bucket per (principal, action class) in a shared-memory table
that the supervisor creates before it spawns the workers and hands to each of them (and to
any worker it restarts). Workers share a port (SO_REUSEPORT), so one principal's calls land
on any of them: a per-process bucket would give N workers N times the quota. The database
would be shared too, but a write per call costs more than the issuance budget allows
(SQLite serialises writers); a shared-memory bucket costs one uncontended POSIX semaphore
and a few arithmetic operations per call, and needs nothing outside the machine. Several
machines behind one load balancer each enforce the quota on their own (documented).

The table has a fixed number of slots found by open addressing on a 64-bit hash of the key;
when every probed slot is taken, the one idle longest is reused (its bucket was full anyway
unless it was used in the last second or so). ``time.monotonic`` is CLOCK_MONOTONIC, the
same clock in every process of the machine.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Decision", "SharedRateLimiter", "key_hash"]

_SLOTS = 4096
_PROBES = 16


@dataclass(frozen=True)
class Decision:
    """The outcome of one acquire: allowed, or how long until a token is available."""

    allowed: bool
    retry_after: float = 0.0


_ALLOWED = Decision(True)


def key_hash(key: str) -> int:
    """The table key of a bucket name (callers on a hot path compute it once)."""
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
    return h or 1  # 0 marks an empty slot


class SharedRateLimiter:
    """Token buckets in shared memory; picklable, so it can be passed to spawned workers."""

    def __init__(self, keys: Any, tokens: Any, stamps: Any, lock: Any) -> None:
        self._shared = (keys, tokens, stamps)
        # Typed views of the shared arrays: indexing a memoryview is several times cheaper
        # than indexing a ctypes array, and this runs on every call.
        self._keys = memoryview(keys).cast("B").cast("Q")
        self._tokens = memoryview(tokens).cast("B").cast("d")
        self._stamps = memoryview(stamps).cast("B").cast("d")
        self._lock = lock

    @classmethod
    def create(cls, context: Any = None) -> SharedRateLimiter:
        """A new, empty table (in the supervisor, before the workers start)."""
        ctx = context or multiprocessing.get_context("spawn")
        return cls(ctx.RawArray(ctypes.c_uint64, _SLOTS), ctx.RawArray(ctypes.c_double, _SLOTS),
                   ctx.RawArray(ctypes.c_double, _SLOTS), ctx.Lock())

    def __getstate__(self) -> dict[str, Any]:
        keys, tokens, stamps = self._shared
        return {"keys": keys, "tokens": tokens, "stamps": stamps, "lock": self._lock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keys"], state["tokens"], state["stamps"], state["lock"])  # type: ignore[misc]

    def _slot(self, h: int) -> int:
        start = h % _SLOTS
        oldest, oldest_stamp = start, math.inf
        for i in range(_PROBES):
            slot = (start + i) % _SLOTS
            key = self._keys[slot]
            if key == h:
                return slot
            if key == 0:
                self._keys[slot] = h
                self._stamps[slot] = 0.0
                return slot
            if self._stamps[slot] < oldest_stamp:
                oldest, oldest_stamp = slot, self._stamps[slot]
        self._keys[oldest] = h
        self._stamps[oldest] = 0.0
        return oldest

    def acquire(self, key: str, rate: float, *, now: float | None = None) -> Decision:
        """Take one token from ``key``'s bucket (``rate`` per second, burst of one second)."""
        return self.acquire_hashed(key_hash(key), rate, now=now)

    def acquire_hashed(self, h: int, rate: float, *, now: float | None = None) -> Decision:
        """:meth:`acquire` for a key already hashed with :func:`key_hash`."""
        capacity = max(1.0, rate)
        t = time.monotonic() if now is None else now
        with self._lock:
            slot = self._slot(h)
            stamp = self._stamps[slot]
            tokens = capacity if stamp == 0.0 else min(
                capacity, self._tokens[slot] + (t - stamp) * rate)
            self._stamps[slot] = t
            if tokens >= 1.0:
                self._tokens[slot] = tokens - 1.0
                return _ALLOWED
            self._tokens[slot] = tokens
        return Decision(False, (1.0 - tokens) / rate)
