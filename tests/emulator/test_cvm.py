"""CVM API 3.0 through the official SDK and raw signed calls: success paths and every ExportImages error."""

from __future__ import annotations

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.cvm.v20170312 import models

from airflow_cvm_export.emulator import catalog
from airflow_cvm_export.emulator.cvm.models import EXPORT_FAILED_STATE

BUCKET = catalog.WRITABLE_BUCKETS[0]


def _image(client, image_id):
    return client.call("DescribeImages", {"ImageIds": [image_id]})["ImageSet"][0]


def test_sdk_describe_regions(client):
    response = client.sdk().DescribeRegions(models.DescribeRegionsRequest())
    assert response.TotalCount == len(response.RegionSet) >= 1
    assert "ap-guangzhou" in {region.Region for region in response.RegionSet}
    assert response.RequestId


def test_sdk_describe_images(client):
    request = models.DescribeImagesRequest()
    request.ImageIds = ["img-ubuntu01", "img-zzzzzzzz"]
    response = client.sdk().DescribeImages(request)
    assert response.TotalCount == 1  # a well-formed unknown id is simply absent
    image = response.ImageSet[0]
    assert (image.ImageId, image.ImageType, image.ImageState, image.Platform) == (
        "img-ubuntu01",
        "PRIVATE_IMAGE",
        "NORMAL",
        "Ubuntu",
    )
    assert [s.DiskUsage for s in image.SnapshotSet] == ["SYSTEM_DISK", "DATA_DISK", "DATA_DISK"]
    assert all(s.SnapshotId.startswith("snap-") and len(s.SnapshotId) == 13 for s in image.SnapshotSet)


def test_sdk_export_images(client):
    request = models.ExportImagesRequest()
    request.ImageIds = ["img-centos02"]
    request.BucketName = BUCKET
    request.ExportFormat = "QCOW2"
    response = client.sdk().ExportImages(request)
    snapshots = [s["SnapshotId"] for s in _image(client, "img-centos02")["SnapshotSet"]]
    assert isinstance(response.TaskId, int)
    assert response.CosPaths == [
        f"/img-centos02_system_{snapshots[0]}.qcow2",
        f"/img-centos02_data_{snapshots[1]}.qcow2",
    ]


def test_sdk_error_is_raised_with_code(client):
    request = models.ExportImagesRequest()
    request.ImageIds = [catalog.image_for("UnsupportedOperation.WindowsImageExportUnsupported")]
    request.BucketName = BUCKET
    with pytest.raises(TencentCloudSDKException) as caught:
        client.sdk().ExportImages(request)
    assert caught.value.code == "UnsupportedOperation.WindowsImageExportUnsupported"
    assert caught.value.requestId


def test_describe_images_limits_and_paging(client):
    assert client.error("DescribeImages", {"ImageIds": ["bad-id"]}) == "InvalidImageId.Malformed"
    too_many = [f"img-{i:08d}" for i in range(101)]
    assert client.error("DescribeImages", {"ImageIds": too_many}) == "InvalidParameterValue.LimitExceeded"
    everything = client.call("DescribeImages", {"Limit": 100})
    assert everything["TotalCount"] == len(everything["ImageSet"]) == len(client.emu.catalog()["images"])
    default_page = client.call("DescribeImages")
    assert len(default_page["ImageSet"]) == 20 or default_page["TotalCount"] < 20
    private = client.call("DescribeImages", {"Filters": [{"Name": "image-type", "Values": ["PUBLIC_IMAGE"]}]})
    assert [i["ImageId"] for i in private["ImageSet"]] == ["img-public01"]


def _filter_sdk(client, *filters: tuple[str, list[str]]) -> list[str]:
    """Image ids DescribeImages answers the official SDK for these (Name, Values) filters."""
    request = models.DescribeImagesRequest()
    request.Filters = []
    for name, values in filters:
        item = models.Filter()
        item.Name, item.Values = name, values
        request.Filters.append(item)
    request.Limit = 100
    return [image.ImageId for image in client.sdk().DescribeImages(request).ImageSet]


def test_sdk_tag_filters(client):
    assert _filter_sdk(client, ("tag:backup", ["nightly"])) == ["img-centos01", "img-centos02"]
    assert _filter_sdk(client, ("tag-key", ["team"])) == ["img-centos02"]
    assert _filter_sdk(client, ("tag-value", ["staging", "dev"])) == ["img-ubuntu01", "img-ubuntu02"]
    both = _filter_sdk(client, ("tag:env", ["prod"]), ("tag:team", ["db"]))  # filters combine with AND
    assert both == ["img-centos02"]
    assert _filter_sdk(client, ("tag:env", ["nightly"])) == []  # tag:<key> matches the value of that key only
    request = models.DescribeImagesRequest()
    request.ImageIds = ["img-centos02"]
    [image] = client.sdk().DescribeImages(request).ImageSet
    assert {(tag.Key, tag.Value) for tag in image.Tags} == {("env", "prod"), ("backup", "nightly"), ("team", "db")}


