"""utils/completion.py: where completion of an export is decided (pure, no network), and which objects
count as an export's own: the baseline rule, the start-time rule, the documented names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_cvm_export.utils.completion import (
    ExportProgress,
    assess,
    count_expected_objects,
    expected_disks,
    expected_keys,
    is_fresh,
    listing_prefixes,
    recovered_paths,
    take_baseline,
    unexpected_objects,
    written_since,
)
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from airflow_cvm_export.utils.validation import parse_time, validate_export_record

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


# -- which objects are the export's own ------------------------------------------------------

START = datetime(2026, 12, 1, 22, 0, 0, 400000, tzinfo=UTC)
IMAGE = {
    "ImageId": "img-centos01",
    "ImageState": "NORMAL",
    "SnapshotSet": [
        {"SnapshotId": "snap-data0001", "DiskUsage": "DATA_DISK"},
        {"SnapshotId": "snap-root0001", "DiskUsage": "SYSTEM_DISK"},
    ],
}
SYSTEM_KEY = "nightly_img-centos01_system_snap-root0001.qcow2"
DATA_KEY = "nightly_img-centos01_data_snap-data0001.qcow2"


def at(seconds: float) -> str:
    """ISO time ``seconds`` after START (HEAD-style, whole seconds as COS sends them)."""
    return (START + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def meta(seconds: float, etag: str = "e1", size: int = 10) -> dict[str, Any]:
    return {"size": size, "etag": etag, "last_modified": at(seconds)}


def record(**fields: Any) -> dict[str, Any]:
    return {
        "task_id": 1,
        "cos_paths": [f"/{SYSTEM_KEY}", f"/{DATA_KEY}"],
        "image_ids": ["img-centos01"],
        "bucket_name": "exports-1250000000",
        "region": "ap-guangzhou",
        "file_name_prefixes": ["nightly"],
        "export_format": "QCOW2",
        "only_export_root_disk": False,
        "started_at": START.isoformat(),
        **fields,
    }


def test_expected_keys_follow_the_documented_pattern_system_disk_first() -> None:
    assert expected_keys(record(), [IMAGE]) == [SYSTEM_KEY, DATA_KEY]
    assert expected_keys(record(only_export_root_disk=True), [IMAGE]) == [SYSTEM_KEY]
    unprefixed = record(file_name_prefixes=None, export_format=None)
    assert expected_keys(unprefixed, [IMAGE])[0] == "img-centos01_system_snap-root0001.raw"
    assert expected_keys(record(), []) == []  # an image DescribeImages does not return has no known names


def test_an_object_that_was_there_before_the_export_never_counts() -> None:
    """The old 60 s margin handed on an object written 5 s before the start; the baseline does not."""
    old = meta(-5)
    export = record(baseline=take_baseline([SYSTEM_KEY, DATA_KEY], {SYSTEM_KEY: old}))
    assert export["baseline"] == {SYSTEM_KEY: {"etag": "e1", "last_modified": at(-5)}, DATA_KEY: None}
    assert not is_fresh(old, export, SYSTEM_KEY)
    assert is_fresh(meta(-5, etag="e2"), export, SYSTEM_KEY)  # rewritten (other content) within the second
    assert is_fresh(meta(30), export, SYSTEM_KEY)  # rewritten later (same content, so the same ETag)
    assert is_fresh(meta(-3600), export, DATA_KEY)  # absent before: whatever COS's clock says
    assert not is_fresh(None, export, DATA_KEY)


def test_without_a_baseline_an_object_counts_from_the_start_to_the_second() -> None:
    export = record()
    assert not is_fresh(meta(-5), export, SYSTEM_KEY)  # the old 60 s margin counted this one
    assert not is_fresh(meta(-1), export, SYSTEM_KEY)
    assert is_fresh(meta(0), export, SYSTEM_KEY)  # written in the start's second: Last-Modified has no fraction
    assert written_since("2026-12-01T22:00:00.000Z", START.isoformat())  # listing format
    assert not written_since("2026-12-01T21:59:59.000Z", START.isoformat())


def test_a_baseline_not_covering_a_cos_path_falls_back_to_the_clock() -> None:
    export = record(baseline={"other-key.qcow2": None})
    assert not is_fresh(meta(-5), export, SYSTEM_KEY)
    assert is_fresh(meta(1), export, SYSTEM_KEY)


def test_recovered_listing_matches_only_the_requested_format() -> None:
    """A QCOW2 export must not hand on another run's RAW files of the same image and prefix."""
    export = record(recovered=True, cos_paths=[], baseline=take_baseline([SYSTEM_KEY, DATA_KEY], {}))
    raw = {key.replace(".qcow2", ".raw"): meta(10) for key in (SYSTEM_KEY, DATA_KEY)}
    assert recovered_paths(export, [IMAGE], raw) == [None, None]
    upper = {SYSTEM_KEY.replace(".qcow2", ".QCOW2"): meta(10), **raw}
    assert recovered_paths(export, [IMAGE], upper) == [f"/{SYSTEM_KEY.replace('.qcow2', '.QCOW2')}", None]
    progress = assess(export, [IMAGE], {**upper, DATA_KEY: meta(11)})
    assert progress.done
    assert [obj["key"] for obj in progress.objects] == [SYSTEM_KEY.replace(".qcow2", ".QCOW2"), DATA_KEY]


def test_unexpected_objects_are_new_ones_under_the_prefix_with_other_names() -> None:
    """What an unanswered send that found none of its names must not ignore before sending again."""
    export = record(recovered=True, cos_paths=[])
    listed = {
        SYSTEM_KEY: meta(20),  # a documented name: recovered_paths' business, not a stray
        "nightly_img-centos01_disk0.qcow2": meta(20),  # new, another name
        "nightly_img-centos01_system_snap-root0001.raw": meta(0),  # new, another format
        "nightly_img-centos01_old.qcow2": meta(-1),  # older than the send
    }
    assert unexpected_objects(export, [IMAGE], listed) == [
        "nightly_img-centos01_disk0.qcow2",
        "nightly_img-centos01_system_snap-root0001.raw",
    ]
    assert unexpected_objects(export, [IMAGE], {SYSTEM_KEY: meta(20)}) == []


def test_assess_counts_only_what_the_export_wrote() -> None:
    before = {SYSTEM_KEY: meta(-60), DATA_KEY: meta(-60)}
    export = record(baseline=take_baseline([SYSTEM_KEY, DATA_KEY], before))
    assert assess(export, [IMAGE], before).objects == []
    partly = assess(export, [IMAGE], {SYSTEM_KEY: meta(40, etag="new"), DATA_KEY: meta(-60)})
    assert partly.describe() == "1 of 2 exported objects present"
    assert not partly.done
    failed = assess(export, [{**IMAGE, "ImageState": "EXPORTFAILED"}], before)
    assert failed.error and "EXPORTFAILED" in failed.error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("baseline", ["not", "a", "mapping"]),
        ("baseline", {SYSTEM_KEY: {"etag": "e1"}}),
        ("baseline", {SYSTEM_KEY: {"etag": "e1", "last_modified": "yesterday"}}),
    ],
)
def test_a_malformed_baseline_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(TencentCloudConfigError, match=f"export.{field}"):
        validate_export_record(record(**{field: value}))


def test_a_record_with_a_baseline_validates_unchanged() -> None:
    export = record(baseline=take_baseline([SYSTEM_KEY], {SYSTEM_KEY: meta(-5)}))
    assert validate_export_record(export)["baseline"] == export["baseline"]
