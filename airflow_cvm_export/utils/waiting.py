"""The pure half of the wait engine below operator, sensor and trigger: decide, and name the assets.

Every way of waiting checks an export, decides, and acts on the result (see
:mod:`airflow_cvm_export.mixins` for the check and the act in a worker; the trigger's poller
batches the checks for every export waiting in the triggerer). Deciding is pure and lives here:
:func:`verdict` turns :func:`~airflow_cvm_export.utils.completion.assess`'s judgement into an
:class:`~airflow_cvm_export.utils.records.ExportEvent`, or None while the export runs; a check
that could not be made, and that the wait's :class:`~airflow_cvm_export.utils.outage.Outage` no
longer tolerates, becomes :func:`failed_check_event`, a deadline :func:`timeout_event`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_cvm_export.utils.completion import ExportProgress, listing_prefixes
from airflow_cvm_export.utils.outage import Outage, is_permanent
from airflow_cvm_export.utils.records import EventStatus, ExportEvent, ExportState


def export_label(export: Mapping[str, Any]) -> str:
    """``ExportImages task <TaskId>``, for messages; a recovered export (its answer was lost: no TaskId)
    is named by its images."""
    if export.get("task_id") is None:
        return f"ExportImages of {', '.join(export.get('image_ids') or ())} (answer lost, no TaskId)"
    return f"ExportImages task {export['task_id']}"


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


def failed_check_event(export: Mapping[str, Any], outage: Outage, error: BaseException) -> ExportEvent:
    """The event ending a wait whose check raised ``error`` and ``outage`` does not tolerate it.

    A permanent error (credentials, not found, bad parameters) is ``failed``: the task fails at once,
    in every mode. Anything else (an outage longer than ``max_outage``, an unexpected error) is
    :func:`error_event`: this try fails and the task's retries reattach.
    """
    event = error_event(export, outage.gave_up(error))
    return {**event, "status": EventStatus.FAILED.value} if is_permanent(error) else event


def timeout_event(export: Mapping[str, Any], progress: ExportProgress | None, limit: str) -> ExportEvent:
    """The wait ran out of time (``limit`` says how: ``by <time>``, ``within <n> s``) before the export finished."""
    seen = progress.describe() if progress else "not checked yet"
    return {"status": EventStatus.TIMEOUT.value, "message": f"{export_label(export)} did not finish {limit}: {seen}"}


def deadline_text(deadline: float) -> str:
    """``by <ISO time>`` of a deadline in epoch seconds, for :func:`timeout_event`."""
    from datetime import UTC, datetime

    return f"by {datetime.fromtimestamp(deadline, UTC).isoformat(timespec='seconds')}"


def export_assets(
    export: Mapping[str, Any], objects: Sequence[Mapping[str, Any]], dag_id: str | None = None
) -> dict[str, list[str]]:
    """Group exported object keys by asset URI: one asset per bucket, image and producing DAG.

    ``cos://<bucket>/<ImageId>?dag_id=<dag_id>``: the URI names what was exported and by which DAG,
    not this run's keys (those go in the event's ``keys``), so it is the same every run. Airflow
    then creates each asset once, on the first export, and its scheduler activates it once, instead
    of a new, inactive asset per run prefix. The DAG is in the URI because Airflow's api-server
    fails one of two tasks that create the same new asset at the same moment (unique violation on
    ``idx_asset_name_uri_unique``; see docs/assets.md, "Assets"): DAGs never share an asset, and
    the batches of a run never share an image. An object is the image's when its key starts with
    the image's :func:`~airflow_cvm_export.utils.completion.listing_prefixes` entry (the documented
    ``[<prefix>_]<ImageId>_`` file names); a key that does not (never seen) is its own asset,
    ``cos://<bucket>/<key>?dag_id=<dag_id>``.
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
