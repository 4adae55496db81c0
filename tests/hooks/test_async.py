"""CvmHook and CvmAsyncHook side by side over real loopback HTTP(S): one core, the same behaviour.

Each test runs with both hooks: the same script on the wire gives the same requests, results and
errors (clock skew re-signing, User-Agent, proxies and CA bundle from the environment, COS answers,
retry classification).
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import ipaddress
import ssl
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_cvm_export.hooks.client import USER_AGENT
from airflow_cvm_export.hooks.cvm import CvmAsyncHook, CvmHook
from airflow_cvm_export.utils.errors import (
    TencentCloudAuthError,
    TencentCloudNetworkError,
    TencentCloudOutcomeUnknownError,
)
from tests.hooks.conftest import NO_LIMITS
from tests.hooks.scripted_server import DROP, Answer, ScriptedServer, api_error, api_ok

KINDS = ("sync", "async")
HEAD_OK = Answer(200, b"", {"Content-Length": "7", "ETag": '"abc"', "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"})


def run(hook: CvmHook | CvmAsyncHook, method: str, *args: Any) -> Any:
    """Call ``method`` on either hook and return its result (the async one awaited, then closed)."""
    if isinstance(hook, CvmAsyncHook):

        async def main() -> Any:
            try:
                return await getattr(hook, method)(*args)
            finally:
                await hook.aclose()

        return asyncio.run(main())
    result = getattr(hook, method)(*args)
    return list(result) if method == "list_cos_objects" else result


@pytest.fixture
def hook_on(tencentcloud_conn: Callable[..., str]) -> Iterator[Callable[..., CvmHook | CvmAsyncHook]]:
    """``hook_on(kind, url, **extra)``: a sync or async hook on ``url``, tiny retry delay, limiter off."""
    hooks: list[CvmHook | CvmAsyncHook] = []

    def make(kind: str, url: str, **extra: Any) -> CvmHook | CvmAsyncHook:
        extra = {"endpoint": url, "region": "ap-guangzhou", "rate_limits": NO_LIMITS, **extra}
        conn_id = tencentcloud_conn(f"tc_{kind}", **extra)
        hook = (CvmHook if kind == "sync" else CvmAsyncHook)(conn_id, retry_limit=3, retry_delay=0.01)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        if isinstance(hook, CvmHook):
            hook.close()


def skew_error(server_time: float) -> Answer:
    return api_error("AuthFailure.SignatureExpire", "signature expired", Date=formatdate(server_time, usegmt=True))


def test_both_hooks_put_the_same_request_on_the_wire(hook_on: Callable[..., Any], server: ScriptedServer) -> None:
    server.default = api_ok(ImageSet=[{"ImageId": "img-1"}])
    results = [run(hook_on(kind, server.url), "describe_images", ["img-1"]) for kind in KINDS]

    sync, asynchronous = server.requests
    assert results[0] == results[1] == [{"ImageId": "img-1"}]
    assert (sync.method, sync.path, sync.body) == (asynchronous.method, asynchronous.path, asynchronous.body)
    assert sync.headers["user-agent"] == asynchronous.headers["user-agent"] == USER_AGENT
    signed = {"authorization", "x-tc-action", "x-tc-version", "x-tc-region", "content-type", "host"}
    assert signed <= set(sync.headers) and signed <= set(asynchronous.headers)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("skew", [+400, -400])
def test_clock_skew_re_signs_once_for_api_and_cos(
    hook_on: Callable[..., Any], server: ScriptedServer, kind: str, skew: int
) -> None:
    server.play(skew_error(time.time() + skew))
    server.default = api_ok(ImageSet=[])
    hook = hook_on(kind, server.url, cos_endpoint=server.url)

    assert run(hook, "describe_images", ["img-1"]) == []
    server.default = HEAD_OK
    assert run(hook, "head_cos_object", "bucket-1250000000", "/a.raw")["size"] == 7

    refused, resigned, head = server.requests
    assert abs(int(resigned.headers["x-tc-timestamp"]) - int(refused.headers["x-tc-timestamp"]) - skew) < 5
    cos_start = int(head.headers["authorization"].split("q-sign-time=")[1].split(";")[0])
    assert abs(cos_start + 60 - int(resigned.headers["x-tc-timestamp"])) < 5  # COS signed with the server clock
    assert abs(hook.server_time() - time.time() - skew) < 5


def test_concurrent_calls_refused_for_skew_all_re_sign(hook_on: Callable[..., Any], server: ScriptedServer) -> None:
    """Three DescribeImages batches in flight are refused together; each signs again, none gives up."""

    def server_clock(request: Any) -> Answer:  # the server's clock is 900 s ahead of ours
        now = time.time() + 900
        late = abs(int(request.headers["x-tc-timestamp"]) - now) > 300
        return skew_error(now) if late else api_ok(ImageSet=[])

    server.default = server_clock
    hook = hook_on("async", server.url)

    assert run(hook, "describe_images", [f"img-{n}" for n in range(250)]) == []
    assert len(server.requests) == 6


def dated(answer: Answer, when: float | None) -> Answer:
    """``answer`` with a ``Date`` header showing ``when`` (None: no Date header)."""
    return Answer(answer.status, answer.body, {**answer.headers, "Date": formatdate(when, usegmt=True) if when else ""})


LISTING = Answer(
    200,
    b"<ListBucketResult><Name>bucket-1250000000</Name><Prefix>a</Prefix><IsTruncated>false</IsTruncated>"
    b"<Contents><Key>a.raw</Key><LastModified>2026-12-01T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag>"
    b"<Size>7</Size></Contents></ListBucketResult>",
)


@pytest.mark.parametrize("kind", KINDS)
def test_cos_clock_is_learned_from_the_date_header_of_cos_answers(
    hook_on: Callable[..., Any], server: ScriptedServer, kind: str
) -> None:
    """COS's clock (the one ``Last-Modified`` is written by) comes from the ``Date`` of COS answers, HEAD
    and listing alike, apart from the API's; an answer without a usable ``Date`` keeps what was learned."""
    hook = hook_on(kind, server.url, cos_endpoint=server.url)
    assert abs(hook.cos_time() - hook.server_time()) < 1  # no COS answer yet: the API's clock

    server.play(dated(HEAD_OK, time.time() - 90))
    run(hook, "head_cos_object", "bucket-1250000000", "a.raw")
    assert -92 < hook.cos_time() - time.time() < -88  # COS is 90 s behind
    assert abs(hook.server_time() - time.time()) < 1  # the API's clock is not COS's

    server.play(dated(LISTING, time.time() + 45))
    assert [obj["key"] for obj in run(hook, "list_cos_objects", "bucket-1250000000", "a")] == ["a.raw"]
    assert 43 < hook.cos_time() - time.time() < 47  # the latest answer counts

    server.play(dated(HEAD_OK, None))
    run(hook, "head_cos_object", "bucket-1250000000", "a.raw")
    assert 43 < hook.cos_time() - time.time() < 47


