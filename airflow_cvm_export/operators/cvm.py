"""Operator starting a Tencent Cloud CVM image export (``ExportImages``) into a COS bucket."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_cvm_export.links.cvm import CosBucketLink, CosObjectsLink, persist_export_links
from airflow_cvm_export.utils.completion import (
    ExportProgress,
    count_expected_objects,
    recovered_paths,
)
from airflow_cvm_export.utils.connection import DEFAULT_CONN_ID
from airflow_cvm_export.utils.errors import (
    DryRunSucceeded,
    TencentCloudBusyError,
    TencentCloudConfigError,
    TencentCloudOutcomeUnknownError,
    TencentCloudResponseError,
    TencentCloudServerError,
)
from airflow_cvm_export.utils.records import ExportRecord, ExportState
from airflow_cvm_export.utils.validation import DEFAULT_EXPORT_FORMAT, ExportArgs, as_seconds, validate_export_args
from airflow_cvm_export.version_compat import ResumableJobMixin, conf

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

# The answer to a second export of an image that is still exporting (see the README's "Failure modes").
IMAGE_BUSY_CODE = "InvalidParameterValue.InvalidImageState"
# ExportImages failures after which the export may or may not have started: sent without an answer,
# a server error, or an answer that is not what the API promises.
AMBIGUOUS = (TencentCloudOutcomeUnknownError, TencentCloudServerError, TencentCloudResponseError)
# Task state store key written just before ExportImages is sent: {"started_at", "request"}.
INTENT_KEY = "cvm_export_intent"
# XCom key of the export record when the operator also waits (its return value is then the CosPaths).
EXPORT_XCOM_KEY = "export"
DEFAULT_WAIT_TIMEOUT = 7 * 24 * 3600.0


class ExportImagesOperator(ResumableJobMixin, BaseOperator):
    """Start exporting CVM custom images to a COS bucket and return the export record.

    Arguments are checked after template rendering and before any request is sent
    (:func:`~airflow_cvm_export.utils.validation.validate_export_args`). The return value (XCom
    ``return_value``) is the JSON export record, an
    :class:`~airflow_cvm_export.utils.records.ExportRecord`. Pass it to
    :class:`~airflow_cvm_export.sensors.cvm.ExportImagesSensor` (``export=start.output``) to wait
    for the files.

    Reliability (see the README's "Failure modes"):

    - An ExportImages request without a usable answer (sent but unanswered, a server error, or an
      answer that is not what the API promises) is resolved by sending it once more: a second
      export of a busy image is refused with ``InvalidParameterValue.InvalidImageState``, and that
      answer means the first one started. The record then has ``recovered`` true, ``task_id`` None
      and no ``cos_paths``; the sensor finds the files by listing the bucket.
    - Retries never start a second export while the first can still finish. On Airflow 3.3+
      (``durable=True``, the default) the request and its start time are written to the task state
      store before ExportImages is sent, and the export record as soon as it is answered
      (``ResumableJobMixin``). A retry that finds the record checks its export with the sensor's
      check: a running export is reattached to (and waited for again with ``wait_for_completion``),
      a finished one is returned, and only one that can never finish (a deleted or failed image) is
      exported again. A retry that finds only the request (killed before the answer was stored), or
      any retry on older Airflow, first checks for the export: a busy image (DryRun) or a complete
      set of fresh objects in the bucket is reattached to, and only otherwise is ExportImages sent.

    :param image_ids: ids of the custom images to export (``img-`` and 8 lowercase letters or digits),
        a list or a string holding a JSON list; no duplicates. Templated.
    :param bucket_name: full COS bucket name ``<name>-<APPID>``, in the images' region. Templated.
    :param export_format: RAW, QCOW2, VHD or VMDK (default RAW). Templated.
    :param file_name_prefixes: one object name prefix per image (so runs do not overwrite each
        other's files), or None. Templated.
    :param only_export_root_disk: export only the system disk. Templated.
    :param dry_run: only check that the images can be exported; nothing is started and the record
        has ``dry_run`` true and no ``cos_paths``. Templated.
    :param role_name: CAM role the export runs as (the API's default is ``CVM_QcsRole``). Templated.
    :param region: region of the images and bucket; defaults to the connection's ``region`` extra.
        Templated.
    :param tencentcloud_conn_id: connection of type ``tencentcloud``. Templated.
    :param wait_for_completion: also wait in this task until the files are in the bucket, exactly as
        :class:`~airflow_cvm_export.sensors.cvm.ExportImagesSensor` does (same checks, same failure
        messages); the return value is then the CosPaths, the export record goes to XCom ``export``
        and the objects to XCom ``objects``. A dry run never waits.
    :param poll_interval: seconds between checks while waiting.
    :param wait_timeout: seconds to wait for the files before failing with ``AirflowSensorTimeout``.
    :param deferrable: wait in the triggerer (:class:`~airflow_cvm_export.triggers.cvm.ExportImagesTrigger`)
        instead of a worker slot; defaults to ``[operators] default_deferrable``. Only used with
        ``wait_for_completion``.
    :param durable: keep the export's request and record in the task state store (Airflow 3.3+) so
        that a retry reattaches instead of exporting again.
    """

    external_id_key = "cvm_export"
    template_fields: Sequence[str] = (
        "image_ids",
        "bucket_name",
        "export_format",
        "file_name_prefixes",
        "only_export_root_disk",
        "dry_run",
        "role_name",
        "region",
        "tencentcloud_conn_id",
    )
    template_fields_renderers = {"image_ids": "json", "file_name_prefixes": "json"}
    ui_color = "#d5e8fb"
    operator_extra_links = (CosBucketLink(), CosObjectsLink())

    def __init__(
        self,
        *,
        image_ids: list[str] | str,
        bucket_name: str,
        export_format: str = DEFAULT_EXPORT_FORMAT,
        file_name_prefixes: list[str] | str | None = None,
        only_export_root_disk: bool | str | None = None,
        dry_run: bool | str = False,
        role_name: str | None = None,
        region: str | None = None,
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = False,
        poll_interval: float = 60.0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wait_for_completion = wait_for_completion
        self.poll_interval = as_seconds(poll_interval, "poll_interval")
        self.wait_timeout = as_seconds(wait_timeout, "wait_timeout")
        self.deferrable = deferrable
        self.image_ids = image_ids
        self.bucket_name = bucket_name
        self.export_format = export_format
        self.file_name_prefixes = file_name_prefixes
        self.only_export_root_disk = only_export_root_disk
        self.dry_run = dry_run
        self.role_name = role_name
        self.region = region
        self.tencentcloud_conn_id = tencentcloud_conn_id

    def execute(self, context: Context) -> ExportRecord | list[str]:
        """Validate, start the export (or reattach to the one a previous try started) and return its record.

        With ``wait_for_completion``, wait for the files and return their CosPaths instead.
        """
        self._args = validate_export_args(
            image_ids=self.image_ids,
            bucket_name=self.bucket_name,
            export_format=self.export_format,
            file_name_prefixes=self.file_name_prefixes,
            only_export_root_disk=self.only_export_root_disk,
            dry_run=self.dry_run,
            role_name=self.role_name,
            region=self.region,
        )
        from airflow_cvm_export.hooks.cvm import CvmHook

        self._hook = CvmHook(self.tencentcloud_conn_id, region=self._args.region)
        try:
            self._region = self._hook.config.region
            if self._region is None:
                raise TencentCloudConfigError(
                    f"region must be set: pass region= or set the region extra of connection "
                    f"{self.tencentcloud_conn_id!r}"
                )
            if self._args.dry_run:
                return self._dry_run()
            self._progress: ExportProgress | None = None  # the last check of the export, if any
            self._result: ExportRecord | list[str] | None = None
            return self.execute_resumable(context)
        finally:
            self._hook.close()

    def _defer(self, record: ExportRecord) -> None:
        """Wait in the triggerer; the task resumes in :meth:`execute_complete`."""
        from airflow_cvm_export.triggers.cvm import ExportImagesTrigger

        self.defer(
            trigger=ExportImagesTrigger(
                export=record,
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=record["region"],
                poll_interval=self.poll_interval,
                end_time=time.time() + self.wait_timeout,
            ),
            method_name="execute_complete",
        )

    def _check(self, record: ExportRecord) -> ExportProgress:
        """One check of the export by the wait engine; kept as ``self._progress``."""
        from airflow_cvm_export.utils.waiting import check

        self._progress = check(self, self._hook, record)
        return self._progress

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> list[str]:
        """Resume after the trigger: see :func:`~airflow_cvm_export.utils.waiting.resume`."""
        from airflow_cvm_export.utils.waiting import resume_deferred

        ti = context["ti"]
        export = ti.xcom_pull(task_ids=ti.task_id, key=EXPORT_XCOM_KEY, map_indexes=ti.map_index)
        return resume_deferred(self, context, export, event)

    # -- ResumableJobMixin: the "job" is the export; its external id is the export record ---------

    def submit_job(self, context: Context) -> ExportRecord:
        """Start the export and return its record, reattaching to one a previous try may have started."""
        store = context.get("task_state_store") if self.durable else None
        intent = store.get(INTENT_KEY) if store is not None else None
        ti = context.get("ti")
        image_set = self._hook.describe_images(self._args.image_ids)
        expected = count_expected_objects(self._args.image_ids, image_set, self._args.only_export_root_disk)
        if intent or (store is None and getattr(ti, "try_number", 1) > 1):
            since = intent["started_at"] if intent else _run_started_at(context)
            found = self._find_started_export(since, image_set, expected)
            if found is not None:
                return found
        # By Tencent Cloud's clock (DescribeImages above showed it if ours is off): objects are judged by it.
        started_at = datetime.fromtimestamp(self._hook.server_time(), UTC).isoformat()
        if store is not None:
            store.set(INTENT_KEY, {"started_at": started_at, "request": self._args.request()})
        return self._send(started_at, expected)

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """Where the export of a stored record stands (asked by a retry), from one check by the wait engine.

        An :class:`~airflow_cvm_export.utils.records.ExportState` value: ``exporting`` (reattach),
        ``exported`` (every file is there) or ``failed`` (an image is gone or in a failed state: the
        export can never finish, so the retry exports again).
        """
        from airflow_cvm_export.utils.waiting import state_of

        progress = self._check(external_id)
        if progress.error:
            self.log.warning("The export a previous try started cannot finish: %s", progress.error)
        return state_of(progress).value

    def is_job_active(self, status: str) -> bool:
        """A running export is reattached to (and waited for with ``wait_for_completion``)."""
        return status == ExportState.EXPORTING

    def is_job_succeeded(self, status: str) -> bool:
        """A finished export is not started again."""
        return status == ExportState.EXPORTED

    def poll_until_complete(self, external_id: Any, context: Context) -> ExportRecord | list[str]:
        """Hand the export on (see :meth:`_hand_on`), waiting for its files with ``wait_for_completion``."""
        self._result = self._hand_on(context, external_id)
        return self._result

    def get_job_result(self, external_id: Any, context: Context) -> ExportRecord | list[str]:
        """The task's result: :meth:`poll_until_complete`'s, or for an export a retry found finished, handed on now."""
        return self._result if self._result is not None else self._hand_on(context, external_id)

    def _hand_on(self, context: Context, record: ExportRecord) -> ExportRecord | list[str]:
        """Log the export, store the console links' values and return the task's result.

        Without ``wait_for_completion`` the result is the record. With it, the record goes to XCom
        ``export`` and the files are waited for by the wait engine, as the sensor waits: in this
        worker (the result is the CosPaths) or, when ``deferrable``, in the triggerer (the task
        resumes in :meth:`execute_complete`). An export a retry's check found finished is not
        waited for.
        """
        from airflow_cvm_export.utils import waiting

        self._publish(context, record)
        if not self.wait_for_completion:
            return record
        context["ti"].xcom_push(key=EXPORT_XCOM_KEY, value=record)
        if self._progress is not None and self._progress.done:
            return waiting.publish(self, context, record, self._progress.objects)
        if self.deferrable:
            self._defer(record)
        return waiting.wait_in_worker(self, context, self._hook, record, self.poll_interval, self.wait_timeout)

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, started_at: str, expected: int | None) -> ExportRecord:
        """Send ExportImages; after a lost answer send it once more and read a busy image as "started"."""
        request = {**self._args.request(), "expected_objects": expected}
        try:
            response = self._hook.export_images(**request)
        except AMBIGUOUS as lost:
            self.log.warning(
                "The export may or may not have started (%s); sending ExportImages once more: if the first one "
                "started, the image is busy and the answer says so",
                lost,
            )
            try:
                response = self._hook.export_images(**request)
            except AMBIGUOUS as again:
                raise TencentCloudOutcomeUnknownError(
                    f"ExportImages failed twice without a usable answer ({lost.message}; then {again.message}): "
                    "the export may have started. Retry the task: a retry checks for a running export (busy "
                    "image, files in the bucket) before exporting again",
                    request_id=again.request_id,
                    action="ExportImages",
                ) from None
            except TencentCloudBusyError as busy:
                if busy.code != IMAGE_BUSY_CODE:
                    raise
                self.log.warning(
                    "The first ExportImages was accepted: the image is now busy exporting (%s). Its TaskId and "
                    "CosPaths were lost; the sensor finds the files in the bucket by their documented names",
                    busy,
                )
                return self._record(started_at, request_id=busy.request_id, recovered=True)
        return self._record(
            started_at, task_id=response["TaskId"], cos_paths=response["CosPaths"], request_id=response["RequestId"]
        )

    def _find_started_export(
        self, since: str, image_set: list[dict[str, Any]], expected: int | None
    ) -> ExportRecord | None:
        """Record of an export a previous try started (busy image, or its files in the bucket), or None."""
        try:
            self._hook.export_images(**{**self._args.request(), "dry_run": True})
        except TencentCloudBusyError as busy:
            if busy.code != IMAGE_BUSY_CODE:
                raise
            self.log.warning("A previous try's export is still running (%s); reattaching to it", busy)
            return self._record(since, request_id=busy.request_id, recovered=True)
        except DryRunSucceeded:
            pass
        from airflow_cvm_export.utils.waiting import list_recovered

        record = self._record(since, recovered=True)
        paths = recovered_paths(record, image_set, list_recovered(self._hook, record))
        if expected and all(paths):
            self.log.warning("A previous try's export already finished: %s; not exporting again", ", ".join(paths))
            return {**record, "cos_paths": paths}
        return None

    def _record(
        self,
        started_at: str,
        *,
        task_id: int | None = None,
        cos_paths: Sequence[str] = (),
        request_id: str | None = None,
        recovered: bool = False,
    ) -> ExportRecord:
        args: ExportArgs = self._args
        return {
            "task_id": task_id,
            "cos_paths": list(cos_paths),
            "image_ids": args.image_ids,
            "bucket_name": args.bucket_name,
            "region": self._region,
            "file_name_prefixes": args.file_name_prefixes,
            "export_format": args.export_format,
            "only_export_root_disk": args.only_export_root_disk,
            "request_id": request_id,
            "started_at": started_at,
            "dry_run": False,
            "recovered": recovered,
        }

    def _dry_run(self) -> ExportRecord:
        started_at = datetime.now(UTC).isoformat()
        try:
            self._hook.export_images(**self._args.request())
        except DryRunSucceeded as answer:
            self.log.info(
                "Dry run: %s can be exported to %s (RequestId %s)",
                self._args.image_ids,
                self._args.bucket_name,
                answer.request_id,
            )
            return {**self._record(started_at, request_id=answer.request_id), "dry_run": True}
        raise TencentCloudResponseError("ExportImages with DryRun answered as if it had started an export")

    def _publish(self, context: Context, record: ExportRecord) -> None:
        """Log the started export and store the console links' values."""
        if record["dry_run"]:
            return
        self.log.info(
            "ExportImages task %s started (RequestId %s): %s to %s: %s",
            record["task_id"],
            record["request_id"],
            f"{len(record['cos_paths'])} object(s)" if record["cos_paths"] else "objects found by listing",
            record["bucket_name"],
            ", ".join(record["cos_paths"]),
        )
        persist_export_links(context, record)


def _run_started_at(context: Context) -> str:
    """When this task's DAG run started: the earliest a previous try can have started an export."""
    dag_run = context.get("dag_run")
    start = getattr(dag_run, "start_date", None)
    if start is None:
        raise TencentCloudConfigError(
            "this is a retry without a task state store and without the DAG run's start time, so an export a "
            "previous try may have started cannot be detected safely; check the bucket and the image, then clear "
            "the task"
        )
    return start.isoformat()
