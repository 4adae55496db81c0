"""STS and the metadata service of the emulator, proven with the official SDK's credential classes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.http_profile import HttpProfile

from airflow_cvm_export.emulator import Emulator
from tests.credentials import ROLE_ARN, web_identity_token, write_tke
from tests.emulator.conftest import SECRET_ID, SECRET_KEY, Client


@pytest.fixture
def sdk_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's STS classes build their own HttpProfile (https); the emulator speaks http."""

    class PlainHttpProfile(HttpProfile):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.protocol = "http"
            self.scheme = "http"

    monkeypatch.setattr(credential, "HttpProfile", PlainHttpProfile)


def _describe_regions_request():
    from tencentcloud.cvm.v20170312 import models

    return models.DescribeRegionsRequest()


def _cvm_works(client: Client, cred) -> None:
    secret_id, secret_key, token = cred.get_credential_info()
    assert secret_id.startswith("AKIDTMP") and token
    answer = client.sdk(secret_id, secret_key, token).DescribeRegions(_describe_regions_request())
    assert answer.TotalCount > 0


def test_sdk_assume_role_credential(client: Client, sdk_over_http: None) -> None:
    cred = credential.STSAssumeRoleCredential(
        SECRET_ID, SECRET_KEY, ROLE_ARN, "airflow", duration_seconds=3600, endpoint=client.host
    )
    _cvm_works(client, cred)
    counts = client.emu.state()["requests"]
    assert counts["AssumeRole"] == {"ok": 1}
    assert counts["DescribeRegions"] == {"ok": 1}


def test_sdk_oidc_credential(client: Client, sdk_over_http: None) -> None:
    cred = credential.OIDCRoleArnCredential(
        "ap-guangzhou", "OIDC", web_identity_token(), ROLE_ARN, "airflow-oidc", endpoint=client.host
    )
    _cvm_works(client, cred)
    assert client.emu.state()["requests"]["AssumeRoleWithWebIdentity"] == {"ok": 1}


