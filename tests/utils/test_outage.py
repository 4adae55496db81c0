"""The outage tolerance every mode of waiting shares (pure)."""

from __future__ import annotations

import pytest

from airflow_cvm_export.utils.errors import (
    TencentCloudAuthError,
    TencentCloudConfigError,
    TencentCloudConnectError,
    TencentCloudNotFoundError,
    TencentCloudResponseError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)
from airflow_cvm_export.utils.outage import DEFAULT_MAX_OUTAGE, Outage, is_permanent, is_transient

TRANSIENT = [
    TencentCloudConnectError("connection refused", action="DescribeImages"),
    TencentCloudServerError("HTTP 502", action="COS HEAD"),
    TencentCloudThrottledError("slow down", code="RequestLimitExceeded"),
    TencentCloudResponseError("an HTML page", action="DescribeImages"),
]
PERMANENT = [
    TencentCloudAuthError("bad signature", code="AuthFailure.SignatureFailure"),
    TencentCloudNotFoundError("no such bucket", code="InvalidParameterValue.BucketNotFound"),
    TencentCloudConfigError("no region"),
]


def test_the_default_tolerance_is_at_least_an_hour() -> None:
    assert DEFAULT_MAX_OUTAGE >= 3600
    assert Outage().max_outage == DEFAULT_MAX_OUTAGE


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_failures_are_tolerated_up_to_max_outage(error: Exception) -> None:
    assert is_transient(error) and not is_permanent(error)
    outage = Outage(max_outage=600)
    assert outage.tolerates(error, now=1000.0)
    assert outage.tolerates(error, now=1599.5)
    assert outage.failures == 2 and outage.since == 1000.0
    assert not outage.tolerates(error, now=1600.0)  # max_outage after the first failed check
    assert "longer than max_outage 600 s" in outage.gave_up(error)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_permanent_failures_end_the_wait_at_once(error: Exception) -> None:
    assert is_permanent(error) and not is_transient(error)
    outage = Outage(max_outage=600)
    assert not outage.tolerates(error, now=1000.0)
    assert outage.since is None
    assert outage.gave_up(error) == str(error)


def test_unexpected_errors_are_not_outages() -> None:
    error = KeyError("cos_paths")
    assert not is_transient(error) and not is_permanent(error)
    assert not Outage().tolerates(error)


def test_a_working_check_ends_the_outage_and_the_next_one_counts_anew() -> None:
    error = TRANSIENT[0]
    outage = Outage(max_outage=10)
    assert outage.passed() is None  # no outage yet
    assert outage.tolerates(error, now=0.0)
    assert outage.passed() is not None
    assert outage.since is None and outage.failures == 0
    assert outage.tolerates(error, now=100.0)  # a new outage: 100 s after the first, still tolerated
    assert "1 check(s) in a row" in outage.describe(error) and "max_outage 10 s" in outage.describe(error)


def test_max_outage_zero_tolerates_no_failed_check() -> None:
    assert not Outage(max_outage=0).tolerates(TRANSIENT[0], now=5.0)
