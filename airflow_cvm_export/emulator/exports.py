"""ExportImages: argument checks, the export lifecycle, and the COS objects exports leave behind.

Exports play out lazily: nothing runs in the background; every read first settles whatever has
come due by now (objects written, tasks finished), under one lock.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_cvm_export.emulator.catalog import (
    BUCKET_APPID_RE,
    DEFAULT_ROLE_NAME,
    EXPORTABLE,
    IMAGE_ID_RE,
    MAX_EXPORT_IMAGE_IDS,
    ROLE_NAMES,
    WRITABLE,
    Catalog,
    Image,
)
from airflow_cvm_export.emulator.errors import ApiError

EXPORT_FORMATS = ("RAW", "QCOW2", "VHD", "VMDK")
EXPORT_PARAMS = frozenset(
    {"BucketName", "ImageIds", "ExportFormat", "FileNamePrefixList", "OnlyExportRootDisk", "DryRun", "RoleName"}
)
# Undocumented by Tencent Cloud: the state a failed export leaves the image in (see docs/emulator.md).
EXPORT_FAILED_STATE = "EXPORTFAILED"
FIRST_TASK_ID = 105591590


@dataclass(frozen=True)
class CosObject:
    """An object in an emulated bucket."""

    key: str
    body: bytes
    etag: str
    last_modified: float


@dataclass(frozen=True)
class ExportRequest:
    """A checked ExportImages request."""

    bucket: str
    image_ids: tuple[str, ...]
    extension: str
    prefixes: tuple[str, ...] | None
    root_only: bool
    dry_run: bool
    role: str


@dataclass
class Export:
    """One accepted export task; ``pending`` holds (due time, path, body) of objects not yet written."""

    task_id: int
    image_ids: tuple[str, ...]
    bucket: str
    cos_paths: list[str]
    done_at: float
    fails: bool
    pending: list[tuple[float, str, bytes]] = field(default_factory=list)
    status: str = "running"

    def to_json(self) -> dict[str, Any]:
        """The export as ``/_emulator/state`` shows it."""
        return {
            "TaskId": self.task_id,
            "ImageIds": list(self.image_ids),
            "BucketName": self.bucket,
            "CosPaths": list(self.cos_paths),
            "status": self.status,
        }


def _typed(params: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = params.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise ApiError("InvalidParameter", f"{name} has the wrong type.")
    return value


def _string_list(params: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = _typed(params, name, list)
    if value is not None and not all(isinstance(item, str) for item in value):
        raise ApiError("InvalidParameter", f"{name} must be a list of strings.")
    return None if value is None else tuple(value)


def parse_export_request(params: dict[str, Any]) -> ExportRequest:
    """Check the parameters of ExportImages that need no state; raise :class:`ApiError` if wrong."""
    unknown = sorted(set(params) - EXPORT_PARAMS)
    if unknown:
        raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
    bucket = _typed(params, "BucketName", str)
    if not bucket:
        raise ApiError("MissingParameter", "The request is missing a required parameter `BucketName`.")
    image_ids = _string_list(params, "ImageIds")
    prefixes = _string_list(params, "FileNamePrefixList")
    export_format = _typed(params, "ExportFormat", str, "RAW")
    root_only = bool(_typed(params, "OnlyExportRootDisk", bool, False))
    dry_run = bool(_typed(params, "DryRun", bool, False))
    role = _typed(params, "RoleName", str) or DEFAULT_ROLE_NAME
    if not image_ids:
        raise ApiError("InvalidParameter.ImageIdsSnapshotIdsMustOne")
    if len(image_ids) > MAX_EXPORT_IMAGE_IDS:
        raise ApiError("InvalidParameterValue.LimitExceeded", f"ImageIds accepts at most {MAX_EXPORT_IMAGE_IDS}.")
    if len(set(image_ids)) != len(image_ids):
        raise ApiError("InvalidParameterValue", "ImageIds contains duplicates.")
    for image_id in image_ids:
        if not IMAGE_ID_RE.match(image_id):
            raise ApiError("InvalidImageId.Malformed", f"`{image_id}`")
    if prefixes is not None and len(prefixes) != len(image_ids):
        raise ApiError("InvalidParameterValue.InvalidFileNamePrefixList")
    if export_format not in EXPORT_FORMATS:
        raise ApiError("InvalidParameterValue", f"ExportFormat must be one of {', '.join(EXPORT_FORMATS)}.")
    return ExportRequest(bucket, image_ids, export_format.lower(), prefixes, root_only, dry_run, role)


def cos_path(prefix: str | None, image_id: str, usage: str, snapshot_id: str, extension: str) -> str:
    """The documented file name: ``/<prefix>_<ImageId>_system_<SnapshotId>.<ext>`` (``_data_`` for data disks)."""
    kind = "system" if usage == "SYSTEM_DISK" else "data"
    name = f"{image_id}_{kind}_{snapshot_id}.{extension}"
    return f"/{prefix}_{name}" if prefix else f"/{name}"


class ExportManager:
    """Export tasks, image states and bucket contents; thread-safe.

    :param catalog: images and buckets.
    :param export_seconds: seconds from an accepted export to its last object.
    :param fail_rate: share of exports that fail (no objects, image state ``EXPORTFAILED``).
    :param seed: seed of the draws deciding which exports fail.
    :param max_running_exports: export tasks running at once before ExportImages is refused.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        export_seconds: float,
        fail_rate: float,
        seed: int,
        max_running_exports: int,
    ) -> None:
        self.catalog = catalog
        self.export_seconds = export_seconds
        self.fail_rate = fail_rate
        self.max_running_exports = max_running_exports
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._exports: list[Export] = []
        self._running: list[Export] = []
        self._busy: dict[str, Export] = {}
        self._failed_images: set[str] = set()
        self._objects: dict[str, dict[str, CosObject]] = {
            name: {} for name, bucket in catalog.buckets.items() if bucket.exists
        }

    def start(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """Run ExportImages: return ``{"TaskId", "CosPaths"}`` or raise :class:`ApiError`."""
        request = parse_export_request(params)
        self._check_bucket(request, region)
        images = [self._exportable(image_id, region) for image_id in request.image_ids]
        with self._lock:
            now = time.time()
            self._settle(now)
            for image in images:
                if image.image_id in self._busy:
                    raise ApiError("InvalidParameterValue.InvalidImageState", f"`{image.image_id}` is exporting.")
            if len(self._running) >= self.max_running_exports:
                raise ApiError("LimitExceeded.ExportImageTaskLimitExceeded")
            if request.dry_run:
                raise ApiError("DryRunOperation")
            export = self._create(request, images, now)
        return {"TaskId": export.task_id, "CosPaths": list(export.cos_paths)}

    def _check_bucket(self, request: ExportRequest, region: str) -> None:
        if not BUCKET_APPID_RE.match(request.bucket):
            raise ApiError("InvalidParameterValue.InvalidAppIdFormat", f"`{request.bucket}` lacks `-<APPID>`.")
        bucket = self.catalog.buckets.get(request.bucket)
        if bucket is None or bucket.region != region:
            raise ApiError("InvalidParameterValue.BucketNotFound", f"`{request.bucket}` in {region}.")
        if bucket.triggers != WRITABLE:
            raise ApiError(bucket.triggers)
        if request.role not in ROLE_NAMES:
            raise ApiError("AuthFailure.CamRoleNameAuthenticateFailed", f"`{request.role}`")

    def _exportable(self, image_id: str, region: str) -> Image:
        image = self.catalog.images.get(image_id)
        if image is None or image.region != region:
            raise ApiError("InvalidImageId.NotFound", f"`{image_id}`")
        if image.triggers != EXPORTABLE:
            raise ApiError(image.triggers, f"`{image_id}`")
        return image

    def _create(self, request: ExportRequest, images: list[Image], now: float) -> Export:
        task_id = FIRST_TASK_ID + len(self._exports)
        files = []
        for index, image in enumerate(images):
            prefix = request.prefixes[index] if request.prefixes else None
            disks = image.disks[:1] if request.root_only else image.disks
            for disk in disks:
                path = cos_path(prefix, image.image_id, disk.usage, disk.snapshot_id, request.extension)
                body = (
                    f"emulated {request.extension} export of {image.image_id} {disk.snapshot_id} "
                    f"({disk.size} GiB), task {task_id}\n"
                ).encode()
                files.append((path, body))
        step = self.export_seconds / len(files)
        export = Export(
            task_id=task_id,
            image_ids=request.image_ids,
            bucket=request.bucket,
            cos_paths=[path for path, _ in files],
            done_at=now + self.export_seconds,
            fails=self._rng.random() < self.fail_rate,
        )
        if not export.fails:
            export.pending = [(now + step * (i + 1), path, body) for i, (path, body) in enumerate(files)]
        self._exports.append(export)
        self._running.append(export)
        for image_id in request.image_ids:
            self._busy[image_id] = export
            self._failed_images.discard(image_id)
        return export

    def _settle(self, now: float) -> None:
        """Write the objects and finish the tasks that have come due (caller holds the lock)."""
        for export in list(self._running):
            while export.pending and export.pending[0][0] <= now:
                due, path, body = export.pending.pop(0)
                key = path.lstrip("/")
                etag = '"' + hashlib.md5(body).hexdigest() + '"'
                self._objects[export.bucket][key] = CosObject(key, body, etag, due)
            if export.done_at <= now:
                export.status = "failed" if export.fails else "succeeded"
                self._running.remove(export)
                for image_id in export.image_ids:
                    del self._busy[image_id]
                    if export.fails:
                        self._failed_images.add(image_id)

    def image_states(self, images: list[Image]) -> list[str]:
        """Each image's ``ImageState``: NORMAL while exporting, EXPORTFAILED after a failed export."""
        with self._lock:
            self._settle(time.time())
            return [EXPORT_FAILED_STATE if i.image_id in self._failed_images else i.state for i in images]

    def bucket_objects(self, bucket: str) -> dict[str, CosObject] | None:
        """A snapshot of a bucket's objects by key, or None if the bucket does not exist."""
        with self._lock:
            self._settle(time.time())
            objects = self._objects.get(bucket)
            return None if objects is None else dict(objects)

    def get_object(self, bucket: str, key: str) -> CosObject | None:
        """One object, or None."""
        with self._lock:
            self._settle(time.time())
            return self._objects.get(bucket, {}).get(key)

    def to_json(self) -> list[dict[str, Any]]:
        """The ``exports`` list of ``GET /_emulator/state``."""
        with self._lock:
            self._settle(time.time())
            return [export.to_json() for export in self._exports]
