"""The wait engine below operator, sensor and trigger: check an export, decide, act on the result.

Every way of waiting goes through the same three steps, so poke, reschedule, deferrable and the
one-task operator (``wait_for_completion``, with or without ``deferrable``) end the same way:

1. **check**: DescribeImages and the export's objects (:func:`check` in a worker; the trigger's
   poller batches the same calls for every export waiting in the triggerer), judged by
   :func:`~airflow_cvm_export.utils.completion.assess`, the one place where completion is decided;
2. **decide**: :func:`verdict` turns that judgement into an
   :class:`~airflow_cvm_export.utils.records.ExportEvent`, or None while the export runs; a check
   that could not be made becomes :func:`error_event`, a deadline :func:`timeout_event`;
3. **act**: :func:`resume` hands a finished export on (XCom, console links, asset events), fails
   for good on a failed export (``AirflowFailException``) or a timeout (``AirflowSensorTimeout``),
   and fails only this try when the export could not be checked (the task's retries reattach).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_cvm_export.utils.completion import ExportProgress, assess, listing_prefixes
from airflow_cvm_export.utils.records import (
    OBJECTS_XCOM_KEY,
    EventStatus,
    ExportedObject,
    ExportEvent,
    ExportRecord,
    ExportState,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.context import Context

    from airflow_cvm_export.hooks.cvm import CvmHook


def export_label(export: Mapping[str, Any]) -> str:
    """``ExportImages task <TaskId>``, for messages."""
    return f"ExportImages task {export.get('task_id')}"


# -- check ------------------------------------------------------------------------------------------


def list_recovered(hook: CvmHook, export: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The objects of a recovered export (no CosPaths) by key: a listing under each image's file name prefix."""
    bucket = export["bucket_name"]
    return {obj["key"]: obj for prefix in listing_prefixes(export) for obj in hook.list_cos_objects(bucket, prefix)}


def check(task: BaseOperator, hook: CvmHook, export: ExportRecord) -> ExportProgress:
    """One check of an export in a worker: DescribeImages and a COS HEAD per CosPath, judged by ``assess``.

    A recovered record (the ExportImages answer was lost, so no CosPaths) lists the bucket under
    each image's documented file name prefix instead. Logs the progress (``n of m``). Errors of
    the calls (after the hook's retries) propagate: they fail this try only.
    """
    image_set = hook.describe_images(export["image_ids"])
    if export.get("recovered"):
        heads = list_recovered(hook, export)
    else:
        bucket = export["bucket_name"]
        heads = {key: hook.head_cos_object(bucket, key) for key in (p.lstrip("/") for p in export["cos_paths"])}
    progress = assess(export, image_set, heads)
    task.log.info("%s: %s", export_label(export), progress.describe())
    return progress


# -- decide -----------------------------------------------------------------------------------------


def state_of(progress: ExportProgress) -> ExportState:
    """Where the checked export stands."""
    if progress.error:
        return ExportState.FAILED
    return ExportState.EXPORTED if progress.done else ExportState.EXPORTING


def verdict(export: Mapping[str, Any], progress: ExportProgress) -> ExportEvent | None:
    """The event ending the wait after ``progress``, or None while the export is still running."""
    state = state_of(progress)
    if state is ExportState.FAILED:
        return {"status": EventStatus.FAILED.value, "message": f"{export_label(export)}: {progress.error}"}
    if state is ExportState.EXPORTED:
        return {
            "status": EventStatus.SUCCESS.value,
            "message": f"{export_label(export)} finished: {progress.describe()}",
            "cos_paths": [obj["cos_path"] for obj in progress.objects],
            "objects": progress.objects,
        }
    return None


def error_event(export: Mapping[str, Any], error: BaseException | str) -> ExportEvent:
    """The export could not be checked (even after the hook's retries): this try fails, retries may run."""
    return {"status": EventStatus.ERROR.value, "message": f"Could not check {export_label(export)}: {error}"}


def timeout_event(export: Mapping[str, Any], progress: ExportProgress | None, limit: str) -> ExportEvent:
    """The wait ran out of time (``limit`` says how: ``by <time>``, ``within <n> s``) before the export finished."""
    seen = progress.describe() if progress else "not checked yet"
    return {"status": EventStatus.TIMEOUT.value, "message": f"{export_label(export)} did not finish {limit}: {seen}"}


def deadline_text(deadline: float) -> str:
    """``by <ISO time>`` of a deadline in epoch seconds, for :func:`timeout_event`."""
    from datetime import UTC, datetime

    return f"by {datetime.fromtimestamp(deadline, UTC).isoformat(timespec='seconds')}"


# -- act --------------------------------------------------------------------------------------------


