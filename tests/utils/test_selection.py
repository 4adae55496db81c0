"""Images chosen by tags and DescribeImages filters: the filters are checked before any request, and
images ExportImages would refuse are skipped (and counted) from their DescribeImages entry."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_cvm_export.examples.planning import plan_exports
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from airflow_cvm_export.utils.selection import as_image_filters, exportable_ids, refusal, selection_filters

CUSTOM = {"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}


def image(image_id: str = "img-centos01", **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ImageId": image_id,
        "ImageState": "NORMAL",
        "ImageType": "PRIVATE_IMAGE",
        "Platform": "CentOS",
    }
    entry["SnapshotSet"] = [{"SnapshotId": "snap-1", "DiskUsage": "SYSTEM_DISK", "DiskSize": 50}]
    return {**entry, **fields}


def test_tags_become_tag_filters_on_custom_images() -> None:
    config = {"image_tags": {"backup": "nightly", "env": ["prod", "dev"]}}
    assert selection_filters(config) == [
        CUSTOM,
        {"Name": "tag:backup", "Values": ["nightly"]},
        {"Name": "tag:env", "Values": ["prod", "dev"]},
    ]
    both = {"image_tags": {"backup": "nightly"}, "image_filters": [{"Name": "platform", "Values": ["Ubuntu"]}]}
    assert selection_filters(both) == [
        CUSTOM,
        {"Name": "platform", "Values": ["Ubuntu"]},
        {"Name": "tag:backup", "Values": ["nightly"]},
    ]
    own_type = {"image_filters": [{"Name": "image-type", "Values": ["SHARED_IMAGE"]}]}
    assert selection_filters(own_type) == own_type["image_filters"]
    assert selection_filters({"image_ids": ["img-centos01"]}) is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"image_ids": ["img-centos01"], "image_tags": {"a": "b"}},
            "give either image_ids or image_tags/image_filters, not both",
        ),
        ({"image_tags": {}}, "image_tags must be a non-empty object"),
        ({"image_tags": ["backup"]}, "image_tags must be a non-empty object"),
        ({"image_tags": {"backup": []}}, "image_tags['backup'] must be 1 to 5 non-empty strings"),
        ({"image_tags": {"backup": list("abcdef")}}, "image_tags['backup'] must be 1 to 5"),
        ({"image_filters": [{"Name": "image-state", "Values": ["NORMAL"]}]}, "image_filters[0].Name must be one of"),
        ({"image_filters": [{"Name": "tag:", "Values": ["x"]}]}, "image_filters[0].Name must be one of"),
        ({"image_filters": [{"Name": 3, "Values": ["x"]}]}, "image_filters[0].Name must be one of"),
        (
            {"image_filters": [{"Name": "platform"}]},
            'image_filters[0] must be an object with exactly the keys "Name" and "Values"',
        ),
        ({"image_filters": {"Name": "platform", "Values": ["x"]}}, "image_filters must be a list of at most 10"),
        (
            {"image_tags": {f"k{i}": "v" for i in range(10)}},
            "image_tags and image_filters together (with image-type) must be a list of at most 10",
        ),
    ],
)
def test_bad_selection_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(TencentCloudConfigError) as raised:
        selection_filters(config)
    assert message in str(raised.value)


def test_ten_filters_of_five_values_are_the_limit() -> None:
    filters = [{"Name": f"tag:k{i}", "Values": list("abcde")} for i in range(10)]
    assert as_image_filters(filters) == filters


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ImageState": "SYNCING"}, "its state is SYNCING"),
        ({"ImageState": "CREATEFAILED"}, "its state is CREATEFAILED"),
        ({"ImageType": "SHARED_IMAGE"}, "it is a SHARED_IMAGE"),
        ({"Platform": "Windows"}, "WindowsImageExportUnsupported"),
        ({"Platform": "Red Hat"}, "RedHatImageExportUnsupported"),
        ({"SnapshotSet": [{"DiskUsage": "SYSTEM_DISK", "DiskSize": 1024}]}, "over 500 GB"),
        ({"SnapshotSet": [{"DiskUsage": "SYSTEM_DISK", "DiskSize": 50}] + [{"DiskUsage": "DATA_DISK"}] * 6}, "5 data"),
    ],
)
def test_refused_kinds_are_named(fields: dict[str, Any], reason: str) -> None:
    assert reason in (refusal(image(**fields)) or "")


def test_exportable_ids_keep_order_and_log_each_skip_and_the_count(caplog: pytest.LogCaptureFixture) -> None:
    images = [image("img-centos01"), image("img-windows1", Platform="Windows"), image("img-ubuntu02")]
    with caplog.at_level(logging.INFO, logger="airflow_cvm_export.utils.selection"):
        assert exportable_ids(images) == ["img-centos01", "img-ubuntu02"]
    assert "Skipping img-windows1" in caplog.text
    assert "3 image(s) matched: 2 to export, 1 skipped" in caplog.text


def test_plan_checks_everything_before_listing_and_batches_what_was_selected() -> None:
    listed: list[Any] = []

    def list_images(filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        listed.append(filters)
        return [image(f"img-ubuntu0{i}") for i in range(1, 4)]

    config = {"image_tags": {"backup": "nightly"}, "bucket_name": "nobucket", "batch_size": 2}
    with pytest.raises(TencentCloudConfigError, match="bucket_name"):
        plan_exports(config, list_images=list_images)
    with pytest.raises(TencentCloudConfigError, match="file_name_prefixes"):
        plan_exports({**config, "file_name_prefixes": ["a"]}, list_images=list_images)
    assert listed == []
    batches = plan_exports(
        {**config, "bucket_name": "exports-1250000000"}, prefix_suffix="20261201", list_images=list_images
    )
    assert listed == [[CUSTOM, {"Name": "tag:backup", "Values": ["nightly"]}]]
    assert [b["export"]["image_ids"] for b in batches] == [["img-ubuntu01", "img-ubuntu02"], ["img-ubuntu03"]]
    assert batches[0]["export"]["file_name_prefixes"] == ["nightly-20261201"] * 2
