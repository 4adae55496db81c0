"""API 3.0 authentication and request checks, each answered with its real error code."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from tencentcloud.cvm.v20170312 import models

from airflow_cvm_export.emulator.auth import canonical_request
from airflow_cvm_export.emulator.catalog import REGION
from airflow_cvm_export.utils.signing import tc3_signature, tc3_string_to_sign

BODY = json.dumps({"ImageIds": ["img-centos01"]}).encode()


def _code(response) -> str:
    assert response.status_code == 200
    answer = response.json()["Response"]
    assert answer["RequestId"]
    return answer["Error"]["Code"]


def test_canonical_request_matches_published_vector():
    body = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    headers = {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"}
    request = canonical_request("POST", "/", "", headers, ["content-type", "host"], hashlib.sha256(body).hexdigest())
    assert hashlib.sha256(request.encode()).hexdigest() == (
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )


@pytest.mark.parametrize(
    ("sign", "code"),
    [
        ({"secret_id": "AKIDUNKNOWN"}, "AuthFailure.SecretIdNotFound"),
        ({"secret_key": "wrong-key"}, "AuthFailure.SignatureFailure"),
        ({"clock_offset": -301}, "AuthFailure.SignatureExpire"),
        ({"clock_offset": 400}, "AuthFailure.SignatureExpire"),
        ({"version": "2099-01-01"}, "NoSuchVersion"),
    ],
)
def test_auth_failures(client, sign, code):
    if "clock_offset" in sign:  # skewed from the time of the call, not of test collection
        sign = {"timestamp": int(time.time()) + sign["clock_offset"]}
    assert client.error("DescribeImages", {"ImageIds": ["img-centos01"]}, **sign) == code


def test_unknown_action(client):
    assert client.error("RunInstancesPlease") == "InvalidAction"


def test_token(start_emulator):
    client = start_emulator(token="session-token")
    assert client.error("DescribeRegions") == "AuthFailure.TokenFailure"
    assert client.error("DescribeRegions", token="other-token") == "AuthFailure.TokenFailure"
    assert "RegionSet" in client.call("DescribeRegions", token="session-token")


@pytest.mark.parametrize("header", ["X-TC-Action", "X-TC-Version", "X-TC-Timestamp", "Authorization"])
def test_missing_header(client, header):
    headers = client.signed_headers("DescribeImages", BODY)
    del headers[header]
    assert _code(client.post(headers, BODY)) == "MissingParameter"


def test_malformed_authorization(client):
    headers = client.signed_headers("DescribeImages", BODY)
    headers["Authorization"] = "Basic dXNlcjpwYXNz"
    assert _code(client.post(headers, BODY)) == "AuthFailure.InvalidAuthorization"


def test_body_must_match_signature(client):
    headers = client.signed_headers("DescribeImages", BODY)
    assert _code(client.post(headers, BODY + b" ")) == "AuthFailure.SignatureFailure"


def test_wrong_content_type(client):
    headers = client.signed_headers("DescribeImages", BODY, content_type="text/plain")
    assert _code(client.post(headers, BODY)) == "InvalidParameter"


def test_charset_content_type_is_accepted_when_signed_as_sent(client):
    headers = client.signed_headers("DescribeImages", BODY, content_type="application/json; charset=utf-8")
    assert client.post(headers, BODY).json()["Response"]["TotalCount"] == 1


def test_malformed_json(client):
    body = b'{"ImageIds": ['
    assert _code(client.post(client.signed_headers("DescribeImages", body), body)) == "InvalidParameter"


def test_any_signed_header_list_is_verified(client):
    """The server rebuilds CanonicalHeaders from the SignedHeaders the client listed, values lower-cased."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "Host": client.host,
        "X-TC-Action": "DescribeImages",
        "X-TC-Version": "2017-03-12",
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": REGION,
    }
    signed = ["content-type", "host", "x-tc-action", "x-tc-region"]
    lower = {name.lower(): value for name, value in headers.items()}
    request = canonical_request("POST", "/", "", lower, signed, hashlib.sha256(BODY).hexdigest())
    string_to_sign = tc3_string_to_sign(canonical_request=request, service="cvm", timestamp=timestamp)
    signature = tc3_signature(
        secret_key=client.secret_key, service="cvm", timestamp=timestamp, string_to_sign=string_to_sign
    )
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    headers["Authorization"] = (
        f"TC3-HMAC-SHA256 Credential={client.secret_id}/{date}/cvm/tc3_request, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    assert client.post(headers, BODY).json()["Response"]["TotalCount"] == 1
    headers["X-TC-Region"] = "ap-shanghai"  # a signed header changed in transit
    assert _code(client.post(headers, BODY)) == "AuthFailure.SignatureFailure"


def test_sdk_unsigned_payload(client):
    """The SDK's unsignedPayload mode hashes the string UNSIGNED-PAYLOAD, not the body; the emulator agrees."""
    sdk = client.sdk()
    sdk.profile.unsignedPayload = True
    request = models.DescribeImagesRequest()
    request.ImageIds = ["img-centos01"]
    assert sdk.DescribeImages(request).TotalCount == 1


def test_unsigned_payload_is_not_the_literal_hash(client):
    """The literal ``UNSIGNED-PAYLOAD`` as HashedRequestPayload is refused: the SDKs sign its sha256."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "host": client.host,
        "x-tc-content-sha256": "UNSIGNED-PAYLOAD",
    }
    signed = ["content-type", "host"]
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))

    def authorization(payload_hash: str) -> str:
        request = canonical_request("POST", "/", "", headers, signed, payload_hash)
        string_to_sign = tc3_string_to_sign(canonical_request=request, service="cvm", timestamp=timestamp)
        signature = tc3_signature(
            secret_key=client.secret_key, service="cvm", timestamp=timestamp, string_to_sign=string_to_sign
        )
        scope = f"{client.secret_id}/{date}/cvm/tc3_request"
        return f"TC3-HMAC-SHA256 Credential={scope}, SignedHeaders=content-type;host, Signature={signature}"

    common = {
        **headers,
        "X-TC-Action": "DescribeImages",
        "X-TC-Version": "2017-03-12",
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": REGION,
    }
    literal = {**common, "Authorization": authorization("UNSIGNED-PAYLOAD")}
    assert _code(client.post(literal, BODY)) == "AuthFailure.SignatureFailure"
    hashed = {**common, "Authorization": authorization(hashlib.sha256(b"UNSIGNED-PAYLOAD").hexdigest())}
    assert client.post(hashed, BODY + b" ").json()["Response"]["TotalCount"] == 1  # the body is not signed


def test_non_post_is_rejected(client):
    response = client.session.get(client.emu.url + "/", timeout=10)
    assert _code(response) == "UnsupportedProtocol"
