"""Client-side rate limiting, one limiter per (SecretId, action) per process."""

from __future__ import annotations

import asyncio
import threading
import time

# Spacing is stretched a little so a server counting in 1-second windows never sees one too many.
_MARGIN = 1.05


class RateLimiter:
    """Spaces calls at most ``rate`` per second; shared by threads and the triggerer's event loop.

    ``reserve()`` books the next free slot and returns how long to wait for it, so the lock is
    never held while sleeping.

    :param rate: calls per second; 0 or less means unlimited.
    """

    def __init__(self, rate: float) -> None:
        self.interval = _MARGIN / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next free slot; return the seconds to wait until it (0 when unlimited)."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now

    def wait(self) -> None:
        """Block the calling thread until its slot."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    async def await_slot(self) -> None:
        """Wait for a slot without blocking the event loop."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


_LIMITERS: dict[tuple[str, str, float], RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter_for(secret_id: str, action: str, rate: float | None) -> RateLimiter | None:
    """Return the process-wide limiter for (secret_id, action), or None when unlimited."""
    if not rate:
        return None
    key = (secret_id, action, rate)
    limiter = _LIMITERS.get(key)
    if limiter is None:
        with _REGISTRY_LOCK:
            limiter = _LIMITERS.setdefault(key, RateLimiter(rate))
    return limiter
