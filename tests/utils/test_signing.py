"""TC3 and COS signing: the published vectors, and agreement with the official SDK on random inputs."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from tencentcloud.common import abstract_client
from tencentcloud.common.credential import Credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312.cvm_client import CvmClient

from airflow_cvm_export.utils.signing import sign_cos, sign_tc3

VECTOR = {
    "secret_id": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
    "secret_key": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
    "service": "cvm",
    "host": "cvm.tencentcloudapi.com",
    "action": "DescribeInstances",
    "version": "2017-03-12",
    "region": "ap-guangzhou",
    "timestamp": 1551113065,
    "payload": b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}',
}
REGIONS = (
    "ap-bangkok ap-beijing ap-chengdu ap-chongqing ap-guangzhou ap-hongkong ap-jakarta ap-mumbai ap-nanjing "
    "ap-seoul ap-shanghai ap-shanghai-fsi ap-shenzhen-fsi ap-singapore ap-tokyo eu-frankfurt eu-moscow "
    "na-ashburn na-siliconvalley na-toronto sa-saopaulo ap-beijing-fsi ap-taipei"
).split()
HOSTS = ("cvm.tencentcloudapi.com", "cvm.intl.tencentcloudapi.com", "127.0.0.1:9000", "localhost:40123")
ACTIONS = ("ExportImages", "DescribeImages", "DescribeRegions", "DescribeInstances")
ALPHABET = "abcXYZ019 -_./\\\"'\n\t{}[]:,未命名镜像导出éüß€😀\u0301\u200b"
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
CASES = 120  # per SDK code path below: 240 random cases in all


def test_published_tc3_vector_sdk_content_type():
    headers = sign_tc3(**VECTOR)
    assert headers["Authorization"] == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=683bd0b53659853c39699162253251192320a09b3937e27bf8e08a559b1465b8"
    )
    assert headers == {
        "Host": "cvm.tencentcloudapi.com",
        "Content-Type": "application/json",
        "X-TC-Action": "DescribeInstances",
        "X-TC-Timestamp": "1551113065",
        "X-TC-Version": "2017-03-12",
        "X-TC-Region": "ap-guangzhou",
        "Authorization": headers["Authorization"],
    }


def test_published_tc3_vector_charset_content_type():
    headers = sign_tc3(**VECTOR, content_type="application/json; charset=utf-8")
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Authorization"].endswith(
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


def test_tc3_scope_uses_the_utc_date_and_optional_headers():
    headers = sign_tc3(**{**VECTOR, "timestamp": 1551196799}, token="tok", language="en-US")  # 23:59:59 UTC
    assert "/2019-02-26/cvm/tc3_request" in headers["Authorization"]
    assert (headers["X-TC-Token"], headers["X-TC-Language"]) == ("tok", "en-US")
    assert "X-TC-Region" not in sign_tc3(**{**VECTOR, "region": None})


def test_published_cos_vector():
    authorization = sign_cos(
        secret_id="AKIDQjz3ltompVjBni5LitkWHFlFpwkn9U5q",
        secret_key="BQYIM75p8x0iWVFSIgqEKwFprpRSVHlz",
        method="put",
        path="/exampleobject(腾讯云)",
        params={},
        headers={
            "Content-Length": "13",
            "Content-MD5": "mQ/fVh815F3k6TAUm8m0eg==",
            "Content-Type": "text/plain",
            "Date": "Thu, 16 May 2019 06:45:51 GMT",
            "Host": "examplebucket-1250000000.cos.ap-beijing.myqcloud.com",
            "x-cos-acl": "private",
            "x-cos-grant-read": 'uin="100000000011"',
        },
        start=1557989151,
        end=1557996351,
    )
    assert authorization == (
        "q-sign-algorithm=sha1&q-ak=AKIDQjz3ltompVjBni5LitkWHFlFpwkn9U5q"
        "&q-sign-time=1557989151;1557996351&q-key-time=1557989151;1557996351"
        "&q-header-list=content-length;content-md5;content-type;date;host;x-cos-acl;x-cos-grant-read"
        "&q-url-param-list=&q-signature=3b8851a11a569213c17ba8fa7dcf2abec6935172"
    )


def test_cos_params_are_lowercased_sorted_and_encoded():
    authorization = sign_cos(
        secret_id="id",
        secret_key="key",
        method="GET",
        path="/",
        params={"Prefix": "a b/", "max-keys": "1"},
        headers={"Host": "h"},
        start=1,
        end=2,
    )
    assert "&q-header-list=host&q-url-param-list=max-keys;prefix&" in authorization


# -- agreement with the official SDK ------------------------------------------------------------


def random_text(rng: random.Random, longest: int = 40) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, longest)))


def random_timestamp(rng: random.Random) -> int:
    """Mostly within two hours of a UTC midnight, including the second before and after it."""
    midnight = rng.randrange(17_000, 22_000) * 86_400
    return midnight + rng.choice((-1, 0, 1, rng.randint(-7_200, 7_200)))


def random_case(rng: random.Random) -> dict[str, Any]:
    return {
        "secret_id": "AKID" + "".join(rng.choices(KEY_ALPHABET, k=32)),
        "secret_key": "".join(rng.choices(KEY_ALPHABET, k=rng.randint(16, 40))),
        "token": rng.choice((None, "".join(rng.choices(KEY_ALPHABET + "+/=-_", k=rng.randint(20, 120))))),
        "region": rng.choice((*REGIONS, None)),
        "host": rng.choice((*HOSTS, *(f"cvm.{region}.tencentcloudapi.com" for region in REGIONS))),
        "action": rng.choice(ACTIONS),
        "timestamp": random_timestamp(rng),
    }


def random_params(rng: random.Random) -> dict[str, Any]:
    return rng.choice(
        (
            {},
            {"ImageIds": [random_text(rng, 12) for _ in range(rng.randint(0, 5))], "BucketName": random_text(rng)},
            {"Limit": rng.randint(0, 100), "Filters": [{"Name": random_text(rng), "Values": [random_text(rng)]}]},
            {"DryRun": rng.random() < 0.5, "ExportFormat": rng.choice(("RAW", "QCOW2", "VHD", "VMDK"))},
        )
    )


def sdk_request(case: dict[str, Any], params: dict[str, Any], language: str | None) -> RequestInternal:
    """Have the SDK's CvmClient build and sign a request exactly as it would send it."""
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=case["host"]))
    profile.language = language  # the SDK defaults to zh-CN; None sends no X-TC-Language
    client = CvmClient(Credential(case["secret_id"], case["secret_key"], case["token"]), case["region"], profile)
    request = RequestInternal(case["host"], "POST", "/", header={})
    with mock.patch.object(abstract_client.time, "time", return_value=case["timestamp"] + 0.25):
        client._build_req_with_tc3_signature(case["action"], params, request)
    return request


