"""Where completion of an export is decided (pure; shared by the sensor and the trigger).

No public API reports an export's progress by TaskId, so completion is inferred: the export is
done when every expected object exists in the bucket and was written after the export started
(minus a small clock-skew margin), and it has failed when an image is gone or in a failed state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

CLOCK_SKEW_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class ExportProgress:
    """Result of one check of an export."""

    expected: int
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.error is None and self.expected > 0 and len(self.objects) == self.expected

    def describe(self) -> str:
        return f"{len(self.objects)} of {self.expected} exported objects present"


def _parse_time(value: str) -> datetime:
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
    return _parse_time(meta["last_modified"]) >= _parse_time(started_at) - margin


def object_url(bucket: str, region: str | None, key: str) -> str:
    """HTTPS URL of an object in the real COS (virtual-host style)."""
    return f"https://{bucket}.cos.{region}.myqcloud.com/{key}"


def assess(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    heads: Mapping[str, Mapping[str, Any] | None],
    margin: timedelta = CLOCK_SKEW_MARGIN,
) -> ExportProgress:
    """Judge an export record against DescribeImages' ``ImageSet`` and COS HEADs by object key."""
    keys = [path.lstrip("/") for path in export["cos_paths"]]
    failure = image_failure(export["image_ids"], image_set)
    objects = []
    for path, key in zip(export["cos_paths"], keys, strict=True):
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
    if failure and len(objects) < len(keys):
        return ExportProgress(expected=len(keys), objects=objects, error=failure)
    return ExportProgress(expected=len(keys), objects=objects)
