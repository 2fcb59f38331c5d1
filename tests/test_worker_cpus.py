"""Which CPU each worker process is pinned to (service/serve.py, worker_cpus)."""

from __future__ import annotations

import pytest

from service.serve import worker_cpus


@pytest.mark.parametrize(
    ("workers", "allowed", "pin", "expected"),
    [
        (2, {0, 1}, True, [0, 1]),
        # Round-robin over the CPUs this process may use, in order, wherever they are.
        (4, {2, 5}, True, [2, 5, 2, 5]),
        (3, {0, 1, 2, 3}, True, [0, 1, 2]),
        # Off by configuration, with one worker (gRPC's threads may use every core), with one
        # CPU (nothing to spread), or where the platform cannot tell.
        (2, {0, 1}, False, [None, None]),
        (1, {0, 1}, True, [None]),
        (2, {0}, True, [None, None]),
        (2, None, True, [None, None]),
    ],
)
def test_worker_cpus(workers: int, allowed: set[int] | None, pin: bool,
                     expected: list[int | None]) -> None:
    assert worker_cpus(workers, allowed, pin=pin) == expected
