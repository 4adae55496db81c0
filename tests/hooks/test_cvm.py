"""CvmHook over real loopback HTTP: signing on the wire, retries, clock skew, COS, limits, secrets."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import pytest

from airflow_cvm_export.hooks import client as cvm
from airflow_cvm_export.hooks.cvm import CvmAsyncHook, CvmHook
from airflow_cvm_export.utils.errors import (
    TencentCloudAuthError,
    TencentCloudClockSkewError,
    TencentCloudConfigError,
    TencentCloudConnectError,
    TencentCloudError,
    TencentCloudOutcomeUnknownError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)
from airflow_cvm_export.utils.signing import sign_cos, sign_tc3
from tests.credentials import SECRET_ID, SECRET_KEY, TOKEN
from tests.hooks.scripted_server import DROP, Answer, Recorded, ScriptedServer, api_error, api_ok, unused_loopback_url

EXPORT: dict[str, Any] = {"image_ids": ["img-72n9mi0y"], "bucket_name": "test-bucket-1250000000"}
THROTTLED = api_error("RequestLimitExceeded")
BAD_GATEWAY = Answer(502, b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"})
START = 1_767_225_000  # 2025-12-31T23:50:00Z


class FakeClock:
    """Stands in for the hook module's ``time``: one second passes per reading, sleeps are instant."""

    def __init__(self, on_sleep: Callable[[], None] | None = None) -> None:
        self.now = float(START)
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def time(self) -> float:
        self.now += 1
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep:
            self.on_sleep()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(cvm, "time", fake)
    return fake


