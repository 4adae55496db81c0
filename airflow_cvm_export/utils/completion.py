"""Where completion of an export is decided (pure; shared by the sensor, the trigger and the operator).

No public API reports an export's progress by TaskId, so completion is inferred: the export is
done when every expected object exists in the bucket and *this export wrote it*, and it has failed
when an image is gone or in a failed state.

Which objects this export wrote (:func:`is_fresh`): before sending ExportImages the operator
records what already exists under the names the export will write (its ``baseline``: ETag and
Last-Modified per name, None where nothing exists), so afterwards only a new object, or one whose
ETag or Last-Modified changed, counts. Without a baseline (records of older versions, the
sensor's explicit fields, a CosPath outside the documented names) an object counts when COS's
Last-Modified is not before ``started_at`` (taken by COS's clock, learned from the ``Date`` header
of its answers: the clock Last-Modified is written by), to the whole second both carry: no margin.

The names an export writes follow the documented pattern
``[<prefix>_]<ImageId>_system_<SnapshotId>.<format>`` (``_data_`` for data disks), one per disk of
DescribeImages' ``SnapshotSet`` (only the system disk with ``only_export_root_disk``). A
*recovered* export record (``recovered: true``, no ``cos_paths``: the ExportImages answer was lost,
see docs/failures.md) is judged from a bucket listing under those names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_cvm_export.utils.records import ExportedObject
from airflow_cvm_export.utils.validation import DEFAULT_EXPORT_FORMAT, parse_time


@dataclass(frozen=True)
class ExportProgress:
    """Result of one check of an export.

    :param expected: how many objects the export writes (0 when not known yet).
    :param objects: the fresh objects found so far, one ``{"bucket", "key", "cos_path", "size",
        "etag", "last_modified", "url"}`` each.
    :param error: why the export cannot finish (a deleted or failed image), else None.
    """

    expected: int
    objects: list[ExportedObject] = field(default_factory=list)
    error: str | None = None

    @property
    def done(self) -> bool:
        """True when nothing failed and every expected object is there."""
        return self.error is None and self.expected > 0 and len(self.objects) == self.expected

    def describe(self) -> str:
        """``n of m exported objects present``, for the task log."""
        return f"{len(self.objects)} of {self.expected} exported objects present"


def _second(value: str) -> datetime:
    """A COS time to the whole second (HEAD's Last-Modified has no fraction; listings show ``.000``)."""
    return parse_time(value).replace(microsecond=0)


def image_failure(image_ids: Sequence[str], image_set: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the export cannot finish according to DescribeImages, or None if nothing is wrong."""
    states = {image.get("ImageId"): str(image.get("ImageState", "")) for image in image_set}
    for image_id in image_ids:
        if image_id not in states:
            return f"image {image_id} no longer exists (DescribeImages does not return it)"
        if states[image_id].upper().endswith("FAILED"):
            return f"image {image_id} is in state {states[image_id]}: the export failed in Tencent Cloud"
    return None


def file_extension(export_format: str | None) -> str:
    """The extension of the files of an export in ``export_format``: the pattern's ``<format>`` in lower case.

    The API reference shows ``.raw`` for RAW; QCOW2, VHD and VMDK follow the same documented
    pattern (``.qcow2``, ``.vhd``, ``.vmdk``).
    """
    return (export_format or DEFAULT_EXPORT_FORMAT).lower()


def canonical_key(key: str) -> str:
    """``key`` with its extension in lower case: how names are compared (``.RAW`` and ``.raw`` are one format)."""
    stem, dot, extension = key.rpartition(".")
    return f"{stem}.{extension.lower()}" if dot else key


def written_since(last_modified: str, started_at: str) -> bool:
    """True when COS's ``last_modified`` is not before ``started_at``, compared to the whole second (its resolution)."""
    return _second(last_modified) >= _second(started_at)


def changed_since(meta: Mapping[str, Any], before: Mapping[str, Any] | None) -> bool:
    """True when an object is new (``before`` None) or its ETag or Last-Modified changed since ``before``."""
    if before is None:
        return True
    return meta.get("etag", "") != before.get("etag", "") or _second(meta["last_modified"]) > _second(
        before["last_modified"]
    )


def is_fresh(meta: Mapping[str, Any] | None, export: Mapping[str, Any], key: str) -> bool:
    """True when the object ``key`` (``meta``: its HEAD or listing entry, None if absent) was written by ``export``.

    Judged against the record's ``baseline`` when it covers ``key``, else by :func:`written_since`.
    """
    if not meta:
        return False
    baseline = export.get("baseline")
    name = canonical_key(key)
    if isinstance(baseline, Mapping) and name in baseline:
        return changed_since(meta, baseline[name])
    return written_since(meta["last_modified"], export["started_at"])


def object_url(bucket: str, region: str | None, key: str) -> str:
    """HTTPS URL of an object in the real COS (virtual-host style)."""
    return f"https://{bucket}.cos.{region}.myqcloud.com/{key}"


def listing_prefixes(export: Mapping[str, Any]) -> list[str]:
    """The COS listing prefix of each image of an export: ``<prefix>_<ImageId>_`` or ``<ImageId>_``."""
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


def expected_keys(export: Mapping[str, Any], image_set: Sequence[Mapping[str, Any]]) -> list[str]:
    """The object key of each disk ``export`` writes, by the documented naming pattern, in CosPaths order.

    ``export`` needs ``image_ids``, ``file_name_prefixes``, ``export_format`` and
    ``only_export_root_disk`` (an export record or the operator's request). An image missing from
    ``image_set`` contributes no key.
    """
    images = {image.get("ImageId"): image for image in image_set}
    extension = file_extension(export.get("export_format"))
    return [
        f"{prefix}{kind}_{snapshot_id}.{extension}"
        for image_id, prefix in zip(export["image_ids"], listing_prefixes(export), strict=True)
        for kind, snapshot_id in expected_disks(images.get(image_id, {}), export.get("only_export_root_disk"))
    ]


def take_baseline(keys: Iterable[str], listed: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str] | None]:
    """What exists under each expected key before an export starts: ``{"etag", "last_modified"}`` or None.

    ``listed`` maps the keys of a listing under :func:`listing_prefixes` to their metadata; a listed
    key counts for an expected one whatever the case of its extension.
    """
    found = {canonical_key(key): meta for key, meta in listed.items()}
    baseline: dict[str, dict[str, str] | None] = {}
    for key in keys:
        meta = found.get(canonical_key(key))
        baseline[canonical_key(key)] = (
            None if meta is None else {"etag": str(meta.get("etag", "")), "last_modified": meta["last_modified"]}
        )
    return baseline


def recovered_paths(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    listed: Mapping[str, Mapping[str, Any] | None],
) -> list[str | None]:
    """The CosPath of each expected object of a recovered export, None where no fresh object is listed yet.

    ``listed`` maps object keys (from listing :func:`listing_prefixes`) to their metadata. A key
    counts when it is the documented name of an expected disk in the requested format (the
    extension compared without case) and :func:`is_fresh`.
    """
    by_name = {canonical_key(key): key for key in listed}
    paths: list[str | None] = []
    for name in expected_keys(export, image_set):
        key = by_name.get(name)
        paths.append(f"/{key}" if key is not None and is_fresh(listed[key], export, key) else None)
    return paths


def unexpected_objects(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    listed: Mapping[str, Mapping[str, Any] | None],
) -> list[str]:
    """Keys listed under the export's :func:`listing_prefixes` that are not its documented names but were
    written since it started (``Last-Modified`` not before ``started_at``, both by COS's clock).

    After an unanswered send that found none of its files, such objects may be that export's under
    names the documentation does not give (or another format's of someone else's export with the
    same prefix): sending again could start a duplicate.
    """
    expected = {canonical_key(key) for key in expected_keys(export, image_set)}
    return sorted(
        key
        for key, meta in listed.items()
        if meta and canonical_key(key) not in expected and written_since(meta["last_modified"], export["started_at"])
    )


def export_paths(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    found: Mapping[str, Mapping[str, Any] | None],
) -> list[str | None]:
    """The export's CosPaths: as ExportImages returned them, or (recovered) as found in the listing."""
    if export.get("recovered") and not export.get("cos_paths"):
        return recovered_paths(export, image_set, found)
    return list(export["cos_paths"])


def assess(
    export: Mapping[str, Any],
    image_set: Sequence[Mapping[str, Any]],
    heads: Mapping[str, Mapping[str, Any] | None],
) -> ExportProgress:
    """Judge an export record against DescribeImages' ``ImageSet`` and COS object metadata by key.

    ``heads`` holds COS HEAD results of the record's ``cos_paths``, or for a recovered record the
    objects listed under :func:`listing_prefixes`. An object counts only if :func:`is_fresh`.
    """
    paths = export_paths(export, image_set, heads)
    failure = image_failure(export["image_ids"], image_set)
    objects: list[ExportedObject] = []
    for path in paths:
        if path is None:
            continue
        key = path.lstrip("/")
        meta = heads.get(key)
        if meta is not None and is_fresh(meta, export, key):
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