@pytest.mark.parametrize("kind", KINDS)
def test_environment_proxies_are_honoured(
    hook_on: Callable[..., Any], server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url)
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    run(hook_on(kind, "http://cvm.example.invalid", allow_http=True), "describe_images", ["img-1"])

    (request,) = server.requests
    assert request.path == "http://cvm.example.invalid/"  # absolute form: sent through the proxy
    assert request.headers["host"] == "cvm.example.invalid"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.mark.parametrize("kind", KINDS)
def test_tls_is_verified_with_the_environment_ca_bundle(
    hook_on: Callable[..., Any], tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    cert_file, key_file = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with ScriptedServer(api_ok(ImageSet=[]), tls=context) as https:
        with pytest.raises(TencentCloudNetworkError, match="TLS failed"):
            run(hook_on(kind, https.url), "describe_images", ["img-1"])  # self-signed: not trusted by default
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
        assert run(hook_on(kind, https.url), "describe_images", ["img-1"]) == []


@pytest.mark.parametrize("kind", KINDS)
def test_cos_answers_are_read_alike(hook_on: Callable[..., Any], server: ScriptedServer, kind: str) -> None:
    hook = hook_on(kind, server.url, cos_endpoint=server.url)
    server.play(Answer(404, b""), Answer(503, b"<Error><Code>SlowDown</Code></Error>"), HEAD_OK, Answer(403, b""))

    assert run(hook, "head_cos_object", "bucket-1250000000", "a.raw") is None
    head = run(hook, "head_cos_object", "bucket-1250000000", "a.raw")  # throttled once, then retried
    assert head == {"size": 7, "etag": "abc", "last_modified": "2026-12-01T10:00:00+00:00"}
    with pytest.raises(TencentCloudAuthError, match="read permission"):
        run(hook, "head_cos_object", "bucket-1250000000", "a.raw")
    assert len(server.requests) == 4  # a 403 is not retried


@pytest.mark.parametrize("kind", KINDS)
def test_an_unanswered_write_is_not_sent_again(hook_on: Callable[..., Any], server: ScriptedServer, kind: str) -> None:
    server.play(DROP)
    with pytest.raises(TencentCloudOutcomeUnknownError, match="no answer came back"):
        run(hook_on(kind, server.url), "call", "ExportImages", {"ImageIds": ["img-1"], "BucketName": "b-1250000000"})
    assert len(server.requests) == 1


def test_async_calls_leave_no_cyclic_garbage(hook_on: Callable[..., Any], server: ScriptedServer) -> None:
    """A triggerer holding thousands of waits must not pay for each call in collector passes.

    tenacity's per-call state refers back to its retrying object; the hook breaks that cycle, so
    reference counting frees every call's objects (responses, futures, locks) at once.
    """
    server.default = api_ok(ImageSet=[{"ImageId": "img-1"}])
    hook = hook_on("async", server.url)

    async def calls() -> int:
        await hook.describe_images(["img-1"])  # connection pool, config and clock exist before counting
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await hook.describe_images(["img-1"])
            server.default = HEAD_OK
            for _ in range(20):
                await hook.head_cos_object("exports-1250000000", "img-1.raw")
            return gc.collect()
        finally:
            gc.enable()
            await hook.aclose()

    assert asyncio.run(calls()) == 0
