"""utils/completion.py: where completion of an export is decided (pure, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cvm_export.utils.completion import (
    ExportProgress,
    assess,
    count_expected_objects,
    expected_disks,
    listing_prefixes,
    parse_time,
    recovered_paths,
)

STARTED = "2026-12-01T10:00:00+00:00"
AFTER = "2026-12-01T10:20:00+00:00"
HOUR_BEFORE = "2026-12-01T09:00:00+00:00"
BUCKET = "exports-1250000000"
PATHS = ["/img-centos02_system_snap-1.raw", "/img-centos02_data_snap-2.raw"]


def image(image_id: str = "img-centos02", state: str = "NORMAL", disks: int = 2) -> dict[str, Any]:
    snapshots = [
        {"SnapshotId": f"snap-{n + 1}", "DiskUsage": "DATA_DISK" if n else "SYSTEM_DISK"} for n in range(disks)
    ]
    return {"ImageId": image_id, "ImageState": state, "SnapshotSet": list(reversed(snapshots))}  # data disk first


def export(**overrides: Any) -> dict[str, Any]:
    record = {
        "task_id": 7,
        "cos_paths": PATHS,
        "image_ids": ["img-centos02"],
        "bucket_name": BUCKET,
        "region": "ap-guangzhou",
        "file_name_prefixes": None,
        "started_at": STARTED,
    }
    return {**record, **overrides}


def head(modified: str = AFTER, size: int = 10) -> dict[str, Any]:
    return {"size": size, "etag": "e1", "last_modified": modified}


def test_done_once_every_object_is_written_after_the_start() -> None:
    progress = assess(export(), [image()], {PATHS[0].lstrip("/"): head(), PATHS[1].lstrip("/"): head(size=20)})
    assert progress.done and progress.error is None
    assert progress.describe() == "2 of 2 exported objects present"
    assert progress.objects[1] == {
        "bucket": BUCKET,
        "key": "img-centos02_data_snap-2.raw",
        "cos_path": "/img-centos02_data_snap-2.raw",
        "size": 20,
        "etag": "e1",
        "last_modified": AFTER,
        "url": f"https://{BUCKET}.cos.ap-guangzhou.myqcloud.com/img-centos02_data_snap-2.raw",
    }


@pytest.mark.parametrize(
    "heads",
    [
        {},  # nothing written yet
        {"img-centos02_system_snap-1.raw": head()},  # one of two
        {"img-centos02_system_snap-1.raw": head(), "img-centos02_data_snap-2.raw": None},  # HEAD said 404
        {"img-centos02_system_snap-1.raw": head(), "img-centos02_data_snap-2.raw": head(HOUR_BEFORE)},  # stale
    ],
)
def test_not_done_while_an_object_is_missing_or_older_than_the_export(heads: dict[str, Any]) -> None:
    progress = assess(export(), [image()], heads)
    assert not progress.done and progress.error is None
    assert len(progress.objects) < progress.expected == 2


@pytest.mark.parametrize(
    ("image_set", "says"),
    [
        ([image(state="EXPORTFAILED")], "image img-centos02 is in state EXPORTFAILED: the export failed"),
        ([], "image img-centos02 no longer exists"),
    ],
)
def test_a_failed_or_deleted_image_fails_an_unfinished_export(image_set: list[dict[str, Any]], says: str) -> None:
    progress = assess(export(), image_set, {"img-centos02_system_snap-1.raw": head()})
    assert not progress.done
    assert progress.error is not None and says in progress.error


def test_a_finished_export_stands_though_its_image_was_deleted_since() -> None:
    """Every file is there: deleting the image afterwards does not undo the export."""
    heads = {path.lstrip("/"): head() for path in PATHS}
    assert assess(export(), [], heads).done


def test_without_expected_objects_nothing_is_done() -> None:
    assert not ExportProgress(expected=0).done


def test_system_disk_comes_first_and_root_only_keeps_just_it() -> None:
    assert expected_disks(image(), None) == [("system", "snap-1"), ("data", "snap-2")]
    assert expected_disks(image(), True) == [("system", "snap-1")]
    assert count_expected_objects(["img-centos02", "img-other"], [image(), image("img-other", disks=1)], None) == 3
    assert count_expected_objects(["img-centos02", "img-gone"], [image()], None) is None


def test_recovered_export_is_judged_from_a_listing_of_the_documented_names() -> None:
    record = export(cos_paths=[], recovered=True, file_name_prefixes=["nightly"], task_id=None)
    assert listing_prefixes(record) == ["nightly_img-centos02_"]
    listed = {
        "nightly_img-centos02_system_snap-1.raw": head(),
        "nightly_img-centos02_data_snap-2.raw": head(HOUR_BEFORE),  # an older export's file
        "nightly_img-centos02_data_snap-9.raw": head(),  # not a disk of this image
        "other_img-centos02_data_snap-2.raw": head(),  # another prefix
    }
    assert recovered_paths(record, [image()], listed) == ["/nightly_img-centos02_system_snap-1.raw", None]
    progress = assess(record, [image()], {**listed, "nightly_img-centos02_data_snap-2.raw": head()})
    assert progress.done
    assert [obj["cos_path"] for obj in progress.objects] == [
        "/nightly_img-centos02_system_snap-1.raw",
        "/nightly_img-centos02_data_snap-2.raw",
    ]


@pytest.mark.parametrize("value", ["2026-12-01T10:00:00Z", "2026-12-01T18:00:00+08:00"])
def test_parse_time_takes_zoned_iso_times(value: str) -> None:
    assert parse_time(value) == parse_time(STARTED)


def test_parse_time_refuses_a_time_without_zone() -> None:
    with pytest.raises(ValueError, match="without time zone"):
        parse_time("2026-12-01T10:00:00")
