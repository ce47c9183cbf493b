"""A worker's inference turn, granted in arrival order.

Each ``lrface serve`` worker runs one request at a time (:class:`lrface.serve.engine.Engine`).
``threading.Lock`` does not say who gets a released lock next: a request that arrived
late can overtake ones that have waited for many turns, so under load a few requests wait
far longer than the rest and run into ``--timeout`` (503) while the median is fine.
:class:`FairLock` hands the lock to the waiter that asked first, so a request's wait is
about the work queued ahead of it.
"""

from __future__ import annotations

import collections
import threading

__all__ = ["FairLock"]


class FairLock:
    """A mutual-exclusion lock granted first come, first served, with a timeout."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locked = False
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds behind the earlier waiters;
        False when the time ran out (the lock was not taken)."""
        with self._mutex:
            if not self._locked:
                self._locked = True
                return True
            granted = threading.Event()
            self._waiters.append(granted)
        if granted.wait(max(0.0, timeout)):
            return True
        with self._mutex:
            if granted.is_set():  # handed over between the timeout and this line
                return True
            self._waiters.remove(granted)
            return False

    def release(self) -> None:
        """Hand the lock to the longest waiter, or free it when none waits."""
        with self._mutex:
            if not self._locked:
                raise RuntimeError("FairLock.release: the lock is not held")
            if self._waiters:
                self._waiters.popleft().set()  # stays locked: the waiter owns it now
            else:
                self._locked = False
