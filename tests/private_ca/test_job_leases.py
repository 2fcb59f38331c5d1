"""The job thread keeps the lease of the job in hand and gives its leases back on stop."""

from __future__ import annotations

import threading
import time

from service.private_ca.jobs import JobWorker


class _Runner:
    """Stands in for PrivateCaService: one slow job, and what the thread asked for."""

    def __init__(self) -> None:
        self.renewed: list[str] = []
        self.released: list[str] = []
        self.running = threading.Event()
        self.finish = threading.Event()
        self._ran = False

    def run_next_job(self, worker_id: str) -> bool:
        if self._ran:
            return False
        self._ran = True
        self.running.set()
        self.finish.wait(10)  # a job that takes longer than its lease
        return True

    def renew_job_leases(self, worker_id: str) -> int:
        self.renewed.append(worker_id)
        return 1

    def release_job_leases(self, worker_id: str) -> int:
        self.released.append(worker_id)
        return 1


def test_lease_is_renewed_while_a_job_runs_and_released_on_stop() -> None:
    runner = _Runner()
    worker = JobWorker(runner, poll_seconds=0.01, lease_seconds=0.3)
    worker.start()
    assert runner.running.wait(10)
    time.sleep(0.5)  # more than a lease: renewed every third of one meanwhile
    assert len(runner.renewed) >= 2 and set(runner.renewed) == {worker.worker_id}
    assert runner.released == []
    runner.finish.set()
    worker.stop(10)
    assert runner.released == [worker.worker_id]