def test_fuzzy_and_exact_filters(client):
    assert _filter_sdk(client, ("image-name", ["CI-UBUNTU", "cache-"]), ("platform", ["ubun"])) == [
        "img-ubuntu02",
        "img-ubuntu03",
    ]
    assert _filter_sdk(client, ("platform", ["redhat"])) == ["img-redhat01"]
    assert _filter_sdk(client, ("image-id", ["img-centos01", "img-zzzzzzzz"])) == ["img-centos01"]
    assert _filter_sdk(client, ("image-type", ["SHARED_IMAGE"])) == ["img-shared01"]
    assert _filter_sdk(client, ("dedicated-cluster-id", ["cluster-1"])) == []
    assert _filter_sdk(client, ("cdc-cache-status", ["CACHED"])) == []


@pytest.mark.parametrize(
    ("filters", "code"),
    [
        ([{"Name": "image-state", "Values": ["NORMAL"]}], "InvalidFilter"),  # no state filter is documented
        ([{"Name": "tag:", "Values": ["x"]}], "InvalidFilter"),
        ([{"Name": "image-id", "Values": [f"img-{i:08d}" for i in range(6)]}], "InvalidParameterValue.LimitExceeded"),
        ([{"Name": "tag-key", "Values": ["env"]}] * 11, "InvalidParameterValue.LimitExceeded"),
        ([{"Name": "tag-key", "Values": "env"}], "InvalidParameter"),
        ({"Name": "tag-key"}, "InvalidParameter"),
    ],
)
def test_filter_errors(client, filters, code):
    assert client.error("DescribeImages", {"Filters": filters}) == code


def test_catalog_images_carry_their_tags(client):
    images = {image["ImageId"]: image for image in client.emu.catalog()["images"]}
    assert images["img-centos01"]["Tags"] == [{"Key": "env", "Value": "prod"}, {"Key": "backup", "Value": "nightly"}]
    assert images["img-ubuntu03"]["Tags"] == []
    described = client.call("DescribeImages", {"ImageIds": ["img-centos01"]})["ImageSet"][0]
    assert described["Tags"] == images["img-centos01"]["Tags"]


def test_export_lifecycle_objects_appear(client):
    answer = client.export(["img-ubuntu01", "img-centos01"], FileNamePrefixList=["nightly", "nightly"])
    assert len(answer["CosPaths"]) == 4
    assert all(p.startswith("/nightly_img-") and p.endswith(".raw") for p in answer["CosPaths"])
    assert client.emu.state()["exports"][0]["status"] == "running"
    assert _image(client, "img-ubuntu01")["ImageState"] == "NORMAL"  # EXPORTING is undocumented
    assert client.error("ExportImages", {"ImageIds": ["img-ubuntu01"], "BucketName": BUCKET}) == (
        "InvalidParameterValue.InvalidImageState"
    )
    [export] = client.wait_exports()
    assert export["status"] == "succeeded" and export["TaskId"] == answer["TaskId"]
    for path in answer["CosPaths"]:
        assert client.cos("HEAD", BUCKET, path.lstrip("/")).status_code == 200


def test_root_disk_only_and_no_prefix(client):
    answer = client.export(["img-ubuntu01"], OnlyExportRootDisk=True, ExportFormat="VMDK")
    [path] = answer["CosPaths"]
    snapshot = _image(client, "img-ubuntu01")["SnapshotSet"][0]["SnapshotId"]
    assert path == f"/img-ubuntu01_system_{snapshot}.vmdk"


def test_reexport_overwrites_and_keeps_objects(client):
    first = client.export(["img-centos01"])
    client.wait_exports()
    before = client.cos("HEAD", BUCKET, first["CosPaths"][0].lstrip("/")).headers
    second = client.export(["img-centos01"])
    assert second["CosPaths"] == first["CosPaths"] and second["TaskId"] != first["TaskId"]
    still_there = client.cos("HEAD", BUCKET, first["CosPaths"][0].lstrip("/"))
    assert still_there.status_code == 200  # the earlier export's object stays until overwritten
    client.wait_exports()
    after = client.cos("HEAD", BUCKET, first["CosPaths"][0].lstrip("/")).headers
    assert after["ETag"] != before["ETag"]


