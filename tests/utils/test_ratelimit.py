"""The client-side rate limiter: slot arithmetic (no timing assertions) and the per-process registry."""

from __future__ import annotations

import asyncio

import pytest

from airflow_cvm_export.utils import ratelimit
from airflow_cvm_export.utils.ratelimit import RateLimiter, limiter_for


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    clock = FrozenClock()
    monkeypatch.setattr(ratelimit, "time", clock)
    return clock


def test_reserve_books_consecutive_slots(frozen: FrozenClock):
    limiter = RateLimiter(20)
    assert limiter.interval == pytest.approx(1.05 / 20)
    delays = [limiter.reserve() for _ in range(4)]
    assert delays == pytest.approx([0, 0.0525, 0.105, 0.1575])


def test_idle_time_is_not_banked(frozen: FrozenClock):
    limiter = RateLimiter(10)
    limiter.reserve()
    frozen.now += 60
    assert limiter.reserve() == 0
    assert limiter.reserve() == pytest.approx(0.105)


def test_zero_rate_never_waits(frozen: FrozenClock):
    limiter = RateLimiter(0)
    assert [limiter.reserve() for _ in range(3)] == [0, 0, 0]


def test_wait_and_await_slot_sleep_for_the_reserved_delay(frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch):
    slept: list[float] = []
    monkeypatch.setattr(ratelimit.time, "sleep", slept.append, raising=False)

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(ratelimit.asyncio, "sleep", fake_sleep)
    limiter = RateLimiter(40)
    limiter.wait()
    limiter.wait()
    asyncio.run(limiter.await_slot())
    assert slept == pytest.approx([1.05 / 40, 2 * 1.05 / 40])


def test_registry_one_limiter_per_credentials_and_action():
    first = limiter_for("AKID-registry", "DescribeImages", 40.0)
    assert limiter_for("AKID-registry", "DescribeImages", 40.0) is first
    assert limiter_for("AKID-registry", "ExportImages", 20.0) is not first
    assert limiter_for("AKID-other", "DescribeImages", 40.0) is not first
    assert limiter_for("AKID-registry", "DescribeImages", 0.0) is None
    assert limiter_for("AKID-registry", "DescribeRegions", None) is None
