"""A parked thread's wake-up, for the one-leader-at-a-time queues of the hot path.

Group commit (service/storage/group_commit.py) and batched issuance
(service/private_ca/batch.py) both let one caller at a time lead: it does the work of every
queued caller and then hands the lead to one waiting caller. Each waiting thread parks on
its own lock, taken when created and released exactly once -- when its work is done, or
when the lead is handed to it -- so a round wakes only the threads it finished (no
``notify_all`` herd; thread hand-offs are what costs most on the VMs we measured).
"""

from __future__ import annotations

from _thread import allocate_lock

__all__ = ["Waiter"]


class Waiter:
    """One caller's wake-up: ``park`` blocks until ``wake`` (once) or ``hand_lead``."""

    __slots__ = ("_lock", "lead")

    def __init__(self) -> None:
        self.lead = False  # set by whoever makes this caller the leader
        self._lock = allocate_lock()
        self._lock.acquire()

    def park(self) -> None:
        """Block until woken (the caller's work is done, or it now leads)."""
        self._lock.acquire()

    def wake(self) -> None:
        """Let the parked caller go on; call once."""
        self._lock.release()

    def hand_lead(self) -> None:
        """Make this caller the leader and wake it."""
        self.lead = True
        self._lock.release()
