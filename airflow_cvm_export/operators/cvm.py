"""Operator starting a Tencent Cloud CVM image export (``ExportImages``) into a COS bucket."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_cvm_export.links.cvm import CosBucketLink, CosObjectsLink, persist_cos_link
from airflow_cvm_export.utils.connection import DEFAULT_CONN_ID
from airflow_cvm_export.utils.errors import DryRunSucceeded, TencentCloudConfigError
from airflow_cvm_export.utils.validation import DEFAULT_EXPORT_FORMAT, validate_export_args

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context


class ExportImagesOperator(BaseOperator):
    """Start exporting CVM custom images to a COS bucket and return the export record.

    Arguments are checked after template rendering and before any request is sent
    (:func:`~airflow_cvm_export.utils.validation.validate_export_args`). The return value (XCom
    ``return_value``) is a JSON-only export record: ``task_id`` (the ExportImages TaskId),
    ``cos_paths``, ``image_ids``, ``bucket_name``, ``region``, ``file_name_prefixes``,
    ``export_format``, ``only_export_root_disk``, ``request_id``, ``started_at`` (ISO 8601 UTC, taken
    just before the request) and ``dry_run``. Pass it to
    :class:`~airflow_cvm_export.sensors.cvm.ExportImagesSensor` (``export=start.output``) to wait
    for the files.

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
    """

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_ids = image_ids
        self.bucket_name = bucket_name
        self.export_format = export_format
        self.file_name_prefixes = file_name_prefixes
        self.only_export_root_disk = only_export_root_disk
        self.dry_run = dry_run
        self.role_name = role_name
        self.region = region
        self.tencentcloud_conn_id = tencentcloud_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, send ExportImages once and return the export record."""
        args = validate_export_args(
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

        hook = CvmHook(self.tencentcloud_conn_id, region=args.region)
        region = hook.config.region
        if region is None:
            raise TencentCloudConfigError(
                f"region must be set: pass region= or set the region extra of connection {self.tencentcloud_conn_id!r}"
            )
        started_at = datetime.now(UTC).isoformat()
        try:
            response = hook.export_images(**args.request())
        except DryRunSucceeded as answer:
            self.log.info(
                "Dry run: %s can be exported to %s (RequestId %s)", args.image_ids, args.bucket_name, answer.request_id
            )
            response = {"TaskId": None, "CosPaths": [], "RequestId": answer.request_id}
        finally:
            hook.close()
        record = {
            "task_id": response.get("TaskId"),
            "cos_paths": list(response.get("CosPaths") or []),
            "image_ids": args.image_ids,
            "bucket_name": args.bucket_name,
            "region": region,
            "file_name_prefixes": args.file_name_prefixes,
            "export_format": args.export_format,
            "only_export_root_disk": args.only_export_root_disk,
            "request_id": response.get("RequestId"),
            "started_at": started_at,
            "dry_run": bool(args.dry_run),
        }
        if not record["dry_run"]:
            self.log.info(
                "ExportImages task %s started (RequestId %s): %d object(s) to %s: %s",
                record["task_id"],
                record["request_id"],
                len(record["cos_paths"]),
                args.bucket_name,
                ", ".join(record["cos_paths"]),
            )
            persist_cos_link(context, bucket=args.bucket_name, region=region, cos_paths=record["cos_paths"])
        return record
