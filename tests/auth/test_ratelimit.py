"""The shared rate limiter: token-bucket arithmetic, and one quota across processes."""

from __future__ import annotations

import multiprocessing
import time

from service.auth.ratelimit import SharedRateLimiter


def test_bucket_allows_a_burst_of_one_second_then_the_rate() -> None:
    limiter = SharedRateLimiter.create()
    t = 1000.0
    assert all(limiter.acquire("p\0issuance", 5, now=t).allowed for _ in range(5))
    refused = limiter.acquire("p\0issuance", 5, now=t)
    assert not refused.allowed and 0 < refused.retry_after <= 0.2
    assert limiter.acquire("p\0issuance", 5, now=t + 0.2).allowed
    assert not limiter.acquire("p\0issuance", 5, now=t + 0.2).allowed
    # Other keys have their own buckets.
    assert limiter.acquire("q\0issuance", 5, now=t).allowed
    assert limiter.acquire("p\0reads", 5, now=t).allowed


def test_many_keys_fit_and_reuse_idle_slots() -> None:
    limiter = SharedRateLimiter.create()
    for i in range(10_000):
        assert limiter.acquire(f"k{i}", 1, now=float(i)).allowed


def _hammer(limiter: SharedRateLimiter, start: float, seconds: float,
            out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    allowed = 0
    time.sleep(max(0.0, start - time.monotonic()))  # CLOCK_MONOTONIC: one clock per machine
    while time.monotonic() < start + seconds:
        if limiter.acquire("shared\0issuance", 20).allowed:
            allowed += 1
        time.sleep(0.001)
    out.put(allowed)


def test_two_processes_share_one_quota() -> None:
    ctx = multiprocessing.get_context("spawn")
    limiter = SharedRateLimiter.create(ctx)
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    seconds = 2.0
    start = time.monotonic() + 3.0
    procs = [ctx.Process(target=_hammer, args=(limiter, start, seconds, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    total = out.get(timeout=60) + out.get(timeout=60)
    for p in procs:
        p.join(10)
    # 20/s for 2 s plus the one-second burst: 60 at most, whatever the process count.
    assert 20 * seconds <= total <= 20 * seconds + 20 + 1, total
