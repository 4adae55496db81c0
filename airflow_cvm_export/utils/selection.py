"""Choosing images by tags and DescribeImages filters instead of a fixed list of ids (pure).

:func:`as_image_filters` checks ``Filters`` against the documented limits before any request;
:func:`selection_filters` turns a config's ``image_tags``/``image_filters`` into them;
:func:`refusal` tells, from a DescribeImages entry's documented fields, why ExportImages would
refuse an image; :func:`exportable_ids` keeps the others and logs the skipped ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_cvm_export.utils.errors import TencentCloudConfigError, invalid

# The documented DescribeImages filter names (plus tag:<key>), at most 10 filters of at most 5 values.
# The emulator keeps its own copy (emulator/cvm/responses.py) on purpose: it models the cloud, so a
# mistake here must not be repeated there and hidden by it.
FILTER_NAMES = (
    "image-id",
    "image-type",
    "image-name",
    "platform",
    "tag-key",
    "tag-value",
    "dedicated-cluster-id",
    "cdc-cache-status",
)
TAG_FILTER_PREFIX = "tag:"
MAX_FILTERS = 10
MAX_FILTER_VALUES = 5
CUSTOM_IMAGES = {"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}
# User-guide limits of ExportImages (see /work/shared/reference): each disk <= 500 GB, <= 5 data disks.
MAX_DISK_GB = 500
MAX_DATA_DISKS = 5

log = logging.getLogger(__name__)


def _as_values(value: Any, field: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not 1 <= len(values) <= MAX_FILTER_VALUES
        or not all(isinstance(v, str) and v.strip() for v in values)
    ):
        raise invalid(field, f"1 to {MAX_FILTER_VALUES} non-empty strings", value)
    return list(values)


def as_image_filters(filters: Any, field: str = "image_filters") -> list[dict[str, Any]]:
    """``filters`` as DescribeImages ``Filters``: ``[{"Name", "Values"}]`` with documented names and limits."""
    if not isinstance(filters, list | tuple) or len(filters) > MAX_FILTERS:
        raise invalid(field, f'a list of at most {MAX_FILTERS} {{"Name": ..., "Values": [...]}} objects', filters)
    checked = []
    for index, item in enumerate(filters):
        where = f"{field}[{index}]"
        if not isinstance(item, Mapping) or set(item) != {"Name", "Values"}:
            raise invalid(where, 'an object with exactly the keys "Name" and "Values"', item)
        name = item["Name"]
        tag = isinstance(name, str) and name.startswith(TAG_FILTER_PREFIX) and name[len(TAG_FILTER_PREFIX) :].strip()
        if name not in FILTER_NAMES and not tag:
            raise invalid(f"{where}.Name", "one of " + ", ".join(FILTER_NAMES) + " or tag:<key>", name)
        checked.append({"Name": name, "Values": _as_values(item["Values"], f"{where}.Values")})
    return checked


def selection_filters(config: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The DescribeImages ``Filters`` of a config's ``image_tags`` and ``image_filters``, or None with ``image_ids``.

    ``image_tags`` ``{"backup": "nightly"}`` becomes ``tag:backup = nightly`` (a value may be a list of
    up to 5). Custom images only (``image-type = PRIVATE_IMAGE``) unless ``image_filters`` names an
    ``image-type``. Exactly one of ``image_ids`` and the selection must be given.
    """
    tags, extra = config.get("image_tags"), config.get("image_filters")
    if tags is None and extra is None:
        return None
    if config.get("image_ids") is not None:
        raise TencentCloudConfigError("give either image_ids or image_tags/image_filters, not both")
    if tags is not None and (not isinstance(tags, Mapping) or not tags):
        raise invalid("image_tags", 'a non-empty object of tag key to value(s), e.g. {"backup": "nightly"}', tags)
    filters = as_image_filters([] if extra is None else extra)
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key.strip():
            raise invalid("image_tags key", "a non-empty tag key", key)
        filters.append({"Name": f"{TAG_FILTER_PREFIX}{key}", "Values": _as_values(value, f"image_tags[{key!r}]")})
    if not any(f["Name"] == "image-type" for f in filters):
        filters.insert(0, dict(CUSTOM_IMAGES))
    return as_image_filters(filters, "image_tags and image_filters together (with image-type)")


def refusal(image: Mapping[str, Any]) -> str | None:
    """Why ExportImages would refuse this DescribeImages entry, judged from its documented fields, or None.

    Not NORMAL, not a custom image, Windows or Red Hat, a disk over 500 GB or more than 5 data disks.
    An image refused for a reason DescribeImages does not show (encrypted, made from a market
    image) is not caught here: its ExportImages call fails with the API's code.
    """
    state = image.get("ImageState")
    if state != "NORMAL":
        return f"its state is {state} (only NORMAL images can be exported)"
    if image.get("ImageType") != "PRIVATE_IMAGE":
        return f"it is a {image.get('ImageType')} (only custom images can be exported)"
    platform = str(image.get("Platform") or "").lower().replace(" ", "")
    if "windows" in platform:
        return "it is a Windows image (UnsupportedOperation.WindowsImageExportUnsupported)"
    if platform == "redhat":
        return "it is a Red Hat image (UnsupportedOperation.RedHatImageExportUnsupported)"
    disks = image.get("SnapshotSet") or []
    if any((disk.get("DiskSize") or 0) > MAX_DISK_GB for disk in disks):
        return f"a disk is over {MAX_DISK_GB} GB (UnsupportedOperation.ImageTooLargeExportUnsupported)"
    if sum(disk.get("DiskUsage") == "DATA_DISK" for disk in disks) > MAX_DATA_DISKS:
        return f"it has more than {MAX_DATA_DISKS} data disks"
    return None


def exportable_ids(images: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of the listed images ExportImages can take; logs each skipped image and how many were skipped."""
    ids, skipped = [], 0
    for image in images:
        reason = refusal(image)
        if reason is None:
            ids.append(image["ImageId"])
        else:
            skipped += 1
            log.warning("Skipping %s (%s): %s", image.get("ImageId"), image.get("ImageName"), reason)
    log.info("%d image(s) matched: %d to export, %d skipped", len(images), len(ids), skipped)
    return ids