def resume(task: BaseOperator, context: Context, export: ExportRecord, event: Mapping[str, Any]) -> list[str]:
    """Act on the event that ended a wait; return the CosPaths (the task's XCom ``return_value``).

    ``success``: :func:`publish`. ``failed`` (and events of older versions without a status we
    know): ``AirflowFailException``; ``timeout``: ``AirflowSensorTimeout``; both end the task.
    ``error``: a :class:`~airflow_cvm_export.utils.errors.TencentCloudError`, so the task's own
    retries run (a retry checks again and reattaches).
    """
    from airflow_cvm_export.utils.errors import TencentCloudError
    from airflow_cvm_export.version_compat import AirflowFailException, AirflowSensorTimeout

    status = event.get("status")
    message = event.get("message") or f"the export wait ended with status {status!r}"
    if status == EventStatus.SUCCESS:
        return publish(task, context, export, list(event["objects"]))
    if status == EventStatus.TIMEOUT:
        raise AirflowSensorTimeout(message)
    if status == EventStatus.ERROR:
        raise TencentCloudError(message)
    raise AirflowFailException(message)


def resume_deferred(task: BaseOperator, context: Context, export: ExportRecord, event: Mapping[str, Any]) -> list[str]:
    """:func:`resume` in the task's ``execute_complete``: a resumed task runs in a new process, so the
    console links get their values again first."""
    from airflow_cvm_export.links.cvm import persist_export_links

    if export:
        persist_export_links(context, export)
    return resume(task, context, export, event)


def check_before_deferring(
    task: BaseOperator, context: Context, hook: CvmHook, export: ExportRecord
) -> list[str] | None:
    """One check before handing the wait to the triggerer: an export that already ended is acted on now.

    The trigger's first check is one poll interval away, so a finished export (a cleared task, files
    already there) would otherwise wait a full interval for nothing. Returns what :func:`resume`
    returns (or raises as it does), with the same result as the trigger's event would give; None
    while the export runs, and the caller defers.
    """
    event = verdict(export, check(task, hook, export))
    return None if event is None else resume(task, context, export, event)


def wait_in_worker(
    task: BaseOperator, context: Context, hook: CvmHook, export: ExportRecord, poll_interval: float, timeout: float
) -> list[str]:
    """Check every ``poll_interval`` seconds in this worker until the export ends; act as :func:`resume`."""
    deadline = time.monotonic() + timeout
    while True:
        progress = check(task, hook, export)
        event = verdict(export, progress)
        if event is None and time.monotonic() + poll_interval > deadline:
            event = timeout_event(export, progress, f"within {timeout:g} s")
        if event is not None:
            return resume(task, context, export, event)
        time.sleep(poll_interval)


def export_assets(
    export: Mapping[str, Any], objects: Sequence[Mapping[str, Any]], dag_id: str | None = None
) -> dict[str, list[str]]:
    """Group exported object keys by asset URI: one asset per bucket, image and producing DAG.

    ``cos://<bucket>/<ImageId>?dag_id=<dag_id>``: the URI names what was exported and by which DAG,
    not this run's keys (those go in the event's ``keys``), so it is the same every run. Airflow
    then creates each asset once, on the first export, and its scheduler activates it once, instead
    of a new, inactive asset per run prefix. The DAG is in the URI because Airflow's api-server
    fails one of two tasks that create the same new asset at the same moment (unique violation on
    ``idx_asset_name_uri_unique``; see the README's "Assets"): DAGs never share an asset, and the
    batches of a run never share an image. An object is the image's when its key starts with the
    image's :func:`listing_prefixes` entry (the documented ``[<prefix>_]<ImageId>_`` file names); a
    key that does not (never seen) is its own asset, ``cos://<bucket>/<key>?dag_id=<dag_id>``.
    Without ``dag_id`` (callers of 0.1.0's two-argument form) the URIs have no query.
    """
    from urllib.parse import urlencode

    owners = sorted(zip(listing_prefixes(export), export["image_ids"], strict=True), key=lambda o: -len(o[0]))
    query = f"?{urlencode({'dag_id': dag_id})}" if dag_id else ""
    groups: dict[str, list[str]] = defaultdict(list)
    for obj in objects:
        key = obj["key"]
        name = next((image_id for prefix, image_id in owners if key.startswith(prefix)), key)
        groups[f"cos://{obj['bucket']}/{name}{query}"].append(key)
    return dict(groups)


def publish(task: BaseOperator, context: Context, export: ExportRecord, objects: list[ExportedObject]) -> list[str]:
    """Hand a finished export downstream; return its CosPaths (the task's XCom ``return_value``).

    Pushes ``objects`` under XCom key ``objects``, keeps the export for the task's OpenLineage
    lineage, and adds one asset event per exported image (:func:`export_assets`) to every
    :class:`~airflow.sdk.AssetAlias` in ``task.outlets``. (The console links got their values when
    the wait began, see :func:`resume_deferred`.)
    """
    from airflow.sdk import Asset, AssetAlias

    from airflow_cvm_export.utils.lineage import remember

    cos_paths = [obj["cos_path"] for obj in objects]
    remember(task, export, cos_paths)
    context["ti"].xcom_push(key=OBJECTS_XCOM_KEY, value=objects)
    aliases = [outlet for outlet in task.outlets if isinstance(outlet, AssetAlias)]
    for uri, keys in export_assets(export, objects, task.dag_id).items():
        for alias in aliases:
            context["outlet_events"][alias].add(
                Asset(uri=uri), extra={"export_task_id": export.get("task_id"), "keys": keys}
            )
    task.log.info("%s finished: %s", export_label(export), ", ".join(cos_paths))
    return cos_paths
