"""Hostile and mistyped connections, run through the operator against the emulator: each gets a typed
error naming the field and what it allows, no request reaches the emulator, and neither the error nor
the output shows the SecretKey, the token or a password written into a URL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import urllib3

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.utils.connection import config_from_connection, parse_endpoint
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from airflow_cvm_export.version_compat import AIRFLOW_V_3_2_PLUS
from tests.credentials import SECRET_ID, SECRET_KEY, TOKEN
from tests.operators.conftest import BUCKET

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

pytestmark = pytest.mark.reliability

GOOD: dict[str, Any] = {"image_ids": ["img-centos01"], "bucket_name": BUCKET}
URL_PASSWORD = "url-password-never-logged"
SECRETS = (SECRET_KEY, TOKEN, URL_PASSWORD)

# (connection fields, expected error); "{url}" is the emulator's URL, "{port}" its port.
CREDENTIAL_CASES: list[tuple[dict[str, Any], str]] = [
    ({"password": SECRET_KEY + "\n"}, r"SecretKey \(password\).*no whitespace"),
    ({"password": " " + SECRET_KEY}, r"SecretKey \(password\).*no whitespace"),
    ({"password": SECRET_KEY + "\r\n"}, r"SecretKey \(password\).*no whitespace"),
    ({"password": "ключ-" + SECRET_KEY}, r"SecretKey \(password\).*printable ASCII.*character 1 is not"),
    ({"password": SECRET_KEY + "\x00x"}, r"SecretKey \(password\).*printable ASCII"),
    ({"password": SECRET_KEY.replace("-", "\u200b", 1)}, r"SecretKey \(password\).*printable ASCII"),
    ({"password": SECRET_KEY.replace("-", "\t", 1)}, r"SecretKey \(password\).*printable ASCII"),
    ({"login": SECRET_ID + "\n"}, r"SecretId \(login\).*no whitespace"),
    ({"login": "AKID\tTEST"}, r"SecretId \(login\).*printable ASCII"),
    ({"login": "AKIDтест"}, r"SecretId \(login\).*printable ASCII"),
    ({"login": "AKID\r\nX-Injected: 1"}, r"SecretId \(login\).*printable ASCII"),
    ({"extra": {"token": TOKEN + "\n"}}, "extra token must have no whitespace"),
    ({"extra": {"token": "\t" + TOKEN}}, "extra token must have no whitespace"),
    ({"extra": {"token": "tökén-" + TOKEN}}, "extra token must be printable ASCII"),
    ({"extra": {"token": TOKEN + "\r\nX-Injected: 1"}}, "extra token must be printable ASCII"),
    ({"extra": {"token": "   "}}, "extra token must have no whitespace"),
    ({"extra": {"token": 12345}}, "extra token must be a non-empty string"),
    ({"extra": {"token": [TOKEN]}}, "extra token must be a non-empty string"),
    ({"extra": {"extra__tencentcloud__token": TOKEN + " "}}, "extra token must have no whitespace"),
    ({"login": None, "password": None}, "no credentials"),
    ({"login": SECRET_ID, "password": None}, "no credentials"),
    ({"login": None, "password": SECRET_KEY}, "no credentials"),
]

USERINFO = "must not contain a user name or password"
ENDPOINT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"endpoint": f"http://ops:{URL_PASSWORD}@127.0.0.1:{{port}}"}, USERINFO),
    ({"endpoint": f"http://{URL_PASSWORD}@127.0.0.1:{{port}}"}, USERINFO),
    ({"endpoint": "http://A\\@127.0.0.1:{port}"}, USERINFO),  # urllib sees 127.0.0.1, requests connects to A
    ({"endpoint": "http://127.0.0.1:{port}\\@203.0.113.7"}, USERINFO),
    ({"endpoint": "http://127.0.0.1:{port}#@203.0.113.7"}, USERINFO),
    ({"endpoint": "http://u:p@127.0.0.1:{port}"}, USERINFO),  # requests would swap in Basic auth
    ({"endpoint": f"https://:{URL_PASSWORD}@cvm.tencentcloudapi.com"}, USERINFO),
    ({"endpoint": "http://127.0.0.1:{port}/\\203.0.113.7"}, "printable ASCII without spaces or backslashes"),
    ({"endpoint": "http://127.0.0.1 :{port}"}, "printable ASCII without spaces"),
    ({"endpoint": "http://127.0.0.1:{port}\x00"}, "printable ASCII without spaces"),
    ({"endpoint": "http://127.0.0.1\n:{port}"}, "printable ASCII without spaces"),
    ({"endpoint": "https://cvm.tencentcloudapi.cоm"}, "xn-- form"),  # Cyrillic о
    ({"endpoint": "http://127.1:{port}"}, "invalid IPv4 address"),
    ({"endpoint": "http://2130706433:{port}"}, "invalid IPv4 address"),
    ({"endpoint": "http://127.0.0.256:{port}"}, "invalid IPv4 address"),
    ({"endpoint": "http://0x7f.0.0.1:{port}"}, "invalid host name"),
    ({"endpoint": "http://-emulator-:{port}"}, "invalid host name"),
    ({"endpoint": "http://emu..lator:{port}"}, "invalid host name"),
    ({"endpoint": "http://emu%6cator:{port}"}, "no path or query"),
    ({"endpoint": "http://[fe80::zz]:{port}"}, "invalid IPv6 address"),
    ({"endpoint": "http://[::1%25lo]:{port}"}, "invalid IPv6 address"),
    ({"endpoint": "http://127.0.0.1:notaport"}, "no path or query"),
    ({"endpoint": "http://127.0.0.1:0"}, "port must be between 1 and 65535"),
    ({"endpoint": "http://127.0.0.1:99999"}, "port must be between 1 and 65535"),
    ({"endpoint": "http://127.0.0.1:{port}:{port}"}, "no path or query"),
    ({"endpoint": "{url}/api"}, "no path or query"),
    ({"endpoint": "{url}/?Action=ExportImages"}, "no path or query"),
    ({"endpoint": "{url}#top"}, "no path or query"),
    ({"endpoint": "{url}//"}, "no path or query"),
    ({"endpoint": "https://"}, "no path or query"),
    ({"endpoint": "file:///etc/passwd"}, "scheme http or https"),
    ({"endpoint": "ftp://127.0.0.1:{port}"}, "scheme http or https"),
    ({"endpoint": "ws://127.0.0.1:{port}"}, "scheme http or https"),
    ({"endpoint": "javascript:alert(1)"}, "no path or query"),
    ({"endpoint": "http://localhost.evil.example:{port}"}, "plain http to a non-loopback host"),
    ({"endpoint": "http://127.0.0.1.nip.io:{port}"}, "plain http to a non-loopback host"),
    ({"endpoint": "http://203.0.113.7:{port}"}, "plain http to a non-loopback host"),
    ({"endpoint": "http://[2001:db8::1]:{port}"}, "plain http to a non-loopback host"),
    ({"endpoint": 42}, "endpoint must be a URL"),
    ({"endpoint": ["{url}"]}, "endpoint must be a URL"),
    ({"endpoint": "   "}, "endpoint must be a URL"),
    ({"cos_endpoint": f"http://u:{URL_PASSWORD}@127.0.0.1:{{port}}"}, "cos_endpoint must not contain a user"),
    ({"cos_endpoint": "http://127.0.0.1:{port}\\x"}, "cos_endpoint must be"),
    ({"cos_endpoint": "http://cos.example.com"}, "cos_endpoint uses plain http"),
    ({"endpoint": None, "extra__tencentcloud__endpoint": f"http://u:{URL_PASSWORD}@127.0.0.1:{{port}}"}, USERINFO),
]

EXTRA_CASES: list[tuple[dict[str, Any], str]] = [
    ({"endpiont": "{url}"}, "extra 'endpiont' is not a setting of this provider; did you mean 'endpoint'"),
    ({"extra__tencentcloud__endpiont": "{url}"}, "did you mean 'endpoint'"),
    ({"regoin": "ap-guangzhou"}, "did you mean 'region'"),
    ({"cos-endpoint": "{url}"}, "did you mean 'cos_endpoint'"),
    ({"allowhttp": True}, "did you mean 'allow_http'"),
    ({"Token": TOKEN}, "did you mean 'token'"),
    ({"rate_limit": {"ExportImages": 5}}, "did you mean 'rate_limits'"),
    ({"secret_key": SECRET_KEY}, "'secret_key' is not a setting of this provider"),
    ({"extra__http__endpoint": "{url}"}, "'extra__http__endpoint' is not a setting"),
    ({"zzzz": 1}, r"'zzzz' is not a setting of this provider \(known: region, endpoint"),
    ({"extra__tencentcloud__region": "ap-shanghai"}, "set twice"),  # the region extra says ap-guangzhou
    ({"allow_http": "maybe"}, "allow_http must be true or false"),
    ({"allow_http": 2}, "allow_http must be true or false"),
    ({"allow_http": []}, "allow_http must be true or false"),
    ({"region": "ap-guangzhou\n"}, "region must be"),
    ({"region": "AP-GUANGZHOU"}, "region must be"),
    ({"region": 12}, "region must be"),
    ({"region": {"name": "ap-guangzhou"}}, "region must be"),
    ({"rate_limits": {"DescribeImages": 1e-9}}, r"rate_limits\['DescribeImages'\] must be 0 \(no limit\) or between"),
    ({"rate_limits": {"DescribeImages": 0.05}}, r"rate_limits\['DescribeImages'\]"),
    ({"rate_limits": {"ExportImages": 1e9}}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": {"ExportImages": -0.5}}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": '{"ExportImages": Infinity}'}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": '{"ExportImages": NaN}'}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": {"ExportImages": "20"}}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": {"ExportImages": [20]}}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": {"ExportImages": True}}, r"rate_limits\['ExportImages'\]"),
    ({"rate_limits": {"DescribeImage": 5}}, "unknown action 'DescribeImage'; did you mean 'DescribeImages'"),
    ({"rate_limits": {"RunInstances": 5}}, "unknown action .RunInstances."),
    ({"rate_limits": {"COS GET": 5}}, "unknown action .COS GET.; did you mean .COS HEAD."),
    ({"rate_limits": "{DescribeImages: 40"}, "rate_limits must be a JSON object"),
    ({"rate_limits": "[" * 5000}, "rate_limits must be a JSON object"),
    ({"rate_limits": [20]}, "rate_limits must be a JSON object"),
]

# Airflow 3.1's AIRFLOW_CONN_ backend drops a connection whose extra is not a JSON object (it reports
# "isn't defined"), so the hook never sees that extra: it says the connection does not exist.
DROPPED_BY_AIRFLOW_3_1 = "connection 'tc_bad' does not exist"
RAW_EXTRA_CASES: list[tuple[str, str]] = [
    ("{not json", "extra is not valid JSON"),
    ("[" * 40 + "]" * 40, "extra must be a JSON object"),
    ("[1, 2]", "extra must be a JSON object"),
    ('"endpoint"', "extra must be a JSON object"),
    ("null", "extra must be a JSON object"),
]


def _fill(value: Any, emulator: Emulator) -> Any:
    if isinstance(value, str):
        return value.replace("{url}", emulator.url).replace("{port}", str(emulator.port))
    if isinstance(value, list):
        return [_fill(item, emulator) for item in value]
    return value


def _cases() -> list[Any]:
    cases = [
        pytest.param(fields, message, id=f"credential-{i}") for i, (fields, message) in enumerate(CREDENTIAL_CASES)
    ]
    cases += [pytest.param({"extra": extra}, m, id=f"endpoint-{i}") for i, (extra, m) in enumerate(ENDPOINT_CASES)]
    cases += [pytest.param({"extra": extra}, m, id=f"extra-{i}") for i, (extra, m) in enumerate(EXTRA_CASES)]
    cases += [
        pytest.param({"extra": extra}, m if AIRFLOW_V_3_2_PLUS else DROPPED_BY_AIRFLOW_3_1, id=f"raw-extra-{i}")
        for i, (extra, m) in enumerate(RAW_EXTRA_CASES)
    ]
    return cases


CONNECTION_CASES = _cases()


def run_with_connection(emulator: Emulator, context: Context, monkeypatch: pytest.MonkeyPatch, fields: Any):
    extra = fields.get("extra", {})
    if isinstance(extra, dict):
        extra = {
            "region": "ap-guangzhou",
            "endpoint": emulator.url,
            **{k: _fill(v, emulator) for k, v in extra.items()},
        }
    connection = {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY, **fields, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_TC_BAD", json.dumps(connection))
    return ExportImagesOperator(task_id="start", tencentcloud_conn_id="tc_bad", **GOOD).execute(context)


@pytest.mark.parametrize(("fields", "message"), CONNECTION_CASES)
def test_connection_input(
    emulator: Emulator,
    context: Context,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(TencentCloudConfigError, match=message) as raised:
        run_with_connection(emulator, context, monkeypatch, fields)
    assert emulator.state()["requests"] == {}
    error = raised.value  # no traceback from inside json, requests or httpx chained to it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    shown = str(error) + repr(error) + "".join(capsys.readouterr())
    assert [secret for secret in SECRETS if secret in shown] == []


@pytest.mark.parametrize(
    ("extra", "url"),
    [
        ({"extra__tencentcloud__endpoint": "http://127.0.0.1:9000", "endpoint": ""}, "http://127.0.0.1:9000"),
        ({"endpoint": "HTTP://LocalHost:9000/", "token": None, "rate_limits": ""}, "http://localhost:9000"),
        ({"endpoint": "cvm.ap-guangzhou.tencentcloudapi.com", "extra__tencentcloud__region": ""}, None),
        ({"endpoint": "http://[::1]:9000", "extra__tencentcloud__allow_http": False}, "http://[::1]:9000"),
        ({"endpoint": "https://192.0.2.10:8443", "unknown_but_empty": ""}, "https://192.0.2.10:8443"),
    ],
)
def test_what_the_connection_form_stores_is_accepted(extra: dict[str, Any], url: str | None) -> None:
    config = config_from_connection(login=SECRET_ID, password=SECRET_KEY, extra=extra, conn_id="c")
    assert config.endpoint.url == (url or "https://cvm.ap-guangzhou.tencentcloudapi.com")


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1:9000",
        "http://localhost",
        "https://cvm.tencentcloudapi.com/",
        "https://CVM.Intl.TencentCloudAPI.com:443",
        "http://[::1]:9000",
        "https://[2001:db8::1]",
        "emulator.internal:8080",
        "https://xn--fsqu00a.example",
    ],
)
def test_the_url_sent_is_read_alike_by_urllib_urllib3_and_httpx(value: str) -> None:
    """The URL every request goes to is rebuilt from the checked parts; all three parsers agree on it."""
    endpoint = parse_endpoint(value, field_name="endpoint", allow_http=True)
    url = endpoint.url + "/"
    by_urllib, by_urllib3, by_httpx = urlsplit(url), urllib3.util.parse_url(url), httpx.URL(url)
    hosts = (by_urllib.hostname, (by_urllib3.host or "").strip("[]"), by_httpx.raw_host.decode())
    assert hosts == (endpoint.hostname,) * 3
    default = {"http": 80, "https": 443}[endpoint.scheme]
    assert (by_urllib.port or default) == (by_urllib3.port or default) == (by_httpx.port or default)
    assert by_urllib.username is by_urllib3.auth is None and by_httpx.userinfo == b""
    assert (by_urllib.path, by_urllib3.path, by_httpx.path) == ("/", "/", "/")
