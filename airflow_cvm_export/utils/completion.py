"""Where completion of an export is decided (pure; shared by the sensor and the trigger).

No public API reports an export's progress by TaskId, so completion is inferred: the export is
done when every expected object exists in the bucket and was written after the export started
(minus a small clock-skew margin), and it has failed when an image is gone or in a failed state.

A *recovered* export record (``recovered: true``, no ``cos_paths``: the ExportImages answer was
lost, see the README's "Failure modes") is judged from a bucket listing instead of HEADs: one object
per disk of DescribeImages' ``SnapshotSet`` (only the system disk with ``only_export_root_disk``),
named by the documented pattern ``[<prefix>_]<ImageId>_system_<SnapshotId>.<format>`` (``_data_``
for data disks) and written after the export started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

CLOCK_SKEW_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class ExportProgress:
    """Result of one check of an export.

    :param expected: how many objects the export writes (0 when not known yet).
    :param objects: the fresh objects found so far, one ``{"bucket", "key", "cos_path", "size",
        "etag", "last_modified", "url"}`` each.
    :param error: why the export cannot finish (a deleted or failed image), else None.
    """

    expected: int
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def done(self) -> bool:
        """True when nothing failed and every expected object is there."""
        return self.error is None and self.expected > 0 and len(self.objects) == self.expected

    def describe(self) -> str:
        """``n of m exported objects present``, for the task log."""
        return f"{len(self.objects)} of {self.expected} exported objects present"


def parse_time(value: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` allowed); ValueError for anything else."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {value!r}")
    return parsed


def image_failure(image_ids: Sequence[str], image_set: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the export cannot finish according to DescribeImages, or None if nothing is wrong."""
    states = {image.get("ImageId"): str(image.get("ImageState", "")) for image in image_set}
    for image_id in image_ids:
        if image_id not in states:
            return f"image {image_id} no longer exists (DescribeImages does not return it)"
        if states[image_id].upper().endswith("FAILED"):
            return f"image {image_id} is in state {states[image_id]}: the export failed in Tencent Cloud"
    return None


def is_fresh(meta: Mapping[str, Any] | None, started_at: str, margin: timedelta = CLOCK_SKEW_MARGIN) -> bool:
    """True when the object exists and was written after ``started_at`` minus ``margin``."""
    if not meta:
        return False
    return parse_time(meta["last_modified"]) >= parse_time(started_at) - margin


def object_url(bucket: str, region: str | None, key: str) -> str:
    """HTTPS URL of an object in the real COS (virtual-host style)."""
    return f"https://{bucket}.cos.{region}.myqcloud.com/{key}"


def listing_prefixes(export: Mapping[str, Any]) -> list[str]:
    """The COS listing prefix of each image of a recovered export: ``<prefix>_<ImageId>_`` or ``<ImageId>_``."""
    prefixes = export.get("file_name_prefixes") or [None] * len(export["image_ids"])
    return [
        f"{prefix}_{image_id}_" if prefix else f"{image_id}_"
        for prefix, image_id in zip(prefixes, export["image_ids"], strict=True)
    ]


def expected_disks(image: Mapping[str, Any], only_export_root_disk: bool | None) -> list[tuple[str, str]]:
    """``(kind, SnapshotId)`` of each disk an export of ``image`` writes, system disk first (kind system/data)."""
    disks = [
        ("system" if snapshot.get("DiskUsage") == "SYSTEM_DISK" else "data", str(snapshot.get("SnapshotId")))
        for snapshot in image.get("SnapshotSet") or []
    ]
    disks.sort(key=lambda disk: disk[0] != "system")
    return disks[:1] if only_export_root_disk else disks


def count_expected_objects(
    image_ids: Sequence[str], image_set: Sequence[Mapping[str, Any]], root_only: bool | None
) -> int | None:
    """How many objects an export of ``image_ids`` writes, or None when an image is not in ``image_set``."""
    images = {image.get("ImageId"): image for image in image_set}
    if any(image_id not in images for image_id in image_ids):
        return None
    return sum(len(expected_disks(images[image_id], root_only)) for image_id in image_ids)


def recovered_paths(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    listed: Mapping[str, Mapping[str, Any] | None],
    margin: timedelta = CLOCK_SKEW_MARGIN,
) -> list[str | None]:
    """The CosPath of each expected object of a recovered export, None where no fresh object is listed yet.

    ``listed`` maps object keys (from listing :func:`listing_prefixes`) to their metadata. A key
    counts when it has the documented name of an expected disk, with any file extension, and is fresh.
    """
    images = {image.get("ImageId"): image for image in image_set}
    paths: list[str | None] = []
    for image_id, prefix in zip(export["image_ids"], listing_prefixes(export), strict=True):
        for kind, snapshot_id in expected_disks(images.get(image_id, {}), export.get("only_export_root_disk")):
            name = re.compile(re.escape(f"{prefix}{kind}_{snapshot_id}.") + r"[A-Za-z0-9]+")
            fresh = sorted(
                key
                for key, meta in listed.items()
                if name.fullmatch(key) and is_fresh(meta, export["started_at"], margin)
            )
            paths.append(f"/{fresh[0]}" if fresh else None)
    return paths


def export_paths(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    found: Mapping[str, Mapping[str, Any] | None],
    margin: timedelta = CLOCK_SKEW_MARGIN,
) -> list[str | None]:
    """The export's CosPaths: as ExportImages returned them, or (recovered) as found in the listing."""
    if export.get("recovered"):
        return recovered_paths(export, image_set, found, margin)
    return list(export["cos_paths"])


def assess(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    heads: Mapping[str, Mapping[str, Any] | None],
    margin: timedelta = CLOCK_SKEW_MARGIN,
) -> ExportProgress:
    """Judge an export record against DescribeImages' ``ImageSet`` and COS object metadata by key.

    ``heads`` holds COS HEAD results of the record's ``cos_paths``, or for a recovered record the
    objects listed under :func:`listing_prefixes`.
    """
    paths = export_paths(export, image_set, heads, margin)
    failure = image_failure(export["image_ids"], image_set)
    objects = []
    for path in paths:
        if path is None:
            continue
        key = path.lstrip("/")
        meta = heads.get(key)
        if is_fresh(meta, export["started_at"], margin):
            objects.append(
                {
                    "bucket": export["bucket_name"],
                    "key": key,
                    "cos_path": path,
                    "size": meta["size"],
                    "etag": meta.get("etag", ""),
                    "last_modified": meta["last_modified"],
                    "url": object_url(export["bucket_name"], export.get("region"), key),
                }
            )
    if failure and len(objects) < len(paths):
        return ExportProgress(expected=len(paths), objects=objects, error=failure)
    return ExportProgress(expected=len(paths), objects=objects)