def test_dry_run(client):
    assert client.error("ExportImages", {"ImageIds": ["img-centos01"], "BucketName": BUCKET, "DryRun": True}) == (
        "DryRunOperation"
    )
    failing = {"ImageIds": ["img-windows1"], "BucketName": BUCKET, "DryRun": True}
    assert client.error("ExportImages", failing) == "UnsupportedOperation.WindowsImageExportUnsupported"
    assert client.emu.state()["exports"] == []


def test_failed_export(start_emulator):
    client = start_emulator(fail_rate=1.0)
    answer = client.export(["img-ubuntu02"])
    [export] = client.wait_exports()
    assert export["status"] == "failed"
    assert _image(client, "img-ubuntu02")["ImageState"] == EXPORT_FAILED_STATE
    assert client.cos("HEAD", BUCKET, answer["CosPaths"][0].lstrip("/")).status_code == 404
    client.export(["img-ubuntu02"])  # a failed image can be exported again
    assert _image(client, "img-ubuntu02")["ImageState"] == "NORMAL"


def _catalog_triggers(kind: str, good: str) -> list[tuple[str, str]]:
    entries = catalog.Catalog().to_json()[kind]
    key = "ImageId" if kind == "images" else "BucketName"
    return [(entry[key], entry["triggers"]) for entry in entries if entry["triggers"] != good]


@pytest.mark.parametrize(("image_id", "code"), _catalog_triggers("images", catalog.EXPORTABLE))
def test_every_catalog_image_error(client, image_id, code):
    assert client.error("ExportImages", {"ImageIds": [image_id], "BucketName": BUCKET}) == code
    assert catalog.image_for(code) == image_id


@pytest.mark.parametrize(("bucket", "code"), _catalog_triggers("buckets", catalog.WRITABLE))
def test_every_catalog_bucket_error(client, bucket, code):
    assert client.error("ExportImages", {"ImageIds": ["img-centos01"], "BucketName": bucket}) == code
    assert catalog.bucket_for(code) == bucket


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"ImageIds": ["img-centos01"], "RoleName": "NoSuchRole"}, "AuthFailure.CamRoleNameAuthenticateFailed"),
        ({"ImageIds": ["centos01"]}, "InvalidImageId.Malformed"),
        ({"ImageIds": ["img-zzzzzzzz"]}, "InvalidImageId.NotFound"),
        ({"ImageIds": []}, "InvalidParameter.ImageIdsSnapshotIdsMustOne"),
        ({}, "InvalidParameter.ImageIdsSnapshotIdsMustOne"),
        (
            {"ImageIds": list(catalog.Catalog(extra_images=11).exportable_image_ids()[:11])},
            "InvalidParameterValue.LimitExceeded",
        ),
        (
            {"ImageIds": ["img-centos01"], "FileNamePrefixList": ["a", "b"]},
            "InvalidParameterValue.InvalidFileNamePrefixList",
        ),
        ({"ImageIds": ["img-centos01"], "BucketName": "nosuch-1250000000"}, "InvalidParameterValue.BucketNotFound"),
        ({"ImageIds": ["img-centos01"], "ExportFormat": "ISO"}, "InvalidParameterValue"),
        ({"ImageIds": ["img-centos01"], "SnapshotIds": ["snap-12345678"]}, "UnknownParameter"),
        ({"ImageIds": "img-centos01"}, "InvalidParameter"),
    ],
)
def test_parameter_errors(client, params, code):
    assert client.error("ExportImages", {"BucketName": BUCKET, **params}) == code


def test_running_export_limit(start_emulator):
    client = start_emulator(max_running_exports=2, export_seconds=30)
    client.export(["img-centos01"])
    client.export(["img-centos02"])
    params = {"ImageIds": ["img-ubuntu01"], "BucketName": BUCKET}
    assert client.error("ExportImages", params) == "LimitExceeded.ExportImageTaskLimitExceeded"
    assert client.error("ExportImages", {**params, "DryRun": True}) == "LimitExceeded.ExportImageTaskLimitExceeded"


def test_region_is_checked(client):
    assert client.error("DescribeImages", region=None) == "MissingParameter"
    assert client.error("DescribeImages", region="xx-nowhere") == "UnsupportedRegion"
    elsewhere = client.call("DescribeImages", {"ImageIds": ["img-centos01"]}, region="ap-beijing")
    assert elsewhere["TotalCount"] == 0
    assert client.call("DescribeRegions", region=None)["TotalCount"] >= 1


def test_extra_images_are_exportable(start_emulator):
    client = start_emulator(extra_images=3)
    ids = client.emu.catalog()["images"]
    extra = [i["ImageId"] for i in ids if i["ImageId"].startswith("img-x")]
    assert extra == [catalog.extra_image_id(n) for n in (1, 2, 3)]
    assert "TaskId" in client.export(extra)
