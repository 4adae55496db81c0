"""Extra links to the Tencent Cloud console: the bucket an export writes to, and its objects.

The URLs follow the console's own (there is no documented deep-link scheme): the bucket's page
``https://console.cloud.tencent.com/cos/bucket?bucket=<bucket>&region=<region>`` opens on its file
list, ``&type=basicconfig`` on its basic configuration, and ``&path=`` opens the file list at a
folder, its value URL-encoded twice, as the console writes it (``/a/b/`` is ``path=%252Fa%252Fb%252F``).
The console documents no link to one object or to a file-name search, so the objects link opens
the folder that holds them (for ExportImages the bucket's root: its file names cannot hold a ``/``).

Airflow 3 builds a task's link URLs in the worker, when each run of the task ends (it finishes,
fails, defers or reschedules), and stores them in XCom for the UI. The links take their values
from this process's :func:`persist_cos_link`, not from reading XCom back: reading a key that was
never pushed (a deferral before the export is known, a start that failed) logs an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.context import Context
    from airflow.sdk.types import TaskInstanceKey

COS_CONSOLE = "https://console.cloud.tencent.com/cos/bucket"
# XCom key of the values both links are built from; pushed by the operator and the sensor.
LINK_XCOM_KEY = "cos_console"

# The link values persisted in this process, per task instance try.
_persisted: dict[tuple[Any, ...], dict[str, Any]] = {}


def cos_console_url(bucket: str, region: str | None, *, path: str | None = None, page: str | None = None) -> str:
    """Console URL of a bucket: its file list, at folder ``path`` if given, or its ``page`` (e.g. ``basicconfig``)."""
    query = {"bucket": bucket, "region": region or ""}
    if path is not None:
        query["path"] = quote("/" + path.lstrip("/"), safe="")
    if page:
        query["type"] = page
    return f"{COS_CONSOLE}?{urlencode(query)}"


def common_folder(cos_paths: Sequence[str]) -> str:
    """The deepest folder (``a/b/``, or ``""`` for the bucket's root) holding all ``cos_paths``."""
    keys = [path.lstrip("/") for path in cos_paths]
    if not keys:
        return ""
    first, last = min(keys), max(keys)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size].rpartition("/")[0] + "/" if "/" in first[:size] else ""


def _try_key(ti: Any) -> tuple[Any, ...]:
    return (ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)


def persist_cos_link(context: Context, *, bucket: str, region: str | None, cos_paths: Sequence[str]) -> None:
    """Give :class:`CosBucketLink` and :class:`CosObjectsLink` their values, and store them in XCom.

    Call it once in every run of the task that knows the export: a resumed task runs in a new process.
    """
    ti = context["ti"]
    values = {"bucket": bucket, "region": region, "folder": common_folder(cos_paths)}
    _persisted[_try_key(ti)] = values
    ti.xcom_push(key=LINK_XCOM_KEY, value=values)


def persist_export_links(context: Context, export: Mapping[str, Any]) -> None:
    """:func:`persist_cos_link` from an export record (``bucket_name``, ``region``, ``cos_paths``)."""
    persist_cos_link(
        context, bucket=export["bucket_name"], region=export.get("region"), cos_paths=export.get("cos_paths") or []
    )


def _link_values(ti_key: TaskInstanceKey) -> dict[str, Any] | None:
    return _persisted.get(_try_key(ti_key))


class CosBucketLink(BaseOperatorLink):
    """The export's COS bucket in the Tencent Cloud console (its basic configuration)."""

    name = "COS bucket"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Console URL of the bucket, or an empty string before the task knows its export."""
        values = _link_values(ti_key)
        return cos_console_url(values["bucket"], values["region"], page="basicconfig") if values else ""


class CosObjectsLink(BaseOperatorLink):
    """The exported objects in the Tencent Cloud console: the bucket's file list at the folder holding them."""

    name = "Exported objects"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Console URL listing the export's objects, or an empty string before the task knows its export."""
        values = _link_values(ti_key)
        return cos_console_url(values["bucket"], values["region"], path=values["folder"]) if values else ""