def test_sdk_oidc_from_tke_variables(
    client: Client, sdk_over_http: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tke(tmp_path, monkeypatch)
    cred = credential.DefaultTkeOIDCRoleArnProvider().get_credentials()
    cred.endpoint = client.host
    _cvm_works(client, cred)


def test_sdk_cvm_role_credential(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        credential.CVMRoleCredential, "_role_endpoint", client.emu.url + "/latest/meta-data/cam/security-credentials/"
    )
    cred = credential.CVMRoleCredential()
    assert cred.get_role_name() == "CVM_QcsRole"
    _cvm_works(client, cred)
    counts = client.emu.state()["requests"]
    assert counts["Metadata RoleName"] == {"ok": 1} and counts["Metadata Credentials"] == {"ok": 1}


def test_metadata_documents(start_emulator) -> None:
    client = start_emulator(cam_role="AirflowWorker", credential_lifetime=1000)
    base = client.emu.url + "/latest/meta-data/cam/security-credentials/"
    assert requests.get(base, timeout=5).text == "AirflowWorker"
    document = requests.get(base + "AirflowWorker", timeout=5).json()
    assert set(document) == {"TmpSecretId", "TmpSecretKey", "ExpiredTime", "Expiration", "Token", "Code"}
    assert document["Code"] == "Success"
    assert 990 <= document["ExpiredTime"] - time.time() <= 1000
    assert document["Expiration"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(document["ExpiredTime"]))
    # The same credentials until less than half the lifetime is left.
    assert requests.get(base + "AirflowWorker", timeout=5).json()["TmpSecretId"] == document["TmpSecretId"]
    assert requests.get(base + "CVM_QcsRole", timeout=5).status_code == 404
    assert requests.get(client.emu.url + "/latest/meta-data/nothing", timeout=5).status_code == 404


def test_metadata_rotates_before_expiry(start_emulator) -> None:
    client = start_emulator(credential_lifetime=2)
    url = client.emu.url + "/latest/meta-data/cam/security-credentials/CVM_QcsRole"
    first = requests.get(url, timeout=5).json()
    time.sleep(1.1)
    second = requests.get(url, timeout=5).json()
    assert second["TmpSecretId"] != first["TmpSecretId"]
    assert second["ExpiredTime"] > first["ExpiredTime"]


def _assume(client: Client, **params) -> dict:
    return client.call(
        "AssumeRole",
        {"RoleArn": ROLE_ARN, "RoleSessionName": "airflow", **params},
        version="2018-08-13",
        service="sts",
    )


def test_temporary_credentials_expire(start_emulator) -> None:
    client = start_emulator(credential_lifetime=3)
    issued = _assume(client)
    creds = issued["Credentials"]
    sign = {"secret_id": creds["TmpSecretId"], "secret_key": creds["TmpSecretKey"]}
    assert "Error" not in client.call("DescribeRegions", token=creds["Token"], **sign)
    assert client.error("DescribeRegions", token="another", **sign) == "AuthFailure.TokenFailure"
    assert client.error("DescribeRegions", **sign) == "AuthFailure.TokenFailure"
    cos = client.cos("HEAD", "exports-1250000000", token=creds["Token"], **sign)
    assert cos.status_code == 200
    time.sleep(max(0.0, issued["ExpiredTime"] - time.time()) + 0.1)
    assert client.error("DescribeRegions", token=creds["Token"], **sign) == "AuthFailure.TokenFailure"
    expired = client.cos("HEAD", "exports-1250000000", token=creds["Token"], **sign)
    assert expired.status_code == 403
    counts = client.emu.state()["requests"]
    assert counts["DescribeRegions"] == {"ok": 1, "AuthFailure.TokenFailure": 3}
    assert counts["COS HEAD"] == {"ok": 1, "AuthFailure.TokenFailure": 1}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"RoleArn": "qcs::cam::uin/100000000001:roleName/NoSuchRole"}, "ResourceNotFound.RoleNotFound"),
        ({"RoleArn": "not-an-arn"}, "ResourceNotFound.RoleNotFound"),
        ({"DurationSeconds": 43201}, "InvalidParameter.OverTimeError"),
        ({"DurationSeconds": 0}, "InvalidParameter.ParamError"),
        ({"RoleSessionName": "a b"}, "InvalidParameter.ParamError"),
        ({"ExternalId": "x"}, "InvalidParameter.ParamError"),
        ({"Policy": "not json"}, "InvalidParameter.StrategyFormatError"),
    ],
)
def test_assume_role_errors(client: Client, params: dict, code: str) -> None:
    answer = _assume(client, **params)
    assert answer["Error"]["Code"] == code


def test_assume_role_duration_is_capped_by_lifetime(start_emulator) -> None:
    client = start_emulator(credential_lifetime=600)
    assert 590 <= _assume(client, DurationSeconds=43200)["ExpiredTime"] - time.time() <= 600
    assert 290 <= _assume(client, DurationSeconds=300)["ExpiredTime"] - time.time() <= 300


def test_assume_role_needs_sts_scope(client: Client) -> None:
    answer = client.call("AssumeRole", {"RoleArn": ROLE_ARN, "RoleSessionName": "x1"}, version="2018-08-13")
    assert answer["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_web_identity_errors(client: Client, sdk_over_http: None) -> None:
    for token in ("not-a-jwt", web_identity_token(expires=time.time() - 10)):
        cred = credential.OIDCRoleArnCredential("ap-guangzhou", "OIDC", token, ROLE_ARN, "s1", endpoint=client.host)
        with pytest.raises(TencentCloudSDKException) as error:
            cred.get_credential_info()
        assert error.value.code == "InvalidParameter.WebIdentityTokenError"


def test_cli_options() -> None:
    from airflow_cvm_export.emulator.__main__ import parse_args

    defaults = parse_args([])
    assert (defaults.credential_lifetime, defaults.cam_role) == (7200, "CVM_QcsRole")
    args = parse_args(["--credential-lifetime", "60", "--cam-role", "AirflowWorker"])
    emulator = Emulator(**{name: getattr(args, name) for name in ("credential_lifetime", "cam_role")})
    assert emulator.state()["credential_lifetime"] == 60 and emulator.state()["cam_role"] == "AirflowWorker"