@pytest.mark.parametrize("seed", range(CASES))
def test_sdk_client_agreement(seed: int):
    rng = random.Random(f"client-{seed}")
    case, params, language = random_case(rng), random_params(rng), rng.choice((None, "en-US", "zh-CN"))

    request = sdk_request(case, params, language)
    ours = sign_tc3(
        **case, service="cvm", version="2017-03-12", payload=request.data.encode("utf-8"), language=language
    )

    sent = {name: value for name, value in request.header.items() if name != "X-TC-RequestClient"}
    assert ours == sent
    assert json.loads(request.data) == params


@pytest.mark.parametrize("seed", range(CASES))
def test_sdk_signer_agreement_on_raw_unicode_and_empty_bodies(seed: int):
    """The SDK's canonical request and ``Sign.sign_tc3`` on bodies its JSON encoder would never produce."""
    rng = random.Random(f"raw-{seed}")
    case = random_case(rng)
    body = rng.choice(("", random_text(rng, 200), json.dumps({"Name": random_text(rng)}, ensure_ascii=False)))
    content_type = rng.choice(("application/json", "application/json; charset=utf-8"))
    service = rng.choice(("cvm", "cos", "sts"))
    request = RequestInternal(
        case["host"],
        "POST",
        "/",
        header={"Content-Type": content_type, "Host": case["host"], "X-TC-Timestamp": str(case["timestamp"])},
        data=body,
    )
    date = datetime.fromtimestamp(case["timestamp"], UTC).strftime("%Y-%m-%d")
    client = abstract_client.AbstractClient.__new__(abstract_client.AbstractClient)
    signature = client._get_tc3_signature({}, request, date, service, case["secret_key"])

    ours = sign_tc3(
        **case, service=service, version="2017-03-12", payload=body.encode("utf-8"), content_type=content_type
    )

    assert ours["Authorization"].endswith(
        f"/{date}/{service}/tc3_request, SignedHeaders=content-type;host, Signature={signature}"
    )
