"""The JSON contracts between operator, sensor, trigger and downstream tasks, as types.

Every value here is plain JSON (``TypedDict`` is a ``dict``, the enums are ``str``), so XComs,
serialized triggers and trigger events stay what they were before these types existed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict

# XCom key of the exported objects (a list of ExportedObject).
OBJECTS_XCOM_KEY = "objects"


class ExportRecord(TypedDict, total=False):
    """The export record: ``ExportImagesOperator``'s return value (XCom ``return_value``, with or
    without ``wait_for_completion``), the sensor's ``export`` argument and the trigger's.

    :param task_id: the ExportImages ``TaskId``; None when the answer was lost (``recovered``) or for a dry run.
    :param cos_paths: the ``CosPaths`` ExportImages returned, one per exported disk; empty when recovered.
    :param image_ids: the exported image ids.
    :param bucket_name: the COS bucket, ``<name>-<APPID>``.
    :param region: region of the images and bucket.
    :param file_name_prefixes: one object name prefix per image, or None.
    :param export_format: RAW, QCOW2, VHD or VMDK.
    :param only_export_root_disk: only the system disk was exported.
    :param request_id: ``RequestId`` of the ExportImages answer.
    :param started_at: ISO 8601 UTC time taken just before ExportImages was sent, by COS's clock (the
        ``Date`` header of the baseline listing): what ``Last-Modified`` is compared with where the
        ``baseline`` does not cover a key.
    :param dry_run: nothing was exported (DryRun).
    :param recovered: the ExportImages answer was lost; the files are found by listing the bucket.
    :param baseline: what existed under each documented name just before ExportImages was sent:
        ``{key: {"etag", "last_modified"}}``, None where nothing did; only an object new or changed
        since counts as this export's. None for a dry run and in records of older versions.
    """

    task_id: int | None
    cos_paths: list[str]
    image_ids: list[str]
    bucket_name: str
    region: str | None
    file_name_prefixes: list[str] | None
    export_format: str
    only_export_root_disk: bool | None
    request_id: str | None
    started_at: str
    dry_run: bool
    recovered: bool
    baseline: dict[str, dict[str, str] | None] | None


class ExportedObject(TypedDict):
    """One exported file (XCom ``objects``, the trigger's success event).

    :param bucket: the COS bucket.
    :param key: the object key (the CosPath without its leading slash).
    :param cos_path: the CosPath, ``/<key>``.
    :param size: bytes.
    :param etag: the object's ETag, without quotes.
    :param last_modified: ISO 8601 time the object was written.
    :param url: HTTPS URL of the object in the real COS.
    """

    bucket: str
    key: str
    cos_path: str
    size: int
    etag: str
    last_modified: str
    url: str


class ExportState(StrEnum):
    """Where an export stands, as one check of it shows (see :func:`~airflow_cvm_export.utils.completion.assess`)."""

    EXPORTING = "exporting"
    EXPORTED = "exported"
    FAILED = "failed"


class EventStatus(StrEnum):
    """``status`` of the one event :class:`~airflow_cvm_export.triggers.cvm.ExportImagesTrigger` fires.

    ``failed`` and ``timeout`` end the task for good; ``error`` (the export could not be checked,
    even after the hook's retries) fails the try, so the task's own retries run and reattach.
    """

    SUCCESS = "success"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"


class ExportEvent(TypedDict, total=False):
    """A trigger event: ``status`` (an :class:`EventStatus` value) and ``message``; ``cos_paths`` and
    ``objects`` on success."""

    status: str
    message: str
    cos_paths: list[str]
    objects: list[ExportedObject]
