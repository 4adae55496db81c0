"""Wait in the triggerer until an export can start: no worker slot is held while an image is busy
or the export queue is full (``ExportImagesOperator(deferrable=True)``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_cvm_export.hooks import DEFAULT_CONN_ID
from airflow_cvm_export.utils.errors import TencentCloudError
from airflow_cvm_export.utils.starting import StartState, dry_run_outcome, in_flight_reason, pause_seconds


class ExportStartTrigger(BaseTrigger):
    """Fire once a DryRun of ExportImages says the images can be exported (and not before ``not_before``),
    or at ``end_time``.

    Sends only DryRuns (read-only): the export itself is sent by the task when it resumes, so a
    trigger that runs twice can never start one. Fires one event: ``{"status": "free"}``,
    ``{"status": "timeout", "reason"}`` (why it still could not start at ``end_time``) or
    ``{"status": "error", "message"}`` (a final error such as a deleted image); each also carries
    ``end_time``, ``pending`` and ``not_before``, handed back unchanged for the task to resume with.

    :param request: the operator's ExportImages arguments (``CvmHook.export_images`` keyword arguments).
    :param tencentcloud_conn_id: the ``tencentcloud`` connection to check with.
    :param region: region of the images.
    :param poll_interval: the longest pause between DryRuns (the first is 2 s, doubling).
    :param end_time: Unix time of the start deadline.
    :param reason: why the task could not start when it deferred, reported if nothing changes.
    :param pending: the export record being resolved (an unanswered send), or None.
    :param not_before: Unix time until which that send may still reach the cloud
        (``utils.starting.in_flight_until``): free images before then prove
        nothing, so the DryRuns go on until then; 0 when nothing is in flight.
    """

    def __init__(
        self,
        *,
        request: dict[str, Any],
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        region: str | None = None,
        poll_interval: float = 60.0,
        end_time: float,
        reason: str = "",
        pending: Mapping[str, Any] | None = None,
        not_before: float = 0.0,
    ) -> None:
        super().__init__()
        self.request = request
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.reason = reason
        self.pending = pending
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every constructor argument (no credentials: only the connection id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request": self.request,
                "tencentcloud_conn_id": self.tencentcloud_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "reason": self.reason,
                "pending": self.pending,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """DryRun with back-off until the images can be exported; yield one event."""
        from airflow_cvm_export.hooks.cvm import CvmAsyncHook

        hook = CvmAsyncHook(self.tencentcloud_conn_id, region=self.region)
        images = ", ".join(self.request["image_ids"])
        self.log.info("Waiting in the triggerer until %s can be exported: %s", images, self.reason)
        try:
            event = await self._wait(hook)
        finally:
            await hook.aclose()
        yield TriggerEvent({**event, "end_time": self.end_time, "pending": self.pending, "not_before": self.not_before})

    async def _wait(self, hook: Any) -> dict[str, str]:
        reason, pauses = self.reason, 0
        while True:
            answer: TencentCloudError | None = None
            try:
                await hook.export_images(**{**self.request, "dry_run": True})
            except TencentCloudError as error:
                answer = error
            try:
                state, reason = dry_run_outcome(answer)
            except TencentCloudError as final:
                return {"status": "error", "message": str(final)}
            if state is StartState.FREE:
                held = in_flight_reason(self.not_before, time.time())
                if held is None:
                    return {"status": "free"}
                reason = held
            left = self.end_time - time.time()
            if left <= 0:
                return {"status": "timeout", "reason": reason}
            await asyncio.sleep(pause_seconds(pauses, self.poll_interval, left))
            pauses += 1
