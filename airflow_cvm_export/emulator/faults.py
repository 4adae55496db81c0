"""Seeded fault injection and the server-side rate limits."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping

FAULT_KINDS = ("throttle", "internal", "http5xx", "slow", "drop_before", "drop_after")
SLOW_SECONDS = (2.0, 3.0)
DEFAULT_RATE_LIMITS: dict[str, float] = {"ExportImages": 20, "DescribeImages": 40}


class FaultInjector:
    """Draws, from ``random.Random(seed)``, which requests get a fault and which one.

    :param fault_rate: share of CVM and COS requests that get a fault.
    :param seed: seed of the draws.
    :param kinds: the faults to draw from (default: every one of ``FAULT_KINDS``).
    """

    def __init__(self, fault_rate: float, seed: int, kinds: Iterable[str] | None = None) -> None:
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds) if kinds is not None else FAULT_KINDS
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}, got {sorted(unknown)}")
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> tuple[str, float] | None:
        """Return (kind, delay in seconds for ``slow``) for the next request, or None for no fault."""
        if self.fault_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.fault_rate:
                return None
            kind = self._rng.choice(self.kinds)
            delay = self._rng.uniform(*SLOW_SECONDS) if kind == "slow" else 0.0
        return kind, delay


class RateLimiter:
    """Per (SecretId, action) limits counted in one-second windows; a rate of 0 or None disables one.

    Only admitted requests count towards the window.

    :param limits: requests per second per action.
    """

    def __init__(self, limits: Mapping[str, float | None]) -> None:
        self.limits = {action: rate for action, rate in limits.items() if rate}
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def admit(self, secret_id: str, action: str) -> bool:
        """Count the request and return True, or return False if the limit is reached."""
        rate = self.limits.get(action)
        if not rate:
            return True
        window = int(time.monotonic())
        key = (secret_id, action)
        with self._lock:
            start, count = self._windows.get(key, (window, 0))
            if start != window:
                count = 0
            if count >= rate:
                return False
            self._windows[key] = (window, count + 1)
            return True
