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
