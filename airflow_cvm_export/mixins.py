"""The wait shared by :class:`~airflow_cvm_export.sensors.cvm.ExportImagesSensor` and
:class:`~airflow_cvm_export.operators.cvm.ExportImagesOperator` (``wait_for_completion``).

Every way of waiting goes through the same three steps, so poke, reschedule, deferrable and the
one-task operator (with or without ``deferrable``) end the same way:

1. **check**: :meth:`ExportWaitMixin.check_export` in a worker (the trigger's poller batches the
   same calls for every export waiting in the triggerer), judged by
   :func:`~airflow_cvm_export.utils.completion.assess`, the one place where completion is decided;
   a check failing transiently is ridden out for up to the wait's ``max_outage``
   (:meth:`ExportWaitMixin.check_through_outage`, :class:`~airflow_cvm_export.utils.outage.Outage`);
2. **decide**: :func:`~airflow_cvm_export.utils.waiting.verdict` (pure) turns that judgement into
   an :class:`~airflow_cvm_export.utils.records.ExportEvent`, or None while the export runs (in a
   worker, :meth:`ExportWaitMixin.check_for_end` checks and decides for every mode);
3. **act**: :meth:`ExportWaitMixin.publish_export` hands a finished export on (XCom, console
   links, asset events); :meth:`ExportWaitMixin.fail_wait` fails for good on a failed export
   (``AirflowFailException``) or a timeout (``AirflowSensorTimeout``), and fails only this try when
   the export could not be checked for longer than ``max_outage`` (the task's retries reattach).
   The trigger's event comes back through :meth:`ExportWaitMixin.resume_wait`, which does the same.

The task classes provide ``hook`` (a :class:`~airflow_cvm_export.hooks.cvm.CvmHook`); the mixin
provides the steps. Imports are made by the methods that use them, so a DAG file pays nothing for
them (``bench/parse.py``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_cvm_export.utils.outage import DEFAULT_MAX_OUTAGE, Outage

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.context import Context

    from airflow_cvm_export.hooks.cvm import CvmHook
    from airflow_cvm_export.utils.completion import ExportProgress
    from airflow_cvm_export.utils.records import ExportedObject, ExportRecord

    _TaskBase = BaseOperator
else:
    _TaskBase = object


class ExportWaitMixin(_TaskBase):
    """Check an export in a worker and act on the event that ends its wait (operator and sensor)."""

    max_outage: float  # the task's argument: seconds of transiently failing checks a wait rides out

    @property
    def hook(self) -> CvmHook:
        """The hook the checks use; the task class provides it."""
        raise NotImplementedError

    def list_exported(self, export: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The objects under each image's documented file name prefix, by key (for a recovered export)."""
        from airflow_cvm_export.utils.completion import listing_prefixes

        bucket = export["bucket_name"]
        listings = (self.hook.list_cos_objects(bucket, prefix) for prefix in listing_prefixes(export))
        return {obj["key"]: obj for listing in listings for obj in listing}

    def check_export(self, export: ExportRecord) -> ExportProgress:
        """One check of an export in a worker: DescribeImages and a COS HEAD per CosPath, judged by ``assess``.

        A recovered record (the ExportImages answer was lost, so no CosPaths) lists the bucket under
        each image's documented file name prefix instead. Logs the progress (``n of m``). Errors of
        the calls (after the hook's retries) propagate: they fail this try only.
        """
        from airflow_cvm_export.utils.completion import assess
        from airflow_cvm_export.utils.waiting import export_label

        image_set = self.hook.describe_images(export["image_ids"])
        heads: Mapping[str, Mapping[str, Any] | None]
        if export.get("recovered"):
            heads = self.list_exported(export)
        else:
            keys = (path.lstrip("/") for path in export["cos_paths"])
            heads = {key: self.hook.head_cos_object(export["bucket_name"], key) for key in keys}
        progress = assess(export, image_set, heads)
        self.log.info("%s: %s", export_label(export), progress.describe())
        return progress

    def resume_wait(self, context: Context, export: ExportRecord, event: Mapping[str, Any]) -> list[str]:
        """Act on the event that ended a wait; return the CosPaths (the task's XCom ``return_value``).

        ``success``: :meth:`publish_export`. ``failed`` (and events of older versions without a
        status we know): ``AirflowFailException``; ``timeout``: ``AirflowSensorTimeout``; both end
        the task. ``error``: a :class:`~airflow_cvm_export.utils.errors.TencentCloudError`, so the
        task's own retries run (a retry checks again and reattaches).
        """
        from airflow_cvm_export.utils.records import EventStatus

        if event.get("status") == EventStatus.SUCCESS:
            return self.publish_export(context, export, list(event["objects"]))
        self.fail_wait(event)

    def fail_wait(self, event: Mapping[str, Any]) -> NoReturn:
        """Raise for an event that did not end the wait with success (see :meth:`resume_wait`)."""
        from airflow_cvm_export.utils.errors import TencentCloudError
        from airflow_cvm_export.utils.records import EventStatus
        from airflow_cvm_export.version_compat import AirflowFailException, AirflowSensorTimeout

        status = event.get("status")
        message = event.get("message") or f"the export wait ended with status {status!r}"
        if status == EventStatus.TIMEOUT:
            raise AirflowSensorTimeout(message)
        if status == EventStatus.ERROR:
            raise TencentCloudError(message)
        raise AirflowFailException(message)

    def resume_deferred_wait(self, context: Context, export: ExportRecord, event: Mapping[str, Any]) -> list[str]:
        """:meth:`resume_wait` in the task's ``execute_complete``: a resumed task runs in a new process,
        so the console links get their values again first."""
        from airflow_cvm_export.links.cvm import persist_export_links

        if export:
            persist_export_links(context, export)
        return self.resume_wait(context, export, event)

    def check_before_deferring(self, export: ExportRecord) -> ExportProgress | None:
        """One check before handing the wait to the triggerer: the progress of an export that is done.

        The trigger's first check is one poll interval away, so a finished export (a cleared task,
        files already there) would otherwise wait a full interval for nothing. A failed export
        raises as :meth:`fail_wait` says, as the trigger's event would; None while the export runs
        (or a check failing transiently, see :meth:`check_through_outage`), and the caller defers.
        """
        finished, _ = self.check_for_end(export, Outage(self.max_outage))
        return finished

    def check_for_end(
        self, export: ExportRecord, outage: Outage
    ) -> tuple[ExportProgress | None, ExportProgress | None]:
        """One check through ``outage``, decided by :func:`~airflow_cvm_export.utils.waiting.verdict`:
        ``(finished, checked)``, every mode's wait in a worker.

        ``finished`` is the progress of an export that is done, else None; ``checked`` is this check's
        progress, done or not (None after a failed check ``outage`` tolerated, see
        :meth:`check_through_outage`). A failed export, or a failed check the outage does not
        tolerate, raises as :meth:`fail_wait` says.
        """
        from airflow_cvm_export.utils.records import EventStatus
        from airflow_cvm_export.utils.waiting import verdict

        progress = self.check_through_outage(export, outage)
        event = verdict(export, progress) if progress is not None else None
        if event is None:
            return None, progress
        if event.get("status") != EventStatus.SUCCESS:
            self.fail_wait(event)
        return progress, progress

    def check_through_outage(self, export: ExportRecord, outage: Outage) -> ExportProgress | None:
        """:meth:`check_export`, riding out an outage: None after a failed check ``outage`` tolerates (logged).

        A failed check it does not tolerate ends the wait (:meth:`fail_wait` with
        :func:`~airflow_cvm_export.utils.waiting.failed_check_event`). Poke and reschedule modes and
        :meth:`wait_in_worker` check through here; the triggerer's poller applies the same
        :class:`~airflow_cvm_export.utils.outage.Outage`.
        """
        from airflow_cvm_export.utils.waiting import export_label, failed_check_event

        try:
            progress = self.check_export(export)
        except Exception as error:
            if not outage.tolerates(error):
                self.fail_wait(failed_check_event(export, outage, error))
            self.log.warning("%s: %s", export_label(export), outage.describe(error))
            return None
        lasted = outage.passed()
        if lasted is not None:
            self.log.info("%s: the checks work again after failing for %.0f s", export_label(export), lasted)
        return progress

    def wait_in_worker(
        self, export: ExportRecord, poll_interval: float, timeout: float, max_outage: float = DEFAULT_MAX_OUTAGE
    ) -> ExportProgress:
        """Check every ``poll_interval`` seconds in this worker until the export is done; return that check.

        Failed checks are ridden out for up to ``max_outage`` seconds in a row
        (:meth:`check_through_outage`). A failed export or a timeout raises as :meth:`fail_wait` says;
        handing the objects on is the caller's (:meth:`publish_export`).
        """
        from airflow_cvm_export.utils.waiting import timeout_event

        deadline = time.monotonic() + timeout
        outage = Outage(max_outage)
        last: ExportProgress | None = None
        while True:
            finished, checked = self.check_for_end(export, outage)
            if finished is not None:
                return finished
            last = checked or last
            if time.monotonic() + poll_interval > deadline:
                self.fail_wait(timeout_event(export, last, f"within {timeout:g} s"))
            time.sleep(poll_interval)

    def publish_export(self, context: Context, export: ExportRecord, objects: list[ExportedObject]) -> list[str]:
        """Hand a finished export downstream; return its CosPaths (the task's XCom ``return_value``).

        Pushes ``objects`` under XCom key ``objects``, keeps the export for the task's OpenLineage
        lineage, and adds one asset event per exported image
        (:func:`~airflow_cvm_export.utils.waiting.export_assets`) to every
        :class:`~airflow.sdk.AssetAlias` in the task's ``outlets``. (The console links got their
        values when the wait began, see :meth:`resume_deferred_wait`.)
        """
        from airflow.sdk import Asset, AssetAlias

        from airflow_cvm_export.utils.lineage import remember
        from airflow_cvm_export.utils.records import OBJECTS_XCOM_KEY
        from airflow_cvm_export.utils.waiting import export_assets, export_label

        cos_paths = [obj["cos_path"] for obj in objects]
        remember(self, export, cos_paths)
        context["ti"].xcom_push(key=OBJECTS_XCOM_KEY, value=objects)
        aliases = [outlet for outlet in self.outlets if isinstance(outlet, AssetAlias)]
        for uri, keys in export_assets(export, objects, self.dag_id).items():
            extra: dict[str, Any] = {"export_task_id": export.get("task_id"), "keys": keys}
            for alias in aliases:
                context["outlet_events"][alias].add(Asset(uri=uri), extra=extra)
        self.log.info("%s finished: %s", export_label(export), ", ".join(cos_paths))
        return cos_paths
