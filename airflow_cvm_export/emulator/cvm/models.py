"""The CVM backend: images (the catalog's, less those deleted) and export tasks with their progression.

Exports play out lazily: nothing runs in the background; every read first settles whatever has
come due (objects written through the COS backend, tasks finished), under one lock. How an export
moves on is its progression, chosen when it is accepted, in the spirit of moto's managed state:

- ``time``: its objects appear one after another, the last ``export_seconds`` after acceptance;
- ``manual``: nothing happens until :meth:`CvmBackend.advance` or :meth:`CvmBackend.finish`;
- ``immediate``: it is finished when accepted.
"""

from __future__ import annotations

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
from airflow_cvm_export.emulator.cos.models import CosBackend
from airflow_cvm_export.emulator.errors import ApiError

EXPORT_FORMATS = ("RAW", "QCOW2", "VHD", "VMDK")
EXPORT_PARAMS = frozenset(
    {"BucketName", "ImageIds", "ExportFormat", "FileNamePrefixList", "OnlyExportRootDisk", "DryRun", "RoleName"}
)
# Undocumented by Tencent Cloud: the state a failed export leaves the image in (see docs/emulator.md).
EXPORT_FAILED_STATE = "EXPORTFAILED"
FIRST_TASK_ID = 105591590
PROGRESSIONS = ("time", "manual", "immediate")


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
    """One accepted export task: the objects it writes (``files``, none if it ``fails``) and how far it got."""

    task_id: int
    image_ids: tuple[str, ...]
    bucket: str
    cos_paths: list[str]
    progression: str
    accepted_at: float
    seconds: float
    fails: bool
    files: list[tuple[str, bytes]] = field(default_factory=list)
    written: int = 0
    status: str = "running"

    def _step(self) -> float:
        return self.seconds / max(len(self.files), 1)

    def due(self, now: float) -> tuple[int, bool]:
        """By the ``time`` progression at ``now``: (objects written, finished)."""
        if self.progression != "time":
            return self.written, False
        elapsed = now - self.accepted_at
        if elapsed >= self.seconds:
            return len(self.files), True
        return min(int(elapsed / self._step()), len(self.files)), False

    def written_at(self, index: int, now: float) -> float:
        """When object ``index`` appeared: its due time by the ``time`` progression, else ``now``."""
        if self.progression != "time":
            return now
        return min(now, self.accepted_at + self._step() * (index + 1))

    def to_json(self) -> dict[str, Any]:
        """The export as ``/_emulator/state`` shows it."""
        return {
            "TaskId": self.task_id,
            "ImageIds": list(self.image_ids),
            "BucketName": self.bucket,
            "CosPaths": list(self.cos_paths),
            "status": self.status,
            "progression": self.progression,
            "written": self.written,
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


class CvmBackend:
    """Images, export tasks and image states; thread-safe. Exports write their objects through ``cos``.

    :param catalog: images and buckets.
    :param cos: the COS backend exports write into.
    :param export_seconds: with the ``time`` progression, seconds from acceptance to the last object.
    :param fail_rate: share of exports that fail (no objects, image state ``EXPORTFAILED``).
    :param seed: seed of the draws deciding which exports fail.
    :param max_running_exports: export tasks running at once before ExportImages is refused.
    :param progression: ``time``, ``manual`` or ``immediate``, for exports accepted from now on.
    """

    def __init__(
        self,
        catalog: Catalog,
        cos: CosBackend,
        *,
        export_seconds: float,
        fail_rate: float,
        seed: int,
        max_running_exports: int,
        progression: str = "time",
    ) -> None:
        self.catalog = catalog
        self.cos = cos
        self.export_seconds = export_seconds
        self.fail_rate = fail_rate
        self.seed = seed
        self.max_running_exports = max_running_exports
        self.progression = check_progression(progression)
        self._lock = threading.Lock()
        self._next_task_id = FIRST_TASK_ID
        self.reset()

    def reset(self) -> None:
        """Forget every export, failed state and deleted image; re-seed the failure draws."""
        with self._lock:
            self._rng = random.Random(self.seed)
            self._exports: list[Export] = []
            self._running: list[Export] = []
            self._busy: dict[str, Export] = {}
            self._failed_images: set[str] = set()
            self._deleted_images: set[str] = set()
            self._by_region: dict[str, list[Image]] = {}

    def start(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """Run ExportImages: return ``{"TaskId", "CosPaths"}`` or raise :class:`ApiError`."""
        request = parse_export_request(params)
        self._check_bucket(request, region)
        with self._lock:
            now = time.time()
            self._settle(now)
            images = [self._exportable(image_id, region) for image_id in request.image_ids]
            for image in images:
                if image.image_id in self._busy:
                    raise ApiError("InvalidParameterValue.InvalidImageState", f"`{image.image_id}` is exporting.")
            if len(self._running) >= self.max_running_exports:
                raise ApiError("LimitExceeded.ExportImageTaskLimitExceeded")
            if request.dry_run:
                raise ApiError("DryRunOperation")
            export = self._create(request, images, now)
            if export.progression == "immediate":
                self._move(export, len(export.files), True, now)
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
        if image is None or image.region != region or image_id in self._deleted_images:
            raise ApiError("InvalidImageId.NotFound", f"`{image_id}`")
        if image.triggers != EXPORTABLE:
            raise ApiError(image.triggers, f"`{image_id}`")
        return image

    def _create(self, request: ExportRequest, images: list[Image], now: float) -> Export:
        task_id = self._next_task_id
        self._next_task_id += 1
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
        fails = self._rng.random() < self.fail_rate
        export = Export(
            task_id=task_id,
            image_ids=request.image_ids,
            bucket=request.bucket,
            cos_paths=[path for path, _ in files],
            progression=self.progression,
            accepted_at=now,
            seconds=self.export_seconds,
            fails=fails,
            files=[] if fails else files,
        )
        self._exports.append(export)
        self._running.append(export)
        for image_id in request.image_ids:
            self._busy[image_id] = export
            self._failed_images.discard(image_id)
        return export

    def _move(self, export: Export, written: int, finished: bool, now: float, failed: bool = False) -> None:
        """Write the export's objects up to ``written``; finish it (failed if ``failed``) when ``finished``."""
        for index in range(export.written, written):
            path, body = export.files[index]
            self.cos.put_object(export.bucket, path.lstrip("/"), body, export.written_at(index, now))
        export.written = max(export.written, written)
        if not finished:
            return
        fails = export.fails or failed
        export.status = "failed" if fails else "succeeded"
        self._running.remove(export)
        for image_id in export.image_ids:
            del self._busy[image_id]
            if fails and image_id not in self._deleted_images:
                self._failed_images.add(image_id)

    def _settle(self, now: float) -> None:
        """Move every ``time`` export to where it should be by ``now`` (caller holds the lock)."""
        for export in list(self._running):
            written, finished = export.due(now)
            if written > export.written or finished:
                self._move(export, written, finished, now)

    def settle(self) -> None:
        """Bring every export up to date (the COS backend calls this before each read)."""
        with self._lock:
            self._settle(time.time())

    def _chosen(self, task_id: int | None) -> list[Export]:
        if task_id is None:
            return list(self._running)
        for export in self._exports:
            if export.task_id == task_id:
                return [export] if export.status == "running" else []
        raise KeyError(f"no export task {task_id}")

    def advance(self, task_id: int | None = None, objects: int = 1) -> list[dict[str, Any]]:
        """Write the next ``objects`` objects of one running export (or of each); an export whose last
        object is written (or that fails, having none) finishes. Returns the exports moved."""
        with self._lock:
            now = time.time()
            self._settle(now)
            moved = self._chosen(task_id)
            for export in moved:
                written = min(export.written + objects, len(export.files))
                self._move(export, written, written == len(export.files), now)
            return [export.to_json() for export in moved]

    def finish(self, task_id: int | None = None, *, failed: bool = False) -> list[dict[str, Any]]:
        """Finish one running export (or each) now: all its objects written, or, with ``failed``, none more
        and the task failed. Returns the exports finished."""
        with self._lock:
            now = time.time()
            self._settle(now)
            moved = self._chosen(task_id)
            for export in moved:
                self._move(export, export.written if failed else len(export.files), True, now, failed=failed)
            return [export.to_json() for export in moved]

    def delete_image(self, image_id: str) -> None:
        """Delete an image, as a user might in the console: DescribeImages no longer shows it, exporting it
        gives ``InvalidImageId.NotFound``, and an export of it still running fails now."""
        if image_id not in self.catalog.images:
            raise KeyError(f"no image {image_id}")
        with self._lock:
            now = time.time()
            self._settle(now)
            self._deleted_images.add(image_id)
            self._by_region.clear()
            self._failed_images.discard(image_id)
            export = self._busy.get(image_id)
            if export is not None:
                self._move(export, export.written, True, now, failed=True)

    def images(self, region: str) -> list[Image]:
        """The images of ``region`` that exist (none deleted)."""
        with self._lock:
            images = self._by_region.get(region)
            if images is None:
                images = self._by_region[region] = [
                    image
                    for image in self.catalog.images.values()
                    if image.region == region and image.image_id not in self._deleted_images
                ]
            return images

    def image_states(self, images: list[Image]) -> list[str]:
        """Each image's ``ImageState`` now: NORMAL while exporting, EXPORTFAILED after a failed export."""
        with self._lock:
            self._settle(time.time())
            return [EXPORT_FAILED_STATE if i.image_id in self._failed_images else i.state for i in images]

    def deleted_images(self) -> list[str]:
        """Ids of the images deleted since the last reset."""
        with self._lock:
            return sorted(self._deleted_images)

    def to_json(self) -> list[dict[str, Any]]:
        """The ``exports`` list of ``GET /_emulator/state``."""
        with self._lock:
            self._settle(time.time())
            return [export.to_json() for export in self._exports]


def check_progression(progression: str) -> str:
    """``progression`` if it is one of :data:`PROGRESSIONS`, else raise ``ValueError`` naming them."""
    if progression not in PROGRESSIONS:
        raise ValueError(f"progression must be one of {', '.join(PROGRESSIONS)}, got {progression!r}")
    return progression
