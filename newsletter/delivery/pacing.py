"""Pacing shared by every worker thread of a send: a message rate and retry waits.

``Pacer.acquire(n)`` books ``n`` messages against the configured rate: the
caller sleeps until the interval its messages take at that rate is free. A
batch may therefore go out in one burst, but the average over a send never
exceeds the rate. ``pause(seconds)`` holds every worker, e.g. until a 429's
X-RateLimit-Reset.

``backoff_delay`` is exponential backoff with "equal jitter": the n-th retry
waits between half and all of ``base * 2**n`` (capped), so workers that failed
together do not come back together.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class Pacer:
    def __init__(
        self,
        rate: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        #: messages per second; 0 = unlimited
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0
        self._paused_until = 0.0

    def acquire(self, n: int) -> float:
        """Wait for the turn of ``n`` messages; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if self.rate > 0:
                start = max(start, self._next)
                self._next = start + n / self.rate
            wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def refund(self, n: int) -> None:
        """Give back ``n`` messages booked by :meth:`acquire` but not sent."""
        if self.rate > 0 and n > 0:
            with self._lock:
                self._next = max(self._clock(), self._next - n / self.rate)

    def pause(self, seconds: float) -> None:
        """Hold every worker for ``seconds`` from now (a provider asked us to)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def wait_pause(self) -> None:
        """Sleep out a pause set by another worker, if any."""
        with self._lock:
            wait = self._paused_until - self._clock()
        if wait > 0:
            self._sleep(wait)


def backoff_delay(
    attempt: int, base: float, cap: float, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    ceiling = min(cap, base * (2**attempt))
    return ceiling / 2 + rand() * ceiling / 2
