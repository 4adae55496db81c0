"""COS HEAD, GET and bucket listing, with q-sign signatures checked."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime

import pytest

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS, bucket_for
from airflow_cvm_export.utils.signing import sign_cos

BUCKET = WRITABLE_BUCKETS[0]


@pytest.fixture
def exported(client):
    """The client, after exporting two images (4 objects) into BUCKET."""
    client.export(["img-ubuntu01", "img-centos01"])
    client.wait_exports()
    return client


def _keys(listing: bytes) -> list[str]:
    return [element.text or "" for element in ET.fromstring(listing).iter("Key")]


def _error_code(response) -> str:
    return ET.fromstring(response.content).findtext("Code") or ""


def test_head_and_get_object(exported):
    key = _keys(exported.cos("GET", BUCKET).content)[0]
    head = exported.cos("HEAD", BUCKET, key)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) > 0
    assert head.headers["ETag"].startswith('"')
    assert parsedate_to_datetime(head.headers["Last-Modified"]).tzinfo is not None
    get = exported.cos("GET", BUCKET, key)
    assert get.status_code == 200 and len(get.content) == int(head.headers["Content-Length"])
    assert get.headers["ETag"] == head.headers["ETag"]


def test_list_bucket_shape(exported):
    response = exported.cos("GET", BUCKET, params={"prefix": "img-ubuntu01_"})
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert root.tag == "ListBucketResult"
    assert (root.findtext("Name"), root.findtext("Prefix"), root.findtext("IsTruncated")) == (
        BUCKET,
        "img-ubuntu01_",
        "false",
    )
    contents = root.findall("Contents")
    assert len(contents) == 3
    for item in contents:
        assert item.findtext("LastModified").endswith("Z")
        assert item.findtext("ETag").startswith('"')
        assert int(item.findtext("Size")) > 0
        assert item.findtext("StorageClass") == "STANDARD"


def test_list_without_trailing_slash(exported):
    path, params = f"/{BUCKET}", {"prefix": "img-"}
    headers = {"Host": exported.host}
    start = int(time.time()) - 60
    headers["Authorization"] = sign_cos(
        secret_id=exported.secret_id,
        secret_key=exported.secret_key,
        method="GET",
        path=path,
        params=params,
        headers=headers,
        start=start,
        end=start + 600,
    )
    response = exported.session.get(exported.emu.url + path, params=params, headers=headers, timeout=10)
    assert response.status_code == 200 and len(_keys(response.content)) == 4


def test_list_paging(exported):
    seen, marker = [], ""
    while True:
        root = ET.fromstring(exported.cos("GET", BUCKET, params={"max-keys": "3", "marker": marker}).content)
        seen += [element.text for element in root.iter("Key")]
        if root.findtext("IsTruncated") != "true":
            break
        marker = root.findtext("NextMarker")
    assert seen == sorted(seen) and len(seen) == 4


def test_missing_object_and_bucket(client):
    head = client.cos("HEAD", BUCKET, "nothing.raw")
    assert head.status_code == 404 and head.content == b""
    get = client.cos("GET", BUCKET, "nothing.raw")
    assert get.status_code == 404 and _error_code(get) == "NoSuchKey"
    missing = client.cos("GET", "nosuch-1250000000", "x")
    assert missing.status_code == 404 and _error_code(missing) == "NoSuchBucket"
    no_appid = client.cos("GET", bucket_for("InvalidParameterValue.InvalidAppIdFormat"))
    assert _error_code(no_appid) == "NoSuchBucket"


def test_empty_writable_bucket_lists_nothing(client):
    assert _keys(client.cos("GET", WRITABLE_BUCKETS[1]).content) == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"sign": False}, "AccessDenied"),
        ({"secret_key": "wrong"}, "SignatureDoesNotMatch"),
        ({"start": int(time.time()) - 3600}, "AccessDenied"),  # q-sign-time window ended
    ],
)
def test_cos_signature_failures(client, kwargs, code):
    response = client.cos("GET", BUCKET, **kwargs)
    assert response.status_code == 403 and _error_code(response) == code


def test_cos_params_are_signed(client):
    response = client.cos("GET", BUCKET, params={"prefix": "a"})
    tampered = client.session.get(
        response.url.replace("prefix=a", "prefix=b"),
        headers={"Authorization": response.request.headers["Authorization"]},
        timeout=10,
    )
    assert tampered.status_code == 403 and _error_code(tampered) == "SignatureDoesNotMatch"


def test_cos_token(start_emulator):
    client = start_emulator(token="session-token")
    assert client.cos("GET", BUCKET).status_code == 403
    assert client.cos("GET", BUCKET, token="session-token").status_code == 200


def test_other_methods_are_refused(client):
    assert client.cos("PUT", BUCKET, "x.raw").status_code == 405
    assert client.cos("DELETE", BUCKET).status_code == 405


def test_path_style_errors_carry_trace_ids(client):
    response = client.cos("GET", BUCKET, "nothing.raw")
    root = ET.fromstring(response.content)
    assert root.findtext("RequestId") == response.headers["x-cos-request-id"]
    assert root.findtext("TraceId") == response.headers["x-cos-trace-id"]
    assert root.findtext("Resource") == f"/{BUCKET}/nothing.raw"


def test_path_style_range_delimiter_and_encoding(client):
    client.emu.put_object(BUCKET, "a/b c.raw", b"0123456789")
    client.emu.put_object(BUCKET, "top.raw", b"x")
    ranged = client.cos("GET", BUCKET, "a/b c.raw", headers={"Range": "bytes=2-4"})
    assert (ranged.status_code, ranged.content, ranged.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
    listing = ET.fromstring(client.cos("GET", BUCKET, params={"delimiter": "/", "encoding-type": "url"}).content)
    assert [e.text for e in listing.iter("Key")] == ["top.raw"]
    assert [p.findtext("Prefix") for p in listing.iter("CommonPrefixes")] == ["a/"]
    assert client.cos("GET", BUCKET, params={"encoding-type": "xml"}).status_code == 400