def expected_headers(request: Recorded, *, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> dict[str, str]:
    """What sign_tc3 gives for the request as received: the server's own check of the signature."""
    signed = sign_tc3(
        secret_id=secret_id,
        secret_key=secret_key,
        service="cvm",
        host=request.headers["host"],
        action=request.headers["x-tc-action"],
        version="2017-03-12",
        payload=request.body,
        timestamp=int(request.headers["x-tc-timestamp"]),
        region=request.headers.get("x-tc-region"),
        token=request.headers.get("x-tc-token"),
    )
    return {name.lower(): value for name, value in signed.items()}


# -- signed calls -------------------------------------------------------------------------------


def test_call_sends_a_request_signed_exactly_as_verified(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    server.play(api_ok(TotalCount=3))
    hook = make_hook()

    assert hook.call("DescribeRegions", {}) == {"TotalCount": 3, "RequestId": "req-ok"}

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/")
    assert request.headers["content-type"] == "application/json"
    assert {k: v for k, v in request.headers.items() if k in expected_headers(request)} == expected_headers(request)


def test_export_images_sends_the_documented_parameters(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    server.play(api_ok(TaskId=105591590, CosPaths=["/img-72n9mi0y_system_snap-fiux4bof.raw"]))

    result = make_hook().export_images(
        **EXPORT, export_format="QCOW2", file_name_prefixes=["nightly"], only_export_root_disk=True, dry_run=False
    )

    assert result["TaskId"] == 105591590
    assert server.requests[0].headers["x-tc-action"] == "ExportImages"
    assert server.requests[0].json == {
        "BucketName": "test-bucket-1250000000",
        "ImageIds": ["img-72n9mi0y"],
        "ExportFormat": "QCOW2",
        "FileNamePrefixList": ["nightly"],
        "OnlyExportRootDisk": True,
        "DryRun": False,
    }


def test_describe_images_batches_ids_100_per_call(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    def echo(request: Recorded) -> Answer:
        ids = request.json["ImageIds"]
        return api_ok(ImageSet=[{"ImageId": image_id} for image_id in ids], TotalCount=len(ids))

    server.default = echo
    ids = [f"img-{n:08d}" for n in range(250)]

    images = make_hook().describe_images(ids)

    assert [image["ImageId"] for image in images] == ids
    assert [(len(r.json["ImageIds"]), r.json["Limit"]) for r in server.requests] == [(100, 100), (100, 100), (50, 50)]
    assert make_hook().describe_images([]) == []
    assert len(server.requests) == 3


def test_one_session_per_hook_with_timeouts(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    hook = make_hook()
    hook.call("DescribeRegions", {})
    session = hook.session
    hook.call("DescribeRegions", {})
    assert hook.session is session
    assert server.requests[1].headers["user-agent"].startswith("airflow-cvm-export/")
    hook.close()
    assert hook.session is not session


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [THROTTLED, api_error("InternalError"), BAD_GATEWAY, DROP], ids=str)
def test_describe_images_retries_transient_failures_re_signing(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock, failure: Any
):
    server.play(failure, failure)

    assert make_hook().describe_images(["img-1"]) == []

    stamps = [r.headers["x-tc-timestamp"] for r in server.requests]
    signatures = {r.headers["authorization"] for r in server.requests}
    assert len(stamps) == len(set(stamps)) == len(signatures) == 3
    for request in server.requests:
        assert request.headers["authorization"] == expected_headers(request)["authorization"]
    assert len(clock.sleeps) == 2 and 0.01 <= clock.sleeps[0] <= 0.02 <= clock.sleeps[1] <= 0.03  # back-off grows


def test_reads_give_up_after_retry_limit(make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock):
    server.default = THROTTLED
    with pytest.raises(TencentCloudThrottledError) as raised:
        make_hook(retry_limit=3).describe_images(["img-1"])
    assert raised.value.code == "RequestLimitExceeded" and raised.value.action == "DescribeImages"
    assert len(server.requests) == 3


def test_refused_connection_is_retried_for_reads(make_hook: Callable[..., CvmHook], clock: FakeClock):
    with pytest.raises(TencentCloudConnectError, match="could not connect"):
        make_hook(retry_limit=3, endpoint=unused_loopback_url()).describe_images(["img-1"])
    assert len(clock.sleeps) == 2


def test_export_retries_throttling(make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock):
    server.play(THROTTLED, api_ok(TaskId=1, CosPaths=["/img-72n9mi0y_system_snap-fiux4bof.raw"]))
    assert make_hook().export_images(**EXPORT)["TaskId"] == 1
    assert len(server.requests) == 2
    assert server.requests[0].headers["authorization"] != server.requests[1].headers["authorization"]


@pytest.mark.parametrize(
    ("failure", "error"),
    [(api_error("InternalError"), TencentCloudServerError), (BAD_GATEWAY, TencentCloudServerError)],
    ids=["InternalError", "502"],
)
def test_export_does_not_retry_what_may_have_been_processed(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock, failure: Answer, error: type
):
    server.play(failure)
    with pytest.raises(error):
        make_hook().export_images(**EXPORT)
    assert len(server.requests) == 1


def test_export_dropped_after_sending_is_outcome_unknown(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock
):
    server.play(DROP)
    with pytest.raises(TencentCloudOutcomeUnknownError, match="sent but no answer") as raised:
        make_hook().export_images(**EXPORT)
    assert raised.value.action == "ExportImages"
    assert len(server.requests) == 1
    assert clock.sleeps == []


def test_export_retries_when_the_connection_was_never_established(
    make_hook: Callable[..., CvmHook], monkeypatch: pytest.MonkeyPatch
):
    # Bound, not yet listening: connections are refused.
    late = ScriptedServer(api_ok(TaskId=7, CosPaths=["/img-72n9mi0y_system_snap-fiux4bof.raw"]))

    def come_up() -> None:  # the server starts listening during the back-off
        late.__enter__()

    monkeypatch.setattr(cvm, "time", FakeClock(on_sleep=come_up))
    try:
        assert make_hook(endpoint=late.url).export_images(**EXPORT)["TaskId"] == 7
    finally:
        late.__exit__()
    assert len(late.requests) == 1


def test_export_gives_up_on_refused_connections(make_hook: Callable[..., CvmHook], clock: FakeClock):
    with pytest.raises(TencentCloudConnectError):
        make_hook(retry_limit=2, endpoint=unused_loopback_url()).export_images(**EXPORT)
    assert len(clock.sleeps) == 1


def test_non_retryable_errors_raise_at_once(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    server.play(api_error("InvalidImageId.NotFound", "The image cannot be found."))
    with pytest.raises(TencentCloudError, match=r"\[InvalidImageId.NotFound\] The image cannot be found") as raised:
        make_hook().describe_images(["img-1"])
    assert raised.value.request_id == "req-err"
    assert len(server.requests) == 1


# -- clock skew ---------------------------------------------------------------------------------


def skew_error(server_time: float) -> Answer:
    return api_error("AuthFailure.SignatureExpire", "signature expired", Date=formatdate(server_time, usegmt=True))


def test_clock_skew_re_signs_once_with_the_server_date(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock, logs: Callable[[], str]
):
    server.play(skew_error(START + 900))
    server.default = api_ok(TaskId=1, CosPaths=["/img-72n9mi0y_system_snap-fiux4bof.raw"])
    hook = make_hook()

    hook.export_images(**EXPORT)
    hook.export_images(**EXPORT)

    first, resigned, later = (int(r.headers["x-tc-timestamp"]) for r in server.requests)
    assert first - START < 10 and 880 < resigned - START < 920 and later > resigned
    assert "clock is off by -8" in logs()


def test_clock_skew_that_persists_says_by_how_much(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock
):
    server.play(skew_error(START - 3600), skew_error(START - 3600))
    with pytest.raises(TencentCloudClockSkewError, match=r"clock is about 36\d\d s ahead of Tencent Cloud's"):
        make_hook().export_images(**EXPORT)
    assert len(server.requests) == 2


def test_clock_skew_without_date_header_is_not_retried(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    server.play(api_error("AuthFailure.SignatureExpire", Date=""))
    with pytest.raises(TencentCloudClockSkewError, match="NTP"):
        make_hook().describe_images(["img-1"])
    assert len(server.requests) == 1


# -- connection rules ---------------------------------------------------------------------------


def test_plain_http_to_a_remote_host_is_refused_before_sending(make_hook: Callable[..., CvmHook]):
    with pytest.raises(TencentCloudConfigError, match="allow_http"):
        make_hook(endpoint="http://emulator.internal:9000").describe_images(["img-1"])
    hook = make_hook(endpoint="http://emulator.internal:9000", allow_http="true")
    assert hook.config.endpoint.url == "http://emulator.internal:9000"


def test_environment_credentials_when_the_connection_has_none(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDFROMENV")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "env-secret-key")
    monkeypatch.setenv("TENCENTCLOUD_TOKEN", "env-token")

    make_hook(login=None).describe_images(["img-1"])

    (request,) = server.requests
    assert request.headers["x-tc-token"] == "env-token"
    expected = expected_headers(request, secret_id="AKIDFROMENV", secret_key="env-secret-key")
    assert request.headers["authorization"] == expected["authorization"]


def test_missing_connection_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch):
    hook = CvmHook("tc_nowhere")
    with pytest.raises(TencentCloudConfigError, match="'tc_nowhere' does not exist"):
        hook.config  # noqa: B018
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDFROMENV")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "env-secret-key")
    assert CvmHook("tc_nowhere", region="ap-beijing").config.region == "ap-beijing"


def test_region_argument_overrides_the_connection(tencentcloud_conn: Callable[..., str]):
    conn_id = tencentcloud_conn(region="ap-guangzhou")
    assert CvmHook(conn_id).config.region == "ap-guangzhou"
    assert CvmHook(conn_id, region="eu-frankfurt").config.region == "eu-frankfurt"
    with pytest.raises(TencentCloudConfigError, match="region"):
        CvmHook(conn_id, region="Guangzhou").config  # noqa: B018


def test_longest_send_counts_every_attempt_and_the_back_offs_between_them(tencentcloud_conn: Callable[..., str]):
    """How long after an ExportImages call began its request may still reach the cloud (the operator does
    not send again before): 5 attempts of 5 + 30 s, back-offs of at most 1 + 1, 2 + 1, 4 + 1, 8 + 1 s."""
    conn_id = tencentcloud_conn()
    assert CvmHook(conn_id).longest_send() == 5 * 35 + 2 + 3 + 5 + 9 == 194
    assert CvmHook(conn_id, timeout=(1.0, 2.0), retry_limit=1).longest_send() == 3.0
    assert CvmHook(conn_id, retry_limit=8, retry_delay=2.0).longest_send() == 8 * 35 + 4 + 6 + 10 + 18 + 34 + 60 + 60


def test_timeouts_and_retries_come_from_the_connection_unless_given(tencentcloud_conn: Callable[..., str]):
    """The extras connect_timeout, read_timeout, retry_limit and retry_delay set what the arguments leave
    unset (the defaults where neither does), in both hooks; they bound the longest send too."""
    conn_id = tencentcloud_conn(connect_timeout=1, read_timeout="2.5", retry_limit=2, retry_delay=0.5)
    hook = CvmHook(conn_id)
    assert (hook.timeout, hook.retry_limit, hook.retry_delay) == ((1.0, 2.5), 2, 0.5)
    assert hook.longest_send() == 2 * 3.5 + 1.0
    given = CvmHook(conn_id, timeout=(3.0, 4.0), retry_limit=1, retry_delay=0.0)
    assert (given.timeout, given.retry_limit, given.retry_delay) == ((3.0, 4.0), 1, 0.0)
    partly = CvmHook(tencentcloud_conn("tc_partly", read_timeout=9))
    assert (partly.timeout, partly.retry_limit, partly.retry_delay) == ((5.0, 9.0), 5, 1.0)
    async_hook = CvmAsyncHook(conn_id, retry_delay=0.25)
    asyncio.run(async_hook.aconfig())
    assert (async_hook.timeout, async_hook.retry_limit, async_hook.retry_delay) == ((1.0, 2.5), 2, 0.25)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"read_timeout": 0}, "read_timeout must be a number of seconds above 0 up to 600 (default 30), got 0"),
        ({"connect_timeout": "soon"}, "connect_timeout must be a number of seconds above 0 up to 600"),
        ({"connect_timeout": float("inf")}, "connect_timeout must be"),
        ({"read_timeout": True}, "read_timeout must be"),
        ({"retry_limit": 0}, "retry_limit must be a whole number of attempts from 1 (no retry) to 20 (default 5)"),
        ({"retry_limit": 2.5}, "retry_limit must be a whole number"),
        ({"retry_delay": -1}, "retry_delay must be a number of seconds from 0 up to 60 (default 1), got -1"),
        ({"retry_dealy": 1}, "did you mean 'retry_delay'?"),
    ],
)
def test_bad_timeout_and_retry_extras_are_refused_before_any_request(
    tencentcloud_conn: Callable[..., str], extra: dict[str, Any], says: str
):
    hook = CvmHook(tencentcloud_conn(**extra))
    with pytest.raises(TencentCloudConfigError, match=re.escape(says)) as refused:
        hook.longest_send()
    assert SECRET_KEY not in str(refused.value)


def test_bad_retry_limit_is_rejected():
    with pytest.raises(TencentCloudConfigError, match="retry_limit"):
        CvmHook(retry_limit=0)


def test_connection_is_read_lazily(monkeypatch: pytest.MonkeyPatch):
    def explode(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("connection read in __init__")

    monkeypatch.setattr(CvmHook, "get_connection", explode)
    CvmHook("tc_lazy")


# -- rate limiter -------------------------------------------------------------------------------


def test_rate_limiter_spaces_calls(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    hook = make_hook(rate_limits={"DescribeImages": 20}, region="ap-shanghai")
    for _ in range(5):
        hook.describe_images(["img-1"])
    arrivals = [r.at for r in server.requests]
    # 4 gaps of 1.05/20 s = 0.21 s; generous lower bound, no upper bound.
    assert arrivals[-1] - arrivals[0] > 0.15


# -- test_connection ----------------------------------------------------------------------------


def test_test_connection(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    server.play(api_ok(TotalCount=21), api_error("AuthFailure.SecretIdNotFound", "The SecretId is not found."))
    hook = make_hook()
    assert hook.test_connection() == (True, "Connection OK: 21 regions visible")
    ok, message = hook.test_connection()
    assert not ok and "AuthFailure.SecretIdNotFound" in message and "login" in message
    assert server.requests[0].headers["x-tc-action"] == "DescribeRegions"


# -- COS ----------------------------------------------------------------------------------------

LISTING = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://cos.example/doc/2006-03-01/">
  <Name>bucket-1250000000</Name><IsTruncated>{truncated}</IsTruncated>{marker}
  <Contents><Key>{key}</Key><Size>10</Size><ETag>"abc"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>
</ListBucketResult>"""


def cos_signed_ok(request: Recorded, params: dict[str, str] | None = None) -> bool:
    """Recompute the q-sign signature of a path-style request as the emulator would."""
    authorization = dict(part.split("=", 1) for part in request.headers["authorization"].split("&"))
    start, end = (int(t) for t in authorization["q-sign-time"].split(";"))
    signed_headers = {"host": request.headers["host"]}
    if "x-cos-security-token" in request.headers:
        signed_headers["x-cos-security-token"] = request.headers["x-cos-security-token"]
    expected = sign_cos(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        method=request.method,
        path=request.path.split("?")[0].replace("%28", "(").replace("%29", ")"),
        params=params or {},
        headers=signed_headers,
        start=start,
        end=end,
    )
    return request.headers["authorization"] == expected


def test_head_cos_object(make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock):
    metadata = {"Content-Length": "1048576", "ETag": '"e1"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"}
    found = Answer(200, b"", metadata)
    server.play(found, Answer(404), Answer(503), found, Answer(403))
    hook = make_hook(token=TOKEN)

    head = hook.head_cos_object("bucket-1250000000", "/img-1_system_snap-1(a).raw")

    assert head == {"size": 1048576, "etag": "e1", "last_modified": "2026-01-01T00:00:00+00:00"}
    assert server.requests[0].method == "HEAD"
    assert server.requests[0].path == "/bucket-1250000000/img-1_system_snap-1%28a%29.raw"
    assert server.requests[0].headers["x-cos-security-token"] == TOKEN
    assert cos_signed_ok(server.requests[0])
    assert hook.head_cos_object("bucket-1250000000", "missing.raw") is None
    assert hook.head_cos_object("bucket-1250000000", "slow.raw") is not None  # 503 retried
    with pytest.raises(TencentCloudAuthError, match="read permission"):
        hook.head_cos_object("bucket-1250000000", "denied.raw")


def test_list_cos_objects_follows_markers(make_hook: Callable[..., CvmHook], server: ScriptedServer):
    page1 = LISTING.format(truncated="true", marker="<NextMarker>nightly/a</NextMarker>", key="nightly/a")
    page2 = LISTING.format(truncated="false", marker="", key="nightly/b")
    server.play(Answer(200, page1.encode()), Answer(200, page2.encode()))

    keys = [obj["key"] for obj in make_hook().list_cos_objects("bucket-1250000000", "nightly/")]

    assert keys == ["nightly/a", "nightly/b"]
    assert server.requests[0].path == "/bucket-1250000000/?max-keys=1000&prefix=nightly%2F"
    assert server.requests[1].path.endswith("&prefix=nightly%2F") and "marker=nightly%2Fa" in server.requests[1].path
    assert cos_signed_ok(server.requests[0], {"prefix": "nightly/", "max-keys": "1000"})


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_never_reach_logs_errors_or_reprs(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, clock: FakeClock, logs: Callable[[], str]
):
    server.play(THROTTLED, skew_error(START + 900), api_error("AuthFailure.SignatureFailure"), DROP)
    hook = make_hook(token=TOKEN)
    errors: list[BaseException] = []
    for action in (lambda: hook.describe_images(["img-1"]), lambda: hook.export_images(**EXPORT)):
        try:
            action()
        except TencentCloudError as exc:
            errors.append(exc)
    logged = logs()
    texts = [logged, repr(hook.config), str(hook.config), *map(str, errors), *map(repr, errors)]
    signatures = [r.headers["authorization"].rsplit("=", 1)[1] for r in server.requests]

    assert [type(e) for e in errors] == [TencentCloudAuthError, TencentCloudOutcomeUnknownError]
    assert "Attempt 1 of 4 failed" in logged and "clock is off" in logged
    assert server.requests[0].headers["x-tc-token"] == TOKEN
    for text in texts:
        for secret in (SECRET_KEY, TOKEN, "Signature=", *signatures):
            assert secret not in text


def test_environment_proxies_are_honoured(
    make_hook: Callable[..., CvmHook], server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    hook = make_hook(endpoint="http://cvm.example.invalid", allow_http=True)

    hook.describe_images(["img-1"])

    (request,) = server.requests
    assert request.path == "http://cvm.example.invalid/"  # absolute form: sent through the proxy
    assert request.headers["host"] == "cvm.example.invalid"
