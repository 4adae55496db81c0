"""Connection fields and environment -> ClientConfig: endpoints, http rule, extras, rate limits."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cvm_export.utils.connection import DEFAULT_RATE_LIMITS, config_from_connection, parse_endpoint
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from tests.credentials import SECRET_ID, SECRET_KEY, TOKEN


def config(extra: Any = None, *, login: str | None = SECRET_ID, password: str | None = SECRET_KEY, **kw: Any):
    return config_from_connection(login=login, password=password, extra=extra, conn_id="tc_test", **kw)


def test_defaults():
    cfg = config({"region": "ap-guangzhou"})
    assert cfg.endpoint.url == "https://cvm.tencentcloudapi.com"
    assert (cfg.cos_endpoint, cfg.token, cfg.region) == (None, None, "ap-guangzhou")
    assert cfg.rate_limits == DEFAULT_RATE_LIMITS == {"ExportImages": 20.0, "DescribeImages": 40.0}


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("cvm.ap-guangzhou.tencentcloudapi.com", "https://cvm.ap-guangzhou.tencentcloudapi.com"),
        ("https://cvm.intl.tencentcloudapi.com/", "https://cvm.intl.tencentcloudapi.com"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_endpoints(value: str, url: str):
    assert parse_endpoint(value, field_name="endpoint", allow_http=False).url == url


@pytest.mark.parametrize(
    "value",
    ["", "ftp://host", "https://host/path", "https://host:notaport", "https://host/?q=1", 42, "http://10.0.0.5"],
)
def test_bad_endpoints(value: Any):
    with pytest.raises(TencentCloudConfigError, match="endpoint"):
        parse_endpoint(value, field_name="endpoint", allow_http=False)


def test_http_to_remote_needs_allow_http():
    with pytest.raises(TencentCloudConfigError, match="allow_http"):
        config({"endpoint": "http://emulator:9000"})
    cfg = config({"endpoint": "http://emulator:9000", "allow_http": "true"})
    assert cfg.endpoint.url == cfg.cos_endpoint.url == "http://emulator:9000"
    assert (
        config(
            {"endpoint": "http://emulator:9000", "cos_endpoint": "https://cos.example", "allow_http": True}
        ).cos_endpoint.url
        == "https://cos.example"
    )
    with pytest.raises(TencentCloudConfigError, match="allow_http must be true or false"):
        config({"allow_http": "maybe"})


def test_extra_as_json_text_and_prefixed_keys():
    cfg = config('{"extra__tencentcloud__region": "ap-beijing", "token": "", "rate_limits": "{\\"ExportImages\\": 5}"}')
    assert cfg.region == "ap-beijing" and cfg.token is None and cfg.rate_limits["ExportImages"] == 5.0


@pytest.mark.parametrize("extra", ["{not json", "[1, 2]"])
def test_malformed_extra_gets_a_clear_error(extra: str):
    with pytest.raises(TencentCloudConfigError, match="extra"):
        config(extra)


def test_rate_limits_override_and_zero_disables():
    cfg = config({"rate_limits": {"DescribeImages": 0, "ExportImages": 100, "DescribeRegions": 2.5}})
    assert cfg.rate_limits == {"ExportImages": 100.0, "DescribeImages": 0.0, "DescribeRegions": 2.5}


@pytest.mark.parametrize(
    "limits",
    [
        '{"ExportImages": -1}',
        '{"ExportImages": "fast"}',
        '{"ExportImages": true}',
        '{"ExportImages": NaN}',
        "[20]",
        "{bad",
    ],
)
def test_bad_rate_limits(limits: str):
    with pytest.raises(TencentCloudConfigError, match="rate_limits"):
        config({"rate_limits": limits})


@pytest.mark.parametrize("region", ["Guangzhou", "ap_guangzhou", "ap-", 5])
def test_bad_region(region: Any):
    with pytest.raises(TencentCloudConfigError, match="region"):
        config({"region": region})


def test_environment_credentials_only_as_a_set(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDENV")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "env-key")
    monkeypatch.setenv("TENCENTCLOUD_TOKEN", "env-token")
    from_env = config(login=None, password=None)
    assert (from_env.secret_id, from_env.secret_key, from_env.token) == ("AKIDENV", "env-key", "env-token")
    assert config().token is None  # the connection's own credentials never borrow the environment's token
    assert config({"token": TOKEN}, login=None, password=None).token == TOKEN
    with pytest.raises(TencentCloudConfigError, match="both"):
        config(password=None)


def test_no_credentials_anywhere():
    with pytest.raises(TencentCloudConfigError, match="TENCENTCLOUD_SECRET_ID"):
        config(login=None, password=None)


def test_repr_hides_secrets():
    cfg = config({"token": TOKEN})
    assert SECRET_KEY not in repr(cfg) and TOKEN not in repr(cfg) and SECRET_ID in repr(cfg)


@pytest.mark.filterwarnings("ignore:ClientConfig.with_region:DeprecationWarning")
def test_with_region_still_works_and_is_deprecated():
    cfg = config({"region": "ap-guangzhou"})
    with pytest.warns(DeprecationWarning, match="pass region= to the hook"):
        cfg.with_region(None)
    assert cfg.with_region(None) is cfg and cfg.with_region("ap-guangzhou") is cfg
    other = cfg.with_region("ap-tokyo")
    assert (other.region, other.secret_key, other.endpoint) == ("ap-tokyo", SECRET_KEY, cfg.endpoint)
    with pytest.raises(TencentCloudConfigError):
        cfg.with_region("tokyo")


@pytest.mark.parametrize("extra", ["[" * 5000, '{"rate_limits": "' + "[" * 5000 + '"}'])
def test_deeply_nested_extra_is_a_config_error_not_a_recursion_error(extra: str):
    with pytest.raises(TencentCloudConfigError, match="extra"):
        config(extra)


def test_secrets_are_registered_with_the_masker_before_any_check(monkeypatch: pytest.MonkeyPatch):
    from airflow.sdk.log import redact

    from airflow_cvm_export.utils import connection

    registered: list[str] = []
    real = connection.mask_secrets
    monkeypatch.setattr(connection, "_MASKED", set())
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: registered.append(value))
    url = "http://ops:url-password-1234@127.0.0.1:9000"
    for _ in range(2):  # a second connection read registers nothing again
        with pytest.raises(TencentCloudConfigError, match="SecretKey"):
            config({"endpoint": url, "token": TOKEN + "\n"}, password=SECRET_KEY + "\n")
    assert sorted(registered) == sorted([SECRET_KEY + "\n", SECRET_KEY, TOKEN + "\n", TOKEN, "url-password-1234"])
    monkeypatch.undo()
    real([SECRET_KEY + " "])
    assert SECRET_KEY not in redact(f"key {SECRET_KEY!r} and {SECRET_KEY + ' '!r}")


# -- credential sources (docs/credentials.md) ------------------------------------------------------------

ROLE_ARN = "qcs::cam::uin/100000000001:roleName/ExportRole"


def test_no_credential_extras_keep_the_long_lived_key_pair():
    cfg = config({"region": "ap-guangzhou"})
    assert (cfg.credentials, cfg.secret_id) == (None, SECRET_ID)
    assert config({"credential_source": "connection"}).credentials is None


def test_credential_source_settings():
    cfg = config({"credential_source": "cvm_role", "cvm_role_name": "AirflowWorker"}, login=None, password=None)
    assert (cfg.secret_id, cfg.secret_key, cfg.token) == ("", "", None)
    assert cfg.credentials.source == "cvm_role" and cfg.credentials.cvm_role_name == "AirflowWorker"
    assert cfg.credentials.metadata_endpoint.url == "http://metadata.tencentyun.com"
    assert cfg.credentials.sts_endpoint.url == "https://sts.tencentcloudapi.com"
    assumed = config({"role_arn": ROLE_ARN, "external_id": "ext-id-1", "policy": '{"version": "2.0"}'})
    assert (assumed.secret_id, assumed.credentials.secret_id) == ("", SECRET_ID)
    assert assumed.credentials.source == "connection" and assumed.credentials.duration_seconds == 7200
    assert assumed.credentials.policy == '{"version":"2.0"}'
    assert SECRET_KEY not in repr(assumed) and "ext-id-1" not in repr(assumed)


def test_role_arn_on_environment_credentials(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDENV")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "env-key")
    cfg = config({"role_arn": ROLE_ARN, "duration_seconds": "3600"}, login=None, password=None)
    assert (cfg.credentials.source, cfg.credentials.secret_id, cfg.credentials.duration_seconds) == (
        "environment",
        "AKIDENV",
        3600,
    )


@pytest.mark.parametrize(
    ("extra", "login", "words"),
    [
        ({"credential_source": "instance"}, None, ["credential_source must be one of", "cvm_role"]),
        ({"credential_source": "cvm_rol"}, None, ["did you mean 'cvm_role'"]),
        ({"credential_source": "cvm_role"}, SECRET_ID, ["login", "credential_source 'connection'"]),
        ({"credential_source": "connection"}, None, ["credential_source 'connection' needs"]),
        ({"credential_source": "oidc", "token": TOKEN}, None, ["token goes with the connection's login"]),
        ({"role_arn": "arn:aws:iam::1:role/x"}, SECRET_ID, ["role_arn must be a role ARN"]),
        ({"role_arn": ROLE_ARN, "duration_seconds": 43201}, SECRET_ID, ["duration_seconds", "1 to 43200"]),
        ({"role_arn": ROLE_ARN, "duration_seconds": 0}, SECRET_ID, ["duration_seconds"]),
        ({"role_arn": ROLE_ARN, "duration_seconds": True}, SECRET_ID, ["duration_seconds"]),
        ({"role_arn": ROLE_ARN, "role_session_name": "a b"}, SECRET_ID, ["role_session_name must be 2 to 128"]),
        ({"role_arn": ROLE_ARN, "external_id": "x"}, SECRET_ID, ["external_id must be 2 to 128"]),
        ({"role_arn": ROLE_ARN, "policy": "not json"}, SECRET_ID, ["policy must be a CAM policy JSON object"]),
        ({"role_arn": ROLE_ARN, "policy": {"principal": {}}}, SECRET_ID, ["without principal"]),
        ({"external_id": "ext-id-1"}, SECRET_ID, ["external_id needs role_arn"]),
        ({"policy": {"version": "2.0"}}, SECRET_ID, ["policy needs role_arn"]),
        ({"duration_seconds": 3600}, SECRET_ID, ["duration_seconds needs role_arn or credential_source 'oidc'"]),
        ({"credential_source": "cvm_role", "profile_name": "p"}, None, ["profile_name applies only to"]),
        ({"credential_source": "profile", "cvm_role_name": "r"}, None, ["cvm_role_name applies only to"]),
        ({"credential_source": "profile", "profile_name": "a/b"}, None, ["profile_name must be a profile name"]),
        ({"credential_source": "cvm_role", "metadata_endpoint": "http://10.0.0.1"}, None, ["metadata_endpoint"]),
        ({"credential_source": "oidc", "sts_endpoint": "ftp://sts"}, None, ["sts_endpoint"]),
        ({"credential_source": "oidc", "sts_endpoint": "http://sts.internal"}, None, ["sts_endpoint", "allow_http"]),
    ],
)
def test_credential_extras_are_refused_by_name(extra: dict[str, Any], login: str | None, words: list[str]):
    with pytest.raises(TencentCloudConfigError) as raised:
        config(extra, login=login, password=SECRET_KEY if login else None)
    for word in words:
        assert word in str(raised.value)
    for secret in (SECRET_KEY, TOKEN, "ext-id-1", "not json"):
        assert secret not in str(raised.value)


def test_metadata_endpoint_may_be_plain_http_to_loopback_and_its_default():
    def settings(extra: dict[str, Any]) -> Any:
        return config({"credential_source": "cvm_role", **extra}, login=None, password=None).credentials

    assert settings({}).metadata_endpoint.url == "http://metadata.tencentyun.com"
    assert settings({"metadata_endpoint": "http://127.0.0.1:9000"}).metadata_endpoint.url == "http://127.0.0.1:9000"
    assert (
        settings({"metadata_endpoint": "http://10.0.0.1", "allow_http": True}).metadata_endpoint.hostname == "10.0.0.1"
    )
