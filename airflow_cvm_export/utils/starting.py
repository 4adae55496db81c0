"""When an export can start (pure; shared by the operator's wait in a worker and the start trigger).

ExportImages with ``DryRun`` answers ``DryRunOperation`` when the images can be exported now,
``InvalidParameterValue.InvalidImageState`` while an image is busy (an export runs, maybe someone
else's) and ``LimitExceeded.ExportImageTaskLimitExceeded`` while the account's export queue is full.
Waiting for either is the same loop in a worker (``time.sleep``) and in the triggerer
(``asyncio.sleep``); the rules live here once.
"""

from __future__ import annotations

import random
from enum import StrEnum

from airflow_cvm_export.utils.errors import (
    DryRunSucceeded,
    TencentCloudBusyError,
    TencentCloudError,
    TencentCloudNetworkError,
    TencentCloudOutcomeUnknownError,
    TencentCloudResponseError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)

# The answer to an export of an image that is busy with another export.
IMAGE_BUSY_CODE = "InvalidParameterValue.InvalidImageState"
# First pause (seconds) while the images cannot be exported; it doubles up to the poll interval.
START_BACKOFF = 2.0
# Failures of a DryRun (after the hook's own retries) that are waited out within start_timeout.
TRANSIENT = (TencentCloudThrottledError, TencentCloudServerError, TencentCloudNetworkError, TencentCloudResponseError)
# Seconds added to the hook's longest send: the send time is by COS's clock, the checks by the worker's
# or the triggerer's (kept in sync with NTP), and COS's clock is known to the second.
IN_FLIGHT_MARGIN = 5.0


class StartState(StrEnum):
    """What a DryRun says about starting an export now."""

    FREE = "free"  # the images can be exported
    BUSY = "busy"  # an image is busy: an export of it runs
    QUEUE_FULL = "queue_full"  # too many exports run in the account
    UNKNOWN = "unknown"  # the DryRun failed transiently


def start_state(error: TencentCloudError) -> StartState:
    """Read the outcome of a DryRun of ExportImages (always an exception); re-raise anything final."""
    if isinstance(error, DryRunSucceeded):
        return StartState.FREE
    if isinstance(error, TencentCloudBusyError):
        return StartState.BUSY if error.code == IMAGE_BUSY_CODE else StartState.QUEUE_FULL
    if isinstance(error, TRANSIENT):
        return StartState.UNKNOWN
    raise error


def dry_run_outcome(answer: TencentCloudError | None) -> tuple[StartState, str]:
    """What one DryRun of ExportImages says: its state and the reason to report (worker and triggerer alike).

    ``answer`` is the error the DryRun raised (it always raises one: ``DryRunOperation`` when the
    images can be exported), or None when it returned as if it had started an export, which raises
    :class:`~airflow_cvm_export.utils.errors.TencentCloudResponseError`. Anything final is raised
    (see :func:`start_state`).
    """
    if answer is None:
        raise TencentCloudResponseError("ExportImages with DryRun answered as if it had started an export")
    return start_state(answer), describe(answer)


def in_flight_until(sent_at: float, longest_send: float) -> float:
    """Until when (Unix time) an unanswered ExportImages sent at ``sent_at`` may still reach the cloud.

    ``longest_send`` is the hook's :meth:`~airflow_cvm_export.hooks.client.CvmClientBase.longest_send`.
    Before then a free image and no new file prove nothing: the send may still start an export, so it
    must not be sent again (see :func:`in_flight_reason`).
    """
    return sent_at + longest_send + IN_FLIGHT_MARGIN


def in_flight_reason(until: float, now: float) -> str | None:
    """Why an unanswered send that shows no export cannot be called "started nothing" yet, or None once
    it can no longer arrive (``until``: :func:`in_flight_until`). The worker and the start trigger both
    wait while this is not None."""
    if now >= until:
        return None
    return (
        f"the unanswered ExportImages may still reach the cloud for {until - now:.0f} s more: the hook's longest "
        "send, bounded by the connection extras connect_timeout, read_timeout, retry_limit and retry_delay"
    )


def describe(error: TencentCloudError) -> str:
    """What a refusal says, with its code, for logs and the final message."""
    return f"[{error.code}] {error.message}" if error.code else error.message


def pause_seconds(pauses: int, poll_interval: float, left: float) -> float:
    """The next pause: ``START_BACKOFF`` doubling per pause up to ``poll_interval``, with jitter, within ``left``."""
    return min(left, poll_interval, START_BACKOFF * 2**pauses) * random.uniform(0.5, 1.0)


def gave_up(
    image_ids: list[str], bucket: str, start_timeout: float, reason: str, *, unanswered: bool
) -> TencentCloudError:
    """The error when ``start_timeout`` passed: naming the images, the bucket and the reason."""
    images = ", ".join(image_ids)
    if unanswered:
        return TencentCloudOutcomeUnknownError(
            f"ExportImages of {images} got no usable answer and whether it started could not be told within "
            f"start_timeout ({start_timeout:g} s): {reason}. A retry of the task looks again before sending anything",
            action="ExportImages",
        )
    return TencentCloudBusyError(
        f"could not start exporting {images} to {bucket} within start_timeout ({start_timeout:g} s): {reason}",
        action="ExportImages",
    )
