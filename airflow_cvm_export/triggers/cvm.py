"""Wait for CVM image exports in the triggerer.

:class:`ExportImagesTrigger` only serializes, waits and cleans up: its export is checked by the
per-process :class:`~airflow_cvm_export.triggers.poller.ExportPoller` it joins, which calls the
async hook (:class:`~airflow_cvm_export.hooks.cvm.CvmAsyncHook`) and decides with the wait engine
(:mod:`airflow_cvm_export.utils.waiting`), exactly as the sensor's poke mode does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_cvm_export.hooks import DEFAULT_CONN_ID
from airflow_cvm_export.triggers.poller import ExportPoller, FailedCheck, Waiter
from airflow_cvm_export.utils.outage import DEFAULT_MAX_OUTAGE
from airflow_cvm_export.utils.records import ExportEvent, ExportRecord
from airflow_cvm_export.utils.waiting import deadline_text, export_label, timeout_event

DEFAULT_POLL_INTERVAL = 60.0

# One module logger, not BaseTrigger's per-instance ``self.log``: on Airflow 3 each instance builds
# its own structlog logger (about ten objects the garbage collector must walk per waiting export,
# which at thousands of waits was most of the event loop's longest GC pause). The triggerer still
# files every line under its trigger: it binds the trigger id as a context variable around run(),
# and Airflow's stdlib handler chain merges context variables, as for the poller's logger.
log = logging.getLogger(f"{__name__}.ExportImagesTrigger")


class ExportImagesTrigger(BaseTrigger):
    """Fire once a CVM image export is complete, has failed, or ran past its deadline.

    Completion is decided by :func:`~airflow_cvm_export.utils.completion.assess`, as in the
    sensor's poke mode. Checks of all exports waiting in one triggerer on the same connection and
    region are shared (see :class:`~airflow_cvm_export.triggers.poller.ExportPoller`). Only the
    connection id is serialized, never credentials.

    Fires exactly one :class:`~airflow_cvm_export.utils.records.ExportEvent`; its ``status``
    (:class:`~airflow_cvm_export.utils.records.EventStatus`) is ``success`` (with ``cos_paths`` and
    ``objects``: every object is in the bucket), ``failed`` (the export failed in the cloud),
    ``error`` (it could not be checked, even after the hook's retries) or ``timeout`` (``end_time``
    passed first). The task resumes in the wait engine's
    :meth:`~airflow_cvm_export.mixins.ExportWaitMixin.resume_wait`.

    :param export: the export record (:class:`~airflow_cvm_export.utils.records.ExportRecord`)
        pushed by the operator.
    :param tencentcloud_conn_id: the ``tencentcloud`` connection to check with.
    :param region: overrides the connection's ``region`` extra; defaults to the export's region.
    :param poll_interval: seconds between checks.
    :param end_time: deadline as a Unix timestamp (the sensor's ``timeout``, the operator's
        ``wait_timeout``), or None for none.
    :param max_outage: seconds the checks may keep failing transiently before the wait ends with
        ``error`` (see :mod:`~airflow_cvm_export.utils.outage`). Counted from the first failed
        check in this triggerer: a wait that moves to another triggerer counts anew.
    """

    def __init__(
        self,
        *,
        export: ExportRecord,
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        region: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        end_time: float | None = None,
        max_outage: float = DEFAULT_MAX_OUTAGE,
    ) -> None:
        super().__init__()
        self.export = export
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.max_outage = max_outage
        self._waiter: Waiter | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every constructor argument."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export": self.export,
                "tencentcloud_conn_id": self.tencentcloud_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_outage": self.max_outage,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait in the shared poller and yield one event."""
        region = self.region or self.export.get("region")
        waiter = self._waiter = ExportPoller.join(
            self.tencentcloud_conn_id, region, self.export, self.poll_interval, self.max_outage
        )
        log.info(
            "Waiting for %s (%s) every %ss%s",
            waiter.label,
            ", ".join(self.export["cos_paths"]),
            self.poll_interval,
            f" ({deadline_text(self.end_time)})" if self.end_time is not None else "",
        )
        timeout = None if self.end_time is None else max(0.0, self.end_time - time.time())
        event: ExportEvent | None = None
        try:
            async with asyncio.timeout(timeout):  # no helper task per wait, unlike wait_for
                while event is None:
                    await waiter.posted()
                    for report in waiter.take():
                        if isinstance(report, FailedCheck):
                            log.warning("%s: %s", waiter.label, report)
                        elif isinstance(report, str):
                            log.info("%s: %s", waiter.label, report)
                        else:
                            event = report
        except TimeoutError:
            assert self.end_time is not None
            event = timeout_event(self.export, waiter.progress, deadline_text(self.end_time))
        finally:
            self._leave()
        yield TriggerEvent(event)

    def _leave(self) -> None:
        if self._waiter is not None:
            self._waiter.poller.leave(self._waiter)
            self._waiter = None

    async def cleanup(self) -> None:
        """Release this export's place in the shared poller (idempotent)."""
        self._leave()

    async def on_kill(self) -> None:
        """The task was killed while waiting: stop checking; the export itself cannot be cancelled."""
        log.warning(
            "Stopped waiting for %s. Tencent Cloud has no public API to cancel an image export: "
            "it keeps running and may still write %s to bucket %s.",
            export_label(self.export),
            ", ".join(self.export.get("cos_paths", [])) or "its files",
            self.export.get("bucket_name"),
        )
        self._leave()
