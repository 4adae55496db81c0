"""The official COS SDK (cos-python-sdk-v5), unchanged, against the emulator: virtual-hosted requests
sent to the emulator's IP and port, listings, ranges, presigned URLs and error details."""

from __future__ import annotations

import pytest
import requests
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosServiceError

from airflow_cvm_export.emulator.catalog import OTHER_REGION, REGION, WRITABLE_BUCKETS, bucket_for

BUCKET = WRITABLE_BUCKETS[0]
KEYS = ("img-a_system.raw", "nightly/2024/中文 a+b.raw", "nightly/2024/x.raw", "nightly/2025/y.raw", "z.raw")


def sdk(client, *, region: str = REGION, token: str | None = None, ip: bool = True) -> CosS3Client:
    """A CosS3Client as a user would build it, pointed at the emulator by IP and Port."""
    host, port = client.host.split(":")
    where = {"IP": host, "Port": int(port)} if ip else {}
    config = CosConfig(
        Region=region, SecretId=client.secret_id, SecretKey=client.secret_key, Token=token, Scheme="http", **where
    )
    return CosS3Client(config, retry=0)


@pytest.fixture
def filled(client):
    """The client after some objects were put into BUCKET (through the emulator's control API)."""
    for key in KEYS:
        client.emu.put_object(BUCKET, key, f"body of {key}".encode())
    return client


def test_head_object_and_object_exists(filled):
    cos = sdk(filled)
    head = cos.head_object(Bucket=BUCKET, Key=KEYS[0])
    assert int(head["Content-Length"]) == len(f"body of {KEYS[0]}".encode())
    assert head["ETag"].startswith('"') and head["x-cos-request-id"]
    assert cos.object_exists(Bucket=BUCKET, Key=KEYS[1]) is True
    assert cos.object_exists(Bucket=BUCKET, Key="nothing.raw") is False
    assert filled.emu.state()["requests"]["COS HEAD"] == {"ok": 2, "NoSuchKey": 1}


def test_get_object_whole_and_range(filled):
    cos = sdk(filled)
    whole = cos.get_object(Bucket=BUCKET, Key=KEYS[1])
    assert whole["Body"].get_raw_stream().read() == f"body of {KEYS[1]}".encode()
    part = cos.get_object(Bucket=BUCKET, Key=KEYS[0], Range="bytes=0-3")
    assert part["Body"].get_raw_stream().read() == b"body"
    assert part["Content-Range"] == f"bytes 0-3/{len(f'body of {KEYS[0]}')}"
    tail = cos.get_object(Bucket=BUCKET, Key=KEYS[0], Range="bytes=-3")
    assert tail["Body"].get_raw_stream().read() == b"raw"
    with pytest.raises(CosServiceError) as caught:
        cos.get_object(Bucket=BUCKET, Key=KEYS[0], Range="bytes=999-")
    assert caught.value.get_status_code() == 416 and caught.value.get_error_code() == "InvalidRange"


