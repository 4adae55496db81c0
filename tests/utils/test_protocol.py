"""Pure request builders and response parsers shared by the hook and the trigger."""

from __future__ import annotations

import json

import pytest

from airflow_cvm_export.utils.connection import config_from_connection
from airflow_cvm_export.utils.errors import (
    TencentCloudAuthError,
    TencentCloudConfigError,
    TencentCloudInvalidParameterError,
    TencentCloudNotFoundError,
    TencentCloudResponseError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)
from airflow_cvm_export.utils.protocol import (
    build_api_request,
    build_cos_request,
    cos_error,
    parse_api_response,
    parse_bucket_listing,
    parse_head,
)
from airflow_cvm_export.utils.signing import sign_cos, sign_tc3
from tests.credentials import SECRET_ID, SECRET_KEY, TOKEN

REAL = config_from_connection(
    login=SECRET_ID, password=SECRET_KEY, extra={"region": "ap-guangzhou", "token": TOKEN}, conn_id="c"
)


def test_api_request_is_compact_utf8_json_signed_for_the_endpoint():
    request = build_api_request(
        REAL, "ExportImages", {"BucketName": "b-1", "FileNamePrefixList": ["导出"]}, timestamp=1
    )
    assert (request.method, request.url) == ("POST", "https://cvm.tencentcloudapi.com/")
    assert request.body == '{"BucketName":"b-1","FileNamePrefixList":["导出"]}'.encode()
    assert request.headers == sign_tc3(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        service="cvm",
        host="cvm.tencentcloudapi.com",
        action="ExportImages",
        version="2017-03-12",
        payload=request.body,
        timestamp=1,
        region="ap-guangzhou",
        token=TOKEN,
    )


def api(response: dict) -> bytes:
    return json.dumps({"Response": response}).encode()


def test_parse_success_and_error():
    assert parse_api_response("A", 200, api({"TaskId": 1, "RequestId": "r"})) == {"TaskId": 1, "RequestId": "r"}
    with pytest.raises(TencentCloudInvalidParameterError) as raised:
        parse_api_response("A", 200, api({"Error": {"Code": "MissingParameter", "Message": "m"}, "RequestId": "r"}))
    assert (raised.value.code, raised.value.request_id, raised.value.action) == ("MissingParameter", "r", "A")


@pytest.mark.parametrize(
    ("status", "content", "cls"),
    [
        (200, b"<html>", TencentCloudResponseError),
        (200, b"", TencentCloudResponseError),
        (200, b'{"Response": []}', TencentCloudResponseError),
        (200, b"[1]", TencentCloudResponseError),
        (200, b'{"Response": {"Error": "x"}}', TencentCloudResponseError),
        (502, b"<html>bad gateway</html>", TencentCloudServerError),
        (500, api({"RequestId": "r"}), TencentCloudServerError),
        (429, b"Too Many Requests", TencentCloudThrottledError),
    ],
)
def test_parse_unexpected_answers(status: int, content: bytes, cls: type):
    with pytest.raises(cls) as raised:
        parse_api_response("DescribeImages", status, content)
    assert type(raised.value) is cls


def test_cos_request_virtual_host_style():
    request = build_cos_request(REAL, "HEAD", "bucket-125", "dir/a b.raw", now=1000)
    assert request.url == "https://bucket-125.cos.ap-guangzhou.myqcloud.com/dir/a%20b.raw"
    assert request.headers["Host"] == "bucket-125.cos.ap-guangzhou.myqcloud.com"
    assert request.headers["x-cos-security-token"] == TOKEN
    assert request.headers["Authorization"] == sign_cos(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        method="HEAD",
        path="/dir/a b.raw",
        params={},
        headers={"Host": request.headers["Host"], "x-cos-security-token": TOKEN},
        start=940,
        end=1600,
    )


def test_cos_request_needs_a_region_without_endpoint():
    no_region = config_from_connection(login=SECRET_ID, password=SECRET_KEY, extra={}, conn_id="c")
    with pytest.raises(TencentCloudConfigError, match="region"):
        build_cos_request(no_region, "HEAD", "b", "k")


@pytest.mark.parametrize(
    ("status", "content", "cls"),
    [
        (403, b"", TencentCloudAuthError),
        (404, b"<Error><Code>NoSuchBucket</Code></Error>", TencentCloudNotFoundError),
        (503, b"", TencentCloudThrottledError),
        (400, b"<Error><Code>SlowDown</Code></Error>", TencentCloudThrottledError),
        (500, b"<not xml", TencentCloudServerError),
        (400, b"", TencentCloudResponseError),
    ],
)
def test_cos_errors(status: int, content: bytes, cls: type):
    assert type(cos_error(status, "b", "k", content)) is cls


def test_cos_error_code_from_xml():
    assert cos_error(404, "b", "k", b"<Error><Code>NoSuchBucket</Code></Error>").code == "NoSuchBucket"


def test_parse_head():
    head = parse_head({"Content-Length": "5", "ETag": '"e"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})
    assert head == {"size": 5, "etag": "e", "last_modified": "2026-01-01T00:00:00+00:00"}
    with pytest.raises(TencentCloudResponseError):
        parse_head({"Content-Length": "5"})


def test_parse_bucket_listing_markers():
    page = (
        b"<ListBucketResult><IsTruncated>true</IsTruncated>"
        b'<Contents><Key>p/a</Key><Size>3</Size><ETag>"x"</ETag><LastModified>t</LastModified></Contents>'
        b"</ListBucketResult>"
    )
    objects, marker = parse_bucket_listing(page)
    assert objects == [{"key": "p/a", "size": 3, "etag": "x", "last_modified": "t"}] and marker == "p/a"
    assert parse_bucket_listing(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>") == ([], None)
    for bad in (b"<oops", b"<L><Contents><Size>big</Size></Contents></L>"):
        with pytest.raises(TencentCloudResponseError):
            parse_bucket_listing(bad)
