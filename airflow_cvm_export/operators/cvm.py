"""Operator starting a Tencent Cloud CVM image export (``ExportImages``) into a COS bucket.

The hook, the triggers, the wait engine and the completion checks are imported by the methods that
use them: a DAG file importing this module pays only for building the task (``bench/parse.py``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_cvm_export.hooks import DEFAULT_CONN_ID
from airflow_cvm_export.links.cvm import CosBucketLink, CosObjectsLink, persist_export_links
from airflow_cvm_export.mixins import ExportWaitMixin
from airflow_cvm_export.utils.errors import (
    DryRunSucceeded,
    TencentCloudBusyError,
    TencentCloudConfigError,
    TencentCloudError,
    TencentCloudOutcomeUnknownError,
    TencentCloudResponseError,
    TencentCloudServerError,
)
from airflow_cvm_export.utils.lineage import remember, task_lineage
from airflow_cvm_export.utils.outage import DEFAULT_MAX_OUTAGE
from airflow_cvm_export.utils.records import ExportRecord, ExportState
from airflow_cvm_export.utils.starting import (
    StartState,
    describe,
    dry_run_outcome,
    gave_up,
    in_flight_reason,
    in_flight_until,
    pause_seconds,
)
from airflow_cvm_export.utils.validation import (
    DEFAULT_EXPORT_FORMAT,
    ExportArgs,
    as_optional_bool,
    as_seconds,
    validate_export_args,
)
from airflow_cvm_export.version_compat import ResumableJobMixin, conf

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk.definitions.context import Context

    from airflow_cvm_export.hooks.cvm import CvmHook
    from airflow_cvm_export.utils.completion import ExportProgress

# ExportImages failures after which the export may or may not have started: sent without an answer,
# a server error, or an answer that is not what the API promises.
AMBIGUOUS = (TencentCloudOutcomeUnknownError, TencentCloudServerError, TencentCloudResponseError)
# Task state store key written just before ExportImages is sent, deleted once its outcome is known:
# {"started_at", "request", "baseline"}.
INTENT_KEY = "cvm_export_intent"
# XCom key of the export record when the operator also waits (its return value is then the CosPaths).
EXPORT_XCOM_KEY = "export"
DEFAULT_WAIT_TIMEOUT = 7 * 24 * 3600.0
DEFAULT_START_TIMEOUT = 24 * 3600.0


class ExportImagesOperator(ExportWaitMixin, ResumableJobMixin, BaseOperator):
    """Start exporting CVM custom images to a COS bucket and return the export record.

    Arguments are checked after template rendering and before any request is sent
    (:func:`~airflow_cvm_export.utils.validation.validate_export_args`). The return value (XCom
    ``return_value``) is always the JSON export record, an
    :class:`~airflow_cvm_export.utils.records.ExportRecord`, whether the task also waits
    (``wait_for_completion``) or not. Pass it to
    :class:`~airflow_cvm_export.sensors.cvm.ExportImagesSensor` (``export=start.output``) to wait
    for the files.

    Reliability (see docs/failures.md, "The ambiguous send" and "Task retries"):

    - The export starts only when a DryRun says the images can be exported. While an image is busy
      (someone else's export) or the export queue is full, the start waits with back-off, up to
      ``start_timeout``; a refused send started nothing and is sent again the same way.
    - Just before sending, what exists under the names the export will write is recorded (the
      record's ``baseline``), so only objects this export wrote are ever handed on.
    - A send without a usable answer (sent but unanswered, a server error, an answer that is not what
      the API promises) is never simply sent again: the operator waits until the images are free,
      then a full set of new files under its names means it started and finished (the record has
      ``recovered`` true, ``task_id`` None and the CosPaths found), none means it never started, and
      only then, once the send can no longer reach the cloud (its time plus the hook's
      ``longest_send()``, which the connection's ``connect_timeout``, ``read_timeout``,
      ``retry_limit`` and ``retry_delay`` extras bound), is ExportImages sent again.
    - On Airflow 3.3+ (``durable=True``, the default) the intent (request, start, baseline) is in the
      task state store while a send's outcome is unknown, and the export record once it is known
      (``ResumableJobMixin``). A retry or a cleared task that finds the record reattaches to a
      running export, hands on a finished one whose files are there, and exports again when an
      image failed or the files are gone; one that finds only the intent resolves it as above. On
      older Airflow any retry resolves "did an earlier try export?" the same way, counting files
      written since the DAG run started.

    :param image_ids: ids of the custom images to export (``img-`` and 8 lowercase letters or digits),
        a list or a string holding a JSON list; no duplicates. Templated.
    :param bucket_name: full COS bucket name ``<name>-<APPID>``, in the images' region. Templated.
    :param export_format: RAW, QCOW2, VHD or VMDK (default RAW). Templated.
    :param file_name_prefixes: one object name prefix per image (so runs do not overwrite each
        other's files), or None. Templated.
    :param only_export_root_disk: export only the system disk. Templated.
    :param check_only: only check that the images can be exported (ExportImages with ``DryRun``);
        nothing is started and the record has ``dry_run`` true and no ``cos_paths``. Templated.
        (Called ``dry_run`` in 0.1.0, a name that hid ``BaseOperator.dry_run()``; ``dry_run=``
        still works, with a ``DeprecationWarning``.)
    :param role_name: CAM role the export runs as (the API's default is ``CVM_QcsRole``). Templated.
    :param region: region of the images and bucket; defaults to the connection's ``region`` extra.
        Templated.
    :param tencentcloud_conn_id: connection of type ``tencentcloud``. Templated.
    :param wait_for_completion: also wait in this task until the files are in the bucket, exactly as
        :class:`~airflow_cvm_export.sensors.cvm.ExportImagesSensor` does (same checks, same failure
        messages, same asset events). The return value is still the export record; the objects go
        to XCom ``objects`` (their CosPaths are the record's ``cos_paths``) and the record also to
        XCom ``export`` (read back when the task resumes from the triggerer). A check-only run
        never waits.
    :param poll_interval: seconds between checks while waiting.
    :param wait_timeout: seconds to wait for the files before failing with ``AirflowSensorTimeout``.
    :param max_outage: seconds the checks of the wait may keep failing transiently (a cloud or network
        outage) before the try fails; default one hour, never past ``wait_timeout``. As the sensor's
        (see :mod:`~airflow_cvm_export.utils.outage`).
    :param start_timeout: seconds to wait until the export can start (an image busy with another
        export, a full export queue, an unanswered send being resolved) before failing with a message
        naming the images and the reason.
    :param deferrable: wait in the triggerer (:class:`~airflow_cvm_export.triggers.cvm.ExportImagesTrigger`)
        instead of a worker slot; defaults to ``[operators] default_deferrable``. Only used with
        ``wait_for_completion``; the export is checked once before deferring, so one that has
        already finished is handed on at once.
    :param durable: keep the export's request and record in the task state store (Airflow 3.3+) so
        that a retry reattaches instead of exporting again. Below Airflow 3.3 there is no task state
        store: an explicit ``durable`` warns once (``UserWarning``) and is ignored.
    """

    external_id_key = "cvm_export"
    template_fields: Sequence[str] = (
        "image_ids",
        "bucket_name",
        "export_format",
        "file_name_prefixes",
        "only_export_root_disk",
        "check_only",
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
        check_only: bool | str = False,
        role_name: str | None = None,
        region: str | None = None,
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = False,
        poll_interval: float = 60.0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        if "dry_run" in kwargs:
            warnings.warn(
                "ExportImagesOperator(dry_run=...) is deprecated: use check_only=... "
                "(an attribute dry_run hid BaseOperator.dry_run())",
                DeprecationWarning,
                stacklevel=2,
            )
            check_only = kwargs.pop("dry_run")
        super().__init__(**kwargs)
        self.start_timeout = as_seconds(start_timeout, "start_timeout")
        self.wait_for_completion = wait_for_completion
        self.poll_interval = as_seconds(poll_interval, "poll_interval")
        self.wait_timeout = as_seconds(wait_timeout, "wait_timeout")
        self.max_outage = as_seconds(max_outage, "max_outage", zero=True)
        self.deferrable = deferrable
        self.image_ids = image_ids
        self.bucket_name = bucket_name
        self.export_format = export_format
        self.file_name_prefixes = file_name_prefixes
        self.only_export_root_disk = only_export_root_disk
        self.check_only = check_only
        self.role_name = role_name
        self.region = region
        self.tencentcloud_conn_id = tencentcloud_conn_id
        # The state of one run of the task (execute, or execute_start after the start trigger):
        self._export: ExportRecord | None = None  # the export being handed on, once known
        self._progress: ExportProgress | None = None  # the last check of the export, if any
        self._start_deadline = 0.0  # epoch seconds: start_timeout after this start's first try
        self._pending: ExportRecord | None = None  # an unanswered send being resolved, from the start trigger
        self._not_before = 0.0  # Unix time until which that send may still reach the cloud (in_flight_until)
        self._pauses = 0  # pauses of the start so far (the back-off doubles per pause)
        self._cvm_exported: tuple[dict[str, Any], list[str]] | None = None  # for the lineage (utils.lineage)

    def execute(self, context: Context) -> ExportRecord:
        """Validate, start the export (or reattach to the one a previous try started) and return its record.

        With ``wait_for_completion``, wait for the files first (the record is returned all the same).
        """
        return self._run(context, {})

    def execute_start(self, context: Context, event: Mapping[str, Any]) -> ExportRecord:
        """Resume after :class:`~airflow_cvm_export.triggers.start.ExportStartTrigger`: start (or resolve) again.

        The start timeout keeps counting from the first try of this start; a deadline that passed in
        the triggerer fails as in a worker.
        """
        return self._run(context, event)

    @cached_property
    def _args(self) -> ExportArgs:
        """The rendered arguments, checked (read first in ``execute``: after rendering, before any request)."""
        return validate_export_args(
            image_ids=self.image_ids,
            bucket_name=self.bucket_name,
            export_format=self.export_format,
            file_name_prefixes=self.file_name_prefixes,
            only_export_root_disk=self.only_export_root_disk,
            dry_run=as_optional_bool(self.check_only, "check_only"),
            role_name=self.role_name,
            region=self.region,
        )

    @cached_property
    def hook(self) -> CvmHook:
        """The hook, in the validated region (``region``, else the connection's)."""
        from airflow_cvm_export.hooks.cvm import CvmHook

        return CvmHook(self.tencentcloud_conn_id, region=self._args.region)

    @cached_property
    def _region(self) -> str:
        """The region the export runs in; a missing one is a configuration error."""
        region = self.hook.config.region
        if region is None:
            raise TencentCloudConfigError(
                f"region must be set: pass region= or set the region extra of connection {self.tencentcloud_conn_id!r}"
            )
        return region

    def _run(self, context: Context, resumed: Mapping[str, Any]) -> ExportRecord:
        """``execute`` and ``execute_start``: check, then start or resume (``resumed``: the start trigger's event)."""
        self._args  # noqa: B018  (checks the arguments before anything is sent)
        try:
            self._region  # noqa: B018
            if self._args.dry_run:
                return self._dry_run()
            self._start_deadline = resumed.get("end_time") or time.time() + self.start_timeout
            self._pending = resumed.get("pending")
            self._not_before = resumed.get("not_before") or 0.0
            if resumed.get("status") == "timeout":
                raise gave_up(
                    self._args.image_ids,
                    self._args.bucket_name,
                    self.start_timeout,
                    resumed["reason"],
                    unanswered=self._pending is not None,
                )
            if resumed.get("status") == "error":
                raise TencentCloudError(resumed["message"])
            record = self.execute_resumable(context)
            if record is None:
                # Airflow 3.3's execute_resumable returns what poll_until_complete returns (None)
                # when it reattaches to a running export, without asking get_job_result.
                record = self.get_job_result(self._export, context)
            return record
        finally:
            self.hook.close()

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
                max_outage=self.max_outage,
            ),
            method_name="execute_complete",
        )

    def _check(self, record: ExportRecord) -> ExportProgress:
        """One check of the export by the wait engine; kept as ``self._progress``."""
        self._progress = self.check_export(record)
        return self._progress

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> ExportRecord:
        """Resume after the trigger: act on its event (see
        :meth:`~airflow_cvm_export.mixins.ExportWaitMixin.resume_wait`) and return the export record."""
        ti = context["ti"]
        export: ExportRecord = ti.xcom_pull(task_ids=ti.task_id, key=EXPORT_XCOM_KEY, map_indexes=ti.map_index)
        self.resume_deferred_wait(context, export, event)
        return export

    # -- ResumableJobMixin: the "job" is the export; its external id is the export record ---------

    def submit_job(self, context: Context) -> dict[str, Any]:
        """Start the export and return its record, or the record of the export an earlier send started.

        The record is the job's external id: the mixin keeps it in the task state store as JSON.

        A send whose outcome nobody saw (an intent in the task state store: the answer was lost or the
        worker died; or, without a store, any retry) is resolved first by :meth:`_find_unanswered`,
        never by a blind second send. Then :meth:`_start` waits until the images can be exported and
        sends.
        """
        store = context.get("task_state_store") if self.durable else None
        stored = store.get(INTENT_KEY) if store is not None else None
        intent = stored if isinstance(stored, dict) else None
        image_set = self.hook.describe_images(self._args.image_ids)
        record: ExportRecord
        if intent or self._pending or (store is None and getattr(context.get("ti"), "try_number", 1) > 1):
            if intent:
                record = self._record(str(intent["started_at"]), recovered=True, baseline=intent.get("baseline"))
                self._hold(record["started_at"])
            elif self._pending:  # handed back by the start trigger (no task state store), with _not_before
                record = self._pending
                if not self._not_before:  # a trigger of an earlier version
                    self._hold(record["started_at"])
            else:
                record = self._record(_run_started_at(context), recovered=True)
                # Nothing tells when the earlier try sent: before this try began, at the latest.
                self._not_before = in_flight_until(time.time(), self.hook.longest_send())
            found = self._find_unanswered(record, image_set)
            if found is not None:
                return dict(self._keep(store, found))
        return dict(self._start(store, image_set))

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """Where the export of a stored record stands (asked by a retry or after a clear).

        An :class:`~airflow_cvm_export.utils.records.ExportState` value: ``exported`` (every file this
        export wrote is there), ``exporting`` (files missing and an image still busy: reattach) or
        ``failed`` (an image is gone or in a failed state, or the images are free again but files are
        missing: they were removed; either way the export is over, so the mixin exports again).
        """
        progress = self._check(external_id)
        if progress.error:
            self.log.warning("The export a previous try started cannot finish: %s", progress.error)
            return ExportState.FAILED.value
        if progress.done:
            return ExportState.EXPORTED.value
        if self._busy_reason(wait_for_queue=True) is not None:
            return ExportState.EXPORTING.value
        self.log.warning(
            "The export of %s a previous try started is over but only %s: the files were removed; exporting again",
            ", ".join(external_id["image_ids"]),
            progress.describe(),
        )
        return ExportState.FAILED.value  # terminal: the mixin exports again

    def is_job_active(self, status: str) -> bool:
        """A running export is reattached to (and waited for with ``wait_for_completion``)."""
        return status == ExportState.EXPORTING

    def is_job_succeeded(self, status: str) -> bool:
        """A finished export whose files are all there is not started again."""
        return status == ExportState.EXPORTED

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        """Hand the export on (log, console links) and, with ``wait_for_completion``, wait for its files.

        The wait is the sensor's (:class:`~airflow_cvm_export.mixins.ExportWaitMixin`): in this worker,
        or, when ``deferrable``, in the triggerer (the task resumes in :meth:`execute_complete`). It
        raises when the export fails or does not finish within ``wait_timeout``. An export a retry's
        check found finished is not waited for.
        """
        record = self._attach(context, external_id)
        if not self.wait_for_completion:
            return
        if self._progress is not None and self._progress.done:
            return
        if self.deferrable:
            self._progress = self.check_before_deferring(record)
            if self._progress is not None:
                return
            self._defer(record)
        self._progress = self.wait_in_worker(record, self.poll_interval, self.wait_timeout, self.max_outage)

    def get_job_result(self, external_id: Any, context: Context) -> ExportRecord:
        """The task's result, the export record; with ``wait_for_completion`` its objects are handed on
        first (XCom ``objects``, asset events), as the sensor hands them on."""
        record = self._attach(context, external_id)
        if self.wait_for_completion and self._progress is not None and self._progress.done:
            self.publish_export(context, record, self._progress.objects)
        return record

    def _attach(self, context: Context, record: ExportRecord) -> ExportRecord:
        """Make ``record`` the export this run hands on: log it, give the console links their values and,
        with ``wait_for_completion``, push it to XCom ``export`` (once; also when a retry finds it finished)."""
        if record is not self._export:
            self._export = record
            self._publish(context, record)
            if self.wait_for_completion:
                context["ti"].xcom_push(key=EXPORT_XCOM_KEY, value=record)
        return record

    # -- starting ---------------------------------------------------------------------------------

    def _start(self, store: Any, image_set: list[dict[str, Any]]) -> ExportRecord:
        """Record what is under the names the export writes (its baseline), then send ExportImages.

        A refused send (busy image, full export queue) started nothing: wait until a DryRun says the
        images can be exported and send again. A send without a usable answer is resolved by
        :meth:`_find_unanswered` before anything is sent again.
        """
        from airflow_cvm_export.utils import completion

        expected = completion.count_expected_objects(self._args.image_ids, image_set, self._args.only_export_root_disk)
        keys = completion.expected_keys(self._args.request(), image_set)
        while True:
            baseline = completion.take_baseline(keys, self._list(self._args.request()))
            # By COS's clock, as the listing's Date header showed it: objects outside the baseline are
            # judged by comparing their Last-Modified with it.
            started_at = datetime.fromtimestamp(self.hook.cos_time(), UTC).isoformat()
            if store is not None:
                store.set(INTENT_KEY, {"started_at": started_at, "request": self._args.request(), "baseline": baseline})
            try:
                response = self.hook.export_images(**self._args.request(), expected_objects=expected)
            except TencentCloudBusyError as refused:  # nothing started
                if store is not None:
                    store.delete(INTENT_KEY)
                self._pause(describe(refused))
                self._wait_until_exportable()
                continue
            except AMBIGUOUS as lost:
                self.log.warning(
                    "ExportImages may or may not have started (%s); finding out without sending it again", lost
                )
                self._hold(started_at)
                found = self._find_unanswered(self._record(started_at, recovered=True, baseline=baseline), image_set)
                if found is not None:
                    return self._keep(store, found)
                self.log.warning("The unanswered ExportImages started nothing; sending it again")
                continue
            record = self._record(
                started_at,
                task_id=response["TaskId"],
                cos_paths=response["CosPaths"],
                request_id=response["RequestId"],
                baseline=baseline,
            )
            return self._keep(store, record)

    def _keep(self, store: Any, record: ExportRecord) -> ExportRecord:
        """Store the record of a started export (a retry reattaches to it) and drop the intent."""
        if store is not None:
            store.set(self.external_id_key, record)
            store.delete(INTENT_KEY)
        return record

    def _hold(self, sent_at: str) -> None:
        """Note that an unanswered ExportImages sent at ``sent_at`` (ISO) may reach the cloud until
        :func:`~airflow_cvm_export.utils.starting.in_flight_until`: nothing is sent again before then."""
        self._not_before = in_flight_until(datetime.fromisoformat(sent_at).timestamp(), self.hook.longest_send())

    def _find_unanswered(self, record: ExportRecord, image_set: list[dict[str, Any]]) -> ExportRecord | None:
        """The record of the export an unanswered send started, or None when it started nothing.

        A busy image proves only that *an* export runs, not whose, so this waits (back-off, up to
        ``start_timeout``) until the images are free, then looks under the names this send's export
        writes: every file new or changed since the send (the record's ``baseline``) means it ran and
        finished; none means it never started (or failed in the cloud), so sending is safe, unless
        other new objects appeared under its prefixes (:func:`unexpected_objects`): then it fails
        rather than risk a duplicate. "Never started" is decided only once the send can no longer
        reach the cloud (``_not_before``, the hook's longest send after it): until then a send held
        in flight could still start an export, so this keeps looking.
        """
        from airflow_cvm_export.utils import completion

        while True:
            reason = self._busy_reason(wait_for_queue=True, pending=record)
            if reason is None:
                listed = self._list(record)
                paths = completion.recovered_paths(record, image_set, listed)
                found = [path for path in paths if path]
                if paths and len(found) == len(paths):
                    self.log.warning(
                        "The unanswered ExportImages started and finished: %s; not exporting again", ", ".join(found)
                    )
                    return {**record, "cos_paths": found}
                if not found:
                    strays = completion.unexpected_objects(record, image_set, listed)
                    if strays:
                        raise TencentCloudOutcomeUnknownError(
                            f"ExportImages of {', '.join(record['image_ids'])} got no usable answer; none of its "
                            f"documented file names is in {record['bucket_name']}, but {', '.join(strays)} appeared "
                            "under its prefixes since it was sent, so it may have started an export under other "
                            "names. Not sending it again: check the bucket, then move or delete those objects and "
                            "clear the task",
                            action="ExportImages",
                        )
                    reason = in_flight_reason(self._not_before, time.time())
                    if reason is None:
                        return None
                else:
                    reason = f"{len(found)} of {len(paths)} of its files are in the bucket"
            self._pause(reason, pending=record)

    def _wait_until_exportable(self) -> None:
        """Return once a DryRun says the images can be exported; wait with back-off while they cannot."""
        while (reason := self._busy_reason()) is not None:
            self._pause(reason)

    def _busy_reason(self, *, wait_for_queue: bool = False, pending: ExportRecord | None = None) -> str | None:
        """Why the images cannot be exported now (a DryRun: busy image, full export queue), or None.

        With ``wait_for_queue`` a full queue is waited out: it says nothing about the images. A DryRun
        failing transiently (after the hook's own retries) is waited out too; see
        :func:`~airflow_cvm_export.utils.starting.start_state`.
        """
        while True:
            answer: TencentCloudError | None = None
            try:
                self.hook.export_images(**{**self._args.request(), "dry_run": True})
            except TencentCloudError as error:
                answer = error
            state, reason = dry_run_outcome(answer)
            if state is StartState.FREE:
                return None
            if state is StartState.BUSY or (state is StartState.QUEUE_FULL and not wait_for_queue):
                return reason
            self._pause(reason, pending=pending)

    def _pause(self, reason: str, *, pending: ExportRecord | None = None) -> None:
        """Wait before trying again: back-off in this worker, or, when ``deferrable``, in the triggerer.

        Past ``start_timeout`` raise instead, naming the images and the reason. ``pending`` is the
        record of an unanswered send being resolved: its intent stays stored, so a retry resumes the
        search instead of sending again.
        """
        left = self._start_deadline - time.time()
        if left <= 0:
            raise gave_up(
                self._args.image_ids, self._args.bucket_name, self.start_timeout, reason, unanswered=pending is not None
            )
        if self.deferrable:
            self._defer_start(reason, pending)
        delay = pause_seconds(self._pauses, self.poll_interval, left)
        self._pauses += 1
        self.log.info(
            "Cannot start exporting %s yet (%s); checking again in %.1f s",
            ", ".join(self._args.image_ids),
            reason,
            delay,
        )
        time.sleep(delay)

    def _defer_start(self, reason: str, pending: ExportRecord | None) -> None:
        """Wait in the triggerer until the images can be exported; the task resumes in :meth:`execute_start`."""
        from airflow_cvm_export.triggers.start import ExportStartTrigger

        self.log.info(
            "Cannot start exporting %s yet (%s); waiting in the triggerer", ", ".join(self._args.image_ids), reason
        )
        self.defer(
            trigger=ExportStartTrigger(
                request=self._args.request(),
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=self._region,
                poll_interval=self.poll_interval,
                end_time=self._start_deadline,
                reason=reason,
                pending=pending,
                not_before=self._not_before if pending is not None else 0.0,
            ),
            method_name="execute_start",
        )

    def _list(self, record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The objects under the images' file name prefixes, by key."""
        return self.list_exported(record)

    def _record(
        self,
        started_at: str,
        *,
        task_id: int | None = None,
        cos_paths: Sequence[str] = (),
        request_id: str | None = None,
        recovered: bool = False,
        baseline: Any = None,
        dry_run: bool = False,
    ) -> ExportRecord:
        """The export record of this task's arguments (``baseline``: as taken, or as the intent stored it)."""
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
            "dry_run": dry_run,
            "recovered": recovered,
            "baseline": None if baseline is None else dict(baseline),
        }

    def _dry_run(self) -> ExportRecord:
        started_at = datetime.now(UTC).isoformat()
        try:
            self.hook.export_images(**self._args.request())
        except DryRunSucceeded as answer:
            self.log.info(
                "Dry run: %s can be exported to %s (RequestId %s)",
                self._args.image_ids,
                self._args.bucket_name,
                answer.request_id,
            )
            return self._record(started_at, request_id=answer.request_id, dry_run=True)
        raise TencentCloudResponseError("ExportImages with DryRun answered as if it had started an export")

    def _publish(self, context: Context, record: ExportRecord) -> None:
        """Log the started export and store the console links' values."""
        if record["dry_run"]:
            return
        from airflow_cvm_export.utils.waiting import export_label

        answer = f" (RequestId {record['request_id']})" if record["request_id"] else ""
        self.log.info(
            "%s started%s: %s to %s: %s",
            export_label(record),
            answer,
            f"{len(record['cos_paths'])} object(s)" if record["cos_paths"] else "objects found by listing",
            record["bucket_name"],
            ", ".join(record["cos_paths"]),
        )
        remember(self, record, record["cos_paths"])
        persist_export_links(context, record)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the images in, the export's COS objects out (the CosPaths ExportImages returned)."""
        return task_lineage(self)


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