def test_list_objects_prefix_delimiter_and_paging(filled):
    cos = sdk(filled)
    everything = cos.list_objects(Bucket=BUCKET)
    assert [item["Key"] for item in everything["Contents"]] == sorted(KEYS)  # keys url-decoded by the SDK
    assert everything["IsTruncated"] == "false"
    rolled = cos.list_objects(Bucket=BUCKET, Prefix="nightly/", Delimiter="/")
    assert "Contents" not in rolled
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["nightly/2024/", "nightly/2025/"]
    top = cos.list_objects(Bucket=BUCKET, Delimiter="/")
    assert [item["Key"] for item in top["Contents"]] == ["img-a_system.raw", "z.raw"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["nightly/"]
    seen, marker = [], ""
    while True:
        page = cos.list_objects(Bucket=BUCKET, MaxKeys=2, Marker=marker)
        seen += [item["Key"] for item in page.get("Contents", [])]
        if page["IsTruncated"] != "true":
            break
        marker = page["NextMarker"]
    assert seen == sorted(KEYS)


def test_list_objects_encoding_type_url_is_left_to_the_caller(filled):
    raw = sdk(filled).list_objects(Bucket=BUCKET, Prefix="nightly/2024/", EncodingType="url")
    assert raw["EncodingType"] == "url"
    assert [item["Key"] for item in raw["Contents"]] == [
        "nightly/2024/x.raw",
        "nightly/2024/%E4%B8%AD%E6%96%87%20a%2Bb.raw",
    ]


def test_presigned_get(filled):
    """A presigned URL for the real host works through the emulator as an HTTP proxy, host signed."""
    url = sdk(filled, ip=False).get_presigned_download_url(Bucket=BUCKET, Key=KEYS[1], Expired=300)
    assert url.startswith(f"http://{BUCKET}.cos.{REGION}.myqcloud.com/") and "q-signature=" in url
    proxied = requests.get(url, proxies={"http": filled.emu.url}, timeout=10)
    assert proxied.status_code == 200 and proxied.content == f"body of {KEYS[1]}".encode()
    other_key = requests.get(url.replace("a%2Bb", "a%2Bc"), proxies={"http": filled.emu.url}, timeout=10)
    assert other_key.status_code == 403  # the path is signed


def test_presigned_get_by_ip_without_signed_host(filled):
    """With IP and Port the URL names the emulator; the bucket then travels in the Host header."""
    url = sdk(filled).get_presigned_url(Bucket=BUCKET, Key=KEYS[0], Method="GET", SignHost=False)
    host = f"{BUCKET}.cos.{REGION}.myqcloud.com"
    answer = requests.get(url, headers={"Host": host}, timeout=10)
    assert answer.status_code == 200 and answer.content == f"body of {KEYS[0]}".encode()
    not_yet_valid = requests.get(
        url.replace("q-sign-time=", "q-sign-time=1").replace("q-key-time=", "q-key-time=1"),
        headers={"Host": host},
        timeout=10,
    )
    assert not_yet_valid.status_code == 403


def test_errors_carry_request_and_trace_ids(filled):
    cos = sdk(filled)
    with pytest.raises(CosServiceError) as caught:
        cos.get_object(Bucket=BUCKET, Key="nothing.raw")
    error = caught.value
    assert (error.get_status_code(), error.get_error_code()) == (404, "NoSuchKey")
    assert error.get_request_id() and error.get_trace_id() not in ("", "Unknown")
    assert error.get_resource_location().endswith("/nothing.raw")
    with pytest.raises(CosServiceError) as missing:
        cos.list_objects(Bucket="nosuch-1250000000")
    assert missing.value.get_error_code() == "NoSuchBucket"


def test_bucket_addressed_in_another_region_does_not_exist(filled):
    with pytest.raises(CosServiceError) as caught:
        sdk(filled, region=OTHER_REGION).list_objects(Bucket=BUCKET)
    assert caught.value.get_error_code() == "NoSuchBucket"
    faraway = bucket_for("InvalidParameterValue.BucketNotFound")
    assert sdk(filled, region=OTHER_REGION).list_objects(Bucket=faraway)["IsTruncated"] == "false"


def test_wrong_key_and_token(start_emulator):
    client = start_emulator(token="session-token")
    with pytest.raises(CosServiceError) as caught:
        sdk(client).list_objects(Bucket=BUCKET)
    assert (caught.value.get_status_code(), caught.value.get_error_code()) == (403, "AccessDenied")
    assert sdk(client, token="session-token").list_objects(Bucket=BUCKET)["Name"] == BUCKET


def test_delete_object_as_a_user_mistake(filled):
    cos = sdk(filled)
    cos.delete_object(Bucket=BUCKET, Key=KEYS[0])
    assert cos.object_exists(Bucket=BUCKET, Key=KEYS[0]) is False
    cos.delete_object(Bucket=BUCKET, Key=KEYS[0])  # deleting again is fine, as in COS


def test_exported_objects_through_the_sdk(client):
    """An export writes through the COS backend; the SDK sees exactly its CosPaths."""
    client.emu.progression = "immediate"
    answer = client.export(["img-ubuntu01"])
    cos = sdk(client)
    listed = cos.list_objects(Bucket=BUCKET, Prefix="img-ubuntu01_")
    assert ["/" + item["Key"] for item in listed["Contents"]] == sorted(answer["CosPaths"])
    assert all(cos.object_exists(Bucket=BUCKET, Key=path) for path in answer["CosPaths"])
