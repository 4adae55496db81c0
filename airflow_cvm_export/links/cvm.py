"""Extra links to the Tencent Cloud console: the bucket an export writes to, and its objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.context import Context

COS_CONSOLE = "https://console.cloud.tencent.com/cos/bucket"
# XCom key of the values both links are built from; pushed by the operator and the sensor.
LINK_XCOM_KEY = "cos_console"


def cos_console_url(bucket: str, region: str | None, path: str | None = None) -> str:
    """Console URL of a bucket, opened at folder ``path`` if given."""
    query = {"bucket": bucket, "region": region or ""}
    if path:
        query["path"] = "/" + path.lstrip("/")
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


def persist_cos_link(context: Context, *, bucket: str, region: str | None, cos_paths: Sequence[str]) -> None:
    """Store what :class:`CosBucketLink` and :class:`CosObjectsLink` need in the task's XCom."""
    context["ti"].xcom_push(
        key=LINK_XCOM_KEY, value={"bucket": bucket, "region": region, "folder": common_folder(cos_paths)}
    )


def _link_values(ti_key: TaskInstanceKey) -> dict[str, Any] | None:
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(ti_key=ti_key, key=LINK_XCOM_KEY)
    return value if isinstance(value, dict) and value.get("bucket") else None


class CosBucketLink(BaseOperatorLink):
    """The export's COS bucket in the Tencent Cloud console."""

    name = "COS bucket"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Console URL of the bucket, or an empty string before the task has chosen one."""
        values = _link_values(ti_key)
        return cos_console_url(values["bucket"], values["region"]) if values else ""


class CosObjectsLink(BaseOperatorLink):
    """The exported objects in the Tencent Cloud console (the bucket opened at the folder holding them)."""

    name = "Exported objects"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Console URL listing the export's objects, or an empty string before the export started."""
        values = _link_values(ti_key)
        return cos_console_url(values["bucket"], values["region"], values["folder"]) if values else ""
