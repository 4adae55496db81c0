"""Seeded fault injection (random, and rules set at run time) and the server-side rate limits."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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


SERVICES = ("cvm", "cos", "sts", "metadata")


@dataclass
class FaultRule:
    """Runtime chaos: requests of ``service`` and ``action`` (None: any) get a fault with probability ``rate``.

    :param kinds: faults to choose from (``FAULT_KINDS``); empty for ``latency`` alone.
    :param service: ``cvm``, ``cos``, ``sts`` or ``metadata``, or None for any.
    :param action: the action as counted in ``state()``: ``ExportImages``, ``COS HEAD``...; None for any.
    :param rate: share of the matching requests the rule fires on.
    :param count: fire at most this many times, then the rule is gone; None for no end.
    :param latency: seconds to wait before answering, each time the rule fires.
    """

    kinds: tuple[str, ...] = ()
    service: str | None = None
    action: str | None = None
    rate: float = 1.0
    count: int | None = None
    latency: float = 0.0
    id: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"kinds must be among {', '.join(FAULT_KINDS)}, got {unknown}")
        if self.service is not None and self.service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)} or null, got {self.service!r}")
        if self.action is not None and not isinstance(self.action, str):
            raise ValueError(f"action must be a string or null, got {self.action!r}")
        if not isinstance(self.rate, int | float) or not 0 < self.rate <= 1:
            raise ValueError(f"rate must be a number in (0, 1], got {self.rate!r}")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError(f"count must be a positive integer or null, got {self.count!r}")
        if not isinstance(self.latency, int | float) or self.latency < 0:
            raise ValueError(f"latency must be a number of seconds >= 0, got {self.latency!r}")
        if not self.kinds and not self.latency:
            raise ValueError("a rule needs kinds, a latency, or both")

    @classmethod
    def from_json(cls, document: Any) -> FaultRule:
        """A rule from its JSON form ``{"kinds", "service", "action", "rate", "count", "latency"}``."""
        if not isinstance(document, dict):
            raise ValueError("a fault rule must be a JSON object")
        fields = {"kinds", "service", "action", "rate", "count", "latency"}
        unknown = sorted(set(document) - fields)
        if unknown:
            raise ValueError(f"unknown fault rule fields {unknown}; allowed: {', '.join(sorted(fields))}")
        kinds = document.get("kinds", [])
        if not isinstance(kinds, list):
            raise ValueError(f"kinds must be a list of fault kinds, got {kinds!r}")
        return cls(**{**document, "kinds": tuple(kinds)})

    def matches(self, service: str, action: str) -> bool:
        """True when the rule covers requests of this service and action."""
        return self.service in (None, service) and self.action in (None, action)

    def to_json(self) -> dict[str, Any]:
        """The rule as ``GET /_emulator/faults`` lists it."""
        return {
            "id": self.id,
            "kinds": list(self.kinds),
            "service": self.service,
            "action": self.action,
            "rate": self.rate,
            "count": self.count,
            "latency": self.latency,
            "fired": self.fired,
        }


class FaultRules:
    """The runtime fault rules, tried in the order added; the first that fires decides. Thread-safe.

    :param seed: seed of the draws of ``rate`` and of the kind among several.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._next_id = 1
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        """Append a rule; it gets the next id."""
        with self._lock:
            rule.id, self._next_id = self._next_id, self._next_id + 1
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and re-seed the draws."""
        with self._lock:
            self._rules.clear()
            self._rng = random.Random(self._seed)

    def draw(self, service: str, action: str) -> tuple[str | None, float] | None:
        """(kind or None for latency alone, seconds to wait) of the first rule that fires, or None."""
        if not self._rules:
            return None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(service, action) or (rule.rate < 1 and self._rng.random() >= rule.rate):
                    continue
                rule.fired += 1
                if rule.count is not None and rule.fired >= rule.count:
                    self._rules.remove(rule)
                kind = self._rng.choice(rule.kinds) if rule.kinds else None
                return kind, rule.latency + (SLOW_SECONDS[1] if kind == "slow" else 0.0)
        return None

    def to_json(self) -> list[dict[str, Any]]:
        """Every rule still in force."""
        with self._lock:
            return [rule.to_json() for rule in self._rules]
